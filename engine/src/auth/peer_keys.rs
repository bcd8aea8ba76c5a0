//! Peer authentication with the voters' ed25519 node keys.

use std::collections::HashMap;
use std::sync::RwLock;

use ed25519_dalek::Signature as Ed25519Signature;
use ordo_net::auth::{AuthRefusal, Authenticator, Signature};
use ordo_storage::NodeId;

use crate::token::{ClusterKeys, NodeKey, PublicKey};

/// Domain separation from commit statements: a handshake signature is made
/// over `HANDSHAKE_PREFIX ‖ transcript`, so no handshake transcript can be
/// mistaken for a statement the same key signs (and the transcript itself
/// starts with its own tag).
const HANDSHAKE_PREFIX: &[u8] = b"ordo-handshake\0";

/// This voter's node key and the keys it trusts for the other members:
/// `cluster.keys` for the bootstrap voters, and the key each member's
/// information carries in the configuration in force (so a voter added
/// later is accepted as soon as this node holds the entry that adds it).
///
/// Lives on the group's shard (the peer transport's). The map sits behind
/// a lock only because transport configurations must be `Send`; it is
/// written when the configuration changes and read once per handshake.
pub struct PeerKeys {
    own: NodeKey,
    bootstrap: HashMap<NodeId, PublicKey>,
    trusted: RwLock<HashMap<NodeId, PublicKey>>,
}

impl PeerKeys {
    /// Signs with `own`; trusts the keys `cluster.keys` lists.
    pub fn new(own: NodeKey, keys: &ClusterKeys) -> Self {
        let bootstrap: HashMap<NodeId, PublicKey> =
            keys.iter().map(|(id, key)| (id, *key)).collect();
        Self {
            own,
            trusted: RwLock::new(bootstrap.clone()),
            bootstrap,
        }
    }

    /// The configuration in force changed: trust `cluster.keys` and the
    /// keys `members` name (all-zero or invalid keys are skipped: such a
    /// member keeps its `cluster.keys` key, if any). A member removed from
    /// the configuration is no longer trusted unless `cluster.keys` lists it.
    pub fn set_members(&self, members: impl IntoIterator<Item = (NodeId, [u8; 32])>) {
        let mut trusted = self.bootstrap.clone();
        for (id, bytes) in members {
            if bytes == [0; 32] {
                continue;
            }
            match PublicKey::from_bytes(&bytes) {
                Ok(key) => {
                    trusted.insert(id, key);
                }
                Err(error) => {
                    tracing::warn!(member = id, %error, "member's public key unusable: it cannot connect")
                }
            }
        }
        *self.trusted.write().unwrap_or_else(|e| e.into_inner()) = trusted;
    }

    /// The key trusted for `node`, if any.
    pub fn key_of(&self, node: NodeId) -> Option<PublicKey> {
        self.trusted
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&node)
            .copied()
    }

    fn message(transcript: &[u8]) -> Vec<u8> {
        [HANDSHAKE_PREFIX, transcript].concat()
    }
}

impl Authenticator for PeerKeys {
    fn sign(&self, transcript: &[u8]) -> Signature {
        self.own.sign(&Self::message(transcript)).to_bytes()
    }

    fn verify(
        &self,
        node: NodeId,
        transcript: &[u8],
        signature: &Signature,
    ) -> Result<(), AuthRefusal> {
        let key = self.key_of(node).ok_or_else(|| {
            AuthRefusal(format!(
                "no public key known for node {node} (neither in cluster.keys nor in the configuration in force)"
            ))
        })?;
        key.verifying_key()
            .verify_strict(
                &Self::message(transcript),
                &Ed25519Signature::from_bytes(signature),
            )
            .map_err(|_| {
                AuthRefusal(format!(
                    "the signature does not verify with node {node}'s key"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::ClusterId;

    fn cluster(keys: &[(NodeId, &NodeKey)]) -> ClusterKeys {
        let mut out = ClusterKeys::new(ClusterId([3; 16]));
        for (id, key) in keys {
            out.insert(*id, key.public_key()).unwrap();
        }
        out
    }

    #[test]
    fn the_right_key_verifies_and_others_do_not() {
        let one = NodeKey::from_secret_bytes(&[1; 32]);
        let two = NodeKey::from_secret_bytes(&[2; 32]);
        let keys = cluster(&[(1, &one), (2, &two)]);
        let signer = PeerKeys::new(NodeKey::from_secret_bytes(&[1; 32]), &keys);
        let checker = PeerKeys::new(NodeKey::from_secret_bytes(&[2; 32]), &keys);
        let signature = signer.sign(b"transcript");
        assert!(checker.verify(1, b"transcript", &signature).is_ok());
        // Node 2's key, another transcript, a zero signature.
        assert!(checker.verify(2, b"transcript", &signature).is_err());
        assert!(checker.verify(1, b"transcript!", &signature).is_err());
        assert!(checker.verify(1, b"transcript", &[0; 64]).is_err());
        // An unknown node.
        let error = checker.verify(9, b"transcript", &signature).unwrap_err();
        assert!(error.0.contains("node 9"), "{error}");
        // The handshake signature is not a signature over the bare
        // transcript (no cross-protocol use of the node key).
        let bare = one.sign(b"transcript").to_bytes();
        assert!(checker.verify(1, b"transcript", &bare).is_err());
    }

    #[test]
    fn an_added_voters_key_is_trusted_and_a_removed_ones_is_not() {
        let one = NodeKey::from_secret_bytes(&[1; 32]);
        let four = NodeKey::from_secret_bytes(&[4; 32]);
        let checker = PeerKeys::new(NodeKey::from_secret_bytes(&[2; 32]), &cluster(&[(1, &one)]));
        let signer = PeerKeys::new(NodeKey::from_secret_bytes(&[4; 32]), &cluster(&[]));
        let signature = signer.sign(b"t");
        assert!(checker.verify(4, b"t", &signature).is_err());
        checker.set_members([(1, [0; 32]), (4, four.public_key().to_bytes())]);
        assert!(checker.verify(4, b"t", &signature).is_ok());
        assert!(checker.key_of(1).is_some(), "cluster.keys stays trusted");
        checker.set_members([(1, [0; 32])]);
        assert!(checker.verify(4, b"t", &signature).is_err());
    }
}
