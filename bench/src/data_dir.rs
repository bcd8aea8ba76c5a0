//! Where a run puts the nodes' data. Never on tmpfs unless asked: O_DIRECT
//! is silently off there and fdatasync returns at once, so a disk run
//! would measure memory and report it as the disk's latency.

use std::path::{Path, PathBuf};

use nix::sys::statfs::{TMPFS_MAGIC, statfs};

/// Why no data directory was chosen.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// `--data-dir` is on tmpfs and `--allow-tmpfs` was not given.
    #[error(
        "--data-dir {0} is on tmpfs, where O_DIRECT is off and fdatasync costs nothing: \
         choose a directory on a disk with --data-dir, or pass --allow-tmpfs to measure memory"
    )]
    Tmpfs(PathBuf),
    /// Every default place is on tmpfs.
    #[error(
        "no default data directory is on a disk ({0} are tmpfs): \
         choose one with --data-dir, or pass --allow-tmpfs"
    )]
    NoDisk(String),
    /// The file system of a path could not be read.
    #[error("--data-dir {path}: cannot tell its file system: {source}")]
    Statfs {
        /// The path asked about (its nearest existing ancestor was read).
        path: PathBuf,
        /// What `statfs` said.
        source: nix::Error,
    },
}

/// Whether `path` (or, if it does not exist yet, its nearest existing
/// ancestor, where it would be created) is on tmpfs.
pub fn is_tmpfs(path: &Path) -> Result<bool, DataDirError> {
    let existing = path
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("."));
    let stat = statfs(existing).map_err(|source| DataDirError::Statfs {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(stat.filesystem_type() == TMPFS_MAGIC)
}

/// The places tried, in order, when no `--data-dir` is given: the system's
/// temporary directory, `/var/tmp` (a disk on most systems whose `/tmp` is
/// tmpfs), then `target/ordo-bench` under the current directory.
pub fn default_candidates() -> Vec<PathBuf> {
    vec![
        std::env::temp_dir(),
        PathBuf::from("/var/tmp"),
        PathBuf::from("target/ordo-bench"),
    ]
}

/// A chosen parent directory for the runs' data, and what to tell the
/// user about the choice.
#[derive(Debug, PartialEq, Eq)]
pub struct Chosen {
    /// Where the runs' temporary directories go.
    pub dir: PathBuf,
    /// Set when a default on tmpfs was passed over.
    pub warning: Option<String>,
}

/// Chooses where the runs' data goes. `requested` (`--data-dir`) is used as
/// given unless it is on tmpfs, which is refused unless `allow_tmpfs`.
/// Without it, the first of `candidates` that is not on tmpfs (any of
/// them, the first, with `allow_tmpfs`).
pub fn choose(
    requested: Option<&Path>,
    allow_tmpfs: bool,
    candidates: &[PathBuf],
) -> Result<Chosen, DataDirError> {
    if let Some(dir) = requested {
        if !allow_tmpfs && is_tmpfs(dir)? {
            return Err(DataDirError::Tmpfs(dir.to_path_buf()));
        }
        return Ok(Chosen {
            dir: dir.to_path_buf(),
            warning: None,
        });
    }
    let mut passed_over = Vec::new();
    for candidate in candidates {
        if allow_tmpfs || !is_tmpfs(candidate)? {
            let warning = (!passed_over.is_empty()).then(|| {
                format!(
                    "{} is tmpfs (O_DIRECT is off there): the nodes' data goes under {} \
                     (choose with --data-dir)",
                    passed_over.join(", "),
                    candidate.display()
                )
            });
            return Ok(Chosen {
                dir: candidate.clone(),
                warning,
            });
        }
        passed_over.push(candidate.display().to_string());
    }
    Err(DataDirError::NoDisk(passed_over.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mount points of one file system type, from /proc/mounts (an
    /// account of the file systems independent of statfs).
    fn mounts_of(fs_type: &str) -> Vec<PathBuf> {
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        mounts
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                (fields.len() > 2 && fields[2] == fs_type && !fields[1].contains('\\'))
                    .then(|| PathBuf::from(fields[1]))
            })
            .collect()
    }

    /// A tmpfs mount point to test with, if this machine has one.
    fn a_tmpfs() -> Option<PathBuf> {
        let tmpfs = mounts_of("tmpfs").into_iter().next();
        if tmpfs.is_none() {
            eprintln!("no tmpfs mounted here: the tmpfs cases are skipped");
        }
        tmpfs
    }

    #[test]
    fn tmpfs_is_told_from_other_file_systems() {
        if let Some(tmpfs) = a_tmpfs() {
            assert!(is_tmpfs(&tmpfs).unwrap(), "{}", tmpfs.display());
            // A directory not created yet is judged by where it would be.
            assert!(is_tmpfs(&tmpfs.join("not/created/yet")).unwrap());
        }
        assert!(!is_tmpfs(Path::new("/proc")).unwrap());
        let disk = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let disk_is_tmpfs = mounts_of("tmpfs")
            .iter()
            .any(|mount| disk.path().starts_with(mount));
        assert_eq!(is_tmpfs(disk.path()).unwrap(), disk_is_tmpfs);
    }

    #[test]
    fn an_explicit_tmpfs_dir_is_refused_unless_allowed() {
        let Some(tmpfs) = a_tmpfs() else { return };
        let error = choose(Some(&tmpfs), false, &[]).unwrap_err().to_string();
        assert!(error.contains(&tmpfs.display().to_string()), "{error}");
        assert!(error.contains("--data-dir"), "{error}");
        assert!(error.contains("--allow-tmpfs"), "{error}");
        let chosen = choose(Some(&tmpfs), true, &[]).unwrap();
        assert_eq!(chosen.dir, tmpfs);
    }

    #[test]
    fn a_tmpfs_default_is_passed_over_with_a_warning() {
        let Some(tmpfs) = a_tmpfs() else { return };
        let not_tmpfs = Path::new("/proc").to_path_buf();
        let chosen = choose(None, false, &[tmpfs.clone(), not_tmpfs.clone()]).unwrap();
        assert_eq!(chosen.dir, not_tmpfs);
        let warning = chosen.warning.unwrap();
        assert!(warning.contains(&tmpfs.display().to_string()), "{warning}");
        let error = choose(None, false, std::slice::from_ref(&tmpfs)).unwrap_err();
        assert!(matches!(error, DataDirError::NoDisk(_)), "{error}");
        let allowed = choose(None, true, std::slice::from_ref(&tmpfs)).unwrap();
        assert_eq!((allowed.dir, allowed.warning), (tmpfs, None));
    }
}
