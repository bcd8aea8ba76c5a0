//! Lowercase hex for keys and cluster ids in the key files: the `hex`
//! crate does the encoding; this adapter fixes the length and words the
//! errors as the key files' messages do ("expected 64 hex digits, found
//! 63 characters").

/// Lowercase hex of `bytes`.
pub(crate) fn encode(bytes: &[u8]) -> String {
    ::hex::encode(bytes)
}

/// Decodes exactly `N` bytes of hex (either case); a reason on failure.
pub(crate) fn decode<const N: usize>(text: &str) -> Result<[u8; N], String> {
    if text.len() != 2 * N {
        return Err(format!(
            "expected {} hex digits, found {} characters",
            2 * N,
            text.chars().count()
        ));
    }
    let mut bytes = [0u8; N];
    ::hex::decode_to_slice(text, &mut bytes).map_err(|error| match error {
        ::hex::FromHexError::InvalidHexCharacter { c, .. } if c.is_ascii_graphic() => {
            format!("'{c}' is not a hex digit")
        }
        ::hex::FromHexError::InvalidHexCharacter { .. } => {
            "found a character that is not a hex digit".to_string()
        }
        // The length is checked above; kept worded in case.
        other => other.to_string(),
    })?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trips_and_rejects() {
        let bytes = [0x00, 0x7f, 0xab, 0xff];
        assert_eq!(super::encode(&bytes), "007fabff");
        assert_eq!(super::decode::<4>("007FABff"), Ok(bytes));
        assert_eq!(
            super::decode::<4>("007fab"),
            Err("expected 8 hex digits, found 6 characters".to_string())
        );
        assert_eq!(
            super::decode::<4>("007fabfg"),
            Err("'g' is not a hex digit".to_string())
        );
        assert!(super::decode::<2>("éé").is_err());
        assert_eq!(
            super::decode::<2>("00 1"),
            Err("found a character that is not a hex digit".to_string())
        );
    }
}
