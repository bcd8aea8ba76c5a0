//! The Raft core alone: three cores stepped in one thread, messages passed
//! in memory, instant in-memory logs, empty payloads, `C` closed-loop
//! proposers at the leader. Measures the protocol's own cost per commit.
//!
//! `cargo bench -p ordo-bench --bench core`

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ordo_engine::core::CoreConfig;
use ordo_engine::testkit::Cluster;

/// Runs `commits` proposals through a fresh 3-node cluster keeping
/// `concurrency` in flight; returns the time taken (setup excluded).
fn run(concurrency: usize, commits: u64) -> Duration {
    let mut cluster = Cluster::new(3, CoreConfig::default(), 7);
    for id in 1..=3 {
        cluster.host(id).record_applied = false;
    }
    cluster.elect(1);
    let start = Instant::now();
    for _ in 0..concurrency {
        cluster.propose(1, b"");
    }
    let mut done = 0u64;
    let mut issued = concurrency as u64;
    while done < commits {
        cluster.deliver_all();
        let answered = std::mem::take(&mut cluster.host(1).responses);
        for (_, result) in answered {
            result.expect("every proposal commits in a fault-free cluster");
            done += 1;
            if issued < commits {
                cluster.propose(1, b"");
                issued += 1;
            }
        }
    }
    start.elapsed()
}

fn core(c: &mut Criterion) {
    let mut group = c.benchmark_group("core_3_nodes_empty_payload");
    group.measurement_time(Duration::from_secs(5));
    for concurrency in [1usize, 64, 256, 1024] {
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(
            BenchmarkId::new("commit", concurrency),
            &concurrency,
            |b, &concurrency| {
                b.iter_custom(|iterations| run(concurrency, iterations.max(1)));
            },
        );
    }
    group.finish();
}

criterion_group!(benches, core);
criterion_main!(benches);
