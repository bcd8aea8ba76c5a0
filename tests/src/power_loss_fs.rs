//! A FUSE file system that loses what a power loss loses.
//!
//! SIGKILL does not test durability: the kernel still completes every
//! write it accepted. [`PowerLossFs`] is a real file system (mounted with
//! FUSE, used by real `ordo` processes through the kernel, O_DIRECT and
//! io_uring included) that keeps two images of every file: what reads see
//! now, and what an `fsync`/`fdatasync` made durable. [`PowerLoss::cut`]
//! throws every file back to its durable image and every directory back to
//! the names its last `fsync` of that directory made durable: exactly what
//! a machine that lost power would find, with no write surviving by luck.
//! (Directories themselves are durable when created.)
//!
//! Every open is direct IO (no page cache) and no attribute is cached, so
//! what the kernel shows after a cut is what the file system holds.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use fuser::{
    FileAttr, FileType, Filesystem, MountOption, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
};

const ROOT: u64 = 1;
const TTL: Duration = Duration::ZERO;

#[derive(Default)]
struct Inode {
    dir: bool,
    /// What reads see.
    current: Vec<u8>,
    /// What a power loss keeps (files).
    durable: Vec<u8>,
    /// Entries now (directories).
    children: BTreeMap<OsString, u64>,
    /// Entries a power loss keeps (directories).
    durable_children: BTreeMap<OsString, u64>,
    mode: u16,
}

#[derive(Default)]
struct State {
    inodes: HashMap<u64, Inode>,
    next_inode: u64,
    /// Open handles opened with `O_DSYNC` or `O_SYNC` (the kernel does
    /// not pass the open flags with each direct write).
    sync_handles: std::collections::HashSet<u64>,
    next_handle: u64,
    /// Syncs and cuts, for the test's report.
    syncs: u64,
    cuts: u64,
}

impl State {
    fn new() -> Self {
        let mut state = State {
            next_inode: ROOT + 1,
            ..State::default()
        };
        state.inodes.insert(
            ROOT,
            Inode {
                dir: true,
                mode: 0o755,
                ..Inode::default()
            },
        );
        state
    }

    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let inode = self.inodes.get(&ino)?;
        let size = if inode.dir {
            4096
        } else {
            inode.current.len() as u64
        };
        Some(FileAttr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: SystemTime::UNIX_EPOCH,
            mtime: SystemTime::UNIX_EPOCH,
            ctime: SystemTime::UNIX_EPOCH,
            crtime: SystemTime::UNIX_EPOCH,
            kind: if inode.dir {
                FileType::Directory
            } else {
                FileType::RegularFile
            },
            perm: inode.mode,
            nlink: if inode.dir { 2 } else { 1 },
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    fn add(&mut self, parent: u64, name: &OsStr, dir: bool, mode: u32) -> Result<u64, i32> {
        let Some(parent_inode) = self.inodes.get(&parent) else {
            return Err(libc::ENOENT);
        };
        if !parent_inode.dir {
            return Err(libc::ENOTDIR);
        }
        if parent_inode.children.contains_key(name) {
            return Err(libc::EEXIST);
        }
        let ino = self.next_inode;
        self.next_inode += 1;
        self.inodes.insert(
            ino,
            Inode {
                dir,
                mode: (mode & 0o7777) as u16,
                ..Inode::default()
            },
        );
        let parent = self.inodes.get_mut(&parent).expect("checked");
        parent.children.insert(name.to_os_string(), ino);
        if dir {
            // Directories are durable when created.
            parent.durable_children.insert(name.to_os_string(), ino);
        }
        Ok(ino)
    }

    /// A new file handle; writes through it are durable at once if the
    /// open `flags` ask for synchronous writes.
    fn handle(&mut self, flags: i32) -> u64 {
        self.next_handle += 1;
        if flags & (libc::O_DSYNC | libc::O_SYNC) != 0 {
            self.sync_handles.insert(self.next_handle);
        }
        self.next_handle
    }

    /// Drops inodes no name reaches now or after a cut.
    fn collect(&mut self) {
        let mut live = vec![ROOT];
        let mut seen = std::collections::HashSet::new();
        while let Some(ino) = live.pop() {
            if !seen.insert(ino) {
                continue;
            }
            if let Some(inode) = self.inodes.get(&ino) {
                live.extend(inode.children.values());
                live.extend(inode.durable_children.values());
            }
        }
        self.inodes.retain(|ino, _| seen.contains(ino));
    }
}

/// The file system; mount it with [`PowerLossFs::mount`].
pub struct PowerLossFs {
    state: Arc<Mutex<State>>,
}

/// A mounted [`PowerLossFs`]: cut its power, and unmount it on drop.
pub struct PowerLoss {
    state: Arc<Mutex<State>>,
    session: Option<fuser::BackgroundSession>,
}

impl PowerLossFs {
    /// Mounts an empty file system at `mountpoint` (an existing empty
    /// directory); needs root (the pure-Rust mount calls `mount(2)`).
    pub fn mount(mountpoint: &Path) -> std::io::Result<PowerLoss> {
        let state = Arc::new(Mutex::new(State::new()));
        let fs = PowerLossFs {
            state: state.clone(),
        };
        let session = fuser::spawn_mount2(
            fs,
            mountpoint,
            &[
                MountOption::FSName("ordo-power-loss".into()),
                MountOption::AllowOther,
                MountOption::DefaultPermissions,
            ],
        )?;
        Ok(PowerLoss {
            state,
            session: Some(session),
        })
    }
}

impl PowerLoss {
    /// The power goes out: every file goes back to what its last sync made
    /// durable and every directory to the names its last sync kept. Stop
    /// every process using the file system first.
    pub fn cut(&self) {
        let mut state = self.state.lock().expect("fs state");
        for inode in state.inodes.values_mut() {
            inode.current = inode.durable.clone();
            inode.children = inode.durable_children.clone();
        }
        state.cuts += 1;
        state.collect();
    }

    /// `(fsyncs, fdatasyncs and directory fsyncs, and writes through
    /// O_DSYNC handles; cuts)` so far.
    pub fn counters(&self) -> (u64, u64) {
        let state = self.state.lock().expect("fs state");
        (state.syncs, state.cuts)
    }
}

impl Drop for PowerLoss {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            session.join();
        }
    }
}

impl Filesystem for PowerLossFs {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let state = self.state.lock().expect("fs state");
        let found = state
            .inodes
            .get(&parent)
            .and_then(|p| p.children.get(name))
            .and_then(|&ino| state.attr(ino));
        match found {
            Some(attr) => reply.entry(&TTL, &attr, 0),
            None => reply.error(libc::ENOENT),
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, reply: ReplyAttr) {
        match self.state.lock().expect("fs state").attr(ino) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(libc::ENOENT),
        }
    }

    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        let mut state = self.state.lock().expect("fs state");
        let Some(inode) = state.inodes.get_mut(&ino) else {
            return reply.error(libc::ENOENT);
        };
        if let Some(size) = size {
            inode.current.resize(size as usize, 0);
        }
        if let Some(mode) = mode {
            inode.mode = (mode & 0o7777) as u16;
        }
        let attr = state.attr(ino).expect("exists");
        reply.attr(&TTL, &attr);
    }

    fn mkdir(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let mut state = self.state.lock().expect("fs state");
        match state.add(parent, name, true, mode) {
            Ok(ino) => {
                let attr = state.attr(ino).expect("added");
                reply.entry(&TTL, &attr, 0)
            }
            Err(errno) => reply.error(errno),
        }
    }

    fn create(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut state = self.state.lock().expect("fs state");
        match state.add(parent, name, false, mode) {
            Ok(ino) => {
                let attr = state.attr(ino).expect("added");
                let fh = state.handle(flags);
                reply.created(&TTL, &attr, 0, fh, fuser::consts::FOPEN_DIRECT_IO)
            }
            Err(errno) => reply.error(errno),
        }
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        let mut state = self.state.lock().expect("fs state");
        let Some(inode) = state.inodes.get_mut(&ino) else {
            return reply.error(libc::ENOENT);
        };
        if flags & libc::O_TRUNC != 0 {
            inode.current.clear();
        }
        let fh = state.handle(flags);
        reply.opened(fh, fuser::consts::FOPEN_DIRECT_IO);
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        let state = self.state.lock().expect("fs state");
        let Some(inode) = state.inodes.get(&ino) else {
            return reply.error(libc::ENOENT);
        };
        let start = (offset.max(0) as usize).min(inode.current.len());
        let end = (start + size as usize).min(inode.current.len());
        reply.data(&inode.current[start..end]);
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        let mut state = self.state.lock().expect("fs state");
        let sync = state.sync_handles.contains(&fh) || flags & (libc::O_DSYNC | libc::O_SYNC) != 0;
        let Some(inode) = state.inodes.get_mut(&ino) else {
            return reply.error(libc::ENOENT);
        };
        let start = offset.max(0) as usize;
        let end = start + data.len();
        if inode.current.len() < end {
            inode.current.resize(end, 0);
        }
        inode.current[start..end].copy_from_slice(data);
        if sync {
            state.syncs += 1;
            let inode = state.inodes.get_mut(&ino).expect("checked");
            // Durable on completion, with the size that makes it readable.
            if inode.durable.len() < inode.current.len() {
                inode.durable.resize(inode.current.len(), 0);
            }
            inode.durable[start..end].copy_from_slice(data);
        }
        reply.written(data.len() as u32);
    }

    fn flush(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _owner: u64, reply: ReplyEmpty) {
        reply.ok();
    }

    fn release(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _flags: i32,
        _lock_owner: Option<u64>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.state
            .lock()
            .expect("fs state")
            .sync_handles
            .remove(&fh);
        reply.ok();
    }

    fn fsync(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut state = self.state.lock().expect("fs state");
        state.syncs += 1;
        match state.inodes.get_mut(&ino) {
            Some(inode) => {
                inode.durable = inode.current.clone();
                reply.ok()
            }
            None => reply.error(libc::ENOENT),
        }
    }

    fn fsyncdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut state = self.state.lock().expect("fs state");
        state.syncs += 1;
        match state.inodes.get_mut(&ino) {
            Some(inode) => {
                inode.durable_children = inode.children.clone();
                reply.ok()
            }
            None => reply.error(libc::ENOENT),
        }
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        let state = self.state.lock().expect("fs state");
        let Some(inode) = state.inodes.get(&ino) else {
            return reply.error(libc::ENOENT);
        };
        let mut entries: Vec<(u64, FileType, OsString)> = vec![
            (ino, FileType::Directory, ".".into()),
            (ino, FileType::Directory, "..".into()),
        ];
        for (name, &child) in &inode.children {
            let kind = if state.inodes.get(&child).is_some_and(|c| c.dir) {
                FileType::Directory
            } else {
                FileType::RegularFile
            };
            entries.push((child, kind, name.clone()));
        }
        for (at, (child, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(child, at as i64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let mut state = self.state.lock().expect("fs state");
        let removed = state
            .inodes
            .get_mut(&parent)
            .and_then(|p| p.children.remove(name));
        match removed {
            Some(_) => {
                state.collect();
                reply.ok()
            }
            None => reply.error(libc::ENOENT),
        }
    }

    fn rmdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let mut state = self.state.lock().expect("fs state");
        let Some(&child) = state.inodes.get(&parent).and_then(|p| p.children.get(name)) else {
            return reply.error(libc::ENOENT);
        };
        if state
            .inodes
            .get(&child)
            .is_some_and(|c| !c.children.is_empty())
        {
            return reply.error(libc::ENOTEMPTY);
        }
        let parent_inode = state.inodes.get_mut(&parent).expect("checked");
        parent_inode.children.remove(name);
        // Removing a directory is durable at once, as creating one is.
        parent_inode.durable_children.remove(name);
        state.collect();
        reply.ok();
    }

    fn rename(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        _flags: u32,
        reply: ReplyEmpty,
    ) {
        let mut state = self.state.lock().expect("fs state");
        let Some(child) = state
            .inodes
            .get_mut(&parent)
            .and_then(|p| p.children.remove(name))
        else {
            return reply.error(libc::ENOENT);
        };
        let is_dir = state.inodes.get(&child).is_some_and(|c| c.dir);
        if is_dir {
            state
                .inodes
                .get_mut(&parent)
                .expect("exists")
                .durable_children
                .remove(name);
        }
        match state.inodes.get_mut(&newparent) {
            Some(target) => {
                target.children.insert(newname.to_os_string(), child);
                if is_dir {
                    target
                        .durable_children
                        .insert(newname.to_os_string(), child);
                }
                state.collect();
                reply.ok()
            }
            None => reply.error(libc::ENOENT),
        }
    }

    fn fallocate(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        length: i64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let mut state = self.state.lock().expect("fs state");
        let Some(inode) = state.inodes.get_mut(&ino) else {
            return reply.error(libc::ENOENT);
        };
        let start = offset.max(0) as usize;
        let end = start + length.max(0) as usize;
        if mode & libc::FALLOC_FL_PUNCH_HOLE != 0 {
            let end = end.min(inode.current.len());
            if start < end {
                inode.current[start..end].fill(0);
            }
        } else if mode & libc::FALLOC_FL_KEEP_SIZE == 0 && inode.current.len() < end {
            inode.current.resize(end, 0);
        }
        reply.ok();
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: ReplyStatfs) {
        // 64 GiB in 4 KiB blocks, nearly all free.
        reply.statfs(1 << 24, 1 << 24, 1 << 24, 1 << 20, 1 << 20, 4096, 255, 4096);
    }

    fn access(&mut self, _req: &Request<'_>, _ino: u64, _mask: i32, reply: ReplyEmpty) {
        reply.ok();
    }
}
