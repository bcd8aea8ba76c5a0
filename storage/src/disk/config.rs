//! The disk log's knobs and the fsync mode, with the relations between them
//! checked when the log opens.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::frame::FRAME_BYTES_MAX;

/// When `sync` calls reach the disk.
///
/// Every mode is group commit: appends issued while an fdatasync is in
/// flight share the next one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FsyncMode {
    /// A `sync` starts an fdatasync as soon as none is in flight.
    #[default]
    Always,
    /// A `sync` that starts an fdatasync first waits up to this long so that
    /// more appends share it. Trades latency for fewer, larger syncs.
    Group(Duration),
    /// No fdatasync at all: `sync` writes to the OS and reports everything
    /// durable. For benchmarks only; the log warns at open.
    None,
}

/// Why a string is not an [`FsyncMode`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid fsync mode {input:?}: expected `always`, `none` or `group:<delay>` \
     with a delay such as `200us`, `1ms` or `0.5ms`"
)]
pub struct FsyncModeParseError {
    /// The string that failed to parse.
    pub input: String,
}

impl FromStr for FsyncMode {
    type Err = FsyncModeParseError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let error = || FsyncModeParseError {
            input: input.to_string(),
        };
        match input.trim() {
            "always" => Ok(Self::Always),
            "none" => Ok(Self::None),
            other => {
                let delay = other.strip_prefix("group:").ok_or_else(error)?;
                parse_duration(delay).map(Self::Group).ok_or_else(error)
            }
        }
    }
}

impl fmt::Display for FsyncMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Always => f.write_str("always"),
            Self::None => f.write_str("none"),
            Self::Group(delay) => write!(f, "group:{}us", delay.as_micros()),
        }
    }
}

/// `"250us"`, `"200µs"`, `"2ms"`, `"0.5ms"`, `"1s"` (humantime's forms)
/// as a duration of at most a second; `None` otherwise.
fn parse_duration(text: &str) -> Option<Duration> {
    let delay = humantime::parse_duration(text.trim()).ok()?;
    // A group delay above a second is a typo, not a tuning choice.
    (delay <= Duration::from_secs(1)).then_some(delay)
}

/// Largest segment the format allows: batch offsets within a segment are
/// stored as `u32` in the in-memory index, and one frame may overshoot
/// `segment_bytes_max` by up to [`FRAME_BYTES_MAX`].
pub const SEGMENT_BYTES_LIMIT: u64 = 1 << 30;

/// Knobs of a [`DiskLog`](super::DiskLog).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskLogConfig {
    /// A segment is closed and a new one started once appending the next
    /// batch would take it past this size. Default 64 MiB.
    pub segment_bytes_max: u64,
    /// Most bytes written between two fdatasyncs: a `sync` with more pending
    /// writes it in several rounds. Recovery relies on it: only the last
    /// `write_bytes_max` of a log can be torn by a crash, so a bad frame
    /// followed by valid frames further than this is corruption, not a torn
    /// write. Default 1 MiB.
    pub write_bytes_max: u64,
    /// Bytes of recent batches kept in memory for reads by lagging
    /// followers (and for unflushed appends, which it never evicts).
    /// Default 32 MiB.
    pub cache_bytes_max: u64,
    /// Unflushed bytes above which `append` itself waits for a sync, so that
    /// memory stays bounded when nobody calls `sync`. Default 8 MiB.
    pub unflushed_bytes_max: u64,
    /// When `sync` reaches the disk.
    pub fsync_mode: FsyncMode,
    /// Whether to prepare the next segment in the background as a
    /// zero-filled file. Writing into blocks that were already written makes
    /// fdatasync 15–35% cheaper than writing into fallocate'd space on ext4
    /// (docs/storage.md); turn it off to save the extra write bandwidth.
    pub zero_fill_segments: bool,
    /// Whether segment files are opened with `O_DSYNC` so that each write
    /// is durable when it completes (a write-through round is one io_uring
    /// operation: the kernel writes, then flushes the device cache), instead
    /// of a write followed by an fdatasync (two operations, the second one
    /// handed to an io_uring worker thread). Same guarantee; measured
    /// faster on this machine's virtio disk (docs/storage.md), so on by
    /// default. Ignored in fsync mode `none`.
    pub write_through: bool,
}

impl Default for DiskLogConfig {
    fn default() -> Self {
        Self {
            segment_bytes_max: 64 << 20,
            write_bytes_max: 1 << 20,
            cache_bytes_max: 32 << 20,
            unflushed_bytes_max: 8 << 20,
            fsync_mode: FsyncMode::Always,
            zero_fill_segments: true,
            write_through: true,
        }
    }
}

/// How a flush round makes its writes durable, from the knobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Durability {
    /// Fsync mode `none`: never (benchmarks only).
    Never,
    /// Segment files opened with `O_DSYNC`: every write is durable when it
    /// completes.
    WriteThrough,
    /// Writes, then fdatasync.
    Fdatasync,
}

/// A knob out of its domain or in conflict with another.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid disk log config: {field} = {value}: {reason}")]
pub struct ConfigError {
    /// The knob's name.
    pub field: &'static str,
    /// Its value.
    pub value: u64,
    /// What it must satisfy.
    pub reason: &'static str,
}

impl DiskLogConfig {
    /// How a flush round makes its writes durable.
    pub(crate) fn durability(&self) -> Durability {
        match (self.fsync_mode, self.write_through) {
            (FsyncMode::None, _) => Durability::Never,
            (_, true) => Durability::WriteThrough,
            (_, false) => Durability::Fdatasync,
        }
    }

    /// Extra `open(2)` flags of segment files.
    pub(crate) fn segment_open_flags(&self) -> libc::c_int {
        match self.durability() {
            Durability::WriteThrough => libc::O_DSYNC,
            Durability::Never | Durability::Fdatasync => 0,
        }
    }

    /// Checks each knob and the relations between them.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |field, value, reason| {
            Err(ConfigError {
                field,
                value,
                reason,
            })
        };
        if self.segment_bytes_max < 64 << 10 || self.segment_bytes_max > SEGMENT_BYTES_LIMIT {
            return fail(
                "segment_bytes_max",
                self.segment_bytes_max,
                "must lie in [64 KiB, 1 GiB]",
            );
        }
        if !self.segment_bytes_max.is_multiple_of(4096) {
            return fail(
                "segment_bytes_max",
                self.segment_bytes_max,
                "must be a multiple of 4 KiB",
            );
        }
        if self.write_bytes_max < 4096 || self.write_bytes_max > FRAME_BYTES_MAX as u64 {
            return fail(
                "write_bytes_max",
                self.write_bytes_max,
                "must lie in [4 KiB, 64 MiB]",
            );
        }
        if self.unflushed_bytes_max < self.write_bytes_max {
            return fail(
                "unflushed_bytes_max",
                self.unflushed_bytes_max,
                "must be at least write_bytes_max",
            );
        }
        if self.cache_bytes_max < self.unflushed_bytes_max {
            return fail(
                "cache_bytes_max",
                self.cache_bytes_max,
                "must be at least unflushed_bytes_max (unflushed batches live in the cache)",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_modes_parse_and_display() {
        assert_eq!("always".parse(), Ok(FsyncMode::Always));
        assert_eq!("none".parse(), Ok(FsyncMode::None));
        assert_eq!(
            "group:250us".parse(),
            Ok(FsyncMode::Group(Duration::from_micros(250)))
        );
        assert_eq!(
            "group:2ms".parse(),
            Ok(FsyncMode::Group(Duration::from_millis(2)))
        );
        assert_eq!(
            "group:0.5ms".parse(),
            Ok(FsyncMode::Group(Duration::from_micros(500)))
        );
        assert_eq!(
            "group:200µs".parse(),
            Ok(FsyncMode::Group(Duration::from_micros(200)))
        );
        assert_eq!(
            "group:1s".parse(),
            Ok(FsyncMode::Group(Duration::from_secs(1)))
        );
        for mode in [
            FsyncMode::Always,
            FsyncMode::None,
            FsyncMode::Group(Duration::from_micros(300)),
        ] {
            assert_eq!(mode.to_string().parse(), Ok(mode));
        }
    }

    #[test]
    fn parse_errors_name_the_input() {
        for bad in [
            "",
            "sometimes",
            "group:",
            "group:5",
            "group:5h",
            "group:-1ms",
            "group:9s",
        ] {
            let error = bad.parse::<FsyncMode>().unwrap_err();
            assert_eq!(error.input, bad);
            assert!(error.to_string().contains(&format!("{bad:?}")));
        }
    }

    #[test]
    fn config_relations_are_checked() {
        assert!(DiskLogConfig::default().validate().is_ok());
        let small_cache = DiskLogConfig {
            cache_bytes_max: 1 << 20,
            ..DiskLogConfig::default()
        };
        assert_eq!(small_cache.validate().unwrap_err().field, "cache_bytes_max");
        let tiny_segment = DiskLogConfig {
            segment_bytes_max: 4096,
            ..DiskLogConfig::default()
        };
        assert_eq!(
            tiny_segment.validate().unwrap_err().field,
            "segment_bytes_max"
        );
    }
}
