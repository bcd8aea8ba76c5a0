//! The next segment, prepared in the background as a zero-filled file.
//!
//! Measured on this machine (docs/storage.md): an O_DIRECT append +
//! fdatasync costs 140–190 µs into blocks that were written before, against
//! 165–280 µs into fallocate'd (unwritten) extents, because the latter makes
//! every fdatasync commit an extent conversion to the journal. So while one
//! segment fills, a background task writes zeros over the next one and syncs
//! it; at roll time the log takes it if it is ready, and falls back to a
//! fallocate'd file if it is not.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::vfs::Vfs;

/// Name of a spare segment file in the log directory: `spare-<pid>-<n>.tmp`,
/// unique to one opened log, so that a preparation still running for a log
/// dropped in this process never touches the spare of the log reopened on
/// the same directory. Recovery deletes leftovers (`*.tmp`): a crash may
/// have interrupted a preparation.
fn spare_file_name() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("spare-{}-{n}.tmp", std::process::id())
}

enum SpareState {
    Empty,
    Preparing,
    Ready,
}

/// The spare segment slot. Lives on the log's shard.
pub struct Spares {
    vfs: Rc<dyn Vfs>,
    path: PathBuf,
    segment_bytes: u64,
    state: RefCell<SpareState>,
}

impl Spares {
    /// A slot for spares of `segment_bytes` in `dir`; none is prepared yet.
    pub fn new(vfs: Rc<dyn Vfs>, dir: &Path, segment_bytes: u64) -> Rc<Self> {
        Rc::new(Self {
            vfs,
            path: dir.join(spare_file_name()),
            segment_bytes,
            state: RefCell::new(SpareState::Empty),
        })
    }

    /// Takes the prepared spare, if one is ready: its path, for the caller
    /// to open and rename.
    pub fn take(&self) -> Option<PathBuf> {
        let mut state = self.state.borrow_mut();
        match *state {
            SpareState::Ready => {
                *state = SpareState::Empty;
                Some(self.path.clone())
            }
            _ => None,
        }
    }

    /// Prepares a spare now (a fresh log's first segment), unless one is
    /// ready or being prepared. Failures leave the slot empty: the caller
    /// falls back to fallocate.
    pub async fn prepare_now(&self) {
        if !matches!(*self.state.borrow(), SpareState::Empty) {
            return;
        }
        *self.state.borrow_mut() = SpareState::Preparing;
        let outcome = self
            .vfs
            .write_zero_file(self.path.clone(), self.segment_bytes)
            .await;
        *self.state.borrow_mut() = match outcome {
            Ok(()) => SpareState::Ready,
            Err(error) => {
                tracing::warn!(%error, "zero-filling the first segment failed; using fallocate");
                SpareState::Empty
            }
        };
    }

    /// Starts preparing a spare unless one is ready or being prepared.
    ///
    /// The zeros are written by [`Vfs::write_zero_file`]: on glommio's
    /// blocking pool for the real file system.
    pub fn prepare_in_background(self: &Rc<Self>) {
        {
            let mut state = self.state.borrow_mut();
            if !matches!(*state, SpareState::Empty) {
                return;
            }
            *state = SpareState::Preparing;
        }
        let weak = Rc::downgrade(self);
        let preparation = self
            .vfs
            .write_zero_file(self.path.clone(), self.segment_bytes);
        glommio::spawn_local(async move {
            let outcome = preparation.await;
            let Some(spares) = weak.upgrade() else { return };
            let mut state = spares.state.borrow_mut();
            match outcome {
                Ok(()) => *state = SpareState::Ready,
                Err(error) => {
                    tracing::warn!(%error, "preparing a zero-filled segment failed; next roll uses fallocate");
                    *state = SpareState::Empty;
                }
            }
        })
        .detach();
    }
}
