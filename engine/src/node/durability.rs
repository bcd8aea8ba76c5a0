//! What a node's data directory tells about what it may have acknowledged,
//! so that a damaged or wiped disk is repaired, never trusted
//! (`crate::core::Loss`, docs/storage.md "Damage and repair").
//!
//! Three small files beside the log directory:
//! - `member`: `bootstrap` when `ordo init` made the directory, `started`
//!   once the node has run on it. A node that finds its log gone while
//!   this says `started` (or finds its key and no marker, as when only the
//!   key was restored onto a new disk) has lost its disk; a node that
//!   finds `bootstrap`, or nothing at all in a directory without a key (an
//!   embedder's first start), is new.
//! - `acked`: the acknowledgement watermark: the durable index (at or
//!   above every index this node may have acknowledged when it was
//!   written), in two CRC'd slots written alternately in place. Saved
//!   every [`ACKED_SAVE_INTERVAL`] while it moves and at shutdown, off the
//!   commit path. Recovery tells a torn tail (cut above it: never
//!   acknowledged) from damage to acknowledged entries (cut at or below
//!   it) with it.
//! - `repair`: a loss found at start and not yet repaired. Written before
//!   the node takes part, removed when the core reports
//!   [`crate::core::Command::Repaired`]: a crash mid-repair finds it again.
//!
//! `member` and `repair` are replaced whole (a temporary file, fsync,
//! rename, directory fsync), so a crash leaves the old or the new
//! contents, never a mix; they change once per start at most.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ordo_storage::{Index, RecoveryReport};

use crate::core::Loss;
use crate::token::NodeKey;

/// The membership marker's name in the data directory.
pub const MEMBER_FILE: &str = "member";
/// The acknowledgement watermark's name in the data directory.
pub const ACKED_FILE: &str = "acked";
/// The pending repair's name in the data directory.
pub const REPAIR_FILE: &str = "repair";
/// How often a moving acknowledgement watermark is saved.
pub const ACKED_SAVE_INTERVAL: Duration = Duration::from_millis(100);

/// Replaces `path` with `contents` durably.
fn write_durably(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(contents.as_bytes())?;
    file.sync_data()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir)?.sync_all()
}

/// Why a record in the data directory could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum DurabilityError {
    /// A file or the directory could not be read, written or synced.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done ("read", "write", "open", "sync", "remove").
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The membership marker holds neither word it may hold: the
    /// directory is not one this code wrote, and guessing whether the node
    /// ran here could trust a lost disk.
    #[error("{} says {found:?}; expected \"bootstrap\" or \"started\"", path.display())]
    Member {
        /// The marker file.
        path: PathBuf,
        /// What it says.
        found: String,
    },
}

fn io_error(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DurabilityError {
    let path = path.to_path_buf();
    move |source| DurabilityError::Io { op, path, source }
}

/// `ordo init`: marks `data_dir` as a member's directory that has not run
/// yet (its first start creates the log).
pub fn bootstrap_member(data_dir: &Path) -> Result<(), DurabilityError> {
    let path = data_dir.join(MEMBER_FILE);
    write_durably(&path, "bootstrap\n").map_err(io_error("write", &path))
}

/// What the membership marker says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Member {
    Absent,
    Bootstrap,
    Started,
}

fn read_member(data_dir: &Path) -> Result<Member, DurabilityError> {
    let path = data_dir.join(MEMBER_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => match text.trim() {
            "bootstrap" => Ok(Member::Bootstrap),
            "started" => Ok(Member::Started),
            other => Err(DurabilityError::Member {
                path,
                found: other.to_string(),
            }),
        },
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Member::Absent),
        Err(error) => Err(io_error("read", &path)(error)),
    }
}

/// Bytes between the watermark file's two slots (one sector each, so
/// that a torn write damages one slot only).
const ACKED_SLOT_BYTES: u64 = 4096;
const ACKED_MAGIC: u32 = u32::from_le_bytes(*b"ORDA");

fn encode_acked(index: Index) -> [u8; 16] {
    let mut slot = [0u8; 16];
    slot[0..4].copy_from_slice(&ACKED_MAGIC.to_le_bytes());
    slot[4..12].copy_from_slice(&index.to_le_bytes());
    let crc = crc32fast::hash(&slot[0..12]);
    slot[12..16].copy_from_slice(&crc.to_le_bytes());
    slot
}

fn decode_acked(slot: &[u8]) -> Option<Index> {
    let slot: &[u8; 16] = slot.get(..16)?.try_into().ok()?;
    let magic = u32::from_le_bytes(slot[0..4].try_into().ok()?);
    let crc = u32::from_le_bytes(slot[12..16].try_into().ok()?);
    (magic == ACKED_MAGIC && crc == crc32fast::hash(&slot[0..12]))
        .then(|| u64::from_le_bytes(slot[4..12].try_into().expect("8 bytes")))
}

/// The acknowledgement watermark saved in `data_dir`: `0` if none was
/// ever saved, `Index::MAX` if the file exists but neither slot is valid
/// (then any cut counts as a loss: the node repairs rather than guess).
pub fn load_acked(data_dir: &Path) -> Result<Index, DurabilityError> {
    let path = data_dir.join(ACKED_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(io_error("read", &path)(error)),
    };
    let slots = [
        decode_acked(&bytes),
        bytes
            .get(ACKED_SLOT_BYTES as usize..)
            .and_then(decode_acked),
    ];
    Ok(slots.into_iter().flatten().max().unwrap_or_else(|| {
        tracing::warn!(file = %path.display(), "no valid acknowledgement watermark slot");
        Index::MAX
    }))
}

/// The acknowledgement watermark's file, open for saves. Each save writes
/// one of two slots in place, alternately, and fdatasyncs: one small
/// write and one flush, and a crash during it leaves the other slot (the
/// previous, smaller watermark, which a later cut must then exceed).
pub struct AckedFile {
    file: std::fs::File,
    path: PathBuf,
    next_slot: u64,
}

impl AckedFile {
    /// Opens (creating) the watermark file in `data_dir` (blocking).
    pub fn open(data_dir: &Path) -> Result<Self, DurabilityError> {
        let path = data_dir.join(ACKED_FILE);
        let existed = path.exists();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_error("open", &path))?;
        if !existed {
            // The name must survive a power loss, or so would no save.
            std::fs::File::open(data_dir)
                .and_then(|dir| dir.sync_all())
                .map_err(io_error("sync", data_dir))?;
        }
        Ok(Self {
            file,
            path,
            next_slot: 0,
        })
    }

    /// Saves `index` durably (blocking: call it off the shard's executor,
    /// or at shutdown).
    pub fn save(&mut self, index: Index) -> Result<(), DurabilityError> {
        use std::os::unix::fs::FileExt;
        let offset = self.next_slot * ACKED_SLOT_BYTES;
        self.file
            .write_all_at(&encode_acked(index), offset)
            .and_then(|()| self.file.sync_data())
            .map_err(io_error("write", &self.path))?;
        self.next_slot = 1 - self.next_slot;
        Ok(())
    }
}

/// Saves the acknowledgement watermark once (blocking).
pub fn save_acked(data_dir: &Path, index: Index) -> Result<(), DurabilityError> {
    AckedFile::open(data_dir)?.save(index)
}

fn encode_loss(loss: &Loss) -> String {
    format!(
        "held_through = {}\nhard_state_lost = {}\nreason = {:?}\n",
        loss.held_through, loss.hard_state_lost, loss.reason
    )
}

fn decode_loss(text: &str) -> Option<Loss> {
    let mut loss = Loss::default();
    for line in text.lines() {
        let (key, value) = line.split_once(" = ")?;
        match key {
            "held_through" => loss.held_through = value.parse().ok()?,
            "hard_state_lost" => loss.hard_state_lost = value.parse().ok()?,
            "reason" => loss.reason = value.trim_matches('"').replace("\\\"", "\""),
            _ => return None,
        }
    }
    Some(loss)
}

/// Decides, once the log is open, whether this node lost state it may
/// have acknowledged; records a loss durably before returning it, and
/// marks the directory started.
///
/// `last_index` is the recovered log's last index.
pub fn detect_loss(
    data_dir: &Path,
    recovery: &RecoveryReport,
    last_index: Index,
) -> Result<Option<Loss>, DurabilityError> {
    let acked = load_acked(data_dir)?;
    let member = read_member(data_dir)?;
    let repair_path: PathBuf = data_dir.join(REPAIR_FILE);
    let pending = match std::fs::read_to_string(&repair_path) {
        Ok(text) => Some(decode_loss(&text).unwrap_or_else(|| Loss {
            held_through: acked,
            hard_state_lost: true,
            reason: format!("{} is unreadable", repair_path.display()),
        })),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => return Err(io_error("read", &repair_path)(error)),
    };
    let wiped = wiped_reason(data_dir, member);
    let found = assess_loss(
        pending,
        recovery,
        acked,
        last_index,
        wiped,
        &data_dir.join(ACKED_FILE).display().to_string(),
    );
    if let Some(loss) = &found {
        tracing::warn!(
            dir = %data_dir.display(),
            loss = ?loss,
            "recovery: this node may have lost acknowledged state; it takes no part in elections until a leader repairs it"
        );
        write_durably(&repair_path, &encode_loss(loss)).map_err(io_error("write", &repair_path))?;
    }
    if member != Member::Started {
        let path = data_dir.join(MEMBER_FILE);
        write_durably(&path, "started\n").map_err(io_error("write", &path))?;
    }
    Ok(found)
}

/// The loss a start finds, from what [`detect_loss`] reads: a repair not
/// finished (`pending`), what recovery cut or lost, the acknowledgement
/// watermark `acked` (named `acked_name` in reasons), the log's last
/// index, and why the disk counts as wiped if its log is fresh (`wiped`:
/// the node ran here before). Pure: the simulator's hosts decide with it
/// too.
pub fn assess_loss(
    pending: Option<Loss>,
    recovery: &RecoveryReport,
    acked: Index,
    last_index: Index,
    wiped: Option<String>,
    acked_name: &str,
) -> Option<Loss> {
    let mut reasons = Vec::new();
    let mut loss = Loss::default();
    let mut lost = false;
    if let Some(pending) = pending {
        loss.held_through = pending.held_through;
        loss.hard_state_lost = pending.hard_state_lost;
        reasons.push(format!("an unfinished repair: {}", pending.reason));
        lost = true;
    }
    if let Some(cut) = &recovery.cut
        && (cut.durable || cut.from_index <= acked)
    {
        loss.held_through = loss.held_through.max(cut.held_through).max(acked);
        reasons.push(if cut.durable {
            cut.to_string()
        } else {
            format!("{cut}; this node had made index {acked} durable")
        });
        lost = true;
    }
    if let Some(why) = &recovery.hard_state_lost {
        loss.hard_state_lost = true;
        loss.held_through = loss.held_through.max(acked).max(last_index);
        reasons.push(format!("hard state lost: {why}"));
        lost = true;
    }
    if recovery.fresh {
        if let Some(why) = wiped {
            loss.hard_state_lost = true;
            loss.held_through = loss.held_through.max(acked);
            reasons.push(why);
            lost = true;
        } else if acked > 0 {
            loss.held_through = loss.held_through.max(acked);
            reasons.push(format!(
                "the log is gone but {acked_name} says index {acked} was durable"
            ));
            lost = true;
        }
    }
    if lost {
        loss.reason = reasons.join("; ");
    }
    lost.then_some(loss)
}

/// Why a fresh log in `data_dir` is a lost disk, if it is: this node ran
/// here before (its membership marker says so), or its key was restored
/// onto an empty disk.
fn wiped_reason(data_dir: &Path, member: Member) -> Option<String> {
    let key = NodeKey::path_in(data_dir);
    match member {
        Member::Started => Some(format!(
            "{} says this node ran here, but its log and hard state are gone",
            data_dir.join(MEMBER_FILE).display()
        )),
        Member::Absent if key.exists() => Some(format!(
            "{} exists without a log or a membership marker (a key restored onto an empty disk)",
            key.display()
        )),
        Member::Absent | Member::Bootstrap => None,
    }
}

/// Before a log is created where none is (no hard state file): if that
/// is a lost disk ([`wiped_reason`]), records the loss durably first. The
/// new log's hard state file would otherwise make the next start, after a
/// crash before this one assessed its storage, take the empty log for a
/// healthy one (runtime simulator, seed 9916: a wiped node voted with
/// term 0 and a stale candidate committed over acknowledged entries).
pub fn record_if_wiped(data_dir: &Path) -> Result<(), DurabilityError> {
    match wiped_reason(data_dir, read_member(data_dir)?) {
        Some(reason) => record_set_aside(data_dir, &reason),
        None => Ok(()),
    }
}

/// Records durably, before recovery cuts the log at `cut`, the loss the
/// cut makes if it is one (durable bytes, or entries under the
/// acknowledgement watermark), as [`assess_loss`] would judge it. An
/// unfinished repair already recorded is kept.
pub fn record_cut(data_dir: &Path, cut: &ordo_storage::LogCut) -> Result<(), DurabilityError> {
    let acked = load_acked(data_dir)?;
    let path = data_dir.join(REPAIR_FILE);
    if !(cut.durable || cut.from_index <= acked) || path.exists() {
        return Ok(());
    }
    let loss = Loss {
        held_through: cut.held_through.max(acked),
        hard_state_lost: false,
        reason: cut.to_string(),
    };
    write_durably(&path, &encode_loss(&loss)).map_err(io_error("write", &path))
}

/// Records durably, before damaged storage is moved aside, that this node
/// lost what it may have acknowledged (up to its watermark, term and vote
/// included): the next start repairs even if it crashes before its own
/// assessment. An unfinished repair already recorded is kept.
pub fn record_set_aside(data_dir: &Path, reason: &str) -> Result<(), DurabilityError> {
    let path = data_dir.join(REPAIR_FILE);
    if path.exists() {
        return Ok(());
    }
    let loss = Loss {
        held_through: load_acked(data_dir)?,
        hard_state_lost: true,
        reason: reason.to_string(),
    };
    write_durably(&path, &encode_loss(&loss)).map_err(io_error("write", &path))
}

/// The core repaired the loss: forget it durably.
pub fn repaired(data_dir: &Path) -> Result<(), DurabilityError> {
    let path = data_dir.join(REPAIR_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(io_error("remove", &path)(error)),
    }
    std::fs::File::open(data_dir)
        .and_then(|dir| dir.sync_all())
        .map_err(io_error("sync", data_dir))
}

/// What a log directory occupies on disk ([`log_usage`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogUsage {
    /// Every file's allocated blocks.
    pub total: u64,
    /// The segments that start after the given index (named by their
    /// first index, `<20 digits>.seg`), in allocated bytes.
    pub since: u64,
}

/// The disk a log directory occupies: in all, and in the segments that
/// start after index `after` (what was written since a snapshot there,
/// to a segment).
pub fn log_usage(dir: &Path, after: Index) -> LogUsage {
    use std::os::unix::fs::MetadataExt;
    let mut usage = LogUsage::default();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return usage;
    };
    for entry in entries.filter_map(Result::ok) {
        let Ok(metadata) = entry.metadata() else {
            continue;
        };
        if !metadata.is_file() {
            continue;
        }
        let bytes = metadata.blocks() * 512;
        usage.total += bytes;
        let name = entry.file_name();
        let first = name
            .to_str()
            .and_then(|name| name.strip_suffix(".seg"))
            .and_then(|digits| digits.parse::<Index>().ok());
        if first.is_some_and(|first| first > after) {
            usage.since += bytes;
        }
    }
    usage
}

/// Bytes an unprivileged writer may still write on the filesystem that
/// holds `dir` (statvfs: available blocks × fragment size); blocking.
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let stat = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok((stat.blocks_available() as u64).saturating_mul(stat.fragment_size() as u64))
}

/// Below this much free space on the data directory's filesystem the node
/// warns: room for about four more segments, or 1 GiB if that is more. A
/// full disk stops a node (its log refuses every later write), so the
/// operator should hear of it while retention or more disk can still help.
pub fn free_bytes_low(segment_bytes: u64) -> u64 {
    segment_bytes.saturating_mul(4).max(1 << 30)
}

/// What to say about the data directory's free space, given the previous
/// sample's verdict: warn when it falls below `low`, and say so again when
/// it is back above (one line per crossing, not one per sample).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeSpace {
    /// Enough room, and there was before.
    Fine,
    /// It just fell below the mark.
    FellLow,
    /// Still below the mark.
    StillLow,
    /// It just came back above the mark.
    Recovered,
}

impl FreeSpace {
    /// The verdict for `free` bytes against `low`, after `self`.
    pub fn next(self, free: u64, low: u64) -> FreeSpace {
        let was_low = matches!(self, FreeSpace::FellLow | FreeSpace::StillLow);
        match (was_low, free < low) {
            (false, false) => FreeSpace::Fine,
            (false, true) => FreeSpace::FellLow,
            (true, true) => FreeSpace::StillLow,
            (true, false) => FreeSpace::Recovered,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use ordo_storage::LogCut;

    use super::*;

    fn cut(from_index: Index, durable: bool) -> LogCut {
        LogCut {
            from_index,
            held_through: from_index + 10,
            durable,
            file: PathBuf::from("seg"),
            offset: 4096,
            reason: "batch crc mismatch".into(),
        }
    }

    fn report(cut: Option<LogCut>, fresh: bool) -> RecoveryReport {
        RecoveryReport {
            cut,
            fresh,
            hard_state_lost: None,
        }
    }

    #[test]
    fn a_new_directory_is_fresh_and_then_started() {
        let dir = tempfile::tempdir().unwrap();
        bootstrap_member(dir.path()).unwrap();
        assert_eq!(
            detect_loss(dir.path(), &report(None, true), 0).unwrap(),
            None
        );
        // The next start with an empty log is a lost disk.
        let loss = detect_loss(dir.path(), &report(None, true), 0)
            .unwrap()
            .expect("a wiped log after a start is a loss");
        assert!(loss.hard_state_lost);
        assert!(loss.reason.contains("ran here"), "{}", loss.reason);
        // Recorded until repaired.
        let again = detect_loss(dir.path(), &report(None, false), 5).unwrap();
        assert!(again.unwrap().reason.contains("unfinished repair"));
        repaired(dir.path()).unwrap();
        assert_eq!(
            detect_loss(dir.path(), &report(None, false), 5).unwrap(),
            None
        );
    }

    #[test]
    fn a_restored_key_on_an_empty_disk_is_a_loss_and_an_embedder_start_is_not() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            detect_loss(dir.path(), &report(None, true), 0).unwrap(),
            None
        );
        let keyed = tempfile::tempdir().unwrap();
        NodeKey::generate()
            .unwrap()
            .save(&NodeKey::path_in(keyed.path()))
            .unwrap();
        let loss = detect_loss(keyed.path(), &report(None, true), 0).unwrap();
        assert!(loss.unwrap().reason.contains("restored"));
    }

    #[test]
    fn a_torn_tail_above_the_watermark_is_not_a_loss_and_one_below_is() {
        let dir = tempfile::tempdir().unwrap();
        bootstrap_member(dir.path()).unwrap();
        save_acked(dir.path(), 100).unwrap();
        assert_eq!(
            detect_loss(dir.path(), &report(Some(cut(101, false)), false), 100).unwrap(),
            None
        );
        let loss = detect_loss(dir.path(), &report(Some(cut(90, false)), false), 89)
            .unwrap()
            .expect("acknowledged entries were cut");
        assert_eq!(loss.held_through, 100);
        assert!(!loss.hard_state_lost);
        repaired(dir.path()).unwrap();
        // Durable damage is a loss whatever the watermark.
        let loss = detect_loss(dir.path(), &report(Some(cut(200, true)), false), 199)
            .unwrap()
            .expect("durable damage");
        assert_eq!(loss.held_through, 210);
    }

    /// A crash between setting a damaged log aside and the start's own
    /// assessment: the new log is valid and empty-looking, yet the next
    /// start still repairs (runtime simulator, seed 3526 with misdirects).
    #[test]
    fn a_log_set_aside_is_a_loss_even_if_the_start_crashed_right_after() {
        let dir = tempfile::tempdir().unwrap();
        bootstrap_member(dir.path()).unwrap();
        save_acked(dir.path(), 40).unwrap();
        record_set_aside(dir.path(), "the log was damaged").unwrap();
        // The next start finds a valid log (not fresh, nothing cut).
        let loss = detect_loss(dir.path(), &report(None, false), 0)
            .unwrap()
            .expect("the set-aside log is remembered");
        assert_eq!(loss.held_through, 40);
        assert!(loss.hard_state_lost);
        assert!(loss.reason.contains("damaged"), "{}", loss.reason);
        // A recorded repair is kept, not replaced.
        record_set_aside(dir.path(), "again").unwrap();
        let loss = detect_loss(dir.path(), &report(None, false), 0)
            .unwrap()
            .unwrap();
        assert!(loss.reason.contains("damaged"), "{}", loss.reason);
    }

    /// A wiped node whose start crashed after creating its new log (hard
    /// state file included) and before its assessment: the next start
    /// still repairs (runtime simulator, seed 9916).
    #[test]
    fn a_wiped_disk_is_a_loss_even_if_the_start_crashed_after_creating_its_log() {
        let dir = tempfile::tempdir().unwrap();
        bootstrap_member(dir.path()).unwrap();
        // A first start: nothing to record.
        record_if_wiped(dir.path()).unwrap();
        assert_eq!(
            detect_loss(dir.path(), &report(None, true), 0).unwrap(),
            None
        );
        // Wiped (the marker survives here as a restored key would): the
        // start records before it creates the log.
        record_if_wiped(dir.path()).unwrap();
        let loss = detect_loss(dir.path(), &report(None, false), 0)
            .unwrap()
            .expect("the record outlives the crash");
        assert!(loss.hard_state_lost);
        assert!(loss.reason.contains("ran here"), "{}", loss.reason);
    }

    /// Recovery cut acknowledged entries and the start crashed before its
    /// assessment: the cut is on disk, so the next start finds a clean,
    /// shorter log, and must still repair (runtime simulator, seed 11443).
    #[test]
    fn a_cut_is_recorded_before_it_is_made() {
        let dir = tempfile::tempdir().unwrap();
        bootstrap_member(dir.path()).unwrap();
        save_acked(dir.path(), 13).unwrap();
        // A torn tail past the watermark is no loss: nothing recorded.
        record_cut(dir.path(), &cut(14, false)).unwrap();
        assert_eq!(
            detect_loss(dir.path(), &report(None, false), 13).unwrap(),
            None
        );
        record_cut(dir.path(), &cut(4, false)).unwrap();
        let loss = detect_loss(dir.path(), &report(None, false), 3)
            .unwrap()
            .expect("the cut is remembered");
        assert_eq!(loss.held_through, 14);
        assert!(!loss.hard_state_lost);
        assert!(
            loss.reason.contains("batch crc mismatch"),
            "{}",
            loss.reason
        );
    }

    #[test]
    fn the_watermark_survives_a_torn_slot() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_acked(dir.path()).unwrap(), 0);
        let mut file = AckedFile::open(dir.path()).unwrap();
        file.save(10).unwrap();
        file.save(20).unwrap();
        assert_eq!(load_acked(dir.path()).unwrap(), 20);
        // Tear the newest slot: the previous watermark remains.
        let path = dir.path().join(ACKED_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[4096 + 5] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(load_acked(dir.path()).unwrap(), 10);
        // Both torn: unknown, so every cut counts.
        bytes[5] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(load_acked(dir.path()).unwrap(), Index::MAX);
    }

    #[test]
    fn the_repair_record_round_trips() {
        let loss = Loss {
            held_through: 42,
            hard_state_lost: true,
            reason: "a \"quoted\" reason".into(),
        };
        assert_eq!(decode_loss(&encode_loss(&loss)), Some(loss));
    }

    #[test]
    fn free_space_warns_once_per_crossing() {
        use super::FreeSpace::*;
        let low = free_bytes_low(64 << 20);
        assert_eq!(low, 1 << 30, "four 64 MiB segments are less than 1 GiB");
        assert_eq!(free_bytes_low(1 << 30), 4 << 30);
        let mut verdicts = Vec::new();
        let mut state = Fine;
        for free in [5 << 30, low - 1, low - 2, low, 5 << 30, 0] {
            state = state.next(free, low);
            verdicts.push(state);
        }
        assert_eq!(
            verdicts,
            [Fine, FellLow, StillLow, Recovered, Fine, FellLow]
        );
    }

    #[test]
    fn free_bytes_reads_the_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(dir.path()).unwrap() > 0);
        assert!(free_bytes(&dir.path().join("missing")).is_err());
    }
}
