//! Measures gossip with real processes on this machine (not a test: run it
//! by name, it prints the numbers recorded in `docs/gossip.md`):
//!
//! ```text
//! cargo test -p ordo-tests --test gossip_measure -- --ignored --nocapture
//! ORDO_MEASURE_MESSAGES=2000 ORDO_MEASURE_GOSSIP=10 ORDO_MEASURE_INTERVAL_US=10000 ...
//! ORDO_MEASURE_KILL=2 ...   # SIGKILL gossip nodes 1 and 2 half way through
//! ```
//!
//! 3 voters and 10 gossip nodes (`ordo node`, `ordo gossip`), messages
//! proposed one at a time, spread over the voters, at a steady rate. Every
//! process appends a timing record per message to
//! `ORDO_GOSSIP_TIMINGS_DIR`: a voter when it publishes a message it
//! answered (right after the commit), a gossip node when it delivers one.
//! Latency is from the publication to the delivery at the last gossip node
//! (and to each delivery); redundancy is the gossip nodes' full messages
//! received per message delivered, minus one, from their final counters.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ordo_engine::client::{Client, ClientOptions};
use ordo_tests::gossip_procs::GossipCluster;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let at = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[at] as f64 / 1000.0
}

/// `id wall_us` lines of every file whose name starts with `prefix`.
fn read_timings(dir: &std::path::Path, prefix: &str) -> Vec<BTreeMap<u64, u64>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with(prefix) {
            continue;
        }
        let mut map = BTreeMap::new();
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let mut fields = line.split_whitespace();
            if let (Some(id), Some(us)) = (fields.next(), fields.next())
                && let (Ok(id), Ok(us)) = (id.parse(), us.parse())
            {
                // The first record counts (a restarted node would repeat).
                map.entry(id).or_insert(us);
            }
        }
        out.push(map);
    }
    out
}

/// Gossip node `j`'s port in this measurement's layout.
fn cluster_port(j: usize) -> u16 {
    base_port() + ordo_tests::gossip_procs::GOSSIP_NODE_PORT_OFFSET + j as u16 - 1
}

/// This measurement's base port, drawn free once.
fn base_port() -> u16 {
    static BASE: std::sync::OnceLock<u16> = std::sync::OnceLock::new();
    *BASE.get_or_init(ordo_tests::procs::free_base_port)
}

#[test]
#[ignore = "a measurement: run by name with --ignored --nocapture"]
fn measure_gossip_latency_and_redundancy() {
    let messages = env_or("ORDO_MEASURE_MESSAGES", 1000);
    let gossip = env_or("ORDO_MEASURE_GOSSIP", 10) as usize;
    let interval = Duration::from_micros(env_or("ORDO_MEASURE_INTERVAL_US", 10_000));
    let kill = env_or("ORDO_MEASURE_KILL", 0) as usize;
    let timings = tempfile::tempdir().unwrap();
    // SAFETY: set before any thread of this test binary starts a process
    // or reads the environment; the child processes inherit it.
    unsafe { std::env::set_var("ORDO_GOSSIP_TIMINGS_DIR", timings.path()) };
    let mut cluster = GossipCluster::start(3, gossip, base_port());
    cluster
        .voters
        .wait_leader(&[1, 2, 3], Duration::from_secs(10))
        .expect("a leader");
    // Let SWIM and the overlay settle before measuring.
    std::thread::sleep(Duration::from_secs(3));
    let addrs: Vec<std::net::SocketAddr> = (1..=3)
        .map(|i| cluster.voters.addr(i).parse().unwrap())
        .collect();
    let began = Instant::now();
    let (half_tx, half_rx) = std::sync::mpsc::channel();
    let credential =
        ordo_engine::auth::client_credential(Some(&cluster.voters.client_secret())).unwrap();
    let tls = ordo_engine::auth::client_tls(0, None, Some(&cluster.voters.client_secret()), false)
        .unwrap();
    let client = std::thread::spawn(move || {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .name("measure-client")
            .io_memory(512 << 10)
            .make()
            .unwrap()
            .run(async move {
                let mut clients: Vec<Client> = addrs
                    .iter()
                    .map(|addr| {
                        let options = ClientOptions {
                            credential: credential.clone(),
                            tls: tls.clone(),
                            ..ClientOptions::default()
                        };
                        Client::new(vec![*addr], options).unwrap()
                    })
                    .collect();
                let start = Instant::now();
                for i in 0..messages {
                    let due = start + interval * i as u32;
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        glommio::timer::sleep(wait).await;
                    }
                    if i == messages / 2 {
                        let _ = half_tx.send(());
                    }
                    let client = &mut clients[i as usize % 3];
                    client
                        .propose(Bytes::from(format!("measure-{i:06}-{}", "x".repeat(64))))
                        .await
                        .expect("committed");
                }
            })
    });
    if kill > 0 {
        half_rx.recv().unwrap();
        for j in 1..=kill {
            cluster.kill_gossip(j);
        }
    }
    client.join().unwrap();
    let sending = began.elapsed();
    let survivors: Vec<usize> = (kill + 1..=gossip).collect();
    for &j in &survivors {
        let log = cluster.wait_gossip_log(j, messages as usize, Duration::from_secs(30));
        assert_eq!(
            log.len(),
            messages as usize,
            "gossip node {j} got everything"
        );
    }
    let mut received = 0u64;
    let mut delivered = 0u64;
    for &j in &survivors {
        assert!(cluster.stop_gossip(j));
        let stats = cluster.gossip_stats(j).expect("stats");
        received += stats["payload_received"];
        delivered += stats["delivered"];
    }
    drop(cluster);
    let published = read_timings(timings.path(), "publish-");
    let mut publish_us = BTreeMap::new();
    for map in &published {
        for (&id, &us) in map {
            publish_us.entry(id).or_insert(us);
        }
    }
    let deliveries: Vec<BTreeMap<u64, u64>> = survivors
        .iter()
        .map(|&j| {
            let port = cluster_port(j);
            read_timings(timings.path(), &format!("deliver-{port}.")).remove(0)
        })
        .collect();
    let mut last_node = Vec::new();
    let mut each = Vec::new();
    let mut unpublished = 0;
    for id in 1..=messages {
        let Some(&from) = publish_us.get(&id) else {
            unpublished += 1;
            continue;
        };
        let times: Vec<u64> = deliveries
            .iter()
            .filter_map(|m| m.get(&id))
            .map(|&us| us.saturating_sub(from))
            .collect();
        if let Some(&max) = times.iter().max() {
            last_node.push(max);
        }
        each.extend(times);
    }
    last_node.sort_unstable();
    each.sort_unstable();
    println!(
        "{gossip} gossip nodes ({kill} SIGKILLed half way; latency and redundancy over the {} others), {messages} messages, one every {interval:?} (sent in {sending:.1?}); {unpublished} not pushed by a voter (pulled)",
        survivors.len()
    );
    println!(
        "last node p50 / p99 / max (ms): {:.1} / {:.1} / {:.1}",
        percentile(&last_node, 0.5),
        percentile(&last_node, 0.99),
        percentile(&last_node, 1.0)
    );
    println!(
        "each delivery p50 / p99 (ms): {:.1} / {:.1}",
        percentile(&each, 0.5),
        percentile(&each, 0.99)
    );
    println!(
        "redundancy: {:.3} ({received} full messages received for {delivered} delivered)",
        received as f64 / delivered as f64 - 1.0
    );
}
