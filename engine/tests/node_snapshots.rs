//! The runtime's snapshot path end to end: the leader compacts its log
//! after a snapshot, a follower that was down needs entries that are gone,
//! the leader streams the snapshot in chunks, the follower restores its
//! state machine from it and then follows the log again.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ordo_engine::core::ApplyBatch;
use ordo_engine::node::{Node, NodeConfig, RestoreError, StateMachine};

/// Counts applied messages and remembers the last payload.
#[derive(Clone, Default)]
struct Tally(Arc<Mutex<(u64, String)>>);

impl StateMachine for Tally {
    fn apply(&mut self, batch: &ApplyBatch) {
        let mut state = self.0.lock().unwrap();
        for message in batch.messages() {
            state.0 += 1;
            state.1 = String::from_utf8_lossy(message.payload).into_owned();
        }
    }

    fn snapshot(&mut self) -> Bytes {
        let state = self.0.lock().unwrap();
        Bytes::from(format!("{} {}", state.0, state.1))
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        let text = std::str::from_utf8(snapshot).map_err(RestoreError::new)?;
        let (count, last) = text
            .split_once(' ')
            .ok_or_else(|| RestoreError::new("malformed tally snapshot"))?;
        *self.0.lock().unwrap() = (count.parse().map_err(RestoreError::new)?, last.to_string());
        Ok(())
    }
}

fn config(dir: &std::path::Path, id: u64) -> NodeConfig {
    let mut config = NodeConfig::cluster(3, 18_400, 9)
        .unwrap()
        .remove(id as usize - 1);
    config.data_dir = dir.join(format!("node{id}"));
    config.storage.retain_log = false;
    config.raft.snapshot_entries_threshold = 50;
    // No gossip endpoint: this test has no cluster.keys.
    config.gossip_addr = None;
    // No keys or secrets laid out: nothing to authenticate with.
    config.auth = ordo_engine::auth::AuthConfig::off();
    config
}

fn start(dir: &std::path::Path, id: u64, tally: &Tally) -> Node {
    let machine = tally.clone();
    Node::start(config(dir, id), move || Box::new(machine)).unwrap()
}

#[test]
fn a_follower_behind_the_compacted_log_installs_a_snapshot() {
    ordo_engine::cli::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let tallies: Vec<Tally> = (0..3).map(|_| Tally::default()).collect();
    let mut nodes: Vec<Option<Node>> = (1..=3)
        .map(|id| Some(start(dir.path(), id, &tallies[id as usize - 1])))
        .collect();
    let handle = nodes[0].as_ref().unwrap().handle();
    for i in 0..20 {
        handle.propose_blocking(format!("warmup-{i}")).unwrap();
    }
    // Node 3 goes away; the others commit well past several snapshots.
    nodes[2].take().unwrap().shutdown().unwrap();
    for i in 0..400 {
        handle.propose_blocking(format!("while-down-{i}")).unwrap();
    }
    // It comes back: its next entry was compacted away on the leader.
    let tally = Tally::default();
    let node3 = start(dir.path(), 3, &tally);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (count, last) = tally.0.lock().unwrap().clone();
        if count == 420 {
            assert_eq!(last, "while-down-399");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 3 caught up to only {count} messages"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // It restored from a snapshot rather than replaying from index 1: its
    // snapshot directory holds one, and it keeps following the log.
    let snapshots = std::fs::read_dir(dir.path().join("node3/snapshots"))
        .unwrap()
        .count();
    assert!(snapshots > 0, "node 3 stored the snapshot it received");
    handle.propose_blocking("after").unwrap();
    let node3_handle = node3.handle();
    node3_handle.read_blocking().unwrap();
    assert_eq!(tally.0.lock().unwrap().1, "after");
    node3.shutdown().unwrap();
    for node in nodes.into_iter().flatten() {
        node.shutdown().unwrap();
    }
}
