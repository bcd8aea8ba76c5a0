//! Ed25519 signing with nonces prepared off the critical path.
//!
//! An ed25519 signature over `M` is `(R, s)` with `R = r·B` and
//! `s = r + SHA-512(R ‖ A ‖ M)·a (mod ℓ)`, where `a` is the secret scalar,
//! `A` the public key and `r` a secret nonce. RFC 8032 derives `r` from
//! the message (`r = SHA-512(prefix ‖ M)`), so the costly part, the base
//! point multiplication `r·B` (~20 µs on the reference machine, most of a
//! signature), can only start once the message is known: on the leader,
//! after the commit advance, on every proposer's critical path.
//!
//! A verifier never sees how `r` was chosen: any secret, uniformly
//! distributed, never-repeated `r` gives a signature that every strict
//! ed25519 verifier accepts (this is "randomized" or "hedged" EdDSA, as in
//! the draft-irtf-cfrg-det-sigs-with-noise construction). So a
//! [`NoncePool`] computes `(r, r·B)` pairs ahead of time on a background
//! thread, and signing a statement costs one SHA-512 and a scalar
//! multiply-add (~1 µs).
//!
//! Nonces are hedged: `r = SHA-512("ordo nonce v1" ‖ prefix ‖ seed ‖ n)`
//! with the key's secret hash prefix (as RFC 8032 uses it), a per-pool seed
//! (32 bytes from the OS generator hashed with the time, the process id and
//! a per-process pool counter), and a counter `n` that never repeats within
//! a pool. Outsiders cannot predict a nonce without the secret prefix, and
//! two pools share a seed only if the OS generator, the clock, the process
//! id and the counter all repeat; a repeated nonce otherwise needs a
//! SHA-512 collision. Each nonce is used once: taking it from the pool
//! moves it out, and it is zeroed when dropped.
//!
//! When the pool is empty (a burst of signatures faster than the
//! background thread refills it), [`NoncePool::sign`] falls back to
//! deterministic RFC 8032 signing, so signing never waits for the thread.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use curve25519_dalek::{EdwardsPoint, Scalar};
use ed25519_dalek::hazmat::ExpandedSecretKey;
use sha2::{Digest as _, Sha512};
use zeroize::Zeroize;

use super::keys::NodeKey;

/// Nonces kept ready (a burst of this many signatures needs no fallback).
pub const NONCE_POOL_CAPACITY: usize = 64;
/// The thread refills once this many nonces are gone, so each refill is a
/// short run (~4 × 20 µs) rather than half the pool at once; see
/// [`run_only_when_idle`] for why the run's length matters.
pub const NONCE_REFILL_BATCH: usize = 4;
/// Below this many ready nonces the thread is woken to refill.
const NONCE_REFILL_BELOW: usize = NONCE_POOL_CAPACITY - NONCE_REFILL_BATCH + 1;
const NONCE_DOMAIN: &[u8] = b"ordo nonce v1";

/// A prepared nonce: the secret `r` and the encoding of `R = r·B`.
struct Nonce {
    r: Scalar,
    big_r: [u8; 32],
}

impl Drop for Nonce {
    fn drop(&mut self) {
        self.r.zeroize();
    }
}

struct Shared {
    ready: Mutex<Vec<Nonce>>,
    wanted: Condvar,
    /// The generator sleeps on `wanted`; a signer wakes it only then.
    sleeping: AtomicBool,
    closed: AtomicBool,
    /// Signatures made with a pooled nonce / by the RFC 8032 fallback.
    pooled: AtomicU64,
    fallback: AtomicU64,
}

/// A key with a background thread that prepares its signing nonces. Drop
/// it to stop the thread.
pub struct NoncePool {
    key: NodeKey,
    expanded: ExpandedSecretKey,
    public: [u8; 32],
    shared: Arc<Shared>,
}

impl std::fmt::Debug for NoncePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoncePool")
            .field("ready", &self.ready())
            .finish_non_exhaustive()
    }
}

impl NoncePool {
    /// Starts the nonce thread for `key` (named `thread_name`). Fails only
    /// if the OS cannot give the seed or start a thread.
    pub fn start(key: NodeKey, thread_name: String) -> std::io::Result<Self> {
        let mut seed = pool_seed()?;
        let expanded = key.expanded();
        let shared = Arc::new(Shared {
            ready: Mutex::new(Vec::with_capacity(NONCE_POOL_CAPACITY)),
            wanted: Condvar::new(),
            sleeping: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            pooled: AtomicU64::new(0),
            fallback: AtomicU64::new(0),
        });
        let mut generator = Generator {
            prefix: expanded.hash_prefix,
            seed,
            counter: 0,
            shared: Arc::clone(&shared),
        };
        seed.zeroize();
        std::thread::Builder::new()
            .name(thread_name)
            .spawn(move || {
                run_only_when_idle();
                generator.run()
            })?;
        Ok(Self {
            public: key.public_key().to_bytes(),
            key,
            expanded,
            shared,
        })
    }

    /// Signs `message`: with a prepared nonce if one is ready, else by
    /// RFC 8032. Either way the signature verifies strictly under the key.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        let Some(nonce) = self.take() else {
            self.shared.fallback.fetch_add(1, Ordering::Relaxed);
            return self.key.sign(message).to_bytes();
        };
        self.shared.pooled.fetch_add(1, Ordering::Relaxed);
        let k = Scalar::from_hash(
            Sha512::new()
                .chain_update(nonce.big_r)
                .chain_update(self.public)
                .chain_update(message),
        );
        let mut s = k * self.expanded.scalar + nonce.r;
        let mut signature = [0u8; 64];
        signature[..32].copy_from_slice(&nonce.big_r);
        signature[32..].copy_from_slice(s.as_bytes());
        s.zeroize();
        signature
    }

    /// Nonces ready now.
    pub fn ready(&self) -> usize {
        self.shared
            .ready
            .lock()
            .map(|ready| ready.len())
            .unwrap_or(0)
    }

    /// Signatures made so far with a prepared nonce and by the fallback.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.shared.pooled.load(Ordering::Relaxed),
            self.shared.fallback.load(Ordering::Relaxed),
        )
    }

    fn take(&self) -> Option<Nonce> {
        let (nonce, low) = {
            // Never wait for the generator: it runs in SCHED_IDLE and may
            // be preempted while it holds the lock, for as long as the
            // CPUs stay busy (waiting here cost 13–26 ms maxima). A
            // contended pool counts as empty; the caller signs inline.
            let mut ready = self.shared.ready.try_lock().ok()?;
            let nonce = ready.pop();
            (nonce, ready.len() < NONCE_REFILL_BELOW)
        };
        if low && self.shared.sleeping.load(Ordering::Acquire) {
            self.shared.wanted.notify_one();
        }
        nonce
    }
}

impl Drop for NoncePool {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        // Taking the lock orders the flag before the generator's check.
        drop(self.shared.ready.lock());
        self.shared.wanted.notify_one();
    }
}

/// Pools started in this process (part of each pool's seed).
static POOLS_STARTED: AtomicU64 = AtomicU64::new(0);

/// A pool's seed: 32 bytes from the OS generator, hashed with the time,
/// the process id and a per-process pool counter, so two pools never share
/// a seed even if the OS generator repeated itself (with the same key and
/// seed, equal counters would give equal nonces on different messages,
/// which reveals the key).
fn pool_seed() -> std::io::Result<[u8; 32]> {
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).map_err(std::io::Error::other)?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let digest = Sha512::new()
        .chain_update(b"ordo nonce seed v1")
        .chain_update(random)
        .chain_update(nanos.to_le_bytes())
        .chain_update(std::process::id().to_le_bytes())
        .chain_update(POOLS_STARTED.fetch_add(1, Ordering::Relaxed).to_le_bytes())
        .finalize();
    random.zeroize();
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&digest[..32]);
    Ok(seed)
}

struct Generator {
    prefix: [u8; 32],
    seed: [u8; 32],
    counter: u64,
    shared: Arc<Shared>,
}

impl Drop for Generator {
    fn drop(&mut self) {
        self.prefix.zeroize();
        self.seed.zeroize();
    }
}

/// Puts the calling thread in `SCHED_IDLE`: it runs only on a CPU nobody
/// else wants.
///
/// Why: at normal priority a refill took one of this 2-vCPU machine's CPUs
/// from the voters and the clients. Signing does not wait for the pool (an
/// empty pool falls back to inline RFC 8032 signing), so a starved
/// generator costs latency on the leader, never correctness. Where the
/// policy cannot be set the thread keeps its priority.
///
/// `SCHED_IDLE` alone is not enough: threads woken while the generator ran
/// did not always get its CPU at once, and a long run delayed them by up to
/// its length. Refilling half the pool at a time (32 nonces, ~0.7 ms) put
/// the C = 1 run's p99 at 740–1,030 µs; refilling in batches of
/// [`NONCE_REFILL_BATCH`] (~80 µs) put it at 360–480 µs, as low as with
/// no pool at all (docs/benchmarks.md).
/// Unsafe at the edge: nix has no sched_setscheduler.
#[allow(unsafe_code)]
fn run_only_when_idle() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: sched_setscheduler on the calling thread (pid 0) with a
        // valid parameter; lowering a thread's own policy needs no
        // privilege.
        let result = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
        if result != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "nonce thread keeps its scheduling priority"
            );
        }
    }
}

impl Generator {
    fn run(&mut self) {
        loop {
            // Sleep until a refill batch's worth of nonces is gone.
            {
                let Ok(mut ready) = self.shared.ready.lock() else {
                    return;
                };
                while ready.len() >= NONCE_REFILL_BELOW
                    && !self.shared.closed.load(Ordering::Acquire)
                {
                    self.shared.sleeping.store(true, Ordering::Release);
                    ready = match self.shared.wanted.wait(ready) {
                        Ok(ready) => ready,
                        Err(_) => return,
                    };
                    self.shared.sleeping.store(false, Ordering::Release);
                }
                if self.shared.closed.load(Ordering::Acquire) {
                    return;
                }
            }
            // Fill it, one nonce at a time so signers see each at once.
            loop {
                let nonce = self.next();
                let Ok(mut ready) = self.shared.ready.lock() else {
                    return;
                };
                ready.push(nonce);
                // Invariant: only this thread pushes, and it stops at the
                // capacity, so the pool never holds more.
                debug_assert!(ready.len() <= NONCE_POOL_CAPACITY);
                if ready.len() >= NONCE_POOL_CAPACITY || self.shared.closed.load(Ordering::Acquire)
                {
                    break;
                }
            }
        }
    }

    fn next(&mut self) -> Nonce {
        self.counter += 1;
        let r = Scalar::from_hash(
            Sha512::new()
                .chain_update(NONCE_DOMAIN)
                .chain_update(self.prefix)
                .chain_update(self.seed)
                .chain_update(self.counter.to_le_bytes()),
        );
        let big_r = EdwardsPoint::mul_base(&r).compress().to_bytes();
        Nonce { r, big_r }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signature, VerifyingKey};

    fn pool(secret: u8) -> NoncePool {
        NoncePool::start(
            NodeKey::from_secret_bytes(&[secret; 32]),
            "test-nonces".into(),
        )
        .unwrap()
    }

    fn wait_full(pool: &NoncePool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while pool.ready() < NONCE_POOL_CAPACITY {
            assert!(
                std::time::Instant::now() < deadline,
                "nonce pool never filled"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    fn verify(pool: &NoncePool, message: &[u8], signature: &[u8; 64]) -> bool {
        let key = VerifyingKey::from_bytes(&pool.public).unwrap();
        key.verify_strict(message, &Signature::from_bytes(signature))
            .is_ok()
    }

    #[test]
    fn pooled_signatures_verify_strictly_and_are_fresh() {
        let pool = pool(3);
        wait_full(&pool);
        let mut seen_r = std::collections::HashSet::new();
        for i in 0..200u32 {
            let message = format!("statement {i}");
            let signature = pool.sign(message.as_bytes());
            assert!(
                verify(&pool, message.as_bytes(), &signature),
                "signature {i}"
            );
            assert!(!verify(&pool, b"another statement", &signature));
            // Never the same nonce twice.
            assert!(
                seen_r.insert(signature[..32].to_vec()),
                "nonce reused at {i}"
            );
        }
        let (pooled, fallback) = pool.counts();
        assert_eq!(pooled + fallback, 200);
        assert!(
            pooled >= (NONCE_POOL_CAPACITY / 2) as u64,
            "{pooled} pooled"
        );
    }

    #[test]
    fn a_refill_batch_taken_is_made_again() {
        let pool = pool(8);
        wait_full(&pool);
        // Fewer than a batch gone: the thread keeps sleeping.
        for _ in 0..NONCE_REFILL_BATCH - 1 {
            pool.sign(b"m");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(pool.ready(), NONCE_POOL_CAPACITY - NONCE_REFILL_BATCH + 1);
        // One more and it refills to the capacity.
        pool.sign(b"m");
        wait_full(&pool);
        assert_eq!(pool.counts(), (NONCE_REFILL_BATCH as u64, 0));
    }

    #[test]
    fn same_message_signed_twice_gives_two_valid_signatures() {
        let pool = pool(4);
        wait_full(&pool);
        let a = pool.sign(b"m");
        let b = pool.sign(b"m");
        assert_ne!(a, b, "hedged nonces differ");
        assert!(verify(&pool, b"m", &a) && verify(&pool, b"m", &b));
    }

    #[test]
    fn two_pools_of_one_key_never_share_nonces() {
        // As after a restart: same key, new pool.
        let (a, b) = (pool(7), pool(7));
        wait_full(&a);
        wait_full(&b);
        let ra: std::collections::HashSet<Vec<u8>> =
            (0..16).map(|_| a.sign(b"m")[..32].to_vec()).collect();
        for _ in 0..16 {
            assert!(!ra.contains(&b.sign(b"m")[..32]));
        }
    }

    #[test]
    fn empty_pool_falls_back_to_rfc8032() {
        let pool = pool(5);
        wait_full(&pool);
        // Drain what is ready (the thread may refill meanwhile).
        while pool.take().is_some() {}
        let signature = pool.sign(b"late");
        assert!(verify(&pool, b"late", &signature));
        let (pooled, fallback) = pool.counts();
        // Either the refill won the race or the fallback signed; both count.
        assert_eq!(pooled + fallback, 1);
        if fallback == 1 {
            assert_eq!(signature, pool.key.sign(b"late").to_bytes());
        }
    }

    #[test]
    fn dropping_the_pool_stops_its_thread() {
        let shared = {
            let pool = pool(6);
            wait_full(&pool);
            Arc::clone(&pool.shared)
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while Arc::strong_count(&shared) > 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "nonce thread still running"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}
