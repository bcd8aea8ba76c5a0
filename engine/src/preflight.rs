//! What a node needs from the machine, checked before anything starts:
//! io_uring allowed, enough locked memory, a data directory no other
//! process holds and listen ports no other process holds. Each failure is
//! one line that names the fix (glommio itself would panic and blame the
//! kernel's age).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The oldest kernel glommio's io_uring use supports.
pub const KERNEL_MIN: (u32, u32) = (5, 8);

/// Locked memory glommio needs besides its I/O buffers (rings, probes).
const LOCKED_OVERHEAD_BYTES: u64 = 512 << 10;

/// Why the machine cannot run a node, with the fix.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// io_uring cannot be used.
    #[error("io_uring is not available: {reason}; {fix}")]
    IoUring {
        /// What the probe saw.
        reason: String,
        /// What to change.
        fix: &'static str,
    },
    /// The locked-memory limit is below what the executors lock.
    #[error(
        "the locked-memory limit (RLIMIT_MEMLOCK) is {limit} bytes, ordo needs {needed}: raise it with `ulimit -l {needed_kib}` (systemd: LimitMEMLOCK={needed}; docker: --ulimit memlock={needed}) or lower runtime.io_memory_bytes"
    )]
    Memlock {
        /// The soft limit now.
        limit: u64,
        /// What the node's executors lock.
        needed: u64,
        /// `needed` in KiB, for `ulimit -l`.
        needed_kib: u64,
    },
    /// Another process holds the data directory.
    #[error(
        "data directory {dir} is in use by process {pid}: stop it first (each node identity runs once)"
    )]
    DirInUse {
        /// The directory.
        dir: PathBuf,
        /// The holder's pid as it wrote it (`unknown` if unreadable).
        pid: String,
    },
    /// The lock file could not be made.
    #[error("cannot lock data directory {dir}: {source}")]
    Lock {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A port is taken.
    #[error("cannot listen for {what} on {addr}: {source}")]
    Port {
        /// The listener (`clients`, `peers`, `gossip`, `metrics`).
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why (address in use, not a local address, ...).
        source: std::io::Error,
    },
}

/// Checks that io_uring can be set up and that the locked-memory limit
/// covers `io_memory_bytes` for each of `executors`.
pub fn check_machine(executors: usize, io_memory_bytes: usize) -> Result<(), PreflightError> {
    check_io_uring()?;
    check_memlock(executors, io_memory_bytes)
}

/// Sets up (and closes) a one-entry io_uring: what every executor does.
pub fn check_io_uring() -> Result<(), PreflightError> {
    let Some(errno) = probe_io_uring() else {
        return Ok(());
    };
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(0);
    let (reason, fix) = match errno {
        libc::ENOSYS => (
            format!(
                "the kernel ({}) has no io_uring_setup",
                kernel_release().unwrap_or_else(|| "unknown".into())
            ),
            "ordo needs Linux 5.8 or later with CONFIG_IO_URING",
        ),
        libc::EPERM | libc::EACCES if disabled > 0 => (
            format!("kernel.io_uring_disabled is {disabled}"),
            "allow it with `sysctl -w kernel.io_uring_disabled=0` (or 1 and add the user to kernel.io_uring_group)",
        ),
        libc::EPERM | libc::EACCES => (
            "io_uring_setup is refused (EPERM): a seccomp filter blocks it".into(),
            "allow io_uring in the sandbox (docker/podman: --security-opt seccomp=unconfined or a profile that allows io_uring_setup, io_uring_enter and io_uring_register)",
        ),
        libc::ENOMEM => (
            "io_uring_setup failed with ENOMEM".into(),
            "raise the locked-memory limit (`ulimit -l`)",
        ),
        other => (
            format!(
                "io_uring_setup failed: {}",
                std::io::Error::from_raw_os_error(other)
            ),
            "ordo needs Linux 5.8 or later with io_uring allowed",
        ),
    };
    if let Some((major, minor)) = kernel_version()
        && (major, minor) < KERNEL_MIN
    {
        return Err(PreflightError::IoUring {
            reason: format!("the kernel is {major}.{minor}"),
            fix: "ordo needs Linux 5.8 or later",
        });
    }
    Err(PreflightError::IoUring { reason, fix })
}

/// `io_uring_setup(1)`: `None` when it worked, else the errno. Unsafe at
/// the edge: neither nix nor libc wraps io_uring_setup safely, and taking
/// the io-uring crate for one probe would be a second binding of the ring.
#[allow(unsafe_code)]
fn probe_io_uring() -> Option<i32> {
    // struct io_uring_params is 120 bytes; zeroed asks for defaults.
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup reads and writes `params` (120 bytes, the
    // kernel's struct io_uring_params) and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
    if fd < 0 {
        return Some(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    // SAFETY: `fd` was just returned to us, nothing else owns it, and the
    // OwnedFd closes it once when dropped here.
    drop(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) });
    None
}

fn kernel_release() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_string())
}

fn kernel_version() -> Option<(u32, u32)> {
    let release = kernel_release()?;
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The soft RLIMIT_MEMLOCK must cover what the executors lock.
pub fn check_memlock(executors: usize, io_memory_bytes: usize) -> Result<(), PreflightError> {
    let Ok((soft, _)) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_MEMLOCK)
    else {
        return Ok(());
    };
    if soft == nix::sys::resource::RLIM_INFINITY {
        return Ok(());
    }
    let per_executor = (io_memory_bytes as u64).max(64 << 10) + LOCKED_OVERHEAD_BYTES;
    let needed = per_executor.saturating_mul(executors.max(1) as u64);
    // glommio checks each executor against the limit on its own; the
    // limit is per process for mlock, so the sum is what must fit.
    if soft < needed {
        return Err(PreflightError::Memlock {
            limit: soft,
            needed,
            needed_kib: needed.div_ceil(1024),
        });
    }
    Ok(())
}

/// Holds a data directory for this process (`flock` on `DIR/LOCK`, which
/// names the holder's pid). Dropping it releases the directory.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Locks `dir` (creating it), or says which process holds it.
    pub fn acquire(dir: &Path) -> Result<DirLock, PreflightError> {
        let lock_error = |source| PreflightError::Lock {
            dir: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(lock_error)?;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("LOCK"))
            .map_err(lock_error)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text); // the pid is only for the message
                let pid = text.trim();
                return Err(PreflightError::DirInUse {
                    dir: dir.to_path_buf(),
                    pid: if pid.is_empty() {
                        "unknown".into()
                    } else {
                        pid.into()
                    },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(lock_error(e)),
        }
        file.set_len(0).map_err(lock_error)?;
        file.seek(SeekFrom::Start(0)).map_err(lock_error)?;
        writeln!(file, "{}", std::process::id()).map_err(lock_error)?;
        Ok(DirLock { _file: file })
    }
}

/// Checks that no other process listens on `addr`. The runtime's
/// listeners set `SO_REUSEPORT` (client shards share one port), which would
/// let a second process bind the same port beside the first and take half
/// its connections. A plain bind finds the port free; when it does not,
/// a connection to it tells a listener (an error) from connections a
/// stopped node left closing (a restart, which binds as before).
///
/// A node killed a moment ago may still hold its listener: the kernel
/// closes an io_uring's files in the background after the process exits.
/// So a listener counts only once it has answered for
/// [`PORT_HELD_FOR`].
pub fn check_port(what: &'static str, addr: SocketAddr) -> Result<(), PreflightError> {
    let target = if addr.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    };
    let started = std::time::Instant::now();
    loop {
        let source = match std::net::TcpListener::bind(addr) {
            Ok(_) => return Ok(()),
            Err(error) => error,
        };
        if source.kind() != std::io::ErrorKind::AddrInUse {
            return Err(PreflightError::Port { what, addr, source });
        }
        let probe = std::time::Duration::from_millis(200);
        if std::net::TcpStream::connect_timeout(&target, probe).is_err() {
            return Ok(());
        }
        if started.elapsed() >= PORT_HELD_FOR {
            return Err(PreflightError::Port { what, addr, source });
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// How long another listener must hold a port before it counts as taken.
pub const PORT_HELD_FOR: std::time::Duration = std::time::Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_directory_is_held_by_one_process_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let held = DirLock::acquire(dir.path()).unwrap();
        let error = DirLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(
            error.contains(&dir.path().display().to_string())
                && error.contains(&std::process::id().to_string()),
            "{error}"
        );
        drop(held);
        DirLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn a_taken_port_is_named() {
        let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = holder.local_addr().unwrap();
        let error = check_port("clients", addr).unwrap_err().to_string();
        assert!(error.contains(&addr.to_string()), "{error}");
        drop(holder);
        check_port("clients", addr).unwrap();
    }

    #[test]
    fn this_machine_runs_io_uring_and_a_low_memlock_is_named() {
        check_io_uring().unwrap();
        // A need beyond any soft limit but infinity.
        if let Err(error) = check_memlock(usize::MAX / (1 << 30), 1 << 30) {
            let text = error.to_string();
            assert!(text.contains("ulimit -l"), "{text}");
        }
    }
}
