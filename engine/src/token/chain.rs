//! The chain of configuration changes from `cluster.keys` to the voters of
//! any later configuration, and the rule that decides whose key may sign a
//! statement.
//!
//! `cluster.keys` names the voters of the bootstrap configuration (in force
//! from index 0). Every later configuration is a log entry; its payload
//! lists the members, and each member's information carries its public key
//! (`node::members::MemberInfo`). A [`ConfigLink`] is such an entry with
//! its token. A [`KeySchedule`] starts from `cluster.keys` and learns links
//! in index order, each checked against the configuration before it:
//!
//! - **The signing rule.** A statement over `[first, last]` must be signed
//!   by a voter of the configuration in force after entry `first - 1`
//!   (the latest configuration entry at or below it), with the key that
//!   configuration names, and must not extend past a configuration entry:
//!   a configuration entry inside it must be its last entry. A leader
//!   splits its statements there. So a configuration entry is always
//!   signed under the configuration before it (it is committed under the
//!   old configuration), and every entry after it under the new one.
//! - **Removed keys.** Once a verifier knows the configuration that removed
//!   a voter, that voter's key is refused for every statement that starts
//!   after it.
//!
//! What a verifier cannot know offline is a configuration nobody showed it:
//! docs/tokens.md, "Trust model".

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use ordo_storage::{Index, MessageId, NodeId, Term, TimestampUs};

use super::cluster_keys::ClusterKeys;
use super::encoding::{Token, TokenDecodeError};
use super::keys::{ClusterId, PublicKey};
use super::statement::Statement;
use crate::core::{MemberRole, Membership};
use crate::node::members::MemberInfo;

/// Configurations a schedule holds at most: one per membership change in
/// the cluster's life.
pub const CHAIN_CONFIGS_MAX: usize = 65_536;
/// Largest encoded link: a configuration of `MEMBERS_MAX` members with
/// their information, plus a token.
pub const LINK_BYTES_MAX: usize = 256 << 10;
/// Link encoding version.
const LINK_VERSION: u8 = 1;
/// Fixed part of an encoded link: version, index, term, id, ts, payload
/// length.
const LINK_HEADER_LEN: usize = 1 + 8 + 8 + 8 + 8 + 4;

/// A committed configuration entry and its token: one step of the chain
/// from `cluster.keys` to a later configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigLink {
    /// The entry's index.
    pub index: Index,
    /// The entry's term.
    pub term: Term,
    /// The entry's message id (0: configuration entries take none).
    pub id: MessageId,
    /// The entry's timestamp.
    pub ts: TimestampUs,
    /// The encoded configuration ([`Membership::encode`]).
    pub payload: Bytes,
    /// The token that proves the entry committed.
    pub token: Token,
}

/// Why bytes are not a [`ConfigLink`], or a link does not extend a
/// [`KeySchedule`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The link's bytes or text are malformed.
    #[error("configuration link: {0}")]
    Malformed(String),
    /// The link's token does not decode.
    #[error("configuration link: token: {0}")]
    Token(#[from] TokenDecodeError),
    /// The entry is not a configuration entry (a message, or a payload that
    /// is not a configuration).
    #[error("configuration link at index {index}: not a configuration entry ({reason})")]
    NotConfiguration {
        /// The entry's index.
        index: Index,
        /// What is wrong.
        reason: String,
    },
    /// The link's token does not prove the entry under the configuration
    /// before it.
    #[error("configuration link at index {index}: {error}")]
    Unproven {
        /// The entry's index.
        index: Index,
        /// Why the token fails.
        error: super::verifier::VerifyError,
    },
    /// The link contradicts a configuration this schedule already holds,
    /// or falls between two configurations it holds (a link is missing or
    /// forged).
    #[error(
        "configuration link at index {index} contradicts the known chain (configurations at {known:?})"
    )]
    Conflict {
        /// The link's index.
        index: Index,
        /// Indexes of the known configurations around it.
        known: Vec<Index>,
    },
    /// The schedule is full.
    #[error("the chain holds {CHAIN_CONFIGS_MAX} configurations already")]
    TooLong,
}

impl ConfigLink {
    /// The encoded link: version, index, term, id, ts (u64 LE each),
    /// payload length (u32 LE), payload, token bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let token = self.token.to_bytes();
        let mut out = BytesMut::with_capacity(LINK_HEADER_LEN + self.payload.len() + token.len());
        out.put_u8(LINK_VERSION);
        out.put_u64_le(self.index);
        out.put_u64_le(self.term);
        out.put_u64_le(self.id);
        out.put_u64_le(self.ts);
        out.put_u32_le(self.payload.len() as u32);
        out.put_slice(&self.payload);
        out.put_slice(&token);
        out.to_vec()
    }

    /// Decodes untrusted bytes: bounded, every length checked.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ChainError> {
        let malformed = |s: String| ChainError::Malformed(s);
        if bytes.len() > LINK_BYTES_MAX {
            return Err(malformed(format!(
                "{} bytes, at most {LINK_BYTES_MAX}",
                bytes.len()
            )));
        }
        if bytes.len() < LINK_HEADER_LEN {
            return Err(malformed(format!("{} bytes is too short", bytes.len())));
        }
        let mut buf = bytes;
        let version = buf.get_u8();
        if version != LINK_VERSION {
            return Err(malformed(format!("unknown version {version}")));
        }
        let index = buf.get_u64_le();
        let term = buf.get_u64_le();
        let id = buf.get_u64_le();
        let ts = buf.get_u64_le();
        let payload_len = buf.get_u32_le() as usize;
        if buf.remaining() < payload_len {
            return Err(malformed(format!(
                "payload of {payload_len} bytes, {} left",
                buf.remaining()
            )));
        }
        let payload = Bytes::copy_from_slice(&buf[..payload_len]);
        buf.advance(payload_len);
        let token = Token::from_bytes(buf)?;
        Ok(Self {
            index,
            term,
            id,
            ts,
            payload,
            token,
        })
    }

    /// Unpadded base64url of [`ConfigLink::to_bytes`] (the `"link"` field
    /// of `ordo chain` and `ordo log` lines).
    pub fn to_text(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.to_bytes())
    }

    /// Decodes [`ConfigLink::to_text`]'s output (untrusted).
    pub fn from_text(text: &str) -> Result<Self, ChainError> {
        if text.len() > LINK_BYTES_MAX.div_ceil(3) * 4 {
            return Err(ChainError::Malformed(format!(
                "{} characters of text, at most {}",
                text.len(),
                LINK_BYTES_MAX.div_ceil(3) * 4
            )));
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|e| ChainError::Malformed(format!("base64url: {e}")))?;
        Self::from_bytes(&bytes)
    }

    /// The configuration the link's payload holds.
    pub fn membership(&self) -> Result<Membership, ChainError> {
        if self.id != 0 {
            return Err(ChainError::NotConfiguration {
                index: self.index,
                reason: format!("message id {}, configuration entries have none", self.id),
            });
        }
        Membership::decode(&self.payload).map_err(|e| ChainError::NotConfiguration {
            index: self.index,
            reason: e.0,
        })
    }
}

/// The voters of one configuration and their keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedConfig {
    /// Index of its entry (0: the bootstrap configuration of `cluster.keys`).
    pub index: Index,
    /// Its voters: each one's key, or `None` for a voter that holds none
    /// (it signs nothing).
    pub voters: BTreeMap<NodeId, Option<PublicKey>>,
}

/// The configurations a verifier or a node trusts, from `cluster.keys` on,
/// and whose key may sign which statement (module docs).
#[derive(Clone, Debug)]
pub struct KeySchedule {
    cluster_id: ClusterId,
    /// Strictly increasing indexes; never empty.
    configs: Vec<TrustedConfig>,
}

impl KeySchedule {
    /// The bootstrap configuration: every voter `keys` lists, from index 0.
    pub fn new(keys: &ClusterKeys) -> Self {
        let voters = keys.iter().map(|(id, key)| (id, Some(*key))).collect();
        Self {
            cluster_id: keys.cluster_id(),
            configs: vec![TrustedConfig { index: 0, voters }],
        }
    }

    /// Starts from a configuration taken on trust (a node's own snapshot):
    /// `membership` in force from `index`.
    pub fn from_trusted(cluster_id: ClusterId, index: Index, membership: &Membership) -> Self {
        let voters = voters_of(membership, None);
        Self {
            cluster_id,
            configs: vec![TrustedConfig { index, voters }],
        }
    }

    /// The cluster the schedule is for.
    pub fn cluster_id(&self) -> ClusterId {
        self.cluster_id
    }

    /// The configurations known, oldest first.
    pub fn configs(&self) -> &[TrustedConfig] {
        &self.configs
    }

    /// The newest configuration known.
    pub fn latest(&self) -> &TrustedConfig {
        self.configs.last().expect("never empty")
    }

    /// The configuration in force after entry `index`.
    pub fn at(&self, index: Index) -> &TrustedConfig {
        let position = self.configs.partition_point(|c| c.index <= index);
        &self.configs[position.saturating_sub(1)]
    }

    /// The key that must have signed `statement` (module docs: the signing
    /// rule).
    pub fn signer_key(
        &self,
        statement: &Statement,
    ) -> Result<PublicKey, super::verifier::VerifyError> {
        use super::verifier::VerifyError;
        let (first, last) = (statement.first_index, statement.last_index);
        let position = self.configs.partition_point(|c| c.index < first);
        let config = &self.configs[position.saturating_sub(1)];
        if let Some(next) = self.configs.get(position)
            && next.index < last
        {
            return Err(VerifyError::SpansConfiguration {
                first_index: first,
                last_index: last,
                config_index: next.index,
            });
        }
        let leader_id = statement.leader_id;
        match config.voters.get(&leader_id) {
            Some(Some(key)) => Ok(*key),
            Some(None) => Err(VerifyError::NoKey {
                leader_id,
                config_index: config.index,
            }),
            None if config.index == 0 => Err(VerifyError::UnknownSigner { leader_id }),
            None => Err(VerifyError::NotAVoter {
                leader_id,
                config_index: config.index,
            }),
        }
    }

    /// Where the statements a leader signs for `[first, last]` must end:
    /// at every configuration entry inside the range that this schedule
    /// knows, and at `last`.
    pub fn cuts(&self, first: Index, last: Index) -> Vec<Index> {
        let mut cuts: Vec<Index> = self
            .configs
            .iter()
            .map(|c| c.index)
            .filter(|&i| i >= first && i < last)
            .collect();
        cuts.push(last);
        cuts
    }

    /// Whether node `id` may sign a statement starting at `first`: a voter
    /// with a key in the configuration in force after `first - 1`.
    pub fn may_sign(&self, id: NodeId, first: Index) -> bool {
        matches!(
            self.at(first.saturating_sub(1)).voters.get(&id),
            Some(Some(_))
        )
    }

    /// Adds a configuration taken on trust (a node applying its own
    /// committed log). Returns `false` if it is not newer than the latest.
    pub fn push_trusted(&mut self, index: Index, membership: &Membership) -> bool {
        if index <= self.latest().index || self.configs.len() >= CHAIN_CONFIGS_MAX {
            return false;
        }
        let voters = voters_of(membership, Some(self.latest()));
        self.configs.push(TrustedConfig { index, voters });
        true
    }

    /// Checks `link` against the configuration before it and adds it.
    /// Returns `Ok(false)` for a link already known (the same
    /// configuration at the same index).
    pub fn learn(&mut self, link: &ConfigLink) -> Result<bool, ChainError> {
        let membership = link.membership()?;
        let latest = self.latest().index;
        if link.index <= latest {
            let voters = voters_of(&membership, None);
            return match self.configs.iter().find(|c| c.index == link.index) {
                Some(known) if same_voters(&known.voters, &voters) => Ok(false),
                _ => Err(ChainError::Conflict {
                    index: link.index,
                    known: self.configs.iter().map(|c| c.index).collect(),
                }),
            };
        }
        if self.configs.len() >= CHAIN_CONFIGS_MAX {
            return Err(ChainError::TooLong);
        }
        let unproven = |error| ChainError::Unproven {
            index: link.index,
            error,
        };
        let statement = &link.token.signed.statement;
        if statement.last_index != link.index {
            // A statement past a configuration entry would sign the entries
            // after it under the configuration before it.
            return Err(unproven(super::verifier::VerifyError::SpansConfiguration {
                first_index: statement.first_index,
                last_index: statement.last_index,
                config_index: link.index,
            }));
        }
        let key = self.signer_key(statement).map_err(unproven)?;
        super::verifier::check_entry(
            &link.token,
            self.cluster_id,
            link.index,
            link.term,
            link.id,
            link.ts,
            &link.payload,
        )
        .map_err(unproven)?;
        super::verifier::check_signed(&link.token, &key).map_err(unproven)?;
        let voters = voters_of(&membership, Some(self.latest()));
        self.configs.push(TrustedConfig {
            index: link.index,
            voters,
        });
        Ok(true)
    }
}

/// Whether two voter sets name the same voters (keys may be unknown on one
/// side: a configuration taken from a snapshot).
fn same_voters(
    a: &BTreeMap<NodeId, Option<PublicKey>>,
    b: &BTreeMap<NodeId, Option<PublicKey>>,
) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((ida, ka), (idb, kb))| ida == idb && (ka.is_none() || kb.is_none() || ka == kb))
}

/// The voters of `membership` with the key each one's information names;
/// a voter whose information names none keeps the key `before` gave it
/// (the bootstrap voters of an embedder's cluster carry none).
fn voters_of(
    membership: &Membership,
    before: Option<&TrustedConfig>,
) -> BTreeMap<NodeId, Option<PublicKey>> {
    membership
        .members()
        .iter()
        .filter(|m| m.role == MemberRole::Voter)
        .map(|member| {
            let before_key = || {
                before
                    .and_then(|b| b.voters.get(&member.id).copied())
                    .flatten()
            };
            // No information, or information without a key (all zeros):
            // the key it had keeps.
            let key = if member.info.is_empty() {
                before_key()
            } else {
                match MemberInfo::decode(&member.info) {
                    Ok(info) if info.public_key == [0; 32] => before_key(),
                    Ok(info) => PublicKey::from_bytes(&info.public_key).ok(),
                    Err(_) => None,
                }
            };
            (member.id, key)
        })
        .collect()
}
