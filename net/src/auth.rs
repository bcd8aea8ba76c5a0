//! Connection authentication: what the handshake's challenge and proof are
//! signed with.
//!
//! The handshake (see [`crate::handshake`] and `docs/protocol.md`) is a
//! mutual challenge-response: each side sends a fresh random nonce, and each
//! signs a [`transcript`] that binds the role, the cluster, both node ids
//! and both nonces under its own domain tag. A signature therefore proves
//! the signer holds the credential *now*, for *this* connection: replaying
//! one on another connection fails, because the other side's nonce differs.
//!
//! This crate knows nothing about keys: an [`Authenticator`] signs and
//! verifies. The engine implements it with the voters' ed25519 node keys
//! (peer connections) and with keyed hashes of the cluster's gossip and
//! client secrets (gossip and client connections). [`NoAuth`] signs nothing
//! and accepts everything: authentication turned off.

use std::sync::Arc;

use ordo_storage::NodeId;

use crate::handshake::ConnectionRole;

/// Bytes of a handshake nonce.
pub const NONCE_BYTES: usize = 32;
/// Bytes of a handshake signature (an ed25519 signature; a keyed hash uses
/// the first 32).
pub const SIGNATURE_BYTES: usize = 64;

/// A handshake nonce.
pub type Nonce = [u8; NONCE_BYTES];
/// A handshake signature.
pub type Signature = [u8; SIGNATURE_BYTES];

/// Domain tag of the acceptor's signature (the challenge).
pub const ACK_TAG: &[u8; 16] = b"ordo-auth-ack-v1";
/// Domain tag of the dialer's signature (the proof).
pub const PROOF_TAG: &[u8; 16] = b"ordo-auth-prf-v1";

/// Bytes of a [`transcript`].
pub const TRANSCRIPT_BYTES: usize = 16 + 1 + 8 + 8 + 8 + NONCE_BYTES + NONCE_BYTES;

/// Which side signs a transcript.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The acceptor, in its challenge.
    Acceptor,
    /// The dialer, in its proof.
    Dialer,
}

/// Why a signature was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AuthRefusal(pub String);

/// Signs this side's transcripts and checks the other side's.
///
/// Implementations must be cheap to call once per connection and must not
/// panic on any input: `signature` comes from the network.
pub trait Authenticator: Send + Sync {
    /// This node's signature over `transcript`.
    fn sign(&self, transcript: &[u8]) -> Signature;
    /// Whether `signature` over `transcript` proves that `node` (the other
    /// side's id as it introduced itself; `0` for clients and gossip nodes)
    /// holds the credential this side expects of it.
    fn verify(
        &self,
        node: NodeId,
        transcript: &[u8],
        signature: &Signature,
    ) -> Result<(), AuthRefusal>;
}

/// Authentication turned off: signs with zeros and accepts any signature.
/// Both sides of a connection must agree: a side that authenticates
/// refuses a zero signature.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoAuth;

impl Authenticator for NoAuth {
    fn sign(&self, _transcript: &[u8]) -> Signature {
        [0; SIGNATURE_BYTES]
    }

    fn verify(
        &self,
        _node: NodeId,
        _transcript: &[u8],
        _signature: &Signature,
    ) -> Result<(), AuthRefusal> {
        Ok(())
    }
}

/// A shared handle on an [`Authenticator`], carried by the transport
/// configurations. The default is [`NoAuth`]: the engine sets a real one
/// from the node's `[auth]` configuration.
#[derive(Clone)]
pub struct Credential {
    inner: Arc<dyn Authenticator>,
    enabled: bool,
}

impl Credential {
    /// A credential that signs and verifies with `authenticator`.
    pub fn new(authenticator: Arc<dyn Authenticator>) -> Self {
        Self {
            inner: authenticator,
            enabled: true,
        }
    }

    /// No authentication ([`NoAuth`]).
    pub fn none() -> Self {
        Self {
            inner: Arc::new(NoAuth),
            enabled: false,
        }
    }

    /// Whether this is a real credential (not [`Credential::none`]).
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// See [`Authenticator::sign`].
    pub fn sign(&self, transcript: &[u8]) -> Signature {
        self.inner.sign(transcript)
    }

    /// See [`Authenticator::verify`].
    pub fn verify(
        &self,
        node: NodeId,
        transcript: &[u8],
        signature: &Signature,
    ) -> Result<(), AuthRefusal> {
        self.inner.verify(node, transcript, signature)
    }
}

impl Default for Credential {
    fn default() -> Self {
        Self::none()
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.enabled {
            f.write_str("Credential(enabled)")
        } else {
            f.write_str("Credential(none)")
        }
    }
}

/// Two credentials are equal when they share the same authenticator (or
/// are both off): configurations compare by identity, not by key.
impl PartialEq for Credential {
    fn eq(&self, other: &Self) -> bool {
        self.enabled == other.enabled
            && (!self.enabled
                || std::ptr::addr_eq(Arc::as_ptr(&self.inner), Arc::as_ptr(&other.inner)))
    }
}

impl Eq for Credential {}

/// The bytes one side signs: its domain tag, the connection's role, the
/// acceptor's cluster, the dialer's and the acceptor's ids, and the
/// dialer's and the acceptor's nonces, in that order (integers little
/// endian). Fixed size: nothing in it is variable-length, so no two
/// different fields can produce the same bytes.
pub fn transcript(
    side: Side,
    role: ConnectionRole,
    cluster_id: u64,
    dialer: NodeId,
    acceptor: NodeId,
    dialer_nonce: &Nonce,
    acceptor_nonce: &Nonce,
) -> [u8; TRANSCRIPT_BYTES] {
    let mut out = [0u8; TRANSCRIPT_BYTES];
    let tag = match side {
        Side::Acceptor => ACK_TAG,
        Side::Dialer => PROOF_TAG,
    };
    let role = match role {
        ConnectionRole::Peer => 1u8,
        ConnectionRole::Client => 2,
        ConnectionRole::Gossip => 3,
    };
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        out[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    put(tag);
    put(&[role]);
    put(&cluster_id.to_le_bytes());
    put(&dialer.to_le_bytes());
    put(&acceptor.to_le_bytes());
    put(dialer_nonce);
    put(acceptor_nonce);
    out
}

/// A fresh nonce from the operating system's generator (not `fastrand`: a
/// predictable nonce would let a recorded proof be replayed).
#[cfg(feature = "io")]
pub fn fresh_nonce() -> Result<Nonce, getrandom::Error> {
    let mut nonce = [0u8; NONCE_BYTES];
    getrandom::fill(&mut nonce)?;
    Ok(nonce)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcripts_differ_in_every_field() {
        let base = transcript(
            Side::Acceptor,
            ConnectionRole::Peer,
            7,
            1,
            2,
            &[1; 32],
            &[2; 32],
        );
        let variants = [
            transcript(
                Side::Dialer,
                ConnectionRole::Peer,
                7,
                1,
                2,
                &[1; 32],
                &[2; 32],
            ),
            transcript(
                Side::Acceptor,
                ConnectionRole::Gossip,
                7,
                1,
                2,
                &[1; 32],
                &[2; 32],
            ),
            transcript(
                Side::Acceptor,
                ConnectionRole::Peer,
                8,
                1,
                2,
                &[1; 32],
                &[2; 32],
            ),
            transcript(
                Side::Acceptor,
                ConnectionRole::Peer,
                7,
                2,
                1,
                &[1; 32],
                &[2; 32],
            ),
            transcript(
                Side::Acceptor,
                ConnectionRole::Peer,
                7,
                1,
                2,
                &[2; 32],
                &[1; 32],
            ),
            transcript(
                Side::Acceptor,
                ConnectionRole::Peer,
                7,
                1,
                2,
                &[1; 32],
                &[3; 32],
            ),
        ];
        for variant in variants {
            assert_ne!(base, variant);
        }
    }

    #[test]
    #[cfg(feature = "io")]
    fn nonces_are_fresh() {
        assert_ne!(fresh_nonce().unwrap(), fresh_nonce().unwrap());
    }
}
