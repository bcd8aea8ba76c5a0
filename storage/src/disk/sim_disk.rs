//! A simulated disk under the real disk log, with the faults a disk makes.
//!
//! [`SimDisk`] implements [`Vfs`]: files are byte vectors, and the disk
//! keeps, per file, what a crash would leave (the durable image) apart
//! from what reads see now. The fault model, after TigerBeetle's
//! `testing/storage.zig`:
//! - **lost writes**: a crash keeps each sector written since the file's
//!   last sync with probability `keep_ppm`, else the sector's durable
//!   bytes: writes are lost sector by sector, so a multi-sector write can
//!   tear;
//! - **lost names**: creates, renames and removes since the last directory
//!   sync are a journal; a crash keeps a prefix of it;
//! - **misdirected writes**: with probability `misdirect_ppm` a write lands
//!   some blocks away from where it was aimed, in the same file;
//! - **corruption** of synced sectors ([`SimDisk::corrupt_synced`]);
//! - **a wiped disk** ([`SimDisk::wipe`]).
//!
//! Every fault is recorded ([`SimDisk::faults`]) so that a checker knows
//! what the disk did. All randomness comes from the seed: a run is a pure
//! function of it. Directories are durable when created.
//!
//! Futures complete at once: the disk has no latency, only outcomes.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::error::{Result, StorageError};

use super::io::{IO_ALIGN, align_up};
use super::vfs::{LocalFuture, Vfs, VfsFile, io_failure};

/// Bytes per sector: the unit a crash keeps or loses.
pub const SECTOR_BYTES: u64 = 512;

/// How often the disk misbehaves, in parts per million.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimDiskFaults {
    /// Chance that a crash keeps one unsynced sector.
    pub keep_ppm: u32,
    /// Chance that a write lands in the wrong place.
    pub misdirect_ppm: u32,
}

impl Default for SimDiskFaults {
    fn default() -> Self {
        Self {
            keep_ppm: 500_000,
            misdirect_ppm: 0,
        }
    }
}

/// One thing the disk did wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SimFault {
    /// A crash: `lost` unsynced sectors reverted, `kept` kept; `names_lost`
    /// unsynced name operations undone.
    Crash {
        /// Sectors that reverted to their durable bytes.
        lost: u64,
        /// Unsynced sectors that survived.
        kept: u64,
        /// Name operations undone.
        names_lost: u64,
    },
    /// A write aimed at `aimed` landed at `landed`.
    Misdirect {
        /// The file.
        path: PathBuf,
        /// Where the write was aimed.
        aimed: u64,
        /// Where it landed.
        landed: u64,
    },
    /// A byte of a synced sector flipped.
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The byte's offset.
        offset: u64,
    },
    /// Every file is gone.
    Wipe,
}

#[derive(Default)]
struct Inode {
    /// What reads see.
    current: Vec<u8>,
    /// What a crash keeps for sure.
    durable: Vec<u8>,
    /// Sectors written or punched since the last sync.
    dirty: BTreeSet<u64>,
}

#[derive(Clone, Debug)]
enum NameOp {
    Link(PathBuf, u64),
    Unlink(PathBuf),
}

struct DiskState {
    rng: u64,
    faults: SimDiskFaults,
    /// Bumped by a crash or a wipe: handles opened before fail.
    generation: u64,
    next_inode: u64,
    inodes: BTreeMap<u64, Inode>,
    names: BTreeMap<PathBuf, u64>,
    durable_names: BTreeMap<PathBuf, u64>,
    journal: Vec<NameOp>,
    dirs: BTreeSet<PathBuf>,
    log: Vec<SimFault>,
    /// IO calls so far (writes, syncs, reads).
    ops: u64,
    /// How long a sync takes ([`SimDisk::set_sync_latency`]); `None`:
    /// no time at all.
    sync_latency: Option<SyncLatency>,
}

/// Makes the future a sync waits on before it completes (the simulator's
/// clock decides when that is).
pub type SyncLatency = Rc<dyn Fn() -> LocalFuture<'static, ()>>;

impl DiskState {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn chance(&mut self, ppm: u32) -> bool {
        self.next() % 1_000_000 < u64::from(ppm)
    }

    fn link(&mut self, path: PathBuf, inode: u64) {
        self.names.insert(path.clone(), inode);
        self.journal.push(NameOp::Link(path, inode));
    }

    fn unlink(&mut self, path: &Path) -> bool {
        if self.names.remove(path).is_some() {
            self.journal.push(NameOp::Unlink(path.to_path_buf()));
            true
        } else {
            false
        }
    }

    fn collect_garbage(&mut self, open: &BTreeSet<u64>) {
        let live: BTreeSet<u64> = self
            .names
            .values()
            .chain(self.durable_names.values())
            .chain(open.iter())
            .copied()
            .collect();
        self.inodes.retain(|inode, _| live.contains(inode));
    }
}

/// The simulated disk. Cheap to clone: clones share the disk.
#[derive(Clone)]
pub struct SimDisk {
    state: Rc<RefCell<DiskState>>,
}

impl SimDisk {
    /// An empty disk whose faults are drawn from `seed`.
    pub fn new(seed: u64, faults: SimDiskFaults) -> Self {
        Self {
            state: Rc::new(RefCell::new(DiskState {
                rng: seed ^ 0x5eed_d15c,
                faults,
                generation: 0,
                next_inode: 1,
                inodes: BTreeMap::new(),
                names: BTreeMap::new(),
                durable_names: BTreeMap::new(),
                journal: Vec::new(),
                dirs: BTreeSet::new(),
                log: Vec::new(),
                ops: 0,
                sync_latency: None,
            })),
        }
    }

    /// The fault rates, for a test to change between phases.
    pub fn set_faults(&self, faults: SimDiskFaults) {
        self.state.borrow_mut().faults = faults;
    }

    /// Syncs take time: each waits on a future from `latency` before it
    /// completes, and makes durable only what was written when it was
    /// issued (a write during the wait is not covered by it), as
    /// `fdatasync` does. A crash during the wait fails the sync.
    pub fn set_sync_latency(&self, latency: SyncLatency) {
        self.state.borrow_mut().sync_latency = Some(latency);
    }

    /// Every fault so far, oldest first.
    pub fn faults(&self) -> Vec<SimFault> {
        self.state.borrow().log.clone()
    }

    /// IO calls so far.
    pub fn ops(&self) -> u64 {
        self.state.borrow().ops
    }

    /// The paths of the files that exist now.
    pub fn files(&self) -> Vec<PathBuf> {
        self.state.borrow().names.keys().cloned().collect()
    }

    /// What reads of `path` see now, if it exists.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.state.borrow();
        let inode = state.names.get(path)?;
        Some(state.inodes[inode].current.clone())
    }

    /// Power loss: every open handle dies, every unsynced sector survives
    /// with probability `keep_ppm` (else it holds its durable bytes), each
    /// file keeps its synced size or its current one (whichever the crash
    /// happened to keep), and a prefix of the unsynced name operations
    /// survives.
    pub fn crash(&self) {
        let mut state = self.state.borrow_mut();
        state.generation += 1;
        state.ops += 1;
        let keep_ppm = state.faults.keep_ppm;
        let (mut lost, mut kept) = (0u64, 0u64);
        let inodes: Vec<u64> = state.inodes.keys().copied().collect();
        for id in inodes {
            let dirty: Vec<u64> = state.inodes[&id].dirty.iter().copied().collect();
            let mut keep = Vec::with_capacity(dirty.len());
            for _ in &dirty {
                keep.push(state.chance(keep_ppm));
            }
            let keep_size = state.chance(500_000);
            let inode = state.inodes.get_mut(&id).expect("listed");
            let mut image = inode.durable.clone();
            let size = if keep_size {
                inode.current.len()
            } else {
                inode.durable.len()
            };
            for (sector, keep) in dirty.iter().zip(keep) {
                let start = (sector * SECTOR_BYTES) as usize;
                if keep && start < inode.current.len() {
                    let end = (start + SECTOR_BYTES as usize).min(inode.current.len());
                    if image.len() < end {
                        image.resize(end, 0);
                    }
                    image[start..end].copy_from_slice(&inode.current[start..end]);
                    kept += 1;
                } else {
                    lost += 1;
                }
            }
            let size = size.max(image.len().min(inode.current.len()));
            image.resize(size, 0);
            inode.current = image.clone();
            inode.durable = image;
            inode.dirty.clear();
        }
        let journal = std::mem::take(&mut state.journal);
        let survive = if journal.is_empty() {
            0
        } else {
            (state.next() % (journal.len() as u64 + 1)) as usize
        };
        let mut names = state.durable_names.clone();
        for op in &journal[..survive] {
            match op {
                NameOp::Link(path, inode) => {
                    names.insert(path.clone(), *inode);
                }
                NameOp::Unlink(path) => {
                    names.remove(path);
                }
            }
        }
        state.names = names.clone();
        state.durable_names = names;
        state.collect_garbage(&BTreeSet::new());
        state.log.push(SimFault::Crash {
            lost,
            kept,
            names_lost: (journal.len() - survive) as u64,
        });
    }

    /// Flips one byte of a synced sector of a file chosen by the seed,
    /// among those whose path passes `filter`; returns where, or `None`
    /// if no such file holds data.
    pub fn corrupt_synced(&self, filter: impl Fn(&Path) -> bool) -> Option<(PathBuf, u64)> {
        let mut state = self.state.borrow_mut();
        let candidates: Vec<(PathBuf, u64)> = state
            .durable_names
            .iter()
            .filter(|(path, inode)| {
                filter(path)
                    && state
                        .inodes
                        .get(inode)
                        .is_some_and(|i| !i.durable.is_empty())
            })
            .map(|(path, inode)| (path.clone(), *inode))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let (path, inode) = candidates[(state.next() % candidates.len() as u64) as usize].clone();
        let len = state.inodes[&inode].durable.len() as u64;
        let offset = state.next() % len;
        let flip = (state.next() % 255 + 1) as u8;
        let file = state.inodes.get_mut(&inode).expect("listed");
        file.durable[offset as usize] ^= flip;
        if let Some(byte) = file.current.get_mut(offset as usize) {
            *byte ^= flip;
        }
        state.log.push(SimFault::Corrupt {
            path: path.clone(),
            offset,
        });
        Some((path, offset))
    }

    /// Flips one byte at `offset` of `path` on the media (durable and
    /// current), for a test that aims its damage.
    pub fn corrupt_at(&self, path: &Path, offset: u64) -> bool {
        let mut state = self.state.borrow_mut();
        let Some(&inode) = state.names.get(path) else {
            return false;
        };
        let file = state.inodes.get_mut(&inode).expect("named");
        let mut hit = false;
        for image in [&mut file.durable, &mut file.current] {
            if let Some(byte) = image.get_mut(offset as usize) {
                *byte ^= 0x5a;
                hit = true;
            }
        }
        if hit {
            state.log.push(SimFault::Corrupt {
                path: path.to_path_buf(),
                offset,
            });
        }
        hit
    }

    /// The disk is replaced: every file and name is gone (directories
    /// stay), every handle dies.
    pub fn wipe(&self) {
        let mut state = self.state.borrow_mut();
        state.generation += 1;
        state.inodes.clear();
        state.names.clear();
        state.durable_names.clear();
        state.journal.clear();
        state.log.push(SimFault::Wipe);
    }
}

struct SimFile {
    state: Rc<RefCell<DiskState>>,
    inode: u64,
    generation: u64,
    path: PathBuf,
    /// Opened with `O_DSYNC`: a write is durable when it completes.
    dsync: bool,
}

impl SimFile {
    fn with<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut DiskState, u64) -> Result<T>,
    ) -> Result<T> {
        let mut state = self.state.borrow_mut();
        state.ops += 1;
        if state.generation != self.generation || !state.inodes.contains_key(&self.inode) {
            return Err(io_failure(
                op,
                &self.path,
                "the simulated disk crashed under this handle",
            ));
        }
        f(&mut state, self.inode)
    }
}

impl SimFile {
    /// Writes `bytes` at `offset` (maybe misdirected), durable at once
    /// through an `O_DSYNC` handle.
    fn write(&self, offset: u64, bytes: Vec<u8>) -> Result<()> {
        let padded = bytes.len();
        self.with("write", |state, id| {
            let misdirect_ppm = state.faults.misdirect_ppm;
            let mut at = offset;
            if padded > 0 && state.chance(misdirect_ppm) {
                let blocks = state.next() % 4 + 1;
                let shift = blocks * IO_ALIGN;
                let size = state.inodes[&id].current.len() as u64;
                at = if state.next() % 2 == 0 || offset < shift {
                    offset + shift
                } else {
                    offset - shift
                };
                if at + padded as u64 > size.max(offset + padded as u64) {
                    at = offset.saturating_sub(shift);
                }
                if at != offset {
                    state.log.push(SimFault::Misdirect {
                        path: self.path.clone(),
                        aimed: offset,
                        landed: at,
                    });
                }
            }
            let inode = state.inodes.get_mut(&id).expect("checked");
            let end = at as usize + padded;
            if inode.current.len() < end {
                inode.current.resize(end, 0);
            }
            inode.current[at as usize..end].copy_from_slice(&bytes);
            if self.dsync {
                // Durable on completion: these sectors, and the size that
                // makes them readable.
                let size = inode.current.len();
                if inode.durable.len() < size {
                    inode.durable.resize(size, 0);
                }
                inode.durable[at as usize..end].copy_from_slice(&bytes);
                for sector in at / SECTOR_BYTES..(end as u64).div_ceil(SECTOR_BYTES) {
                    inode.dirty.remove(&sector);
                }
            } else {
                mark_dirty(inode, at, end as u64);
            }
            Ok(())
        })
    }
}

fn mark_dirty(inode: &mut Inode, start: u64, end: u64) {
    if end <= start {
        return;
    }
    for sector in start / SECTOR_BYTES..end.div_ceil(SECTOR_BYTES) {
        inode.dirty.insert(sector);
    }
}

impl VfsFile for SimFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn write_at<'a>(&'a self, offset: u64, parts: &'a [&'a [u8]]) -> LocalFuture<'a, Result<()>> {
        if !offset.is_multiple_of(IO_ALIGN) {
            let error = io_failure("write", &self.path, format!("unaligned write at {offset}"));
            return Box::pin(std::future::ready(Err(error)));
        }
        let mut bytes: Vec<u8> = parts.concat();
        bytes.resize(align_up(bytes.len() as u64) as usize, 0);
        Box::pin(std::future::ready(self.write(offset, bytes)))
    }

    fn write_bytes_at<'a>(&'a self, offset: u64, data: &'a [u8]) -> LocalFuture<'a, Result<()>> {
        Box::pin(std::future::ready(self.write(offset, data.to_vec())))
    }

    fn read_at(&self, offset: u64, len: usize) -> LocalFuture<'_, Result<Vec<u8>>> {
        let result = self.with("read", |state, id| {
            let current = &state.inodes[&id].current;
            let start = (offset as usize).min(current.len());
            let end = (start + len).min(current.len());
            Ok(current[start..end].to_vec())
        });
        Box::pin(std::future::ready(result))
    }

    fn read_whole(&self, len: u64, mut out: Vec<u8>) -> LocalFuture<'_, Result<Vec<u8>>> {
        let result = self.with("read", |state, id| {
            let current = &state.inodes[&id].current;
            if (current.len() as u64) < len {
                return Err(io_failure(
                    "read",
                    &self.path,
                    format!(
                        "file shrank while reading: {} of {len} bytes",
                        current.len()
                    ),
                ));
            }
            out.clear();
            out.extend_from_slice(&current[..len as usize]);
            Ok(out)
        });
        Box::pin(std::future::ready(result))
    }

    fn size(&self) -> LocalFuture<'_, Result<u64>> {
        let result = self.with("stat", |state, id| {
            Ok(state.inodes[&id].current.len() as u64)
        });
        Box::pin(std::future::ready(result))
    }

    fn fdatasync(&self) -> LocalFuture<'_, Result<()>> {
        let latency = self.state.borrow().sync_latency.clone();
        let Some(latency) = latency else {
            let result = self.with("fdatasync", |state, id| {
                let inode = state.inodes.get_mut(&id).expect("checked");
                inode.durable = inode.current.clone();
                inode.dirty.clear();
                Ok(())
            });
            return Box::pin(std::future::ready(result));
        };
        // What the sync covers: the file as it was when issued.
        let issued = self.with("fdatasync", |state, id| {
            let inode = &state.inodes[&id];
            Ok((inode.current.clone(), inode.dirty.clone()))
        });
        Box::pin(async move {
            let (image, dirty) = issued?;
            latency().await;
            self.with("fdatasync", |state, id| {
                let inode = state.inodes.get_mut(&id).expect("checked");
                if inode.durable.len() < image.len() {
                    inode.durable.resize(image.len(), 0);
                }
                // (The size grows to what was written when the sync was
                // issued; a shorter file since is the later op's to make
                // durable.)
                for sector in dirty {
                    let start = (sector * SECTOR_BYTES) as usize;
                    let end = (start + SECTOR_BYTES as usize).min(image.len());
                    // A sector made durable since (a later sync that
                    // finished first, an O_DSYNC write) holds newer bytes
                    // than this sync's: never roll it back.
                    if start >= end || !inode.dirty.contains(&sector) {
                        continue;
                    }
                    inode.durable[start..end].copy_from_slice(&image[start..end]);
                    if inode.current.get(start..end) == Some(&image[start..end]) {
                        inode.dirty.remove(&sector);
                    }
                }
                Ok(())
            })
        })
    }

    fn fsync(&self) -> Result<()> {
        self.with("fsync", |state, id| {
            let inode = state.inodes.get_mut(&id).expect("checked");
            inode.durable = inode.current.clone();
            inode.dirty.clear();
            Ok(())
        })
    }

    fn pre_allocate(&self, len: u64) -> LocalFuture<'_, Result<()>> {
        let result = self.with("fallocate", |state, id| {
            let inode = state.inodes.get_mut(&id).expect("checked");
            if (inode.current.len() as u64) < len {
                inode.current.resize(len as usize, 0);
            }
            Ok(())
        });
        Box::pin(std::future::ready(result))
    }

    fn deallocate(&self, offset: u64, len: u64) -> LocalFuture<'_, Result<()>> {
        let result = self.with("punch hole", |state, id| {
            let inode = state.inodes.get_mut(&id).expect("checked");
            let start = (offset as usize).min(inode.current.len());
            let end = ((offset + len) as usize).min(inode.current.len());
            inode.current[start..end].fill(0);
            mark_dirty(inode, start as u64, end as u64);
            Ok(())
        });
        Box::pin(std::future::ready(result))
    }
}

fn not_found(op: &'static str, path: &Path) -> StorageError {
    StorageError::Io {
        op,
        path: path.to_path_buf(),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    }
}

impl Vfs for SimDisk {
    fn open_buffered(&self, path: &Path, create: bool) -> LocalFuture<'_, Result<Rc<dyn VfsFile>>> {
        self.open(path, create, 0)
    }

    fn open(
        &self,
        path: &Path,
        create: bool,
        flags: libc::c_int,
    ) -> LocalFuture<'_, Result<Rc<dyn VfsFile>>> {
        let result = (|| {
            let mut state = self.state.borrow_mut();
            state.ops += 1;
            let parent = path.parent().unwrap_or(Path::new(""));
            if !state.dirs.contains(parent) {
                return Err(not_found("open", path));
            }
            let inode = match state.names.get(path) {
                Some(&inode) => inode,
                None if create => {
                    let inode = state.next_inode;
                    state.next_inode += 1;
                    state.inodes.insert(inode, Inode::default());
                    state.link(path.to_path_buf(), inode);
                    inode
                }
                None => return Err(not_found("open", path)),
            };
            Ok(Rc::new(SimFile {
                state: self.state.clone(),
                inode,
                generation: state.generation,
                path: path.to_path_buf(),
                dsync: flags & libc::O_DSYNC == libc::O_DSYNC,
            }) as Rc<dyn VfsFile>)
        })();
        Box::pin(std::future::ready(result))
    }

    fn create_dir_all(&self, dir: &Path) -> Result<()> {
        let mut state = self.state.borrow_mut();
        let mut at = Some(dir);
        while let Some(dir) = at {
            state.dirs.insert(dir.to_path_buf());
            at = dir.parent();
        }
        Ok(())
    }

    fn read_dir(
        &self,
        dir: &Path,
    ) -> Result<Vec<std::result::Result<String, super::vfs::NotUtf8Name>>> {
        let state = self.state.borrow();
        if !state.dirs.contains(dir) {
            return Err(not_found("read directory", dir));
        }
        Ok(state
            .names
            .keys()
            .filter(|path| path.parent() == Some(dir))
            .filter_map(|path| path.file_name())
            .map(|name| super::vfs::NotUtf8Name::check(name.to_os_string()))
            .collect())
    }

    fn exists(&self, path: &Path) -> bool {
        let state = self.state.borrow();
        state.names.contains_key(path) || state.dirs.contains(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        let mut state = self.state.borrow_mut();
        state.ops += 1;
        if !state.names.contains_key(from) && state.dirs.contains(from) {
            // A directory: every name under it moves (one journal entry
            // per name; a crash keeps a prefix of them, which a real
            // file system's single rename would not: harsher, not milder).
            if state.dirs.contains(to) || state.names.contains_key(to) {
                return Err(io_failure("rename", to, "the target exists"));
            }
            let moving: Vec<(PathBuf, u64)> = state
                .names
                .iter()
                .filter(|(path, _)| path.starts_with(from))
                .map(|(path, &inode)| (path.clone(), inode))
                .collect();
            for (path, inode) in moving {
                let rest = path.strip_prefix(from).expect("filtered").to_path_buf();
                state.unlink(&path);
                state.link(to.join(rest), inode);
            }
            let dirs: Vec<PathBuf> = state
                .dirs
                .iter()
                .filter(|dir| dir.starts_with(from))
                .cloned()
                .collect();
            for dir in dirs {
                let rest = dir.strip_prefix(from).expect("filtered").to_path_buf();
                state.dirs.remove(&dir);
                state.dirs.insert(to.join(rest));
            }
            return Ok(());
        }
        let Some(&inode) = state.names.get(from) else {
            return Err(not_found("rename", from));
        };
        state.unlink(to);
        state.unlink(from);
        state.link(to.to_path_buf(), inode);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> Result<bool> {
        let mut state = self.state.borrow_mut();
        state.ops += 1;
        Ok(state.unlink(path))
    }

    fn sync_dir<'a>(&'a self, _dir: &'a Path) -> LocalFuture<'a, Result<()>> {
        // A directory sync commits the journal: every name operation so
        // far, as ext4's does.
        let mut state = self.state.borrow_mut();
        state.ops += 1;
        state.durable_names = state.names.clone();
        state.journal.clear();
        Box::pin(std::future::ready(Ok(())))
    }

    fn write_zero_file(&self, path: PathBuf, len: u64) -> LocalFuture<'static, Result<()>> {
        let disk = self.clone();
        Box::pin(async move {
            disk.remove_file(&path)?;
            let file = disk.open(&path, true, 0).await?;
            file.pre_allocate(align_up(len)).await?;
            let zeros = vec![0u8; align_up(len) as usize];
            file.write_at(0, &[&zeros]).await?;
            file.fdatasync().await
        })
    }

    fn prepare_dir<'a>(&'a self, _dir: &'a Path) -> LocalFuture<'a, Result<()>> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn read_ahead(
        &self,
        file: Rc<dyn VfsFile>,
        len: u64,
        out: Vec<u8>,
    ) -> LocalFuture<'static, Result<Vec<u8>>> {
        Box::pin(async move { file.read_whole(len, out).await })
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::task::{Context, Poll, Waker};

    use super::*;

    /// A sync latency that ends when the test says so.
    fn gated() -> (SyncLatency, Rc<Cell<bool>>) {
        let open = Rc::new(Cell::new(false));
        let gate = open.clone();
        let latency: SyncLatency = Rc::new(move || {
            let gate = gate.clone();
            Box::pin(std::future::poll_fn(move |_| {
                if gate.get() {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            }))
        });
        (latency, open)
    }

    fn poll<T>(future: &mut LocalFuture<'_, T>) -> Poll<T> {
        future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
    }

    fn ready<T>(future: LocalFuture<'_, T>) -> T {
        let mut future = future;
        match poll(&mut future) {
            Poll::Ready(value) => value,
            Poll::Pending => panic!("not ready"),
        }
    }

    #[test]
    fn a_slow_sync_covers_what_was_written_when_it_was_issued_and_never_rolls_back() {
        let disk = SimDisk::new(
            1,
            SimDiskFaults {
                keep_ppm: 0,
                misdirect_ppm: 0,
            },
        );
        let dir = Path::new("/d");
        disk.create_dir_all(dir).unwrap();
        ready(disk.sync_dir(dir)).unwrap();
        let file = ready(disk.open(&dir.join("f"), true, 0)).unwrap();
        let (latency, open) = gated();
        disk.set_sync_latency(latency);
        let sector = |byte: u8| vec![byte; SECTOR_BYTES as usize];
        ready(file.write_bytes_at(0, &sector(1))).unwrap();
        let mut first = file.fdatasync();
        assert!(poll(&mut first).is_pending());
        // Written during the first sync, then synced by a second that
        // finishes first.
        ready(file.write_bytes_at(0, &sector(2))).unwrap();
        ready(file.write_bytes_at(512, &sector(3))).unwrap();
        let mut second = file.fdatasync();
        assert!(poll(&mut second).is_pending());
        open.set(true);
        assert!(matches!(poll(&mut second), Poll::Ready(Ok(()))));
        assert!(matches!(poll(&mut first), Poll::Ready(Ok(()))));
        // Not covered by any sync: lost by a crash that keeps nothing.
        ready(file.write_bytes_at(1024, &sector(4))).unwrap();
        disk.crash();
        let contents = disk.contents(&dir.join("f")).unwrap();
        assert_eq!(
            &contents[..512],
            &sector(2)[..],
            "the older sync rolled it back"
        );
        assert_eq!(&contents[512..1024], &sector(3)[..]);
        assert!(contents.len() == 1024 || contents[1024..].iter().all(|&b| b == 0));
    }

    #[test]
    fn a_crash_during_a_slow_sync_fails_it() {
        let disk = SimDisk::new(2, SimDiskFaults::default());
        let dir = Path::new("/d");
        disk.create_dir_all(dir).unwrap();
        let file = ready(disk.open(&dir.join("f"), true, 0)).unwrap();
        let (latency, open) = gated();
        disk.set_sync_latency(latency);
        ready(file.write_at(0, &[&[7u8; 512]])).unwrap();
        let mut sync = file.fdatasync();
        assert!(poll(&mut sync).is_pending());
        disk.crash();
        open.set(true);
        assert!(matches!(poll(&mut sync), Poll::Ready(Err(_))));
    }

    #[test]
    fn a_directory_renames_with_everything_in_it() {
        let disk = SimDisk::new(3, SimDiskFaults::default());
        let dir = Path::new("/data/log");
        disk.create_dir_all(dir).unwrap();
        let file = ready(disk.open(&dir.join("a.seg"), true, 0)).unwrap();
        ready(file.write_at(0, &[&[9u8; 512]])).unwrap();
        drop(file);
        disk.rename(dir, Path::new("/data/log.damaged")).unwrap();
        assert!(!disk.exists(dir));
        assert!(disk.exists(Path::new("/data/log.damaged/a.seg")));
        assert!(
            disk.rename(Path::new("/data/log.damaged"), Path::new("/data"))
                .is_err(),
            "onto an existing directory"
        );
    }
}
