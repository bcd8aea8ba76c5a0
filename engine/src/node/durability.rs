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
//! - `acked`: the acknowledgement watermark: an index at or above every
//!   index this node had made durable (and so may have acknowledged) when
//!   it was written. Written every [`ACKED_SAVE_INTERVAL`] while it moves
//!   and at shutdown, off the commit path. Recovery tells a torn tail
//!   (cut above it: never acknowledged) from damage to acknowledged
//!   entries (cut at or below it) with it.
//! - `repair`: a loss found at start and not yet repaired. Written before
//!   the node takes part, removed when the core reports
//!   [`crate::core::Command::Repaired`]: a crash mid-repair finds it again.
//!
//! Each is replaced whole (a temporary file, fsync, rename, directory
//! fsync), so a crash leaves the old or the new contents, never a mix.

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

fn io_error(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> String {
    let path = path.display().to_string();
    let what = what.to_string();
    move |error| format!("cannot {what} {path}: {error}")
}

/// `ordo init`: marks `data_dir` as a member's directory that has not run
/// yet (its first start creates the log).
pub fn bootstrap_member(data_dir: &Path) -> Result<(), String> {
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

fn read_member(data_dir: &Path) -> Result<Member, String> {
    let path = data_dir.join(MEMBER_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => match text.trim() {
            "bootstrap" => Ok(Member::Bootstrap),
            "started" => Ok(Member::Started),
            other => Err(format!(
                "{} says {other:?}; expected \"bootstrap\" or \"started\"",
                path.display()
            )),
        },
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Member::Absent),
        Err(error) => Err(io_error("read", &path)(error)),
    }
}

/// The acknowledgement watermark saved in `data_dir` (`0` if none).
pub fn load_acked(data_dir: &Path) -> Result<Index, String> {
    let path = data_dir.join(ACKED_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().map_err(|e| {
            format!(
                "{} holds {:?}, not an index: {e}",
                path.display(),
                text.trim()
            )
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(error) => Err(io_error("read", &path)(error)),
    }
}

/// Saves the acknowledgement watermark (blocking: call it off the shard's
/// executor, or at shutdown).
pub fn save_acked(data_dir: &Path, index: Index) -> Result<(), String> {
    let path = data_dir.join(ACKED_FILE);
    write_durably(&path, &format!("{index}\n")).map_err(io_error("write", &path))
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
) -> Result<Option<Loss>, String> {
    let acked = load_acked(data_dir)?;
    let member = read_member(data_dir)?;
    let repair_path: PathBuf = data_dir.join(REPAIR_FILE);
    let mut reasons = Vec::new();
    let mut loss = Loss::default();
    let mut lost = false;
    match std::fs::read_to_string(&repair_path) {
        Ok(text) => {
            let pending = decode_loss(&text).unwrap_or_else(|| Loss {
                held_through: acked,
                hard_state_lost: true,
                reason: format!("{} is unreadable", repair_path.display()),
            });
            loss.held_through = pending.held_through;
            loss.hard_state_lost = pending.hard_state_lost;
            reasons.push(format!("an unfinished repair: {}", pending.reason));
            lost = true;
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(io_error("read", &repair_path)(error)),
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
        let key = NodeKey::path_in(data_dir);
        let wiped = match member {
            Member::Started => Some(format!(
                "{} says this node ran here, but its log and hard state are gone",
                data_dir.join(MEMBER_FILE).display()
            )),
            Member::Absent if key.exists() => Some(format!(
                "{} exists without a log or a membership marker (a key restored onto an empty disk)",
                key.display()
            )),
            Member::Absent | Member::Bootstrap => None,
        };
        if let Some(why) = wiped {
            loss.hard_state_lost = true;
            loss.held_through = loss.held_through.max(acked);
            reasons.push(why);
            lost = true;
        } else if acked > 0 {
            loss.held_through = loss.held_through.max(acked);
            reasons.push(format!(
                "the log is gone but {} says index {acked} was durable",
                data_dir.join(ACKED_FILE).display()
            ));
            lost = true;
        }
    }
    if lost {
        loss.reason = reasons.join("; ");
        write_durably(&repair_path, &encode_loss(&loss))
            .map_err(io_error("write", &repair_path))?;
    }
    if member != Member::Started {
        let path = data_dir.join(MEMBER_FILE);
        write_durably(&path, "started\n").map_err(io_error("write", &path))?;
    }
    Ok(lost.then_some(loss))
}

/// The core repaired the loss: forget it durably.
pub fn repaired(data_dir: &Path) -> Result<(), String> {
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

    #[test]
    fn the_repair_record_round_trips() {
        let loss = Loss {
            held_through: 42,
            hard_state_lost: true,
            reason: "a \"quoted\" reason".into(),
        };
        assert_eq!(decode_loss(&encode_loss(&loss)), Some(loss));
    }
}
