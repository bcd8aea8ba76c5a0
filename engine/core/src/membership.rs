//! Cluster membership: who votes, who only learns, and how it changes one
//! server at a time (thesis §4.1–§4.3).
//!
//! A configuration is a log entry (a [`BatchKind::Config`] batch of one
//! entry whose payload is [`Membership::encode`]). A node uses the latest
//! configuration in its log, committed or not, from the moment it appends
//! it; a truncation that removes it restores the one before. A leader
//! proposes a change only when
//! - the entry of its own term that opened its term is committed (the
//!   erratum to the single-server algorithm: without it a new leader could
//!   append a change that, together with an uncommitted change of a
//!   deposed leader, splits the cluster into two disjoint majorities), and
//! - no earlier change is uncommitted,
//!
//! so any two configurations in use at once differ by at most one voter,
//! and their majorities overlap.
//!
//! [`BatchKind::Config`]: ordo_storage::BatchKind::Config

use bytes::{Buf, BufMut, Bytes, BytesMut};
use ordo_storage::{Index, NodeId};

/// Most members (voters and learners) one configuration holds.
pub const MEMBERS_MAX: usize = 128;

/// Most bytes of runtime information one member carries.
pub const MEMBER_INFO_MAX: usize = 1024;

const ENCODING_VERSION: u8 = 1;

/// What a member does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MemberRole {
    /// Votes, and counts towards commit.
    Voter,
    /// Receives the log; neither votes nor counts.
    Learner,
}

impl MemberRole {
    /// `"voter"` or `"learner"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Voter => "voter",
            Self::Learner => "learner",
        }
    }
}

/// One member of a configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its node id (never 0).
    pub id: NodeId,
    /// Voter or learner.
    pub role: MemberRole,
    /// What the runtime needs to reach and trust it (addresses, public
    /// key), opaque to the core; at most [`MEMBER_INFO_MAX`] bytes.
    pub info: Bytes,
}

/// A configuration: members sorted by id, each id once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    members: Vec<Member>,
}

/// Why bytes are not a configuration, or why a configuration is invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid cluster configuration: {0}")]
pub struct MembershipDecodeError(pub String);

impl Membership {
    /// A configuration of `voters` without runtime information (tests and
    /// clusters bootstrapped before configurations carried any).
    pub fn of_voters(voters: &[NodeId]) -> Self {
        let mut members: Vec<Member> = voters
            .iter()
            .map(|&id| Member {
                id,
                role: MemberRole::Voter,
                info: Bytes::new(),
            })
            .collect();
        members.sort_by_key(|m| m.id);
        members.dedup_by_key(|m| m.id);
        Self { members }
    }

    /// A configuration of `members`; ids must be non-zero and distinct.
    pub fn new(mut members: Vec<Member>) -> Result<Self, MembershipDecodeError> {
        members.sort_by_key(|m| m.id);
        let membership = Self { members };
        membership.validate()?;
        Ok(membership)
    }

    fn validate(&self) -> Result<(), MembershipDecodeError> {
        let err = |s: String| Err(MembershipDecodeError(s));
        if self.members.len() > MEMBERS_MAX {
            return err(format!(
                "{} members, at most {MEMBERS_MAX}",
                self.members.len()
            ));
        }
        for pair in self.members.windows(2) {
            if pair[0].id >= pair[1].id {
                return err(format!("member {} listed twice", pair[1].id));
            }
        }
        for member in &self.members {
            if member.id == 0 {
                return err("member id 0".into());
            }
            if member.info.len() > MEMBER_INFO_MAX {
                return err(format!(
                    "member {} carries {} bytes of information, at most {MEMBER_INFO_MAX}",
                    member.id,
                    member.info.len()
                ));
            }
        }
        Ok(())
    }

    /// Every member, sorted by id.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The member `id`, if it is one.
    pub fn get(&self, id: NodeId) -> Option<&Member> {
        self.members
            .binary_search_by_key(&id, |m| m.id)
            .ok()
            .map(|i| &self.members[i])
    }

    /// The voters, sorted.
    pub fn voters(&self) -> Vec<NodeId> {
        self.ids(MemberRole::Voter)
    }

    /// The learners, sorted.
    pub fn learners(&self) -> Vec<NodeId> {
        self.ids(MemberRole::Learner)
    }

    fn ids(&self, role: MemberRole) -> Vec<NodeId> {
        self.members
            .iter()
            .filter(|m| m.role == role)
            .map(|m| m.id)
            .collect()
    }

    /// Whether `id` votes.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.get(id).is_some_and(|m| m.role == MemberRole::Voter)
    }

    /// Whether `id` is a voter or a learner.
    pub fn contains(&self, id: NodeId) -> bool {
        self.get(id).is_some()
    }

    /// The configuration after `change`, or why it cannot be made (the
    /// checks that need no replication state).
    pub fn apply(&self, change: &MembershipChange) -> Result<Self, ChangeError> {
        let mut members = self.members.clone();
        match change {
            MembershipChange::Add { id, role, info } => {
                if *id == 0 {
                    return Err(ChangeError::Invalid("node id 0".into()));
                }
                if let Some(member) = self.get(*id) {
                    return Err(ChangeError::AlreadyMember {
                        id: *id,
                        role: member.role,
                    });
                }
                if info.len() > MEMBER_INFO_MAX {
                    return Err(ChangeError::Invalid(format!(
                        "{} bytes of member information, at most {MEMBER_INFO_MAX}",
                        info.len()
                    )));
                }
                if members.len() >= MEMBERS_MAX {
                    return Err(ChangeError::Invalid(format!(
                        "the configuration already has {MEMBERS_MAX} members"
                    )));
                }
                members.push(Member {
                    id: *id,
                    role: *role,
                    info: info.clone(),
                });
            }
            MembershipChange::Promote { id } => match self.get(*id) {
                None => return Err(ChangeError::UnknownMember(*id)),
                Some(m) if m.role == MemberRole::Voter => {
                    return Err(ChangeError::NotALearner(*id));
                }
                Some(_) => {
                    let i = members.iter().position(|m| m.id == *id).expect("member");
                    members[i].role = MemberRole::Voter;
                }
            },
            MembershipChange::Remove { id } => match self.get(*id) {
                None => return Err(ChangeError::UnknownMember(*id)),
                Some(m) => {
                    if m.role == MemberRole::Voter && self.voters().len() == 1 {
                        return Err(ChangeError::LastVoter(*id));
                    }
                    members.retain(|m| m.id != *id);
                }
            },
        }
        Self::new(members).map_err(|e| ChangeError::Invalid(e.0))
    }

    /// This configuration with `known` information filled in for members
    /// that carry none (too long an information is left out).
    pub fn with_missing_info(mut self, known: Vec<(NodeId, Bytes)>) -> Self {
        for (id, info) in known {
            if info.len() > MEMBER_INFO_MAX {
                continue;
            }
            if let Ok(i) = self.members.binary_search_by_key(&id, |m| m.id)
                && self.members[i].info.is_empty()
            {
                self.members[i].info = info;
            }
        }
        self
    }

    /// The payload of a configuration entry.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        out.put_u8(ENCODING_VERSION);
        out.put_u32_le(self.members.len() as u32);
        for member in &self.members {
            out.put_u64_le(member.id);
            out.put_u8(match member.role {
                MemberRole::Voter => 0,
                MemberRole::Learner => 1,
            });
            out.put_u16_le(member.info.len() as u16);
            out.put_slice(&member.info);
        }
        out.freeze()
    }

    /// Decodes a configuration entry's payload (untrusted: every length is
    /// checked against what remains, and the result is validated).
    pub fn decode(mut bytes: &[u8]) -> Result<Self, MembershipDecodeError> {
        let err = |s: &str| MembershipDecodeError(s.to_string());
        if bytes.remaining() < 5 {
            return Err(err("truncated header"));
        }
        let version = bytes.get_u8();
        if version != ENCODING_VERSION {
            return Err(MembershipDecodeError(format!("unknown version {version}")));
        }
        let count = bytes.get_u32_le() as usize;
        if count > MEMBERS_MAX {
            return Err(MembershipDecodeError(format!(
                "{count} members, at most {MEMBERS_MAX}"
            )));
        }
        let mut members = Vec::with_capacity(count);
        for _ in 0..count {
            if bytes.remaining() < 11 {
                return Err(err("truncated member"));
            }
            let id = bytes.get_u64_le();
            let role = match bytes.get_u8() {
                0 => MemberRole::Voter,
                1 => MemberRole::Learner,
                other => return Err(MembershipDecodeError(format!("unknown role {other}"))),
            };
            let len = bytes.get_u16_le() as usize;
            if bytes.remaining() < len {
                return Err(err("truncated member information"));
            }
            let info = Bytes::copy_from_slice(&bytes[..len]);
            bytes.advance(len);
            members.push(Member { id, role, info });
        }
        if bytes.has_remaining() {
            return Err(err("trailing bytes"));
        }
        let membership = Self { members };
        membership.validate()?;
        Ok(membership)
    }
}

/// One change to the membership, proposed at the leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipChange {
    /// A new member, as a learner or directly as a voter.
    Add {
        /// Its id.
        id: NodeId,
        /// What it joins as.
        role: MemberRole,
        /// Runtime information (see [`Member::info`]).
        info: Bytes,
    },
    /// A learner becomes a voter; refused while it is behind.
    Promote {
        /// The learner.
        id: NodeId,
    },
    /// A member leaves.
    Remove {
        /// The member.
        id: NodeId,
    },
}

/// Why a membership change was not made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// Only the leader changes the membership.
    #[error("not the leader (leader: {leader})")]
    NotLeader {
        /// The leader this node knows, `0` if none.
        leader: NodeId,
    },
    /// An earlier change is not committed yet, or this leader has not yet
    /// committed an entry of its own term.
    #[error("a membership change is in flight (configuration entry {index} is not committed)")]
    InFlight {
        /// The uncommitted entry that blocks the change.
        index: Index,
    },
    /// The leader has not yet committed the entry that opened its term
    /// (the single-server erratum); retry shortly.
    #[error("the leader has not yet committed entry {index}, the first of its term; retry")]
    LeaderNotReady {
        /// The entry it waits for.
        index: Index,
    },
    /// No member has this id.
    #[error("node {0} is not a member")]
    UnknownMember(NodeId),
    /// The id is taken.
    #[error("node {id} is already a {}", role.as_str())]
    AlreadyMember {
        /// The id.
        id: NodeId,
        /// Its current role.
        role: MemberRole,
    },
    /// Only a learner can be promoted.
    #[error("node {0} is already a voter")]
    NotALearner(NodeId),
    /// A cluster keeps at least one voter.
    #[error("node {0} is the last voter")]
    LastVoter(NodeId),
    /// The learner must catch up before it votes.
    #[error("learner {id} is {behind} entries behind the leader (at most {allowed} allowed)")]
    LearnerBehind {
        /// The learner.
        id: NodeId,
        /// Entries it lacks.
        behind: u64,
        /// The bound (`learner_promote_lag_max`).
        allowed: u64,
    },
    /// The change was appended but this node stopped leading before it
    /// committed: it may or may not take effect.
    #[error("leadership was lost before the change committed; it may or may not take effect")]
    Unknown,
    /// The change itself is malformed.
    #[error("invalid change: {0}")]
    Invalid(String),
}

/// The configurations a node must remember: the latest one at or below
/// its commit index (never undone) and every later one in its log (undone
/// by a truncation). Invariant: non-empty, strictly increasing indexes.
#[derive(Clone, Debug)]
pub struct Configurations {
    entries: Vec<(Index, Membership)>,
}

impl Configurations {
    /// Starts from `base` (in force at `base_index`, `0` for the bootstrap
    /// configuration) and the configuration entries after it, in index
    /// order.
    pub fn new(base_index: Index, base: Membership, later: Vec<(Index, Membership)>) -> Self {
        let mut entries = vec![(base_index, base)];
        for (index, membership) in later {
            if index > entries.last().expect("non-empty").0 {
                entries.push((index, membership));
            }
        }
        Self { entries }
    }

    /// The configuration in force: the latest in the log.
    pub fn current(&self) -> &Membership {
        &self.entries.last().expect("non-empty").1
    }

    /// Index of the entry of the configuration in force (`0`: bootstrap).
    pub fn current_index(&self) -> Index {
        self.entries.last().expect("non-empty").0
    }

    /// The configuration before the one in force, if this node still
    /// knows it (it may be undone by a truncation, or it is older than
    /// the node's commit index).
    pub fn previous(&self) -> Option<&Membership> {
        let n = self.entries.len();
        (n >= 2).then(|| &self.entries[n - 2].1)
    }

    /// The latest configuration at or below `index`, and its index.
    pub fn at(&self, index: Index) -> (Index, &Membership) {
        let (i, m) = self
            .entries
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .unwrap_or(&self.entries[0]);
        (*i, m)
    }

    /// A configuration entry appended at `index`.
    pub fn appended(&mut self, index: Index, membership: Membership) {
        assert!(index > self.current_index(), "configurations out of order");
        self.entries.push((index, membership));
    }

    /// The log lost every entry from `from`; returns whether the
    /// configuration in force changed.
    pub fn truncated(&mut self, from: Index) -> bool {
        let before = self.entries.len();
        while self.entries.len() > 1 && self.entries.last().expect("non-empty").0 >= from {
            self.entries.pop();
        }
        self.entries.len() != before
    }

    /// Drops configurations no truncation can restore any more.
    pub fn committed(&mut self, commit: Index) {
        let keep_from = self
            .entries
            .iter()
            .rposition(|(i, _)| *i <= commit)
            .unwrap_or(0);
        self.entries.drain(..keep_from);
    }

    /// The log restarted at a snapshot holding `membership` at `index`.
    pub fn reset(&mut self, index: Index, membership: Membership) {
        self.entries = vec![(index, membership)];
    }

    /// Checks the invariant: non-empty, indexes strictly increasing.
    pub fn check(&self) {
        assert!(!self.entries.is_empty());
        for pair in self.entries.windows(2) {
            assert!(pair[0].0 < pair[1].0, "configurations out of order");
        }
    }
}

/// Marks a snapshot's core state that carries the membership (before it,
/// the state was the session table alone, which starts with version 1).
const CORE_STATE_MAGIC: u32 = u32::from_le_bytes(*b"OCS2");

/// A snapshot's core state: the membership at its point, then the session
/// table.
pub fn encode_core_state(membership: &Membership, sessions: &[u8]) -> Bytes {
    let membership = membership.encode();
    let mut out = BytesMut::with_capacity(8 + membership.len() + sessions.len());
    out.put_u32_le(CORE_STATE_MAGIC);
    out.put_u32_le(membership.len() as u32);
    out.put_slice(&membership);
    out.put_slice(sessions);
    out.freeze()
}

/// Splits a snapshot's core state (untrusted) into the membership and the
/// session table's bytes. A state written before memberships were
/// snapshotted yields `None` and the whole input as the table.
pub fn decode_core_state(
    mut bytes: &[u8],
) -> Result<(Option<Membership>, &[u8]), MembershipDecodeError> {
    if bytes.len() < 4 || bytes[..4] != CORE_STATE_MAGIC.to_le_bytes() {
        return Ok((None, bytes));
    }
    bytes.advance(4);
    if bytes.remaining() < 4 {
        return Err(MembershipDecodeError("truncated core state".into()));
    }
    let len = bytes.get_u32_le() as usize;
    if bytes.remaining() < len {
        return Err(MembershipDecodeError("truncated core state".into()));
    }
    let membership = Membership::decode(&bytes[..len])?;
    Ok((Some(membership), &bytes[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(id: NodeId, role: MemberRole) -> MembershipChange {
        MembershipChange::Add {
            id,
            role,
            info: Bytes::from_static(b"addr"),
        }
    }

    #[test]
    fn a_configuration_round_trips_and_rejects_damage() {
        let m = Membership::of_voters(&[1, 2, 3])
            .apply(&add(4, MemberRole::Learner))
            .unwrap();
        let bytes = m.encode();
        assert_eq!(Membership::decode(&bytes).unwrap(), m);
        assert_eq!(m.voters(), vec![1, 2, 3]);
        assert_eq!(m.learners(), vec![4]);
        for cut in 0..bytes.len() {
            assert!(Membership::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut twice = bytes.to_vec();
        twice[5..13].copy_from_slice(&2u64.to_le_bytes());
        assert!(Membership::decode(&twice).unwrap_err().0.contains("twice"));
    }

    #[test]
    fn changes_are_checked() {
        let m = Membership::of_voters(&[1]);
        assert_eq!(
            m.apply(&MembershipChange::Remove { id: 1 }),
            Err(ChangeError::LastVoter(1))
        );
        assert_eq!(
            m.apply(&MembershipChange::Remove { id: 7 }),
            Err(ChangeError::UnknownMember(7))
        );
        assert_eq!(
            m.apply(&MembershipChange::Promote { id: 1 }),
            Err(ChangeError::NotALearner(1))
        );
        let m = m.apply(&add(2, MemberRole::Learner)).unwrap();
        assert!(matches!(
            m.apply(&add(2, MemberRole::Voter)),
            Err(ChangeError::AlreadyMember { id: 2, .. })
        ));
        let m = m.apply(&MembershipChange::Promote { id: 2 }).unwrap();
        assert_eq!(m.voters(), vec![1, 2]);
        let m = m.apply(&MembershipChange::Remove { id: 1 }).unwrap();
        assert_eq!(m.voters(), vec![2]);
    }

    #[test]
    fn a_truncation_restores_the_previous_configuration() {
        let base = Membership::of_voters(&[1, 2, 3]);
        let added = base.apply(&add(4, MemberRole::Voter)).unwrap();
        let mut configs = Configurations::new(0, base.clone(), vec![]);
        configs.appended(10, added.clone());
        assert_eq!(configs.current(), &added);
        assert_eq!(configs.at(9).1, &base);
        assert!(configs.truncated(10));
        assert_eq!(configs.current(), &base);
        configs.appended(12, added.clone());
        configs.committed(12);
        assert!(!configs.truncated(13));
        assert_eq!(configs.current_index(), 12);
    }

    #[test]
    fn the_core_state_carries_the_membership_and_reads_the_old_format() {
        let m = Membership::of_voters(&[1, 2]);
        let state = encode_core_state(&m, b"\x01\x00\x00\x00sessions");
        let (decoded, sessions) = decode_core_state(&state).unwrap();
        assert_eq!(decoded, Some(m));
        assert_eq!(sessions, b"\x01\x00\x00\x00sessions");
        let (none, old) = decode_core_state(b"\x01\x00\x00\x00old").unwrap();
        assert_eq!((none, old), (None, &b"\x01\x00\x00\x00old"[..]));
        assert!(decode_core_state(&state[..10]).is_err());
    }
}
