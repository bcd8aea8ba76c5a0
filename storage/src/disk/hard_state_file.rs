//! Term, vote and commit in a file that survives a crash at any instant,
//! and the loss or misdirection of any one of its writes.
//!
//! Two CRC-protected slots of one 4 KiB block each. A save writes the new
//! state, with a higher sequence number, to slot 0, fdatasyncs, then to
//! slot 1, fdatasyncs, then reads the file back and checks both. On load
//! the valid slot with the highest sequence wins. So:
//! - a crash while slot 0 is written leaves slot 1 with the previous
//!   state, which is correct because the interrupted save never returned;
//!   a crash while slot 1 is written leaves slot 0 with the new one;
//! - after a save returned, damage to either slot leaves the other with
//!   the newest state: a damaged slot never rolls term or vote back (with
//!   one alternating slot it would, silently: a vote given twice);
//! - a write that landed elsewhere is caught by the read-back, and the
//!   save fails instead of returning.
//!
//! Saves happen when term or vote change, so the second write and sync
//! cost nothing measurable. The file is created with both slots valid (and
//! renamed into place), so a file with no valid slot is damage, never
//! "nothing saved yet".
//!
//! ```text
//! slot (at 0 and 4096): 0 magic "ORDH" | 4 version | 8 seq u64 |
//!                       16 term u64 | 24 vote u64 | 32 commit u64 |
//!                       40 crc32 over [0, 40) | zeros to 4096
//! ```

use std::cell::Cell;
use std::path::Path;
use std::rc::Rc;

use crate::error::{Result, StorageError};
use crate::hard_state::HardState;

use super::io::IO_ALIGN;
use super::vfs::{Vfs, VfsFile};

/// Name of the hard-state file in the log directory.
pub const HARD_STATE_FILE_NAME: &str = "hard_state";
const MAGIC: u32 = u32::from_le_bytes(*b"ORDH");
const VERSION: u8 = 1;
const SLOT_BYTES: u64 = IO_ALIGN;
const USED_BYTES: usize = 44;

/// The encoded slot for `state` with sequence `seq`.
fn encode_slot(seq: u64, state: &HardState) -> Vec<u8> {
    let mut slot = vec![0u8; SLOT_BYTES as usize];
    slot[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    slot[4] = VERSION;
    slot[8..16].copy_from_slice(&seq.to_le_bytes());
    slot[16..40].copy_from_slice(&state.encode());
    let crc = crc32fast::hash(&slot[0..40]);
    slot[40..44].copy_from_slice(&crc.to_le_bytes());
    slot
}

/// What one slot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    /// Never written.
    Zero,
    /// Torn or corrupt.
    Invalid,
    /// A saved state.
    Valid { seq: u64, state: HardState },
}

fn parse_slot(bytes: &[u8]) -> Slot {
    if bytes.iter().all(|&b| b == 0) {
        return Slot::Zero;
    }
    let crc = u32::from_le_bytes(bytes[40..44].try_into().expect("4 bytes"));
    let valid = bytes[0..4] == MAGIC.to_le_bytes()
        && bytes[4] == VERSION
        && bytes[5..8] == [0, 0, 0]
        && crc == crc32fast::hash(&bytes[0..40])
        && bytes[USED_BYTES..].iter().all(|&b| b == 0);
    if !valid {
        return Slot::Invalid;
    }
    let state = HardState::decode(bytes[16..40].try_into().expect("24 bytes"));
    Slot::Valid {
        seq: u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")),
        state,
    }
}

/// The newest valid state in a hard-state file's bytes, with its sequence
/// number and the slots that were invalid; an error naming the offset when
/// no slot is valid.
pub fn parse_hard_state_file(bytes: &[u8]) -> Result<(u64, HardState, Vec<u64>), (u64, String)> {
    if bytes.len() != 2 * SLOT_BYTES as usize {
        return Err((
            0,
            format!(
                "hard-state file is {} bytes, expected {}",
                bytes.len(),
                2 * SLOT_BYTES
            ),
        ));
    }
    let slots = [
        parse_slot(&bytes[..SLOT_BYTES as usize]),
        parse_slot(&bytes[SLOT_BYTES as usize..]),
    ];
    let invalid: Vec<u64> = (0..2u64)
        .filter(|&i| slots[i as usize] == Slot::Invalid)
        .map(|i| i * SLOT_BYTES)
        .collect();
    let newest = slots
        .iter()
        .filter_map(|slot| match slot {
            Slot::Valid { seq, state } => Some((*seq, *state)),
            _ => None,
        })
        .max_by_key(|(seq, _)| *seq);
    match newest {
        Some((seq, state)) => Ok((seq, state, invalid)),
        None => Err((
            invalid.first().copied().unwrap_or(0),
            "no valid hard-state slot".to_string(),
        )),
    }
}

/// The hard-state file of one log. Lives on the log's shard.
pub struct HardStateFile {
    file: Rc<dyn VfsFile>,
    /// Sequence number of the newest saved slot.
    seq: Cell<u64>,
}

impl HardStateFile {
    /// Opens the file in `dir`, creating it with the default state if it
    /// does not exist, and returns it with the newest saved state.
    pub async fn open(vfs: &dyn Vfs, dir: &Path) -> Result<(Self, HardState)> {
        let path = dir.join(HARD_STATE_FILE_NAME);
        if !vfs.exists(&path) {
            let tmp = dir.join(format!("{HARD_STATE_FILE_NAME}.tmp"));
            let file = vfs.open(&tmp, true, 0).await?;
            let initial = encode_slot(0, &HardState::default());
            file.write_at(0, &[&initial, &initial]).await?;
            file.fdatasync().await?;
            drop(file);
            vfs.rename(&tmp, &path)?;
            vfs.sync_dir(dir).await?;
        }
        let file = vfs.open(&path, false, 0).await?;
        let len = file.size().await?;
        let corrupt = |offset: u64, reason: String| StorageError::Corrupt {
            file: path.clone(),
            offset,
            reason,
        };
        if len != 2 * SLOT_BYTES {
            return Err(corrupt(
                0,
                format!(
                    "hard-state file is {len} bytes, expected {}",
                    2 * SLOT_BYTES
                ),
            ));
        }
        let bytes = file.read_at(0, (2 * SLOT_BYTES) as usize).await?;
        let (seq, state, invalid) =
            parse_hard_state_file(&bytes).map_err(|(offset, reason)| corrupt(offset, reason))?;
        for offset in invalid {
            tracing::warn!(
                file = %path.display(),
                offset,
                "ignoring an invalid hard-state slot (a save torn by a crash, or corruption); \
                 using the other slot"
            );
        }
        Ok((
            Self {
                file,
                seq: Cell::new(seq),
            },
            state,
        ))
    }

    /// Durably replaces the saved state: returns once both slots hold it
    /// on disk. Callers serialize saves (the log holds a lock around it).
    pub async fn save(&self, state: &HardState) -> Result<()> {
        let seq = self.seq.get() + 1;
        let slot = encode_slot(seq, state);
        for offset in [0, SLOT_BYTES] {
            self.file.write_at(offset, &[&slot]).await?;
            self.file.fdatasync().await?;
        }
        let back = self.file.read_at(0, (2 * SLOT_BYTES) as usize).await?;
        for offset in [0, SLOT_BYTES] {
            let at = offset as usize;
            if back.get(at..at + SLOT_BYTES as usize) != Some(&slot[..]) {
                return Err(StorageError::Corrupt {
                    file: self.file.path().to_path_buf(),
                    offset,
                    reason: format!(
                        "hard-state slot does not hold the save just written (seq {seq}): \
                         the write was lost or landed elsewhere"
                    ),
                });
            }
        }
        self.seq.set(seq);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(slots: [Option<(u64, HardState)>; 2]) -> Vec<u8> {
        slots
            .iter()
            .flat_map(|slot| match slot {
                Some((seq, state)) => encode_slot(*seq, state),
                None => vec![0; SLOT_BYTES as usize],
            })
            .collect()
    }

    #[test]
    fn newest_valid_slot_wins_and_a_torn_slot_falls_back() {
        let old = HardState {
            term: 3,
            vote: 1,
            commit: 5,
        };
        let new = HardState {
            term: 4,
            vote: 2,
            commit: 6,
        };
        let bytes = file_with([Some((2, new)), Some((1, old))]);
        assert_eq!(parse_hard_state_file(&bytes).unwrap(), (2, new, vec![]));
        let mut torn = bytes.clone();
        torn[20] ^= 0xff;
        assert_eq!(parse_hard_state_file(&torn).unwrap(), (1, old, vec![0]));
    }

    #[test]
    fn no_valid_slot_is_an_error_not_a_default() {
        let mut bytes = file_with([Some((0, HardState::default())), None]);
        bytes[3] ^= 1;
        assert_eq!(parse_hard_state_file(&bytes).unwrap_err().0, 0);
        assert!(parse_hard_state_file(&bytes[..100]).is_err());
        assert!(parse_hard_state_file(&vec![0; 8192]).is_err());
    }
}
