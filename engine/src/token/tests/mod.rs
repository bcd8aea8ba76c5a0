//! End-to-end token tests: sign a commit advance, cut tokens, verify them,
//! and check that every alteration fails.
//!
//! - `examples.rs`: one test per claim, with named failures;
//! - `properties.rs`: proptest over random advances and random bytes.

mod chain;
mod examples;
mod properties;

use super::*;
use ordo_storage::{BatchKind, EntryView};

const CLUSTER: ClusterId = ClusterId([0x5a; 16]);
const TERM: u64 = 7;

/// One log entry, owning its payload.
#[derive(Clone, Debug)]
struct Entry {
    kind: BatchKind,
    index: u64,
    term: u64,
    id: u64,
    ts: u64,
    payload: Vec<u8>,
}

impl Entry {
    fn view(&self) -> EntryView<'_> {
        EntryView {
            kind: self.kind,
            index: self.index,
            term: self.term,
            id: self.id,
            ts: self.ts,
            client_id: 0,
            seq: 0,
            payload: &self.payload,
        }
    }
}

fn node_key(node_id: u8) -> NodeKey {
    NodeKey::from_secret_bytes(&[node_id; 32])
}

/// Keys of voters 1..=3.
fn cluster_keys() -> ClusterKeys {
    let mut keys = ClusterKeys::new(CLUSTER);
    for node_id in 1..=3 {
        keys.insert(u64::from(node_id), node_key(node_id).public_key())
            .unwrap();
    }
    keys
}

fn signer(node_id: u8) -> Signer {
    Signer::new(CLUSTER, u64::from(node_id), node_key(node_id))
}

/// `count` entries from index 100: a no-op of the previous term first, then
/// user messages with ids from 50.
fn advance(count: usize) -> Vec<Entry> {
    (0..count as u64)
        .map(|i| {
            let (kind, term, id) = if i == 0 {
                (BatchKind::Noop, TERM - 1, 0)
            } else {
                (BatchKind::Entries, TERM, 49 + i)
            };
            Entry {
                kind,
                index: 100 + i,
                term,
                id,
                ts: 1_700_000_000_000_000 + i,
                payload: vec![i as u8; 64],
            }
        })
        .collect()
}

fn sign(signer: &Signer, entries: &[Entry]) -> CommitProof {
    signer
        .sign_entries(TERM, entries.iter().map(Entry::view))
        .unwrap()
}

fn verify(verifier: &mut Verifier, token: &Token, entry: &Entry) -> Result<(), VerifyError> {
    verifier.verify(
        token,
        &entry.payload,
        entry.id,
        entry.index,
        entry.term,
        entry.ts,
    )
}
