//! The core's knobs, with their bounds checked at load.

use ordo_storage::frame::{BATCH_ENTRIES_MAX, FRAME_BYTES_MAX};

/// Everything the Raft core can be tuned with. Defaults are chosen by the
/// sweeps recorded in `docs/tuning.md`. In a node's TOML file these are the
/// `[raft]` table; a missing field takes its default, an unknown one is an
/// error.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoreConfig {
    /// Lower bound of the randomized election timeout (Raft §5.2).
    pub election_timeout_ms_min: u64,
    /// Upper bound (exclusive) of the randomized election timeout.
    pub election_timeout_ms_max: u64,
    /// How often a leader sends heartbeats.
    pub heartbeat_interval_ms: u64,
    /// How long a leader may hold back telling an idle follower a new
    /// commit index, waiting for an AppendEntries that would carry it
    /// anyway (the next proposal's). 0: at the end of the turn that
    /// advanced it. At most `heartbeat_interval_ms`. See docs/tuning.md.
    pub commit_notify_delay_us: u64,
    /// Ask "would you vote for me?" before disrupting a term (thesis §9.6).
    pub pre_vote: bool,
    /// A leader that has not heard from a quorum within an election timeout
    /// steps down, and followers ignore votes while they hear from a leader
    /// (thesis §6.2, §9.6).
    pub check_quorum: bool,
    /// Proposals that arrive in one runtime turn become batches of at most
    /// this many entries.
    pub batch_entries_max: u32,
    /// ... and at most this many payload bytes.
    pub batch_bytes_max: usize,
    /// Largest payload one proposal may carry.
    pub proposal_bytes_max: usize,
    /// Most AppendEntries messages in flight to one follower.
    pub inflight_messages_max: usize,
    /// Most batch bytes in flight to one follower.
    pub inflight_bytes_max: usize,
    /// Most batch bytes in one AppendEntries message.
    pub append_bytes_max: usize,
    /// Most bytes of entries a leader holds beyond its commit index; further
    /// proposals wait in the proposal queue.
    pub uncommitted_bytes_max: usize,
    /// Most proposals waiting at the leader for room in the log, or at a
    /// follower for a leader to forward to. Beyond it proposals fail `Busy`.
    pub proposal_queue_max: usize,
    /// Most proposals a follower has forwarded and not yet seen answered.
    pub forward_inflight_max: usize,
    /// Most linearizable reads waiting at one node.
    pub reads_pending_max: usize,
    /// Bytes of recent batches kept in memory to feed followers and apply.
    pub log_cache_bytes_max: usize,
    /// Take a snapshot once this many entries were applied since the last.
    pub snapshot_entries_threshold: u64,
    /// Compact the log to the snapshot before the latest one, not to the
    /// latest: the entries between stay, so that a follower or a reader a
    /// little behind is served entries instead of a snapshot (the `ordo`
    /// binary's retention, `storage.retain_bytes`). Costs the log one
    /// snapshot interval of entries more.
    pub compact_to_previous_snapshot: bool,
    /// Client sessions kept (least recently used expire first).
    pub sessions_max: usize,
    /// Answers kept per client session: a client keeps at most this many
    /// proposals in flight on one session.
    pub session_results_max: usize,
    /// A session without a proposal for this long (in log time) expires.
    pub session_ttl_ms: u64,
    /// Most entries a learner may lag the leader's log by and still be
    /// promoted to voter: a voter that far behind would hold back commits
    /// (and, lacking a quorum's entries, elections) while it catches up.
    pub learner_promote_lag_max: u64,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            election_timeout_ms_min: 300,
            election_timeout_ms_max: 600,
            heartbeat_interval_ms: 50,
            commit_notify_delay_us: 1_000,
            pre_vote: true,
            check_quorum: true,
            batch_entries_max: 4096,
            batch_bytes_max: 1 << 20,
            proposal_bytes_max: 1 << 20,
            inflight_messages_max: 64,
            inflight_bytes_max: 16 << 20,
            append_bytes_max: 1 << 20,
            uncommitted_bytes_max: 64 << 20,
            proposal_queue_max: 65_536,
            forward_inflight_max: 65_536,
            reads_pending_max: 65_536,
            log_cache_bytes_max: 64 << 20,
            snapshot_entries_threshold: 1_000_000,
            compact_to_previous_snapshot: false,
            sessions_max: 65_536,
            session_results_max: 128,
            session_ttl_ms: 3_600_000,
            learner_promote_lag_max: 65_536,
        }
    }
}

/// A knob out of its domain, named.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid config field {field}: {reason}")]
pub struct ConfigError {
    /// The field's name as in the TOML file.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl CoreConfig {
    /// Checks every field and the relations between them.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, reason: String| Err(ConfigError { field, reason });
        if self.heartbeat_interval_ms == 0 {
            return err("heartbeat_interval_ms", "must be at least 1".into());
        }
        if self.commit_notify_delay_us > self.heartbeat_interval_ms.saturating_mul(1_000) {
            return err(
                "commit_notify_delay_us",
                format!(
                    "{} must not exceed heartbeat_interval_ms ({}) in microseconds",
                    self.commit_notify_delay_us, self.heartbeat_interval_ms
                ),
            );
        }
        if self.election_timeout_ms_min < 2 * self.heartbeat_interval_ms {
            return err(
                "election_timeout_ms_min",
                format!(
                    "{} must be at least twice heartbeat_interval_ms ({})",
                    self.election_timeout_ms_min, self.heartbeat_interval_ms
                ),
            );
        }
        if self.election_timeout_ms_max <= self.election_timeout_ms_min {
            return err(
                "election_timeout_ms_max",
                format!(
                    "{} must exceed election_timeout_ms_min ({})",
                    self.election_timeout_ms_max, self.election_timeout_ms_min
                ),
            );
        }
        if self.batch_entries_max == 0 || self.batch_entries_max > BATCH_ENTRIES_MAX {
            return err(
                "batch_entries_max",
                format!("{} not in [1, {BATCH_ENTRIES_MAX}]", self.batch_entries_max),
            );
        }
        // A batch frame holds the payloads plus 24 bytes of archive per
        // entry and the 64-byte header; it must fit a frame.
        let frame_bytes = self.batch_bytes_max as u128
            + self.proposal_bytes_max as u128
            + 24 * self.batch_entries_max as u128
            + 128;
        if self.batch_bytes_max == 0 || frame_bytes > FRAME_BYTES_MAX as u128 {
            return err(
                "batch_bytes_max",
                format!(
                    "{} (with proposal_bytes_max {} and batch_entries_max {}) must keep a batch frame under {FRAME_BYTES_MAX} bytes",
                    self.batch_bytes_max, self.proposal_bytes_max, self.batch_entries_max
                ),
            );
        }
        if self.proposal_bytes_max == 0 {
            return err("proposal_bytes_max", "must be at least 1".into());
        }
        if self.inflight_messages_max == 0 {
            return err("inflight_messages_max", "must be at least 1".into());
        }
        if self.append_bytes_max == 0 || self.append_bytes_max > FRAME_BYTES_MAX {
            return err(
                "append_bytes_max",
                format!("{} not in [1, {FRAME_BYTES_MAX}]", self.append_bytes_max),
            );
        }
        if self.inflight_bytes_max < self.append_bytes_max {
            return err(
                "inflight_bytes_max",
                format!(
                    "{} must be at least append_bytes_max ({})",
                    self.inflight_bytes_max, self.append_bytes_max
                ),
            );
        }
        if self.uncommitted_bytes_max < self.batch_bytes_max {
            return err(
                "uncommitted_bytes_max",
                format!(
                    "{} must be at least batch_bytes_max ({})",
                    self.uncommitted_bytes_max, self.batch_bytes_max
                ),
            );
        }
        for (field, value) in [
            ("proposal_queue_max", self.proposal_queue_max),
            ("forward_inflight_max", self.forward_inflight_max),
            ("reads_pending_max", self.reads_pending_max),
            ("sessions_max", self.sessions_max),
            ("session_results_max", self.session_results_max),
        ] {
            if value == 0 {
                return err(field, "must be at least 1".into());
            }
        }
        if self.snapshot_entries_threshold == 0 {
            return err("snapshot_entries_threshold", "must be at least 1".into());
        }
        if self.session_ttl_ms == 0 {
            return err("session_ttl_ms", "must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        CoreConfig::default().validate().unwrap();
    }

    #[test]
    fn errors_name_the_field() {
        let config = CoreConfig {
            election_timeout_ms_max: 10,
            ..CoreConfig::default()
        };
        assert_eq!(
            config.validate().unwrap_err().field,
            "election_timeout_ms_max"
        );
        let config = CoreConfig {
            inflight_bytes_max: 1,
            ..CoreConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().field, "inflight_bytes_max");
        let config = CoreConfig {
            batch_bytes_max: usize::MAX,
            ..CoreConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().field, "batch_bytes_max");
        let config = CoreConfig {
            commit_notify_delay_us: 50_001,
            ..CoreConfig::default()
        };
        assert_eq!(
            config.validate().unwrap_err().field,
            "commit_notify_delay_us"
        );
        let config = CoreConfig {
            commit_notify_delay_us: 50_000,
            ..CoreConfig::default()
        };
        assert!(config.validate().is_ok(), "up to the heartbeat interval");
    }
}
