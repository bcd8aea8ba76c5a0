//! The real disk log over a simulated faulty disk, one seed at a time.
//!
//! [`run`] opens a [`DiskLog`] on a [`SimDisk`] and drives it with a
//! random mix of appends, syncs, truncations, compactions, resets,
//! hard-state saves and reads, crashing it now and then. Depending on the
//! seed the disk also misdirects writes, corrupts synced sectors and is
//! wiped. After every step the checker holds the log to a model:
//!
//! - **reads are genuine**: every entry read is one that was appended at
//!   its index and term, and the log's bounds and term runs agree with
//!   what it returns;
//! - **durable is durable**: after a crash with no damage (lost and torn
//!   unsynced writes only), every entry a sync reported durable is back,
//!   intact, no cut claims durable damage, and the hard state is the last
//!   one saved;
//! - **damage is never silent**: after damage (corrupt or misdirected
//!   sectors), the log opens or refuses with [`StorageError::Corrupt`];
//!   if it opens without a durable entry, [`RecoveryReport`] says where
//!   it cut; a hard state that is not the last one saved is reported lost;
//! - **a wiped disk is fresh**: the log opens empty and says so;
//! - **snapshots** (the real [`SnapshotStore`] on the same disk): the last
//!   one installed is back after a crash without damage, its data intact;
//!   after damage the store opens or refuses with `Corrupt`, and a read
//!   returns the installed data or fails its CRC, never other bytes.
//!
//! All of it runs on one glommio executor with no real IO: a seed's run is
//! a pure function of the seed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use ordo_storage::conformance::{EntryKey, batch, flatten};
use ordo_storage::disk::{SimDisk, SimDiskFaults, SimFault, executor_builder};
use ordo_storage::{
    DiskLog, DiskLogConfig, HardState, LogId, LogStore, SnapshotStore, StorageError,
};

/// What one seed did.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Steps run.
    pub steps: u64,
    /// Crashes (each followed by a reopen).
    pub crashes: u64,
    /// Reopens after damage.
    pub damaged_opens: u64,
    /// Reopens that refused a damaged log.
    pub refused: u64,
    /// Reopens that cut the log.
    pub cuts: u64,
    /// Damaged opens that reported the hard state lost.
    pub hard_states_lost: u64,
    /// Snapshots installed.
    pub snapshots: u64,
    /// Snapshot reads (or store opens) that refused damaged bytes.
    pub snapshots_refused: u64,
    /// Faults the disk made.
    pub faults: u64,
}

/// A broken invariant, with the seed and the step.
#[derive(Debug)]
pub struct Failure {
    /// The seed.
    pub seed: u64,
    /// The step at which the check failed.
    pub step: u64,
    /// What failed.
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "disk simulation seed {} failed at step {}: {}\nreplay: ORDO_DISK_SIM_SEED={} cargo test -p ordo-tests --test disk_simulation -- --nocapture replay",
            self.seed, self.step, self.message, self.seed
        )
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The seed's fault plan.
#[derive(Clone, Copy, Debug)]
struct Plan {
    steps: u64,
    crash_percent: u64,
    corrupt_percent: u64,
    wipe_percent: u64,
    faults: SimDiskFaults,
}

impl Plan {
    fn for_seed(rng: &mut Rng) -> Self {
        let damage = rng.below(3);
        Self {
            steps: 300 + rng.below(300),
            crash_percent: 2 + rng.below(4),
            // A third of the seeds corrupt synced sectors at crashes, a
            // third misdirect writes, a third only lose unsynced ones.
            corrupt_percent: if damage == 1 { 30 } else { 0 },
            wipe_percent: if rng.chance(20) { 5 } else { 0 },
            faults: SimDiskFaults {
                keep_ppm: rng.below(1_000_001) as u32,
                misdirect_ppm: if damage == 2 { 3_000 } else { 0 },
            },
        }
    }
}

/// What the log must hold, as far as the model knows.
#[derive(Default)]
struct Model {
    /// Term of each entry the log holds now.
    entries: BTreeMap<u64, u64>,
    /// Index before the first entry (the log's `prev`).
    prev: LogId,
    /// Every term ever appended at each index since the last reopen
    /// (what a crash may bring back).
    history: BTreeMap<u64, BTreeSet<u64>>,
    /// Entries through here were reported durable.
    durable_through: u64,
    /// Entries through here may be gone by compaction.
    compacted_through: u64,
    /// The last hard state saved.
    hard_state: HardState,
    /// A save that failed: the disk may hold it.
    attempted_hard_state: Option<HardState>,
    /// The highest term appended, for new batches.
    term: u64,
}

impl Model {
    fn last_index(&self) -> u64 {
        self.entries
            .keys()
            .next_back()
            .copied()
            .unwrap_or(self.prev.index)
    }

    fn rebase(&mut self, entries: &[EntryKey], prev: LogId, hard_state: HardState) {
        self.entries = entries.iter().map(|e| (e.0, e.1)).collect();
        self.history = entries
            .iter()
            .map(|e| (e.0, BTreeSet::from([e.1])))
            .collect();
        self.prev = prev;
        self.durable_through = self.last_index();
        self.compacted_through = prev.index;
        self.hard_state = hard_state;
        self.attempted_hard_state = None;
        self.term = self
            .term
            .max(hard_state.term)
            .max(entries.iter().map(|e| e.1).max().unwrap_or(0))
            .max(prev.term);
    }
}

const DIR: &str = "/sim/node/log";
const SNAPSHOT_DIR: &str = "/sim/node/snapshots";

fn config() -> DiskLogConfig {
    DiskLogConfig {
        segment_bytes_max: 64 << 10,
        write_bytes_max: 8 << 10,
        cache_bytes_max: 16 << 10,
        unflushed_bytes_max: 16 << 10,
        zero_fill_segments: false,
        ..DiskLogConfig::default()
    }
}

/// Runs seed `seed`.
pub fn run(seed: u64) -> Result<Summary, Failure> {
    let mut outcome = None;
    run_many(&mut std::iter::once(seed), &mut |_, result| {
        outcome = Some(result)
    });
    outcome.expect("one seed ran").map_err(|message| Failure {
        seed,
        step: 0,
        message,
    })
}

/// Runs every seed `seeds` yields, one after the other on one glommio
/// executor (an executor per seed would exhaust file descriptors), and
/// hands each outcome to `report`: the summary, or the failure (a broken
/// invariant or a panic) as text with the replay command.
pub fn run_many(
    seeds: &mut dyn Iterator<Item = u64>,
    report: &mut dyn FnMut(u64, Result<Summary, String>),
) {
    use futures_lite::FutureExt;
    executor_builder("ordo-disk-sim")
        .make()
        .expect("a glommio executor")
        .run(async move {
            for seed in seeds {
                let outcome = std::panic::AssertUnwindSafe(Sim::new(seed).run())
                    .catch_unwind()
                    .await;
                let result = match outcome {
                    Ok(Ok(summary)) => Ok(summary),
                    Ok(Err(failure)) => Err(failure.to_string()),
                    Err(panic) => {
                        let message = crate::panic_message(&*panic);
                        Err(format!(
                            "disk simulation seed {seed} panicked: {message}\nreplay: ORDO_DISK_SIM_SEED={seed} cargo test -p ordo-tests --test disk_simulation -- --nocapture replay"
                        ))
                    }
                };
                report(seed, result);
            }
        })
}

struct Sim {
    seed: u64,
    rng: Rng,
    plan: Plan,
    disk: SimDisk,
    model: Model,
    summary: Summary,
    step: u64,
    /// Faults already accounted for.
    faults_seen: usize,
    /// The faults since the previous open, for failure messages.
    recent_faults: Vec<SimFault>,
    snapshots: Option<SnapshotStore>,
    /// The last snapshot installed and its data.
    snapshot: Option<(LogId, Vec<u8>)>,
}

async fn read_all(log: &DiskLog) -> Result<Vec<EntryKey>, StorageError> {
    let state = log.state();
    let mut out = Vec::new();
    let mut next = state.first_index();
    while next <= state.last.index {
        let batches = log.read(next, 16 << 10).await?;
        let Some(last) = batches.last() else {
            return Err(StorageError::Closed(format!(
                "read({next}) returned nothing"
            )));
        };
        let last = last.last_index();
        out.extend(flatten(&batches).into_iter().filter(|e| e.0 >= next));
        next = last + 1;
    }
    Ok(out)
}

/// Whether an entry holds what `conformance::batch` puts at its index and
/// term.
fn genuine(entry: &EntryKey) -> bool {
    let (index, term, _id, _ts, client_id, seq, payload) = entry;
    payload.len() == 8 + (*index % 7) as usize
        && payload[..8] == index.to_le_bytes()
        && payload[8..].iter().all(|&b| b == *term as u8)
        && client_id == term
        && seq == index
}

impl Sim {
    fn new(seed: u64) -> Self {
        let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0xd15c);
        let plan = Plan::for_seed(&mut rng);
        Self {
            seed,
            disk: SimDisk::new(seed, plan.faults),
            rng,
            plan,
            model: Model::default(),
            summary: Summary::default(),
            step: 0,
            faults_seen: 0,
            recent_faults: Vec::new(),
            snapshots: None,
            snapshot: None,
        }
    }

    fn fail(&self, message: impl Into<String>) -> Failure {
        Failure {
            seed: self.seed,
            step: self.step,
            message: format!(
                "{}\n  disk faults since the previous open: {:?}",
                message.into(),
                self.recent_faults
            ),
        }
    }

    async fn open(&self) -> Result<DiskLog, StorageError> {
        DiskLog::open_on(Rc::new(self.disk.clone()), DIR, config()).await
    }

    async fn run(mut self) -> Result<Summary, Failure> {
        let mut log = self
            .open()
            .await
            .map_err(|e| self.fail(format!("a new log did not open: {e}")))?;
        if !log.recovery().fresh {
            return Err(self.fail("a new log is not reported fresh"));
        }
        self.snapshots = Some(
            SnapshotStore::open_on(Rc::new(self.disk.clone()), SNAPSHOT_DIR)
                .await
                .map_err(|e| self.fail(format!("a new snapshot store did not open: {e}")))?,
        );
        self.model.term = 1;
        while self.step < self.plan.steps {
            self.step += 1;
            let roll = self.rng.below(100);
            let outcome = if roll < self.plan.crash_percent {
                match self.crash_and_reopen(log).await? {
                    Some(reopened) => {
                        log = reopened;
                        Ok(())
                    }
                    None => return Ok(self.finish()),
                }
            } else {
                let result = self.operate(&log, roll).await;
                // Check the bounds every step; reads check contents.
                self.check_bounds(&log)?;
                result
            };
            if let Err(error) = outcome {
                // Only misdirected writes make a healthy log fail an
                // operation (a frame the index expects is not where it
                // was written): a loud error, as it must be.
                if self.damage_since_open() {
                    match self.crash_and_reopen(log).await? {
                        Some(reopened) => log = reopened,
                        None => return Ok(self.finish()),
                    }
                } else {
                    return Err(self.fail(format!("operation failed on a healthy disk: {error}")));
                }
            }
        }
        Ok(self.finish())
    }

    fn finish(mut self) -> Summary {
        self.summary.steps = self.step;
        self.summary.faults = self.disk.faults().len() as u64;
        self.summary
    }

    fn damage_since_open(&self) -> bool {
        self.disk.faults()[self.faults_seen..]
            .iter()
            .any(|f| matches!(f, SimFault::Corrupt { .. } | SimFault::Misdirect { .. }))
    }

    async fn operate(&mut self, log: &DiskLog, roll: u64) -> Result<(), StorageError> {
        let last = self.model.last_index();
        match roll {
            0..=39 => {
                let batches = 1 + self.rng.below(3);
                let mut next = last + 1;
                let mut out = Vec::new();
                for _ in 0..batches {
                    let count = 1 + self.rng.below(8) as u32;
                    out.push(batch(self.model.term, next, count));
                    next += u64::from(count);
                }
                log.append(&out).await?;
                for index in last + 1..next {
                    self.model.entries.insert(index, self.model.term);
                    self.model
                        .history
                        .entry(index)
                        .or_default()
                        .insert(self.model.term);
                }
            }
            40..=59 => {
                let durable = log.sync().await?;
                if durable != last {
                    return Err(StorageError::Closed(format!(
                        "sync reported {durable} durable, the log ends at {last}"
                    )));
                }
                self.model.durable_through = last;
            }
            60..=66 => {
                let first = self.model.prev.index + 1;
                let from = last + 1 - self.rng.below((last + 1 - first).min(12) + 1);
                log.truncate_suffix(from).await?;
                self.model.entries.retain(|&index, _| index < from);
                self.model.durable_through = self.model.durable_through.min(from - 1);
                self.model.term += 1;
            }
            67..=71 => {
                self.model.term += 1;
                let state = HardState {
                    term: self.model.term,
                    vote: self.rng.below(4),
                    commit: self.model.durable_through,
                };
                self.model.attempted_hard_state = Some(state);
                log.save_hard_state(state).await?;
                self.model.attempted_hard_state = None;
                self.model.hard_state = state;
            }
            72..=74 => {
                let upto = self.model.prev.index
                    + self
                        .rng
                        .below(self.model.durable_through - self.model.prev.index + 1);
                log.compact_prefix(upto).await?;
                self.model.compacted_through = self.model.compacted_through.max(upto);
            }
            76..=77 => {
                // A snapshot of deterministic bytes, written in random
                // chunks.
                // Snapshots cover more and more of the log, as a node's do.
                let previous = self.snapshot.as_ref().map_or(0, |(last, _)| last.index);
                let last = LogId::new(self.model.term, previous + 1 + self.rng.below(1_000));
                let len = self.rng.below(20_000) as usize;
                let data: Vec<u8> = (0..len)
                    .map(|i| (i as u64 ^ last.index ^ self.seed) as u8)
                    .collect();
                let store = self.snapshots.as_mut().expect("open");
                let mut writer = store.create(last).await?;
                let mut at = 0;
                while at < data.len() {
                    let chunk = (1 + self.rng.below(6_000) as usize).min(data.len() - at);
                    writer.write_chunk(&data[at..at + chunk]).await?;
                    at += chunk;
                }
                store.install(writer).await?;
                self.snapshot = Some((last, data));
                self.summary.snapshots += 1;
            }
            78..=79 => {
                let damaged = self.damage_since_open();
                match self.check_snapshot(damaged).await {
                    Ok(false) => {}
                    Ok(true) => {
                        self.empty_snapshots()
                            .await
                            .map_err(|f| StorageError::Closed(f.message))?;
                    }
                    Err(message) => return Err(StorageError::Closed(message)),
                }
            }
            75 => {
                let index = last + self.rng.below(20);
                let term = self.model.term;
                log.reset(LogId::new(term, index)).await?;
                self.model.entries.clear();
                self.model.history.clear();
                self.model.prev = LogId::new(term, index);
                self.model.durable_through = index;
                self.model.compacted_through = index;
            }
            _ => {
                let state = log.state();
                if state.last.index >= state.first_index() {
                    let from = state.first_index()
                        + self.rng.below(state.last.index - state.first_index() + 1);
                    let batches = log.read(from, 1 + self.rng.below(8 << 10) as usize).await?;
                    for entry in flatten(&batches).iter().filter(|e| e.0 >= from) {
                        self.check_entry(entry)
                            .map_err(|m| StorageError::Closed(format!("read({from}): {m}")))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The store's latest snapshot is the one installed last, and reads
    /// back its data; after damage (`damaged`) a read may fail its CRC
    /// instead: `Ok(true)`.
    async fn check_snapshot(&mut self, damaged: bool) -> Result<bool, String> {
        let store = self.snapshots.as_ref().expect("open");
        let latest = store.latest();
        if latest.map(|meta| meta.last) != self.snapshot.as_ref().map(|(last, _)| *last) {
            return Err(format!(
                "the latest snapshot is {latest:?}, {:?} was installed last",
                self.snapshot.as_ref().map(|(last, _)| last)
            ));
        }
        let Some(mut reader) = store.reader().await.map_err(|e| e.to_string())? else {
            return Ok(false);
        };
        let mut read = Vec::new();
        loop {
            match reader.next_chunk(1 + self.rng.below(8_000) as usize).await {
                Ok(Some(chunk)) => read.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(StorageError::Corrupt { .. }) if damaged => {
                    self.summary.snapshots_refused += 1;
                    return Ok(true);
                }
                Err(error) => return Err(format!("reading the snapshot: {error}")),
            }
        }
        let expected = &self.snapshot.as_ref().expect("checked").1;
        if &read != expected {
            return Err(format!(
                "the snapshot read back {} bytes that differ from the {} installed",
                read.len(),
                expected.len()
            ));
        }
        Ok(false)
    }

    /// Removes every snapshot (the node would fetch one from its leader)
    /// and reopens the empty store.
    async fn empty_snapshots(&mut self) -> Result<(), Failure> {
        let vfs: Rc<dyn ordo_storage::disk::vfs::Vfs> = Rc::new(self.disk.clone());
        self.snapshots = None;
        for path in self.disk.files() {
            if path.starts_with(SNAPSHOT_DIR) {
                let _ = vfs.remove_file(&path);
            }
        }
        vfs.sync_dir(std::path::Path::new(SNAPSHOT_DIR))
            .await
            .map_err(|e| self.fail(format!("syncing the emptied snapshot directory: {e}")))?;
        self.snapshot = None;
        self.snapshots = Some(
            SnapshotStore::open_on(vfs, SNAPSHOT_DIR)
                .await
                .map_err(|e| self.fail(format!("an emptied snapshot store: {e}")))?,
        );
        Ok(())
    }

    /// An entry read now must be the one the model holds at its index.
    fn check_entry(&self, entry: &EntryKey) -> Result<(), String> {
        if !genuine(entry) {
            return Err(format!("entry {} is not what was appended", entry.0));
        }
        match self.model.entries.get(&entry.0) {
            Some(&term) if term == entry.1 => Ok(()),
            other => Err(format!(
                "entry {} has term {}, the model says {other:?}",
                entry.0, entry.1
            )),
        }
    }

    fn check_bounds(&self, log: &DiskLog) -> Result<(), Failure> {
        let state = log.state();
        let last = self.model.last_index();
        if state.last.index != last {
            return Err(self.fail(format!(
                "the log ends at {}, the model at {last}",
                state.last.index
            )));
        }
        if state.first_index() > self.model.compacted_through + 1
            || state.first_index() < self.model.prev.index + 1
        {
            return Err(self.fail(format!(
                "the log starts at {}, outside [{}, {}]",
                state.first_index(),
                self.model.prev.index + 1,
                self.model.compacted_through + 1
            )));
        }
        Ok(())
    }

    /// Crashes the log, maybe damages or wipes the disk, reopens and
    /// checks what came back. `None`: the log refused to open (the node
    /// would stop and say why); the seed ends there.
    async fn crash_and_reopen(&mut self, log: DiskLog) -> Result<Option<DiskLog>, Failure> {
        drop(log);
        self.snapshots = None;
        self.summary.crashes += 1;
        self.disk.crash();
        if self.rng.chance(self.plan.corrupt_percent) {
            self.disk.corrupt_synced(|_| true);
        }
        let wiped = self.rng.chance(self.plan.wipe_percent);
        if wiped {
            self.disk.wipe();
        }
        let damaged = self.damage_since_open();
        self.recent_faults = self.disk.faults()[self.faults_seen..].to_vec();
        self.faults_seen = self.disk.faults().len();
        if damaged {
            self.summary.damaged_opens += 1;
        }
        let log = match self.open().await {
            Ok(log) => log,
            Err(StorageError::Corrupt {
                file,
                offset,
                reason,
            }) if damaged => {
                // Loud, naming the place: allowed after damage.
                if std::env::var("ORDO_DISK_SIM_SHOW_REFUSED").is_ok() {
                    eprintln!("REFUSED {} {offset}: {reason}", file.display());
                }
                self.summary.refused += 1;
                return Ok(None);
            }
            Err(error) => {
                return Err(self.fail(format!(
                    "reopen failed (damage injected: {damaged}): {error}"
                )));
            }
        };
        let report = log.recovery().clone();
        if report.cut.is_some() {
            self.summary.cuts += 1;
        }
        let entries = read_all(&log)
            .await
            .map_err(|e| self.fail(format!("reading the reopened log failed: {e}")))?;
        let state = log.state();
        let hard_state = log.hard_state();
        if wiped {
            if !report.fresh || !entries.is_empty() || hard_state != HardState::default() {
                return Err(self.fail(format!(
                    "a wiped disk did not open fresh and empty: {report:?}, {} entries",
                    entries.len()
                )));
            }
            self.model = Model {
                term: self.model.term,
                ..Model::default()
            };
            self.model.rebase(&entries, state.prev, hard_state);
            self.snapshot = None;
            self.reopen_snapshots(false).await?;
            return Ok(Some(log));
        }
        // Every entry genuine, consecutive, and one that was appended.
        let mut expect = state.first_index();
        for entry in &entries {
            if entry.0 != expect {
                return Err(self.fail(format!("entry {} where {expect} was expected", entry.0)));
            }
            expect += 1;
            if !genuine(entry) {
                return Err(self.fail(format!("recovered entry {} is not genuine", entry.0)));
            }
            let known = self
                .model
                .history
                .get(&entry.0)
                .is_some_and(|terms| terms.contains(&entry.1));
            if !known && entry.0 > self.model.prev.index {
                return Err(self.fail(format!(
                    "recovered entry {} in term {} was never appended there",
                    entry.0, entry.1
                )));
            }
        }
        if expect != state.last.index + 1 {
            return Err(self.fail(format!(
                "the log says it ends at {} but reads end at {}",
                state.last.index,
                expect - 1
            )));
        }
        let recovered_last = state.last.index;
        let durable = self.model.durable_through;
        if !damaged {
            if recovered_last < durable {
                return Err(self.fail(format!(
                    "a crash lost durable entries: the log ends at {recovered_last}, {durable} was durable ({report:?}, faults: {:?})",
                    self.disk.faults().last()
                )));
            }
            for entry in entries.iter().filter(|e| e.0 <= durable) {
                if self.model.entries.get(&entry.0) != Some(&entry.1) {
                    return Err(self.fail(format!(
                        "durable entry {} came back in term {}, was {:?}",
                        entry.0,
                        entry.1,
                        self.model.entries.get(&entry.0)
                    )));
                }
            }
            if let Some(cut) = &report.cut
                && (cut.durable || cut.from_index <= durable)
            {
                return Err(self.fail(format!(
                    "a crash alone was reported as damage to durable entries: {cut}"
                )));
            }
            if hard_state != self.model.hard_state || report.hard_state_lost.is_some() {
                return Err(self.fail(format!(
                    "hard state {hard_state:?} after a crash, {:?} was saved ({:?})",
                    self.model.hard_state, report.hard_state_lost
                )));
            }
        } else {
            if recovered_last < durable && state.prev.index < durable && report.cut.is_none() {
                return Err(self.fail(format!(
                    "damage lost durable entries {}..={durable} and recovery did not say so",
                    recovered_last + 1
                )));
            }
            if let Some(cut) = &report.cut
                && cut.from_index != recovered_last + 1
            {
                return Err(self.fail(format!(
                    "recovery cut at {} but the log ends at {recovered_last}",
                    cut.from_index
                )));
            }
            if hard_state != self.model.hard_state
                && Some(hard_state) != self.model.attempted_hard_state
                && report.hard_state_lost.is_none()
            {
                return Err(self.fail(format!(
                    "hard state {hard_state:?} after damage, {:?} was saved, and no loss reported",
                    self.model.hard_state
                )));
            }
            if report.hard_state_lost.is_some() {
                self.summary.hard_states_lost += 1;
            }
        }
        self.model.rebase(&entries, state.prev, hard_state);
        self.reopen_snapshots(damaged).await?;
        Ok(Some(log))
    }

    /// Reopens the snapshot store after a crash and checks it. A store
    /// that refuses damaged bytes is emptied (the node would fetch a
    /// snapshot from its leader).
    async fn reopen_snapshots(&mut self, damaged: bool) -> Result<(), Failure> {
        let vfs: Rc<dyn ordo_storage::disk::vfs::Vfs> = Rc::new(self.disk.clone());
        match SnapshotStore::open_on(vfs, SNAPSHOT_DIR).await {
            Ok(store) => self.snapshots = Some(store),
            Err(StorageError::Corrupt { .. }) if damaged => {
                self.summary.snapshots_refused += 1;
                return self.empty_snapshots().await;
            }
            Err(error) => {
                return Err(self.fail(format!(
                    "the snapshot store did not reopen (damage injected: {damaged}): {error}"
                )));
            }
        }
        match self.check_snapshot(damaged).await {
            Ok(false) => Ok(()),
            Ok(true) => self.empty_snapshots().await,
            Err(message) => Err(self.fail(message)),
        }
    }
}

/// The directory the simulated log lives in.
pub fn log_dir() -> PathBuf {
    Path::new(DIR).to_path_buf()
}
