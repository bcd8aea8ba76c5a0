//! Lowercase hex for keys and cluster ids in the key files.

/// Lowercase hex of `bytes`.
pub(crate) fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(DIGITS[usize::from(byte >> 4)] as char);
        text.push(DIGITS[usize::from(byte & 0x0f)] as char);
    }
    text
}

/// Decodes exactly `N` bytes of hex (either case); a reason on failure.
pub(crate) fn decode<const N: usize>(text: &str) -> Result<[u8; N], String> {
    let digits = text.as_bytes();
    if digits.len() != 2 * N {
        return Err(format!(
            "expected {} hex digits, found {} characters",
            2 * N,
            text.chars().count()
        ));
    }
    let mut bytes = [0u8; N];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        let high = digit(pair[0])?;
        let low = digit(pair[1])?;
        *byte = (high << 4) | low;
    }
    Ok(bytes)
}

fn digit(character: u8) -> Result<u8, String> {
    match character {
        b'0'..=b'9' => Ok(character - b'0'),
        b'a'..=b'f' => Ok(character - b'a' + 10),
        b'A'..=b'F' => Ok(character - b'A' + 10),
        _ if character.is_ascii_graphic() => {
            Err(format!("'{}' is not a hex digit", char::from(character)))
        }
        _ => Err("found a character that is not a hex digit".to_string()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trips_and_rejects() {
        let bytes = [0x00, 0x7f, 0xab, 0xff];
        assert_eq!(super::encode(&bytes), "007fabff");
        assert_eq!(super::decode::<4>("007FABff"), Ok(bytes));
        assert!(super::decode::<4>("007fab").is_err());
        assert!(super::decode::<4>("007fabfg").is_err());
        assert!(super::decode::<2>("éé").is_err());
    }
}
