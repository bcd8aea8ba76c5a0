//! Corruption tests: damaged files get the behaviour the recovery rules
//! promise: a torn tail is cut and the log goes on; damage to durable
//! bytes is cut too and reported (`DiskLog::recovery`) as durable, naming
//! the file, offset and the indexes lost, so the node repairs them from
//! the cluster; a missing segment is a `Corrupt` error; no read returns
//! bytes that failed their CRC.

mod common;

use std::path::Path;

use common::{block_on, fill, flip_byte, frames, read_all, segment_files, small_config};
use ordo_storage::disk::HARD_STATE_FILE_NAME;
use ordo_storage::{DiskLog, HardState, LogStore, StorageError};
use tempfile::TempDir;

/// A log of 1000 batches of 4 entries over four 64 KiB segments, synced.
fn build(dir: &Path) -> u64 {
    block_on(async {
        let log = DiskLog::open(dir, small_config()).await.expect("open");
        fill(&log, 1, 1000, 4).await;
        log.state().last.index
    })
}

fn open(dir: &Path) -> Result<DiskLog, StorageError> {
    block_on(DiskLog::open(dir, small_config()))
}

/// Opens the damaged log and checks that it was cut at `offset` of `file`
/// just before `from_index`, reported as durable damage that held entries
/// through `held_through`, and that the log reads and takes appends again.
fn expect_durable_cut(dir: &Path, file: &Path, offset: u64, from_index: u64, held_through: u64) {
    block_on(async {
        let log = DiskLog::open(dir, small_config())
            .await
            .expect("damage opens, cut");
        let cut = log.recovery().cut.clone().expect("a cut is reported");
        assert_eq!(cut.file, file, "{cut}");
        assert_eq!(cut.offset, offset, "{cut}");
        assert_eq!(cut.from_index, from_index, "{cut}");
        assert!(cut.durable, "{cut}");
        assert_eq!(cut.held_through, held_through, "{cut}");
        assert_eq!(log.state().last.index, from_index - 1);
        let entries = read_all(&log).await;
        assert_eq!(entries.len() as u64, from_index - 1);
        assert!(entries.iter().all(common::entry_is_genuine));
        fill(&log, 2, 3, 4).await;
        assert_eq!(log.state().last.index, from_index - 1 + 12);
    });
    let log = open(dir).expect("reopen");
    assert_eq!(log.state().last.index, from_index - 1 + 12);
    assert_eq!(log.recovery().cut, None, "the cut log is clean");
}

#[test]
fn flipped_byte_in_a_middle_segment_cuts_the_log_there_and_reports_durable_damage() {
    let dir = TempDir::new().unwrap();
    let last_index = build(dir.path());
    let segments = segment_files(dir.path());
    assert!(segments.len() >= 3, "test needs several segments");
    let victim = &segments[1];
    let (offset, header) = frames(victim)[10];
    flip_byte(victim, offset + 70);
    expect_durable_cut(dir.path(), victim, offset, header.first_index, last_index);
    // The segments past the cut were kept aside, out of the log.
    let aside = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .to_string_lossy()
                .ends_with(".damaged")
        })
        .count();
    assert_eq!(aside, segments.len() - 2);
}

#[test]
fn flipped_byte_in_the_last_segment_before_intact_frames_is_durable_damage() {
    let dir = TempDir::new().unwrap();
    let last_index = build(dir.path());
    let last = segment_files(dir.path()).pop().unwrap();
    let all = frames(&last);
    let (offset, damaged) = all[1];
    let (end, header) = *all.last().unwrap();
    assert!(end + u64::from(header.frame_len) - offset > small_config().write_bytes_max);
    flip_byte(&last, offset + 80);
    expect_durable_cut(dir.path(), &last, offset, damaged.first_index, last_index);
}

#[test]
fn flipped_byte_in_the_last_batch_is_a_torn_tail_that_is_cut() {
    let dir = TempDir::new().unwrap();
    let last_index = build(dir.path());
    let last = segment_files(dir.path()).pop().unwrap();
    let (offset, header) = *frames(&last).last().unwrap();
    flip_byte(&last, offset + u64::from(header.frame_len) - 3);
    block_on(async {
        let log = DiskLog::open(dir.path(), small_config())
            .await
            .expect("a torn tail opens");
        let cut = log.recovery().cut.clone().expect("the cut is reported");
        assert!(!cut.durable, "a torn tail is not known durable: {cut}");
        assert_eq!(cut.from_index, header.first_index);
        assert_eq!(log.state().last.index, header.first_index - 1);
        assert_eq!(log.state().durable_index, header.first_index - 1);
        let entries = read_all(&log).await;
        assert_eq!(entries.len() as u64, header.first_index - 1);
        assert!(entries.iter().all(common::entry_is_genuine));
        // The log continues where the torn batch was, and stays consistent.
        fill(&log, 2, 3, 4).await;
        assert_eq!(log.state().last.index, last_index + 8);
    });
    let log = open(dir.path()).expect("reopen");
    assert_eq!(log.state().last.index, last_index + 8);
}

#[test]
fn truncated_last_segment_is_cut_at_the_last_whole_batch() {
    let dir = TempDir::new().unwrap();
    build(dir.path());
    let last = segment_files(dir.path()).pop().unwrap();
    let (offset, header) = *frames(&last).last().unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
    file.set_len(offset + u64::from(header.frame_len) / 2)
        .unwrap();
    drop(file);
    let log = open(dir.path()).expect("a truncated tail opens");
    assert_eq!(log.state().last.index, header.first_index - 1);
}

#[test]
fn truncated_middle_segment_is_durable_damage() {
    let dir = TempDir::new().unwrap();
    let last_index = build(dir.path());
    let segments = segment_files(dir.path());
    let victim = &segments[1];
    let (offset, header) = frames(victim)[5];
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(victim)
        .unwrap();
    file.set_len(offset + 10).unwrap();
    drop(file);
    expect_durable_cut(dir.path(), victim, offset, header.first_index, last_index);
}

#[test]
fn deleted_middle_segment_refuses_to_open() {
    let dir = TempDir::new().unwrap();
    build(dir.path());
    let segments = segment_files(dir.path());
    std::fs::remove_file(&segments[1]).unwrap();
    let before = &segments[0];
    let (offset, header) = *frames(before).last().unwrap();
    match open(dir.path()) {
        Err(StorageError::Corrupt {
            file,
            offset: at,
            reason,
        }) => {
            assert_eq!(&file, before);
            assert_eq!(at, offset + u64::from(header.frame_len));
            assert!(reason.contains("missing"), "{reason}");
        }
        other => panic!("expected Corrupt, got {:?}", other.map(|l| l.state())),
    }
}

#[test]
fn damage_after_open_is_never_returned_by_a_read() {
    let dir = TempDir::new().unwrap();
    build(dir.path());
    let first = segment_files(dir.path())[0].clone();
    let (offset, header) = frames(&first)[3];
    block_on(async {
        let log = DiskLog::open(dir.path(), small_config())
            .await
            .expect("open");
        flip_byte(&first, offset + 100);
        match log.read(header.first_index, 1).await {
            Err(StorageError::Corrupt {
                file, offset: at, ..
            }) => {
                assert_eq!(file, first);
                assert_eq!(at, offset);
            }
            other => panic!("read of a damaged batch returned {other:?}"),
        }
        // Undamaged batches still read.
        assert!(log.read(1, 1).await.is_ok());
    });
}

#[test]
fn a_corrupted_hard_state_slot_never_rolls_back_and_both_corrupted_is_reported_lost() {
    let dir = TempDir::new().unwrap();
    let saved = [
        HardState {
            term: 5,
            vote: 2,
            commit: 9,
        },
        HardState {
            term: 6,
            vote: 3,
            commit: 9,
        },
    ];
    block_on(async {
        let log = DiskLog::open(dir.path(), small_config()).await.unwrap();
        for state in saved {
            log.save_hard_state(state).await.unwrap();
        }
    });
    let path = dir.path().join(HARD_STATE_FILE_NAME);
    // Every save writes both slots: damage to either one leaves the
    // newest state in the other (one alternating slot would roll term
    // and vote back to the previous save).
    flip_byte(&path, 20);
    assert_eq!(open(dir.path()).unwrap().hard_state(), saved[1]);
    flip_byte(&path, 20);
    flip_byte(&path, 4096 + 20);
    assert_eq!(open(dir.path()).unwrap().hard_state(), saved[1]);
    flip_byte(&path, 20);
    let log = open(dir.path()).expect("a lost hard state opens");
    assert_eq!(log.hard_state(), HardState::default());
    let lost = log.recovery().hard_state_lost.clone().expect("reported");
    assert!(lost.contains("hard_state"), "{lost}");
    assert!(dir.path().join("hard_state.damaged").exists());
    drop(log);
    // Missing beside segments is a loss too; a new directory is fresh.
    std::fs::remove_file(&path).unwrap();
    let log = open(dir.path()).unwrap();
    assert!(
        log.recovery().hard_state_lost.is_none(),
        "no segment: fresh"
    );
    assert!(log.recovery().fresh);
    drop(log);
    let other = TempDir::new().unwrap();
    build(other.path());
    std::fs::remove_file(other.path().join(HARD_STATE_FILE_NAME)).unwrap();
    let log = open(other.path()).unwrap();
    assert!(log.recovery().hard_state_lost.is_some());
    assert!(!log.recovery().fresh);
}

#[test]
fn truncation_is_durable_and_old_frames_never_follow_new_ones() {
    let dir = TempDir::new().unwrap();
    build(dir.path());
    block_on(async {
        let log = DiskLog::open(dir.path(), small_config()).await.unwrap();
        // Cut inside the last segment, in the middle of a batch (1189 is
        // the second entry of the batch at 1189..1192... or wherever it
        // falls), append a newer-term batch and crash without a sync.
        log.truncate_suffix(3_190).await.unwrap();
        assert_eq!(log.state().last.index, 3_189);
        let next = ordo_storage::conformance::batch(2, 3_190, 1);
        log.append(&[next]).await.unwrap();
        // Dropped without a sync: the crash.
    });
    block_on(async {
        let log = DiskLog::open(dir.path(), small_config()).await.unwrap();
        let state = log.state();
        // The cut was durable: nothing of the old tail after 3_189 came back.
        assert!(
            state.last.index == 3_189 || state.last == ordo_storage::LogId::new(2, 3_190),
            "{state:?}"
        );
        let entries = read_all(&log).await;
        assert!(entries.iter().all(common::entry_is_genuine));
        assert!(entries.iter().filter(|e| e.0 >= 3_190).all(|e| e.1 == 2));
    });
}

#[test]
fn a_segment_header_damaged_in_one_copy_still_opens_and_in_both_cuts_the_log_there() {
    let dir = TempDir::new().unwrap();
    let last_index = build(dir.path());
    let segments = segment_files(dir.path());
    assert!(segments.len() >= 3, "the log spans segments");
    let victim = &segments[1];
    let first_of_victim = frames(victim)[0].1.first_index;
    // One copy: nothing lost.
    flip_byte(victim, 8);
    {
        let log = open(dir.path()).expect("one good header copy opens");
        assert_eq!(log.recovery().cut, None);
        assert_eq!(log.state().last.index, last_index);
    }
    // Both copies: the log is cut where the segment starts, as durable
    // damage, and it and every later segment go aside.
    flip_byte(victim, 2048 + 8);
    let log = open(dir.path()).expect("a later segment's header damage opens, cut");
    let cut = log.recovery().cut.clone().expect("a cut is reported");
    assert_eq!(cut.from_index, first_of_victim, "{cut}");
    assert!(cut.durable, "{cut}");
    assert_eq!(cut.held_through, last_index, "{cut}");
    assert_eq!(&cut.file, victim, "{cut}");
    assert_eq!(log.state().last.index, first_of_victim - 1);
    drop(log);
    assert!(victim.with_extension("seg.damaged").exists());
    assert_eq!(segment_files(dir.path()).len(), 1);
    // The first segment's header, both copies: refused, naming the file
    // (the node moves such a log aside and repairs; engine/src/node/start.rs).
    flip_byte(&segments[0], 8);
    flip_byte(&segments[0], 2048 + 8);
    match open(dir.path()) {
        Err(StorageError::Corrupt { file, .. }) => assert_eq!(file, segments[0]),
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    }
}
