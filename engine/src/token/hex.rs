//! Lowercase hex for keys and cluster ids in the key files: the `hex`
//! crate does the encoding; this adapter fixes the length and words the
//! errors as the key files' messages do ("expected 64 hex digits, found
//! 63 characters").

/// Lowercase hex of `bytes`.
pub(crate) fn encode(bytes: &[u8]) -> String {
    ::hex::encode(bytes)
}

/// Why some text is not the hex of a key or a cluster id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    /// Not twice as many characters as the bytes wanted.
    #[error("expected {digits} hex digits, found {found} characters")]
    Length {
        /// The digits wanted.
        digits: usize,
        /// The characters given.
        found: usize,
    },
    /// A printable character that is not a hex digit.
    #[error("'{0}' is not a hex digit")]
    NotADigit(char),
    /// A character that is not a hex digit and not worth printing (a
    /// space, a control character).
    #[error("found a character that is not a hex digit")]
    Unprintable,
}

/// Decodes exactly `N` bytes of hex (either case).
pub(crate) fn decode<const N: usize>(text: &str) -> Result<[u8; N], HexError> {
    if text.len() != 2 * N {
        return Err(HexError::Length {
            digits: 2 * N,
            found: text.chars().count(),
        });
    }
    let mut bytes = [0u8; N];
    ::hex::decode_to_slice(text, &mut bytes).map_err(|error| match error {
        ::hex::FromHexError::InvalidHexCharacter { c, .. } if c.is_ascii_graphic() => {
            HexError::NotADigit(c)
        }
        ::hex::FromHexError::InvalidHexCharacter { .. } => HexError::Unprintable,
        // The length is checked above; kept worded in case.
        ::hex::FromHexError::OddLength | ::hex::FromHexError::InvalidStringLength => {
            HexError::Length {
                digits: 2 * N,
                found: text.chars().count(),
            }
        }
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
            Err(super::HexError::Length {
                digits: 8,
                found: 6
            })
        );
        assert_eq!(
            super::decode::<4>("007fabfg"),
            Err(super::HexError::NotADigit('g'))
        );
        assert!(super::decode::<2>("éé").is_err());
        assert_eq!(
            super::decode::<4>("007fab").unwrap_err().to_string(),
            "expected 8 hex digits, found 6 characters"
        );
        assert_eq!(
            super::decode::<2>("00 1"),
            Err(super::HexError::Unprintable)
        );
    }
}
