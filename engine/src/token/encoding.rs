//! A token and its two encodings: compact bytes, and base64url text for
//! JSON (`"token"` fields of `ordo send` and `ordo log`).
//!
//! Bytes (integers little-endian):
//!
//! ```text
//! offset  size  field
//!      0     1  version (1)
//!      1     1  hash id (TreeHash::ID: 1 = sha256, 2 = blake3)
//!      2    80  statement: cluster_id 16, term 8, leader_id 8,
//!               first_index 8, last_index 8, root 32
//!     82    64  ed25519 signature over the statement's canonical bytes
//!    146     1  n, the Merkle path length (at most 64)
//!    147  32·n  the path, bottom sibling first
//! ```
//!
//! 147 bytes plus 32 per tree level: 467 bytes for an entry of a
//! 1,024-entry commit advance. The entry itself (index, term, id, ts,
//! payload) is not in the token: the verifier is given it, and the entry's
//! position in the tree is `index - first_index`.
//!
//! Text is the bytes in unpadded base64url (RFC 4648 §5): no characters that
//! need escaping in JSON, URLs or shells. Decoding is strict (canonical
//! trailing bits, no padding, no whitespace) and bounded
//! ([`TOKEN_TEXT_LEN_MAX`]), and never panics.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::hash::{Digest, TokenHash, TreeHash};
use super::statement::{SIGNATURE_LEN, STATEMENT_BODY_LEN, SignedStatement, Statement};

/// The token format version this code writes and reads.
pub const TOKEN_VERSION: u8 = 1;
/// Longest Merkle path: a tree of at most 2^64 leaves has 64 levels.
pub const TOKEN_PATH_LEN_MAX: usize = 64;
/// Length of the fixed part of a token.
pub const TOKEN_HEADER_LEN: usize = 2 + STATEMENT_BODY_LEN + SIGNATURE_LEN + 1;
/// Longest token in bytes.
pub const TOKEN_BYTES_MAX: usize = TOKEN_HEADER_LEN + 32 * TOKEN_PATH_LEN_MAX;
/// Longest token in text.
pub const TOKEN_TEXT_LEN_MAX: usize = TOKEN_BYTES_MAX.div_ceil(3) * 4;

/// Proof that one entry was committed: the signed statement of its commit
/// advance and the Merkle path from the entry's leaf to the statement's root.
///
/// Built only by [`super::CommitProof::token`] or by decoding, so its path
/// never exceeds [`TOKEN_PATH_LEN_MAX`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// The leader's signed statement.
    pub(crate) signed: SignedStatement,
    /// Siblings from the entry's leaf up to the root, bottom first.
    // Invariant: at most TOKEN_PATH_LEN_MAX digests.
    pub(crate) path: Vec<Digest>,
}

/// A token's encoding up to its path: the fixed header for a path of
/// `path_len` digests, in a vector of the token's exact size (one
/// allocation; a token is cut per answer). The caller appends the path.
pub(crate) fn start_bytes(signed: &SignedStatement, path_len: usize) -> Vec<u8> {
    assert!(
        path_len <= TOKEN_PATH_LEN_MAX,
        "Token invariant: path of at most 64"
    );
    let mut bytes = Vec::with_capacity(TOKEN_HEADER_LEN + 32 * path_len);
    bytes.resize(TOKEN_HEADER_LEN, 0);
    bytes[0] = TOKEN_VERSION;
    bytes[1] = TokenHash::ID;
    signed
        .statement
        .write_body(&mut bytes[2..2 + STATEMENT_BODY_LEN]);
    let signature_at = 2 + STATEMENT_BODY_LEN;
    bytes[signature_at..signature_at + SIGNATURE_LEN].copy_from_slice(&signed.signature);
    bytes[TOKEN_HEADER_LEN - 1] = path_len as u8;
    bytes
}

/// Why bytes or text are not a token. Decoding checks form only; whether a
/// token proves anything is the verifier's job.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenDecodeError {
    /// Fewer bytes than the fixed part.
    #[error("token: {len} bytes, shorter than the {TOKEN_HEADER_LEN}-byte header")]
    TooShort {
        /// Bytes given.
        len: usize,
    },
    /// A format version this code does not know.
    #[error("token: unsupported version {0} (this build reads version {TOKEN_VERSION})")]
    UnsupportedVersion(u8),
    /// Made with another hash than this build's [`TokenHash`].
    #[error("token: made with hash id {found}, this build verifies hash id {expected} ({name})", expected = TokenHash::ID, name = TokenHash::NAME)]
    UnsupportedHash {
        /// The token's hash id.
        found: u8,
    },
    /// Term 0, leader 0, or an empty or backwards index range.
    #[error(
        "token: malformed statement (term {term}, leader {leader_id}, entries {first_index}..={last_index})"
    )]
    MalformedStatement {
        /// The statement's term.
        term: u64,
        /// The statement's leader.
        leader_id: u64,
        /// Its first index.
        first_index: u64,
        /// Its last index.
        last_index: u64,
    },
    /// A path longer than any tree can have.
    #[error("token: Merkle path of {len} levels, at most {TOKEN_PATH_LEN_MAX}")]
    PathTooLong {
        /// The declared length.
        len: usize,
    },
    /// The byte count does not match the declared path length.
    #[error("token: {actual} bytes, its path length says {expected}")]
    WrongLength {
        /// Bytes the header implies.
        expected: usize,
        /// Bytes given.
        actual: usize,
    },
    /// Text longer than any token.
    #[error("token: {len} characters of text, at most {TOKEN_TEXT_LEN_MAX}")]
    TextTooLong {
        /// Characters given.
        len: usize,
    },
    /// Text that is not unpadded base64url.
    #[error("token: not unpadded base64url: {0}")]
    NotBase64(base64::DecodeError),
}

impl Token {
    /// The leader's signed statement.
    pub fn signed(&self) -> &SignedStatement {
        &self.signed
    }

    /// The Merkle path, bottom sibling first.
    pub fn path(&self) -> &[Digest] {
        &self.path
    }

    /// The compact binary encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = start_bytes(&self.signed, self.path.len());
        for sibling in &self.path {
            bytes.extend_from_slice(sibling);
        }
        bytes
    }

    /// Decodes untrusted bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TokenDecodeError> {
        if bytes.len() < TOKEN_HEADER_LEN {
            return Err(TokenDecodeError::TooShort { len: bytes.len() });
        }
        if bytes[0] != TOKEN_VERSION {
            return Err(TokenDecodeError::UnsupportedVersion(bytes[0]));
        }
        if bytes[1] != TokenHash::ID {
            return Err(TokenDecodeError::UnsupportedHash { found: bytes[1] });
        }
        let path_len = usize::from(bytes[TOKEN_HEADER_LEN - 1]);
        if path_len > TOKEN_PATH_LEN_MAX {
            return Err(TokenDecodeError::PathTooLong { len: path_len });
        }
        let expected = TOKEN_HEADER_LEN + 32 * path_len;
        if bytes.len() != expected {
            return Err(TokenDecodeError::WrongLength {
                expected,
                actual: bytes.len(),
            });
        }
        let mut body = [0u8; STATEMENT_BODY_LEN];
        body.copy_from_slice(&bytes[2..2 + STATEMENT_BODY_LEN]);
        let statement = Statement::read_body(&body);
        if !statement.is_well_formed() {
            return Err(TokenDecodeError::MalformedStatement {
                term: statement.term,
                leader_id: statement.leader_id,
                first_index: statement.first_index,
                last_index: statement.last_index,
            });
        }
        let mut signature = [0u8; SIGNATURE_LEN];
        let signature_at = 2 + STATEMENT_BODY_LEN;
        signature.copy_from_slice(&bytes[signature_at..signature_at + SIGNATURE_LEN]);
        let path = bytes[TOKEN_HEADER_LEN..]
            .chunks_exact(32)
            .map(|chunk| {
                let mut sibling = [0u8; 32];
                sibling.copy_from_slice(chunk);
                sibling
            })
            .collect();
        Ok(Self {
            signed: SignedStatement {
                statement,
                signature,
            },
            path,
        })
    }

    /// The text encoding: unpadded base64url of [`Token::to_bytes`].
    pub fn to_text(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.to_bytes())
    }

    /// Decodes untrusted text.
    pub fn from_text(text: &str) -> Result<Self, TokenDecodeError> {
        if text.len() > TOKEN_TEXT_LEN_MAX {
            return Err(TokenDecodeError::TextTooLong { len: text.len() });
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(TokenDecodeError::NotBase64)?;
        Self::from_bytes(&bytes)
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl FromStr for Token {
    type Err = TokenDecodeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::from_text(text)
    }
}
