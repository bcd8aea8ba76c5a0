//! The real token check behind the gossip core's [`Verify`]: a gossip
//! message is accepted only if its token proves that exactly this payload,
//! id, index, term and timestamp were committed by a leader whose key is in
//! `cluster.keys`, or in a configuration the chain of links from it names.

use bytes::Bytes;

use super::{GossipMessage, Verify};
use crate::token::{ChainError, ConfigLink, Token, TokenDecodeError, Verifier, VerifyError};

/// [`Verify`] with a token [`Verifier`]: decodes the token (bounded,
/// never panics on bytes) and verifies it; checked statements are cached,
/// so the other entries of one commit advance cost only hashing.
pub struct TokenVerifier {
    verifier: Verifier,
    /// The configuration links learned, oldest first.
    links: Vec<Bytes>,
}

impl TokenVerifier {
    /// Verifies against `verifier`'s keys.
    pub fn new(verifier: Verifier) -> Self {
        Self {
            verifier,
            links: Vec::new(),
        }
    }
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("cluster", &self.verifier.keys().cluster_id())
            .finish()
    }
}

/// Why a [`TokenVerifier`] refused a message or a link.
#[derive(Debug, thiserror::Error)]
pub enum TokenCheckError {
    /// The token does not decode.
    #[error(transparent)]
    Decode(#[from] TokenDecodeError),
    /// The token does not prove the message.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The link does not decode, or does not extend the chain.
    #[error(transparent)]
    Link(#[from] ChainError),
}

impl Verify for TokenVerifier {
    type Error = TokenCheckError;

    fn verify(&mut self, message: &GossipMessage) -> Result<(), TokenCheckError> {
        let token = Token::from_bytes(&message.token)?;
        self.verifier.verify(
            &token,
            &message.payload,
            message.id,
            message.index,
            message.term,
            message.ts,
        )?;
        Ok(())
    }

    fn learn(&mut self, link: &[u8]) -> Result<bool, TokenCheckError> {
        let decoded = ConfigLink::from_bytes(link)?;
        let learned = self.verifier.learn(&decoded)?;
        if learned {
            self.links.push(Bytes::copy_from_slice(link));
        }
        Ok(learned)
    }

    fn links(&self) -> Vec<Bytes> {
        self.links.clone()
    }
}
