//! Snapshot files: chunked write, atomic install, chunked read, only the
//! latest kept, damage detected.

mod common;

use common::{block_on, flip_byte};
use ordo_storage::{LogId, SnapshotStore, StorageError};
use tempfile::TempDir;

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

async fn write(store: &mut SnapshotStore, last: LogId, bytes: &[u8], chunk: usize) {
    let mut writer = store.create(last).await.unwrap();
    for part in bytes.chunks(chunk) {
        writer.write_chunk(part).await.unwrap();
    }
    assert_eq!(writer.data_bytes(), bytes.len() as u64);
    let meta = store.install(writer).await.unwrap();
    assert_eq!(meta.last, last);
    assert_eq!(meta.data_bytes, bytes.len() as u64);
}

async fn read(store: &SnapshotStore, chunk: usize) -> Result<Vec<u8>, StorageError> {
    let mut reader = store.reader().await?.expect("a snapshot");
    let mut out = Vec::new();
    while let Some(part) = reader.next_chunk(chunk).await? {
        assert!(part.len() <= chunk);
        out.extend_from_slice(&part);
    }
    Ok(out)
}

#[test]
fn written_in_chunks_read_back_in_chunks() {
    let dir = TempDir::new().unwrap();
    let bytes = data(3 << 20, 7);
    block_on(async {
        let mut store = SnapshotStore::open(dir.path()).await.unwrap();
        assert!(store.latest().is_none());
        assert!(store.reader().await.unwrap().is_none());
        write(&mut store, LogId::new(3, 1_000), &bytes, 100_003).await;
        assert_eq!(read(&store, 65_536).await.unwrap(), bytes);
        let reader = store.reader().await.unwrap().unwrap();
        reader.verify().await.unwrap();
        assert_eq!(
            &reader.chunk_at(1_000, 10).await.unwrap()[..],
            &bytes[1_000..1_010]
        );
    });
    // Survives a reopen.
    block_on(async {
        let store = SnapshotStore::open(dir.path()).await.unwrap();
        assert_eq!(store.latest().unwrap().last, LogId::new(3, 1_000));
        assert_eq!(read(&store, 1 << 20).await.unwrap(), bytes);
    });
}

#[test]
fn an_unfinished_snapshot_never_replaces_the_installed_one() {
    let dir = TempDir::new().unwrap();
    let old = data(10_000, 1);
    block_on(async {
        let mut store = SnapshotStore::open(dir.path()).await.unwrap();
        write(&mut store, LogId::new(1, 10), &old, 4096).await;
        let mut writer = store.create(LogId::new(2, 20)).await.unwrap();
        writer.write_chunk(&data(5_000, 2)).await.unwrap();
        // The process dies before install.
        drop(writer);
    });
    block_on(async {
        let store = SnapshotStore::open(dir.path()).await.unwrap();
        assert_eq!(store.latest().unwrap().last, LogId::new(1, 10));
        assert_eq!(read(&store, 4096).await.unwrap(), old);
    });
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "leftover temporary files: {names:?}");
}

#[test]
fn installing_a_newer_snapshot_deletes_the_older() {
    let dir = TempDir::new().unwrap();
    block_on(async {
        let mut store = SnapshotStore::open(dir.path()).await.unwrap();
        write(&mut store, LogId::new(1, 10), &data(100, 1), 64).await;
        let newer = data(200, 2);
        write(&mut store, LogId::new(2, 30), &newer, 64).await;
        assert_eq!(read(&store, 64).await.unwrap(), newer);
    });
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn damaged_snapshots_are_detected() {
    let dir = TempDir::new().unwrap();
    block_on(async {
        let mut store = SnapshotStore::open(dir.path()).await.unwrap();
        write(&mut store, LogId::new(1, 10), &data(50_000, 3), 4096).await;
    });
    let file = std::fs::read_dir(dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    flip_byte(&file, 64 + 30_000);
    block_on(async {
        let store = SnapshotStore::open(dir.path()).await.unwrap();
        assert!(matches!(
            read(&store, 4096).await,
            Err(StorageError::Corrupt { .. })
        ));
        let reader = store.reader().await.unwrap().unwrap();
        assert!(matches!(
            reader.verify().await,
            Err(StorageError::Corrupt { .. })
        ));
    });
    flip_byte(&file, 20);
    let opened = block_on(SnapshotStore::open(dir.path()));
    assert!(matches!(opened, Err(StorageError::Corrupt { .. })));
}

/// A snapshot taken locally that finishes after a newer one (received from
/// the leader) was installed is discarded, and the newer one stays: seed
/// 711 of the runtime simulator lost the newer file to the older install.
#[test]
fn an_older_snapshot_finishing_late_is_discarded() {
    let dir = TempDir::new().unwrap();
    let older = data(10_000, 1);
    let newer = data(20_000, 2);
    block_on(async {
        let mut store = SnapshotStore::open(dir.path()).await.unwrap();
        let mut late = store.create(LogId::new(1, 80)).await.unwrap();
        late.write_chunk(&older).await.unwrap();
        write(&mut store, LogId::new(1, 82), &newer, 4_096).await;
        match store.install(late).await {
            Err(StorageError::SnapshotSuperseded {
                snapshot: 80,
                latest: 82,
            }) => {}
            other => panic!("expected SnapshotSuperseded, got {other:?}"),
        }
        assert_eq!(store.latest().unwrap().last, LogId::new(1, 82));
        assert_eq!(read(&store, 65_536).await.unwrap(), newer);
    });
    block_on(async {
        let store = SnapshotStore::open(dir.path()).await.unwrap();
        assert_eq!(store.latest().unwrap().last, LogId::new(1, 82));
        assert_eq!(read(&store, 65_536).await.unwrap(), newer);
    });
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}
