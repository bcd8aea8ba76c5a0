//! Client sessions (thesis §6.3): the replicated table that turns a retried
//! proposal into the original answer instead of a second entry.
//!
//! The table is a function of the committed log alone: every node applies
//! the same entries in the same order and evicts by the entries' timestamps,
//! never by its own clock, so every node holds the same table at the same
//! index. It is part of the core's snapshot state.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use ordo_net::Committed;
use ordo_storage::{ClientId, EntryView, Seq, TimestampUs};

/// What the table knows of `(client_id, seq)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionLookup {
    /// Committed with this answer.
    Committed(Committed),
    /// Committed once, but its answer has left the session's window.
    Expired,
    /// Not committed (as far as the applied log goes).
    New,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Session {
    /// Timestamp of the session's latest committed entry.
    last_active: TimestampUs,
    /// Answers kept, by sequence number. Invariant: `len() <= results_max`.
    results: BTreeMap<Seq, Committed>,
    /// Every seq `<= floor` that is not in `results` was evicted from it.
    floor: Seq,
}

/// Bounds of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLimits {
    /// Sessions kept; the least recently active goes first.
    pub sessions_max: usize,
    /// Answers kept per session.
    pub results_max: usize,
    /// A session idle (in log time) this long expires.
    pub ttl_us: u64,
}

/// The session table.
#[derive(Clone, Debug)]
pub struct Sessions {
    limits: SessionLimits,
    /// Ordered rather than hashed: clients choose their ids, so a hash
    /// table (even with a fixed hasher) could be flooded with colliding
    /// ones, and the core must be a function of its events alone.
    sessions: BTreeMap<ClientId, Session>,
    /// `(last_active, client)` of every session, oldest first.
    /// Invariant: one element per session, matching its `last_active`.
    by_age: BTreeSet<(TimestampUs, ClientId)>,
}

/// Why encoded session state could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid session state: {0}")]
pub struct SessionDecodeError(String);

const ENCODING_VERSION: u32 = 1;

impl Sessions {
    /// An empty table.
    pub fn new(limits: SessionLimits) -> Self {
        Self {
            limits,
            sessions: BTreeMap::new(),
            by_age: BTreeSet::new(),
        }
    }

    /// Sessions held.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// What the table knows of `(client, seq)`.
    pub fn lookup(&self, client: ClientId, seq: Seq) -> SessionLookup {
        match self.sessions.get(&client) {
            None => SessionLookup::New,
            Some(session) => match session.results.get(&seq) {
                Some(&committed) => SessionLookup::Committed(committed),
                None if seq <= session.floor => SessionLookup::Expired,
                None => SessionLookup::New,
            },
        }
    }

    /// Applies one committed entry.
    pub fn apply(&mut self, entry: &EntryView<'_>) {
        if entry.client_id == 0 {
            return;
        }
        while let Some(&(active, client)) = self.by_age.first() {
            if active.saturating_add(self.limits.ttl_us) >= entry.ts {
                break;
            }
            self.by_age.pop_first();
            self.sessions.remove(&client);
        }
        let session = self.sessions.entry(entry.client_id).or_default();
        self.by_age.remove(&(session.last_active, entry.client_id));
        session.last_active = entry.ts;
        self.by_age.insert((entry.ts, entry.client_id));
        session.results.entry(entry.seq).or_insert(Committed {
            id: entry.id,
            index: entry.index,
            term: entry.term,
            ts: entry.ts,
        });
        while session.results.len() > self.limits.results_max {
            let (seq, _) = session.results.pop_first().expect("non-empty");
            session.floor = session.floor.max(seq);
        }
        if self.sessions.len() > self.limits.sessions_max {
            let (_, client) = self.by_age.pop_first().expect("non-empty");
            self.sessions.remove(&client);
        }
        debug_assert_eq!(self.sessions.len(), self.by_age.len());
    }

    /// Encodes the table for a snapshot.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        out.put_u32_le(ENCODING_VERSION);
        out.put_u64_le(self.sessions.len() as u64);
        // Oldest first, so decoding rebuilds the same order.
        for &(active, client) in &self.by_age {
            let session = &self.sessions[&client];
            out.put_u64_le(client);
            out.put_u64_le(active);
            out.put_u64_le(session.floor);
            out.put_u32_le(session.results.len() as u32);
            for (&seq, committed) in &session.results {
                out.put_u64_le(seq);
                out.put_u64_le(committed.id);
                out.put_u64_le(committed.index);
                out.put_u64_le(committed.term);
                out.put_u64_le(committed.ts);
            }
        }
        out.freeze()
    }

    /// Decodes a table from a snapshot (untrusted bytes: every length is
    /// checked against what remains).
    pub fn decode(limits: SessionLimits, mut bytes: &[u8]) -> Result<Self, SessionDecodeError> {
        let mut table = Self::new(limits);
        if bytes.is_empty() {
            return Ok(table);
        }
        let need = |bytes: &[u8], n: usize, what: &str| {
            if bytes.remaining() < n {
                Err(SessionDecodeError(format!("truncated at {what}")))
            } else {
                Ok(())
            }
        };
        need(bytes, 12, "header")?;
        let version = bytes.get_u32_le();
        if version != ENCODING_VERSION {
            return Err(SessionDecodeError(format!("unknown version {version}")));
        }
        let count = bytes.get_u64_le();
        for _ in 0..count {
            need(bytes, 28, "session")?;
            let client = bytes.get_u64_le();
            let last_active = bytes.get_u64_le();
            let floor = bytes.get_u64_le();
            let results = bytes.get_u32_le() as usize;
            need(bytes, results.saturating_mul(40), "results")?;
            let mut session = Session {
                last_active,
                results: BTreeMap::new(),
                floor,
            };
            for _ in 0..results {
                let seq = bytes.get_u64_le();
                session.results.insert(
                    seq,
                    Committed {
                        id: bytes.get_u64_le(),
                        index: bytes.get_u64_le(),
                        term: bytes.get_u64_le(),
                        ts: bytes.get_u64_le(),
                    },
                );
            }
            if client == 0 || table.sessions.insert(client, session).is_some() {
                return Err(SessionDecodeError(format!(
                    "invalid or repeated client {client}"
                )));
            }
            table.by_age.insert((last_active, client));
        }
        if bytes.has_remaining() {
            return Err(SessionDecodeError(format!(
                "{} trailing bytes",
                bytes.remaining()
            )));
        }
        Ok(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordo_storage::BatchKind;

    fn entry(client_id: ClientId, seq: Seq, index: u64, ts: TimestampUs) -> EntryView<'static> {
        EntryView {
            kind: BatchKind::Entries,
            index,
            term: 1,
            id: index,
            ts,
            client_id,
            seq,
            payload: &[],
        }
    }

    fn limits() -> SessionLimits {
        SessionLimits {
            sessions_max: 2,
            results_max: 2,
            ttl_us: 1_000,
        }
    }

    #[test]
    fn remembers_answers_within_the_window() {
        let mut table = Sessions::new(limits());
        table.apply(&entry(7, 1, 10, 100));
        table.apply(&entry(7, 2, 11, 101));
        assert_eq!(
            table.lookup(7, 1).clone(),
            SessionLookup::Committed(Committed {
                id: 10,
                index: 10,
                term: 1,
                ts: 100
            })
        );
        table.apply(&entry(7, 3, 12, 102));
        assert_eq!(table.lookup(7, 1), SessionLookup::Expired);
        assert!(matches!(table.lookup(7, 3), SessionLookup::Committed(_)));
        assert_eq!(table.lookup(7, 4), SessionLookup::New);
        assert_eq!(table.lookup(8, 1), SessionLookup::New);
    }

    #[test]
    fn evicts_least_recently_active_and_idle_sessions() {
        let mut table = Sessions::new(limits());
        table.apply(&entry(1, 1, 1, 100));
        table.apply(&entry(2, 1, 2, 200));
        table.apply(&entry(1, 2, 3, 300));
        table.apply(&entry(3, 1, 4, 400));
        assert_eq!(
            table.lookup(2, 1),
            SessionLookup::New,
            "client 2 was least recently active"
        );
        assert!(matches!(table.lookup(1, 2), SessionLookup::Committed(_)));
        table.apply(&entry(3, 2, 5, 2_000));
        assert_eq!(
            table.lookup(1, 2),
            SessionLookup::New,
            "client 1 idle past the ttl"
        );
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn encode_decode_round_trip_and_rejects_garbage() {
        let mut table = Sessions::new(limits());
        table.apply(&entry(1, 1, 1, 100));
        table.apply(&entry(2, 5, 2, 200));
        let bytes = table.encode();
        let again = Sessions::decode(limits(), &bytes).unwrap();
        assert_eq!(again.encode(), bytes);
        assert_eq!(again.lookup(2, 5), table.lookup(2, 5));
        for cut in 1..bytes.len() {
            assert!(
                Sessions::decode(limits(), &bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut huge = bytes.to_vec();
        huge[4..12].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(Sessions::decode(limits(), &huge).is_err());
    }
}
