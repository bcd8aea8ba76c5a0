//! Term, vote and commit in a file that survives a crash at any instant.
//!
//! Two CRC-protected slots of one 4 KiB block each, written alternately:
//! a save writes the slot the previous save did not, with a higher sequence
//! number, then fdatasyncs. A crash during the write can tear only that
//! slot; the other still holds the previous state, which is correct because
//! the interrupted save never returned. On load the valid slot with the
//! highest sequence wins. The file is created with a valid slot 0 (and
//! renamed into place), so a file with no valid slot is corruption, never
//! "nothing saved yet".
//!
//! ```text
//! slot (at 0 and 4096): 0 magic "ORDH" | 4 version | 8 seq u64 |
//!                       16 term u64 | 24 vote u64 | 32 commit u64 |
//!                       40 crc32 over [0, 40) | zeros to 4096
//! ```

use std::cell::Cell;
use std::path::{Path, PathBuf};

use glommio::io::DmaFile;

use crate::error::{Result, StorageError};
use crate::hard_state::HardState;

use super::io::{IO_ALIGN, glommio_error, open_dma, sync_dir, write_aligned};

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
    path: PathBuf,
    file: DmaFile,
    /// Sequence number of the newest saved slot.
    seq: Cell<u64>,
}

impl HardStateFile {
    /// Opens the file in `dir`, creating it with the default state if it
    /// does not exist, and returns it with the newest saved state.
    pub async fn open(dir: &Path) -> Result<(Self, HardState)> {
        let path = dir.join(HARD_STATE_FILE_NAME);
        if !path.exists() {
            let tmp = dir.join(format!("{HARD_STATE_FILE_NAME}.tmp"));
            let file = open_dma(&tmp, true).await?;
            let initial = encode_slot(0, &HardState::default());
            write_aligned(&file, &tmp, 0, &[&initial, &vec![0u8; SLOT_BYTES as usize]]).await?;
            file.fdatasync()
                .await
                .map_err(glommio_error("fdatasync", &tmp))?;
            file.close().await.map_err(glommio_error("close", &tmp))?;
            std::fs::rename(&tmp, &path).map_err(super::io::std_error("rename", &tmp))?;
            sync_dir(dir).await?;
        }
        let file = open_dma(&path, false).await?;
        let len = file
            .file_size()
            .await
            .map_err(glommio_error("stat", &path))?;
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
        let bytes = file
            .read_at_aligned(0, (2 * SLOT_BYTES) as usize)
            .await
            .map_err(glommio_error("read", &path))?;
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
                path,
                file,
                seq: Cell::new(seq),
            },
            state,
        ))
    }

    /// Durably replaces the saved state: returns once it is on disk.
    /// Callers serialize saves (the log holds a lock around it).
    pub async fn save(&self, state: &HardState) -> Result<()> {
        let seq = self.seq.get() + 1;
        let offset = (seq % 2) * SLOT_BYTES;
        write_aligned(&self.file, &self.path, offset, &[&encode_slot(seq, state)]).await?;
        self.file
            .fdatasync()
            .await
            .map_err(glommio_error("fdatasync", &self.path))?;
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
