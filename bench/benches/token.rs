//! Tokens: the hash choice (SHA-256 with SHA-NI against BLAKE3 over 64-byte
//! entries), the leader's cost per commit advance, and the verifier's cost
//! for the first entry of a statement against the cached rest.
//!
//! `cargo bench -p ordo-bench --bench token`; results in docs/tokens.md.
//!
//! Before the criterion groups, `token_hash_compare` times the two hashes
//! paired: rounds alternate SHA-256 and BLAKE3 on the same batch, so load
//! from other processes (this machine is shared) hits both alike, and the
//! median of the per-round ratios is the comparison.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use ordo_engine::token::{
    Blake3Tree, ClusterId, ClusterKeys, Digest, MerkleTree, NodeKey, Sha256Tree, Signer, Token,
    TreeHash, Verifier, entry_leaves,
};
use ordo_storage::{BatchKind, EntryView};

const BATCHES: [usize; 4] = [1, 64, 1024, 4096];
const PAYLOAD_BYTES: usize = 64;
const TERM: u64 = 5;

/// `count` entries with 64-byte payloads from index 1.
fn payloads(count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| vec![(i % 251) as u8; PAYLOAD_BYTES])
        .collect()
}

fn views(payloads: &[Vec<u8>]) -> impl Iterator<Item = EntryView<'_>> {
    payloads.iter().enumerate().map(|(i, payload)| EntryView {
        kind: BatchKind::Entries,
        index: 1 + i as u64,
        term: TERM,
        id: 1 + i as u64,
        ts: 1_700_000_000_000_000 + i as u64,
        client_id: 0,
        seq: 0,
        payload,
    })
}

/// Payload hash, leaf and tree for one commit advance: what the leader
/// hashes per advance (in batches, as `Signer::sign_entries` does) and
/// what picks the hash.
fn root<H: TreeHash>(payloads: &[Vec<u8>]) -> Digest {
    let entries: Vec<EntryView<'_>> = views(payloads).collect();
    MerkleTree::<H>::from_leaves(entry_leaves::<H>(&entries))
        .expect("at least one leaf")
        .root()
}

fn hashes(c: &mut Criterion) {
    let mut group = c.benchmark_group("token_hash_64B");
    let payload = [7u8; PAYLOAD_BYTES];
    let fields = [9u8; 64];
    let (left, right) = ([1u8; 32], [2u8; 32]);
    group.bench_function("payload/sha256", |b| {
        b.iter(|| Sha256Tree::payload(std::hint::black_box(&payload)))
    });
    group.bench_function("payload/blake3", |b| {
        b.iter(|| Blake3Tree::payload(std::hint::black_box(&payload)))
    });
    group.bench_function("leaf/sha256", |b| {
        b.iter(|| Sha256Tree::leaf(std::hint::black_box(&fields)))
    });
    group.bench_function("leaf/blake3", |b| {
        b.iter(|| Blake3Tree::leaf(std::hint::black_box(&fields)))
    });
    group.bench_function("node/sha256", |b| {
        b.iter(|| Sha256Tree::node(std::hint::black_box(&left), &right))
    });
    group.bench_function("node/blake3", |b| {
        b.iter(|| Blake3Tree::node(std::hint::black_box(&left), &right))
    });
    group.finish();

    let mut group = c.benchmark_group("token_tree_64B");
    for count in BATCHES {
        let payloads = payloads(count);
        group.throughput(Throughput::Elements(count as u64));
        group.bench_with_input(BenchmarkId::new("sha256", count), &payloads, |b, p| {
            b.iter(|| root::<Sha256Tree>(p))
        });
        group.bench_with_input(BenchmarkId::new("blake3", count), &payloads, |b, p| {
            b.iter(|| root::<Blake3Tree>(p))
        });
    }
    group.finish();
}

fn fixture() -> (Signer, ClusterKeys) {
    let key = NodeKey::from_secret_bytes(&[1; 32]);
    let cluster_id = ClusterId([3; 16]);
    let mut keys = ClusterKeys::new(cluster_id);
    keys.insert(1, key.public_key()).expect("one key");
    (Signer::new(cluster_id, 1, key), keys)
}

fn sign(c: &mut Criterion) {
    let (signer, _) = fixture();
    let mut group = c.benchmark_group("token_sign_per_advance");
    for count in BATCHES {
        let payloads = payloads(count);
        group.throughput(Throughput::Elements(count as u64));
        // Hashing, the tree and one signature: the leader's cost per advance.
        group.bench_with_input(BenchmarkId::new("sign", count), &payloads, |b, p| {
            b.iter(|| signer.sign_entries(TERM, views(p)).expect("signs"))
        });
        // Cutting every entry's token out of the proof, as text.
        let proof = signer.sign_entries(TERM, views(&payloads)).expect("signs");
        group.bench_with_input(BenchmarkId::new("tokens_as_text", count), &proof, |b, p| {
            b.iter(|| p.tokens().map(|(_, t)| t.to_text().len()).sum::<usize>())
        });
    }
    group.finish();
}

fn verify(c: &mut Criterion) {
    let (signer, keys) = fixture();
    let mut group = c.benchmark_group("token_verify");
    let payloads = payloads(1024);
    let proof = signer.sign_entries(TERM, views(&payloads)).expect("signs");
    let tokens: Vec<Token> = proof.tokens().map(|(_, token)| token).collect();
    let entries: Vec<EntryView<'_>> = views(&payloads).collect();
    let check = |verifier: &mut Verifier, i: usize| {
        let e = &entries[i];
        verifier
            .verify(&tokens[i], e.payload, e.id, e.index, e.term, e.ts)
            .expect("verifies")
    };
    // No cache: every call checks the signature, as for the first entry of
    // each statement.
    let mut uncached = Verifier::with_cache_entries(keys.clone(), 0);
    group.bench_function("first_entry_of_statement/1024", |b| {
        let mut i = 0;
        b.iter(|| {
            check(&mut uncached, i);
            i = (i + 1) % tokens.len();
        })
    });
    // The statement is cached: hashing the leaf and its path only.
    let mut cached = Verifier::new(keys);
    check(&mut cached, 0);
    group.bench_function("cached_entry/1024", |b| {
        let mut i = 0;
        b.iter(|| {
            check(&mut cached, i);
            i = (i + 1) % tokens.len();
        })
    });
    let text = tokens[17].to_text();
    group.bench_function("decode_text/1024", |b| {
        b.iter(|| Token::from_text(std::hint::black_box(&text)).expect("decodes"))
    });
    group.finish();
}

/// Nanoseconds per entry of `reps` roots over `payloads`.
fn time_root<H: TreeHash>(payloads: &[Vec<u8>], reps: usize) -> f64 {
    let start = Instant::now();
    for _ in 0..reps {
        std::hint::black_box(root::<H>(std::hint::black_box(payloads)));
    }
    start.elapsed().as_nanos() as f64 / (reps * payloads.len()) as f64
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Paired SHA-256 / BLAKE3 rounds per batch size; prints one line per size.
fn hash_compare() {
    const ROUNDS: usize = 301;
    println!(
        "token_hash_compare: ns per 64-byte entry (payload hash + leaf + tree), {ROUNDS} paired rounds"
    );
    println!("  leaves   sha256 min / median   blake3 min / median   median sha256/blake3");
    for count in [1usize, 16, 64, 256, 1024, 4096] {
        let payloads = payloads(count);
        // About 1 ms of work per timing.
        let reps = (4096 / count).max(1);
        let (mut sha, mut blake, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let (s, b) = if round % 2 == 0 {
                let s = time_root::<Sha256Tree>(&payloads, reps);
                (s, time_root::<Blake3Tree>(&payloads, reps))
            } else {
                let b = time_root::<Blake3Tree>(&payloads, reps);
                (time_root::<Sha256Tree>(&payloads, reps), b)
            };
            sha.push(s);
            blake.push(b);
            ratio.push(s / b);
        }
        let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
        println!(
            "  {count:>6}   {:>6.1} / {:>6.1}       {:>6.1} / {:>6.1}       {:.2}",
            min(&sha),
            median(&mut sha),
            min(&blake),
            median(&mut blake),
            median(&mut ratio)
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = hashes, sign, verify
}

fn main() {
    // Like criterion_main!, plus the paired comparison unless a filter
    // that does not match it was given.
    let filter = std::env::args()
        .skip(1)
        .find(|arg| !arg.starts_with('-'))
        .unwrap_or_default();
    if "token_hash_compare".contains(filter.as_str()) {
        hash_compare();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
