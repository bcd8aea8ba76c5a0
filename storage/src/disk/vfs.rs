//! The file system under the disk log, as a trait: glommio's io_uring
//! files in production ([`GlommioVfs`]), a simulated disk with a fault
//! model in tests ([`SimDisk`](super::SimDisk)).
//!
//! The disk log, its recovery scan and its hard-state file do every IO
//! through these traits, so that the simulator runs the same code the
//! node runs, over a disk that loses, tears, corrupts and misdirects
//! writes. Errors already carry the operation and the path.
//!
//! Futures are boxed: one allocation per IO, next to a write and an
//! fdatasync of tens of microseconds at least.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;

use glommio::io::DmaFile;

use crate::error::{Result, StorageError};

use super::io::{
    IO_ALIGN, align_up, fsync_file, glommio_error, open_dma_with, read_whole, std_error, sync_dir,
    write_aligned,
};

/// A directory entry whose name is not UTF-8. The log and the snapshot
/// store name every file they write in ASCII, so such a file is none of
/// theirs: listings return it apart, for a warning. Displays lossily.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.to_string_lossy())]
pub struct NotUtf8Name(pub std::ffi::OsString);

impl NotUtf8Name {
    /// `name` as a `String`, or as a `NotUtf8Name` if it is not UTF-8.
    pub fn check(name: std::ffi::OsString) -> std::result::Result<String, NotUtf8Name> {
        name.into_string().map_err(NotUtf8Name)
    }
}

/// A boxed future of the shard that runs it (not `Send`).
pub type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// One open file of a [`Vfs`]. Offsets and lengths of writes are multiples
/// of [`IO_ALIGN`](super::io::IO_ALIGN) after padding.
pub trait VfsFile {
    /// The path the file was opened at.
    fn path(&self) -> &Path;

    /// Writes `parts` back to back at `offset` (aligned), zero-padded to
    /// the next aligned size, as one write.
    fn write_at<'a>(&'a self, offset: u64, parts: &'a [&'a [u8]]) -> LocalFuture<'a, Result<()>>;

    /// Writes `data` at `offset` as it is (no alignment, no padding): files
    /// opened with [`Vfs::open_buffered`].
    fn write_bytes_at<'a>(&'a self, offset: u64, data: &'a [u8]) -> LocalFuture<'a, Result<()>>;

    /// Reads up to `len` bytes at `offset`: fewer at the end of the file.
    fn read_at(&self, offset: u64, len: usize) -> LocalFuture<'_, Result<Vec<u8>>>;

    /// Reads the first `len` bytes into `out` (cleared first), failing if
    /// the file is shorter.
    fn read_whole(&self, len: u64, out: Vec<u8>) -> LocalFuture<'_, Result<Vec<u8>>>;

    /// The file's size in bytes.
    fn size(&self) -> LocalFuture<'_, Result<u64>>;

    /// Makes the file's data (and the size needed to read it) durable.
    fn fdatasync(&self) -> LocalFuture<'_, Result<()>>;

    /// A full fsync, after hole punching (see [`fsync_file`]).
    fn fsync(&self) -> Result<()>;

    /// Allocates `len` bytes, growing the file to them.
    fn pre_allocate(&self, len: u64) -> LocalFuture<'_, Result<()>>;

    /// Punches a hole `[offset, offset + len)`: reads return zeros.
    fn deallocate(&self, offset: u64, len: u64) -> LocalFuture<'_, Result<()>>;
}

/// The file system operations of a log directory.
pub trait Vfs {
    /// Opens `path` for reads and writes, creating it if `create`;
    /// `flags` are extra `open(2)` flags such as `O_DSYNC`.
    fn open(
        &self,
        path: &Path,
        create: bool,
        flags: libc::c_int,
    ) -> LocalFuture<'_, Result<Rc<dyn VfsFile>>>;

    /// Opens `path` through the page cache (unaligned reads and writes:
    /// snapshots), creating it if `create`.
    fn open_buffered(&self, path: &Path, create: bool) -> LocalFuture<'_, Result<Rc<dyn VfsFile>>>;

    /// Creates `dir` and its parents.
    fn create_dir_all(&self, dir: &Path) -> Result<()>;

    /// The names of the entries of `dir`; a name that is not UTF-8 comes
    /// back as `Err`, for a warning.
    fn read_dir(&self, dir: &Path) -> Result<Vec<std::result::Result<String, NotUtf8Name>>>;

    /// Whether `path` exists.
    fn exists(&self, path: &Path) -> bool;

    /// Renames `from` to `to` (durable after [`Vfs::sync_dir`]).
    fn rename(&self, from: &Path, to: &Path) -> Result<()>;

    /// Removes `path` (durable after [`Vfs::sync_dir`]); `Ok(false)` if it
    /// did not exist.
    fn remove_file(&self, path: &Path) -> Result<bool>;

    /// Makes the entries of `dir` durable.
    fn sync_dir<'a>(&'a self, dir: &'a Path) -> LocalFuture<'a, Result<()>>;

    /// Writes a new file of `len` zero bytes at `path` and syncs it, off
    /// the shard where the file system allows it (spare segments).
    fn write_zero_file(&self, path: PathBuf, len: u64) -> LocalFuture<'static, Result<()>>;

    /// Called before the log opens anything in `dir`.
    fn prepare_dir<'a>(&'a self, dir: &'a Path) -> LocalFuture<'a, Result<()>>;

    /// Starts reading the first `len` bytes of `file` into `out` now, for
    /// the caller to await later (recovery reads the next segment while it
    /// scans this one). The simulated disk reads when awaited: it needs no
    /// executor.
    fn read_ahead(
        &self,
        file: Rc<dyn VfsFile>,
        len: u64,
        out: Vec<u8>,
    ) -> LocalFuture<'static, Result<Vec<u8>>>;
}

/// The production file system: glommio's O_DIRECT files on io_uring.
#[derive(Clone, Copy, Debug, Default)]
pub struct GlommioVfs;

struct GlommioFile {
    file: Rc<DmaFile>,
    path: PathBuf,
}

impl GlommioFile {
    /// Writes zeros over `[offset, offset + len)`, both aligned, in 1 MiB
    /// writes.
    async fn write_zeros(&self, offset: u64, len: u64) -> Result<()> {
        let zeros = vec![0u8; ZERO_CHUNK_BYTES.min(len as usize)];
        let mut at = offset;
        while at < offset + len {
            let chunk = (offset + len - at).min(zeros.len() as u64) as usize;
            write_aligned(&self.file, &self.path, at, &[&zeros[..chunk]]).await?;
            at += chunk as u64;
        }
        Ok(())
    }
}

impl VfsFile for GlommioFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn write_at<'a>(&'a self, offset: u64, parts: &'a [&'a [u8]]) -> LocalFuture<'a, Result<()>> {
        Box::pin(write_aligned(&self.file, &self.path, offset, parts))
    }

    fn write_bytes_at<'a>(&'a self, offset: u64, data: &'a [u8]) -> LocalFuture<'a, Result<()>> {
        Box::pin(async move {
            if !offset.is_multiple_of(IO_ALIGN) {
                return Err(io_failure(
                    "write",
                    &self.path,
                    format!("unaligned write at {offset} to an O_DIRECT file"),
                ));
            }
            write_aligned(&self.file, &self.path, offset, &[data]).await
        })
    }

    fn read_at(&self, offset: u64, len: usize) -> LocalFuture<'_, Result<Vec<u8>>> {
        Box::pin(async move {
            let read = self
                .file
                .read_at(offset, len)
                .await
                .map_err(glommio_error("read", &self.path))?;
            Ok(read.to_vec())
        })
    }

    fn read_whole(&self, len: u64, out: Vec<u8>) -> LocalFuture<'_, Result<Vec<u8>>> {
        Box::pin(read_whole(&self.file, &self.path, len, out))
    }

    fn size(&self) -> LocalFuture<'_, Result<u64>> {
        Box::pin(async move {
            self.file
                .file_size()
                .await
                .map_err(glommio_error("stat", &self.path))
        })
    }

    fn fdatasync(&self) -> LocalFuture<'_, Result<()>> {
        Box::pin(async move {
            self.file
                .fdatasync()
                .await
                .map_err(glommio_error("fdatasync", &self.path))
        })
    }

    fn fsync(&self) -> Result<()> {
        fsync_file(&self.file, &self.path)
    }

    fn pre_allocate(&self, len: u64) -> LocalFuture<'_, Result<()>> {
        Box::pin(async move {
            self.file
                .pre_allocate(len, false)
                .await
                .map_err(glommio_error("fallocate", &self.path))
        })
    }

    fn deallocate(&self, offset: u64, len: u64) -> LocalFuture<'_, Result<()>> {
        Box::pin(async move {
            let Err(error) = self.file.deallocate(offset, len).await else {
                return Ok(());
            };
            let unsupported = match &error {
                glommio::GlommioError::IoError(source)
                | glommio::GlommioError::EnhancedIoError { source, .. } => {
                    source.raw_os_error() == Some(libc::EOPNOTSUPP)
                }
                _ => false,
            };
            if unsupported {
                // A file system without hole punching (FUSE, NFS, some
                // older ones): write the zeros instead. Rare paths only
                // (truncation, a torn tail), so the bytes do not matter.
                return self.write_zeros(offset, len).await;
            }
            Err(glommio_error("punch hole", &self.path)(error))
        })
    }
}

/// A glommio buffered file (through the page cache).
struct GlommioBufferedFile {
    file: glommio::io::BufferedFile,
    path: PathBuf,
}

impl VfsFile for GlommioBufferedFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn write_at<'a>(&'a self, offset: u64, parts: &'a [&'a [u8]]) -> LocalFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut bytes: Vec<u8> = parts.concat();
            bytes.resize(align_up(bytes.len() as u64) as usize, 0);
            self.write_bytes_at(offset, &bytes).await
        })
    }

    fn write_bytes_at<'a>(&'a self, offset: u64, data: &'a [u8]) -> LocalFuture<'a, Result<()>> {
        Box::pin(async move {
            let written = self
                .file
                .write_at(data.to_vec(), offset)
                .await
                .map_err(glommio_error("write", &self.path))?;
            if written != data.len() {
                return Err(io_failure(
                    "write",
                    &self.path,
                    format!("short write: {written} of {} bytes at {offset}", data.len()),
                ));
            }
            Ok(())
        })
    }

    fn read_at(&self, offset: u64, len: usize) -> LocalFuture<'_, Result<Vec<u8>>> {
        Box::pin(async move {
            let read = self
                .file
                .read_at(offset, len)
                .await
                .map_err(glommio_error("read", &self.path))?;
            Ok(read.to_vec())
        })
    }

    fn read_whole(&self, len: u64, mut out: Vec<u8>) -> LocalFuture<'_, Result<Vec<u8>>> {
        Box::pin(async move {
            let read = self.read_at(0, len as usize).await?;
            if (read.len() as u64) < len {
                return Err(io_failure("read", &self.path, "file shrank while reading"));
            }
            out.clear();
            out.extend_from_slice(&read);
            Ok(out)
        })
    }

    fn size(&self) -> LocalFuture<'_, Result<u64>> {
        Box::pin(async move {
            self.file
                .file_size()
                .await
                .map_err(glommio_error("stat", &self.path))
        })
    }

    fn fdatasync(&self) -> LocalFuture<'_, Result<()>> {
        Box::pin(async move {
            self.file
                .fdatasync()
                .await
                .map_err(glommio_error("fdatasync", &self.path))
        })
    }

    fn fsync(&self) -> Result<()> {
        use std::os::fd::AsRawFd;
        // The file owns the descriptor and keeps it open for the call.
        if let Err(errno) = nix::unistd::fsync(self.file.as_raw_fd()) {
            return Err(StorageError::Io {
                op: "fsync",
                path: self.path.clone(),
                source: std::io::Error::from(errno),
            });
        }
        Ok(())
    }

    fn pre_allocate(&self, _len: u64) -> LocalFuture<'_, Result<()>> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn deallocate(&self, offset: u64, len: u64) -> LocalFuture<'_, Result<()>> {
        Box::pin(async move {
            let zeros = vec![0u8; len as usize];
            self.write_bytes_at(offset, &zeros).await
        })
    }
}

impl Vfs for GlommioVfs {
    fn open_buffered(&self, path: &Path, create: bool) -> LocalFuture<'_, Result<Rc<dyn VfsFile>>> {
        let path = path.to_path_buf();
        Box::pin(async move {
            let file = glommio::io::OpenOptions::new()
                .read(true)
                .write(true)
                .create(create)
                .buffered_open(&path)
                .await
                .map_err(glommio_error("open", &path))?;
            Ok(Rc::new(GlommioBufferedFile { file, path }) as Rc<dyn VfsFile>)
        })
    }

    fn open(
        &self,
        path: &Path,
        create: bool,
        flags: libc::c_int,
    ) -> LocalFuture<'_, Result<Rc<dyn VfsFile>>> {
        let path = path.to_path_buf();
        Box::pin(async move {
            let file = open_dma_with(&path, create, flags).await?;
            Ok(Rc::new(GlommioFile {
                file: Rc::new(file),
                path,
            }) as Rc<dyn VfsFile>)
        })
    }

    fn create_dir_all(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(std_error("create directory", dir))
    }

    fn read_dir(&self, dir: &Path) -> Result<Vec<std::result::Result<String, NotUtf8Name>>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(std_error("read directory", dir))? {
            let entry = entry.map_err(std_error("read directory", dir))?;
            names.push(NotUtf8Name::check(entry.file_name()));
        }
        Ok(names)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        std::fs::rename(from, to).map_err(std_error("rename", from))
    }

    fn remove_file(&self, path: &Path) -> Result<bool> {
        match std::fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(error) => Err(std_error("remove", path)(error)),
        }
    }

    fn sync_dir<'a>(&'a self, dir: &'a Path) -> LocalFuture<'a, Result<()>> {
        Box::pin(sync_dir(dir))
    }

    fn write_zero_file(&self, path: PathBuf, len: u64) -> LocalFuture<'static, Result<()>> {
        Box::pin(async move {
            let at = path.clone();
            glommio::executor()
                .spawn_blocking(move || write_zeros(&path, len))
                .await
                .map_err(std_error("write zeros", &at))
        })
    }

    fn prepare_dir<'a>(&'a self, dir: &'a Path) -> LocalFuture<'a, Result<()>> {
        Box::pin(super::io::prime_iopoll_probe(dir))
    }

    fn read_ahead(
        &self,
        file: Rc<dyn VfsFile>,
        len: u64,
        out: Vec<u8>,
    ) -> LocalFuture<'static, Result<Vec<u8>>> {
        Box::pin(glommio::spawn_local(async move {
            file.read_whole(len, out).await
        }))
    }
}

/// Bytes per zero-filling write.
const ZERO_CHUNK_BYTES: usize = 1 << 20;

/// Writes `len` bytes of zeros to a new file at `path` with plain O_DIRECT
/// `pwrite`s (on glommio's blocking pool: bulk work off the latency path,
/// and the shard's file API panics if the directory vanishes mid-open, as
/// it does when a test drops a log and its directory meanwhile), then
/// syncs it.
fn write_zeros(path: &Path, len: u64) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)?;
    let zeros = crate::AlignedBuf::filled(ZERO_CHUNK_BYTES, 0);
    let mut left = align_up(len);
    while left > 0 {
        let chunk = (ZERO_CHUNK_BYTES as u64).min(left) as usize;
        file.write_all(&zeros.as_slice()[..chunk])?;
        left -= chunk as u64;
    }
    file.sync_data()
}

/// A [`StorageError::Io`] for `op` on `path` with `message`.
pub(crate) fn io_failure(
    op: &'static str,
    path: &Path,
    message: impl Into<String>,
) -> StorageError {
    StorageError::Io {
        op,
        path: path.to_path_buf(),
        source: std::io::Error::other(message.into()),
    }
}

const _: () = assert!(IO_ALIGN.is_power_of_two());
