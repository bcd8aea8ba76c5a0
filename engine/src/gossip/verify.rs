//! Token verification, behind a trait so that the gossip core does not
//! depend on how tokens are built.

use super::GossipMessage;

/// Checks that a message was committed exactly as it reads: its token must
/// cover its id, index, term, timestamp and payload. The gossip core calls
/// it once per message it has not seen before, before buffering, delivering
/// or forwarding it; a message that fails is logged, counted and dropped.
///
/// `&mut self` because a real verifier caches the statements it has
/// checked (the other entries of a batch then cost only hashing). It runs
/// inside the pure core, so it must not do IO or read the clock.
pub trait Verify {
    /// Why a message or a link was refused (the core logs and counts it).
    type Error: std::error::Error;

    /// `Ok` if the token proves the message; otherwise why not.
    fn verify(&mut self, message: &GossipMessage) -> Result<(), Self::Error>;

    /// Learns a configuration link (an encoded `token::ConfigLink`, from
    /// a peer: untrusted): `Ok(true)` if it extended the chain of voters
    /// this verifier trusts, `Ok(false)` if it was known.
    fn learn(&mut self, link: &[u8]) -> Result<bool, Self::Error> {
        let _ = link;
        Ok(false)
    }

    /// The links learned, oldest first (what a new neighbour is sent).
    fn links(&self) -> Vec<bytes::Bytes> {
        Vec::new()
    }
}
