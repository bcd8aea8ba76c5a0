//! Arbitrary bytes and text as a commit token: a typed error or a token
//! that re-encodes to the same bytes, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ordo_engine::token::Token;

fuzz_target!(|data: &[u8]| {
    if let Ok(token) = Token::from_bytes(data) {
        assert_eq!(token.to_bytes(), data);
        let text = token.to_text();
        assert_eq!(Token::from_text(&text).map(|t| t.to_bytes()).ok(), Some(data.to_vec()));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Token::from_text(text);
    }
});
