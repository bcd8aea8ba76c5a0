//! The real token check behind the gossip core's [`Verify`]: a gossip
//! message is accepted only if its token proves that exactly this payload,
//! id, index, term and timestamp were committed by a leader whose key is in
//! `cluster.keys`, or in a configuration the chain of links from it names.

use crate::gossip::{GossipMessage, Verify};
use bytes::Bytes;

use crate::token::{ConfigLink, Token, Verifier};

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

impl Verify for TokenVerifier {
    fn verify(&mut self, message: &GossipMessage) -> Result<(), String> {
        let token = Token::from_bytes(&message.token).map_err(|e| e.to_string())?;
        self.verifier
            .verify(
                &token,
                &message.payload,
                message.id,
                message.index,
                message.term,
                message.ts,
            )
            .map_err(|e| e.to_string())
    }

    fn learn(&mut self, link: &[u8]) -> Result<bool, String> {
        let decoded = ConfigLink::from_bytes(link).map_err(|e| e.to_string())?;
        let learned = self.verifier.learn(&decoded).map_err(|e| e.to_string())?;
        if learned {
            self.links.push(Bytes::copy_from_slice(link));
        }
        Ok(learned)
    }

    fn links(&self) -> Vec<Bytes> {
        self.links.clone()
    }
}
