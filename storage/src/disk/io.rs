//! Small IO helpers shared by the disk log, the hard-state file and the
//! snapshot store: typed errors, aligned writes, whole-file reads and
//! directory syncs on glommio.

use std::path::Path;
use std::rc::Rc;

use futures_lite::StreamExt;
use glommio::GlommioError;
use glommio::io::{Directory, DmaFile, MergedBufferLimit, OpenOptions, ReadAmplificationLimit};

use crate::error::{Result, StorageError};

/// Alignment of every O_DIRECT write and of segment data: a multiple of the
/// logical block size of any device ordo supports (512 or 4096).
pub const IO_ALIGN: u64 = 4096;

/// Largest single read during recovery; several are in flight at once.
const READ_CHUNK_BYTES: usize = 1 << 20;

/// Maps a glommio error to [`StorageError::Io`] for `op` on `path`.
pub fn glommio_error<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(GlommioError<()>) -> StorageError + 'a {
    move |error| StorageError::Io {
        op,
        path: path.to_path_buf(),
        source: error.into(),
    }
}

/// Maps a std error to [`StorageError::Io`] for `op` on `path`.
pub fn std_error<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> StorageError + 'a {
    move |source| StorageError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Rounds `value` down to [`IO_ALIGN`].
pub fn align_down(value: u64) -> u64 {
    value / IO_ALIGN * IO_ALIGN
}

/// Rounds `value` up to [`IO_ALIGN`].
pub fn align_up(value: u64) -> u64 {
    value.div_ceil(IO_ALIGN) * IO_ALIGN
}

/// Opens `path` for O_DIRECT reads and writes, creating it if asked.
pub async fn open_dma(path: &Path, create: bool) -> Result<DmaFile> {
    open_dma_with(path, create, 0).await
}

/// [`open_dma`] with extra `open(2)` flags (such as `O_DSYNC`).
pub async fn open_dma_with(path: &Path, create: bool, flags: libc::c_int) -> Result<DmaFile> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .custom_flags(flags)
        .dma_open(path)
        .await
        .map_err(glommio_error("open", path))
}

/// Writes `parts` back to back at `offset` (aligned), zero-padded to the
/// next aligned size, with one O_DIRECT write.
pub async fn write_aligned(
    file: &DmaFile,
    path: &Path,
    offset: u64,
    parts: &[&[u8]],
) -> Result<()> {
    debug_assert_eq!(offset % IO_ALIGN, 0, "unaligned write at {offset}");
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let padded = align_up(len as u64) as usize;
    let mut buffer = file.alloc_dma_buffer(padded);
    let bytes = buffer.as_bytes_mut();
    let mut at = 0;
    for part in parts {
        bytes[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    bytes[at..].fill(0);
    let written = file
        .write_at(buffer, offset)
        .await
        .map_err(glommio_error("write", path))?;
    if written != padded {
        // O_DIRECT writes of aligned sizes are not short on local
        // filesystems except when the disk is full.
        return Err(StorageError::Io {
            op: "write",
            path: path.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                format!("short write: {written} of {padded} bytes at {offset}"),
            ),
        });
    }
    Ok(())
}

/// Reads `len` bytes from offset 0 of `file` with several large reads in
/// flight, into `out` (cleared first; passing back the previous buffer
/// saves faulting in fresh pages for every segment).
pub async fn read_whole(
    file: &Rc<DmaFile>,
    path: &Path,
    len: u64,
    mut out: Vec<u8>,
) -> Result<Vec<u8>> {
    out.clear();
    out.reserve(len as usize);
    let chunks = (0..len)
        .step_by(READ_CHUNK_BYTES)
        .map(|pos| (pos, (len - pos).min(READ_CHUNK_BYTES as u64) as usize));
    let mut reads = file.read_many(
        futures_lite::stream::iter(chunks),
        MergedBufferLimit::NoMerging,
        ReadAmplificationLimit::NoAmplification,
    );
    while let Some(read) = reads.next().await {
        let ((pos, size), bytes) = read.map_err(glommio_error("read", path))?;
        if pos != out.len() as u64 || bytes.len() != size {
            return Err(StorageError::Io {
                op: "read",
                path: path.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "file shrank while reading: {} of {size} bytes at {pos}",
                        bytes.len()
                    ),
                ),
            });
        }
        out.extend_from_slice(&bytes);
    }
    Ok(out)
}

/// Makes the entries of directory `dir` durable (after a create, rename or
/// unlink that must survive a crash).
pub async fn sync_dir(dir: &Path) -> Result<()> {
    let handle = Directory::open(dir)
        .await
        .map_err(glommio_error("open directory", dir))?;
    handle
        .sync()
        .await
        .map_err(glommio_error("fsync directory", dir))?;
    handle
        .close()
        .await
        .map_err(glommio_error("close directory", dir))
}

/// A full `fsync` (data and all metadata) of `file`. Used after punching
/// holes (truncation, torn-tail repair), where the block map changes and
/// fdatasync's guarantees about it are filesystem-specific. Blocking, but
/// only on those rare paths.
pub fn fsync_file(file: &DmaFile, path: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    // The `DmaFile` owns the descriptor and keeps it open for the call.
    if let Err(errno) = nix::unistd::fsync(file.as_raw_fd()) {
        return Err(StorageError::Io {
            op: "fsync",
            path: path.to_path_buf(),
            source: std::io::Error::from(errno),
        });
    }
    Ok(())
}

/// Makes glommio's per-device io_uring polling probe see real data.
///
/// glommio decides once per process and block device, at the first
/// `DmaFile` open, whether reads may use the IOPOLL ring, by reading the
/// first block of that file. On an empty file the read "succeeds" with zero
/// bytes, glommio enables IOPOLL, and every later O_DIRECT read on a device
/// without poll queues (such as this machine's virtio disk) fails with
/// EOPNOTSUPP. So before the log opens anything, it opens a file that has a
/// block of data. Cheap, and harmless once the probe is cached.
///
/// The probe's verdict is per thread and sticks: code that may open an
/// empty `DmaFile` on the same device and thread before the first
/// [`DiskLog::open`](super::DiskLog::open) must call this first.
pub async fn prime_iopoll_probe(dir: &Path) -> Result<()> {
    let path = dir.join("iopoll-probe.tmp");
    std::fs::write(&path, vec![0u8; IO_ALIGN as usize]).map_err(std_error("write", &path))?;
    let file = open_dma(&path, false).await?;
    file.close().await.map_err(glommio_error("close", &path))?;
    std::fs::remove_file(&path).map_err(std_error("remove", &path))
}
