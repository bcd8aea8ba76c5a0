//! The runtime's side of a cluster configuration: how to reach and whom to
//! trust for each member. The core keeps it as each member's opaque
//! [`Member::info`](crate::core::Member); [`MemberInfo`] is its encoding.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use ordo_storage::NodeId;

use super::config::NodeConfig;
use crate::core::{MemberRole, Membership};

const ENCODING_VERSION: u8 = 1;

/// Where a member listens and its public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    /// Where the other members connect.
    pub peer_addr: SocketAddr,
    /// Where clients connect.
    pub client_addr: SocketAddr,
    /// Where gossip nodes may use it as a seed, if it runs gossip.
    pub gossip_addr: Option<SocketAddr>,
    /// Its node key's public half (Ed25519, compressed): statements it
    /// signs verify with it. All zeros: the cluster runs without tokens.
    pub public_key: [u8; 32],
}

/// Why bytes are not a [`MemberInfo`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid member information: {0}")]
pub struct MemberInfoError(pub String);

impl MemberInfo {
    /// The bytes kept in the configuration entry.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        out.put_u8(ENCODING_VERSION);
        for addr in [
            Some(self.peer_addr),
            Some(self.client_addr),
            self.gossip_addr,
        ] {
            let text = addr.map(|a| a.to_string()).unwrap_or_default();
            out.put_u8(text.len() as u8);
            out.put_slice(text.as_bytes());
        }
        out.put_slice(&self.public_key);
        out.freeze()
    }

    /// Decodes untrusted bytes; every field is checked.
    pub fn decode(mut bytes: &[u8]) -> Result<Self, MemberInfoError> {
        let err = |s: &str| MemberInfoError(s.to_string());
        if bytes.remaining() < 1 {
            return Err(err("empty"));
        }
        let version = bytes.get_u8();
        if version != ENCODING_VERSION {
            return Err(MemberInfoError(format!("unknown version {version}")));
        }
        let mut addrs = [None, None, None];
        for (slot, name) in addrs.iter_mut().zip(["peer", "client", "gossip"]) {
            if bytes.remaining() < 1 {
                return Err(MemberInfoError(format!("truncated {name} address")));
            }
            let len = bytes.get_u8() as usize;
            if bytes.remaining() < len {
                return Err(MemberInfoError(format!("truncated {name} address")));
            }
            let text = std::str::from_utf8(&bytes[..len])
                .map_err(|_| MemberInfoError(format!("{name} address is not UTF-8")))?;
            if len > 0 {
                *slot = Some(
                    text.parse::<SocketAddr>()
                        .map_err(|e| MemberInfoError(format!("{name} address {text:?}: {e}")))?,
                );
            }
            bytes.advance(len);
        }
        if bytes.remaining() != 32 {
            return Err(err("public key must be 32 bytes"));
        }
        let mut public_key = [0u8; 32];
        public_key.copy_from_slice(bytes);
        let [peer, client, gossip] = addrs;
        Ok(Self {
            peer_addr: peer.ok_or_else(|| err("no peer address"))?,
            client_addr: client.ok_or_else(|| err("no client address"))?,
            gossip_addr: gossip,
            public_key,
        })
    }
}

/// How to reach each member of the configuration in force: from its
/// configuration entry, or, for members of the bootstrap configuration
/// (which carries no information), from `ordo.toml`.
#[derive(Clone, Debug, Default)]
pub struct Directory {
    /// Index of the configuration entry (`0`: bootstrap).
    pub index: u64,
    /// Members, by id.
    pub members: BTreeMap<NodeId, (MemberRole, Option<MemberInfo>)>,
}

impl Directory {
    /// The directory for `membership`.
    pub fn new(index: u64, membership: &Membership) -> Self {
        let members = membership
            .members()
            .iter()
            .map(|m| {
                let info = if m.info.is_empty() {
                    None
                } else {
                    match MemberInfo::decode(&m.info) {
                        Ok(info) => Some(info),
                        Err(error) => {
                            tracing::error!(member = m.id, %error, "member information unreadable");
                            None
                        }
                    }
                };
                (m.id, (m.role, info))
            })
            .collect();
        Self { index, members }
    }

    /// Where `id` listens for peers.
    pub fn peer_addr(&self, config: &NodeConfig, id: NodeId) -> Option<SocketAddr> {
        match self.members.get(&id) {
            Some((_, Some(info))) => Some(info.peer_addr),
            _ => config.peer_addr_of(id),
        }
    }

    /// Where `id` listens for clients.
    pub fn client_addr(&self, config: &NodeConfig, id: NodeId) -> Option<SocketAddr> {
        match self.members.get(&id) {
            Some((_, Some(info))) => Some(info.client_addr),
            _ => config.client_addr_of(id),
        }
    }
}

/// One member as `ordo member list` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberView {
    /// Its id.
    pub id: NodeId,
    /// Voter or learner.
    pub role: MemberRole,
    /// Where members connect to it, if known.
    pub peer_addr: Option<SocketAddr>,
    /// Where clients connect to it, if known.
    pub client_addr: Option<SocketAddr>,
    /// The leader's view of how far its log matches (`None` unless the
    /// answering node leads; the leader's own is its last index).
    pub match_index: Option<u64>,
}

/// The configuration in force as one node sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MembersView {
    /// Index of its entry (`0`: the bootstrap configuration).
    pub index: u64,
    /// Whether that entry is committed.
    pub committed: bool,
    /// The leader this node knows, `0` if none.
    pub leader: NodeId,
    /// The members, by id.
    pub members: Vec<MemberView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_information_round_trips_and_rejects_damage() {
        let info = MemberInfo {
            peer_addr: "10.0.0.4:7103".parse().unwrap(),
            client_addr: "10.0.0.4:7003".parse().unwrap(),
            gossip_addr: None,
            public_key: [7; 32],
        };
        let bytes = info.encode();
        assert_eq!(MemberInfo::decode(&bytes).unwrap(), info);
        for cut in 0..bytes.len() {
            assert!(MemberInfo::decode(&bytes[..cut]).is_err());
        }
        let mut bad = bytes.to_vec();
        bad[2] = b'x';
        assert!(
            MemberInfo::decode(&bad)
                .unwrap_err()
                .0
                .contains("peer address")
        );
    }
}
