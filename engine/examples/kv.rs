//! A replicated key-value store on ordo's public embedding API.
//!
//! Three voters run in this process (each on its own executor, talking TCP
//! on loopback, with logs in a temporary directory). Writes are `SET key
//! value` messages; every node applies them to its own map; a read first
//! takes a linearizable read barrier, then reads the local map.
//!
//! `cargo run --example kv`

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use ordo_engine::core::ApplyBatch;
use ordo_engine::node::{Node, NodeConfig, NodeHandle, RestoreError, StateMachine};

/// The replicated state: a map every node applies the same writes to.
#[derive(Clone, Default)]
struct Store(Arc<Mutex<BTreeMap<String, String>>>);

impl StateMachine for Store {
    fn apply(&mut self, batch: &ApplyBatch) {
        let mut map = self.0.lock().expect("map lock");
        for message in batch.messages() {
            let text = String::from_utf8_lossy(message.payload);
            if let Some(("SET", rest)) = text.split_once(' ')
                && let Some((key, value)) = rest.split_once(' ')
            {
                map.insert(key.to_string(), value.to_string());
            }
        }
    }

    fn snapshot(&mut self) -> Bytes {
        let map = self.0.lock().expect("map lock");
        let lines: Vec<String> = map.iter().map(|(k, v)| format!("{k} {v}")).collect();
        Bytes::from(lines.join("\n"))
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        let text = std::str::from_utf8(snapshot).map_err(RestoreError::new)?;
        let mut map = self.0.lock().expect("map lock");
        map.clear();
        for line in text.lines() {
            let (key, value) = line
                .split_once(' ')
                .ok_or_else(|| RestoreError::new("snapshot line without a space"))?;
            map.insert(key.to_string(), value.to_string());
        }
        Ok(())
    }
}

/// One node of the store: its handle and its local copy of the map.
struct KvNode {
    handle: NodeHandle,
    store: Store,
}

impl KvNode {
    fn set(&self, key: &str, value: &str) -> Result<u64, String> {
        let receipt = self
            .handle
            .propose_blocking(format!("SET {key} {value}"))
            .map_err(|e| e.to_string())?;
        Ok(receipt.id)
    }

    /// Linearizable: reflects every write acknowledged before the call.
    fn get(&self, key: &str) -> Result<Option<String>, String> {
        self.handle.read_blocking().map_err(|e| e.to_string())?;
        Ok(self.store.0.lock().expect("map lock").get(key).cloned())
    }
}

/// Starts a 3-node store under `dir` on ports from `base_port`.
fn start(dir: &std::path::Path, base_port: u16) -> Result<(Vec<Node>, Vec<KvNode>), String> {
    let mut nodes = Vec::new();
    let mut kv = Vec::new();
    for mut config in NodeConfig::cluster(3, base_port, 7).map_err(|e| e.to_string())? {
        config.data_dir = dir.join(format!("node{}", config.id));
        config.storage.retain_log = false;
        // This example lays out no keys or secrets: nothing to
        // authenticate with (an `ordo init` cluster has them).
        config.auth = ordo_engine::auth::AuthConfig::off();
        config.raft.snapshot_entries_threshold = 1_000;
        // An embedded store without tokens: no cluster.keys, no gossip tier.
        config.gossip_addr = None;
        let store = Store::default();
        let machine = store.clone();
        let node = Node::start(config, move || Box::new(machine)).map_err(|e| e.to_string())?;
        kv.push(KvNode {
            handle: node.handle(),
            store,
        });
        nodes.push(node);
    }
    Ok((nodes, kv))
}

/// Writes through every node, reads back through every node.
fn run(dir: &std::path::Path, base_port: u16) -> Result<(), String> {
    let (nodes, kv) = start(dir, base_port)?;
    for round in 0..30 {
        let writer = &kv[round % 3];
        let id = writer.set(&format!("key{}", round % 7), &format!("value{round}"))?;
        println!(
            "SET key{} value{round} committed as message {id}",
            round % 7
        );
    }
    for node in &kv {
        let value = node.get("key1")?;
        assert_eq!(
            value.as_deref(),
            Some("value29"),
            "node {} reads the last write",
            node.handle.id()
        );
    }
    println!("every node reads key1 = value29");
    for node in nodes {
        node.shutdown().map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn main() {
    let dir = std::env::temp_dir().join(format!("ordo-kv-{}", std::process::id()));
    let result = run(&dir, 17_000);
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(error) = result {
        eprintln!("kv: {error}");
        std::process::exit(1);
    }
}

#[test]
fn kv_example_runs() {
    let dir = std::env::temp_dir().join(format!("ordo-kv-test-{}", std::process::id()));
    let result = run(&dir, 17_300);
    let _ = std::fs::remove_dir_all(&dir);
    result.unwrap();
}
