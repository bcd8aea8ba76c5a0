//! The gossip core's knobs, with their bounds checked at load.

use crate::core::ConfigError;

/// Everything a gossip node (or a voter's gossip side) can be tuned with.
/// The defaults are those measured in `docs/gossip.md`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GossipConfig {
    /// SWIM: how often a member probes one random member.
    pub probe_period_ms: u64,
    /// SWIM: how long a direct probe waits before asking others to probe
    /// indirectly.
    pub probe_rtt_ms: u64,
    /// SWIM: how long a suspected member has to refute before it is
    /// declared down.
    pub suspect_to_down_ms: u64,
    /// SWIM: how often membership updates are also gossiped to a few
    /// members besides probes (spreads joins and failures faster).
    pub membership_gossip_interval_ms: u64,
    /// SWIM: largest membership packet.
    pub membership_packet_bytes_max: usize,
    /// While a node knows no other member, it announces itself to its
    /// seeds this often.
    pub announce_interval_ms: u64,
    /// A gossip node asks for neighbours while it has fewer than this.
    pub neighbors_min: usize,
    /// ... and accepts requests while it has fewer than this.
    pub neighbors_max: usize,
    /// A voter feeds this many gossip nodes: it pushes each message it
    /// publishes to one of them (the tree's entry; a second entry point
    /// would make a duplicate somewhere on the tree path between the two
    /// and prune a branch of the tree every time) and announces its commit
    /// watermark to all of them.
    pub voter_fanout: usize,
    /// Ids learned from a voter's announcement are repaired only after
    /// this much longer than `graft_timeout_ms`: a voter announces at the
    /// root, while the message still has the whole tree to travel.
    pub voter_announce_grace_ms: u64,
    /// Lazy announcements (IHAVE) to a peer are batched over this long.
    pub lazy_flush_interval_ms: u64,
    /// Every neighbour (and a voter's downstream peers) hears the sender's
    /// delivered watermark at least this often, even when idle: it is how
    /// a lost last message is noticed.
    pub status_interval_ms: u64,
    /// A message known to exist (announced, or a later id seen) but not
    /// received after this long is grafted from a peer that has it
    /// (Plumtree's IHAVE timer).
    pub graft_timeout_ms: u64,
    /// ... plus this much per hop the node is from the voters (the hop
    /// count of recent pushes), so that a node below a lost branch waits
    /// for the repair above it to flow down instead of repairing too.
    pub graft_timeout_per_hop_us: u64,
    /// A graft or pull not answered after this long is retried elsewhere.
    pub repair_timeout_ms: u64,
    /// A node that repaired this many messages in a row, none arriving by
    /// push in between, grafts: its part of the tree is cut off.
    pub graft_after_repairs: u32,
    /// Repair attempts at gossip peers before pulling from a voter.
    pub repair_peer_attempts: u32,
    /// Most messages asked for (and sent) in one graft or pull.
    pub pull_messages_max: u64,
    /// Most payload bytes in one pull reply.
    pub pull_reply_bytes_max: usize,
    /// Largest message (payload and token) accepted from a peer.
    pub message_bytes_max: usize,
    /// Messages received ahead of the delivered watermark are held until
    /// the gap closes; ids beyond `delivered + reorder_messages_max` are
    /// dropped (and pulled later).
    pub reorder_messages_max: u64,
    /// ... and at most this many bytes of them.
    pub reorder_bytes_max: usize,
    /// Delivered (or, on a voter, published) messages kept to answer grafts
    /// and pulls.
    pub cache_messages_max: usize,
    /// ... and at most this many bytes of them.
    pub cache_bytes_max: usize,
    /// A voter answers at most this many pulls from its log at once.
    pub voter_reads_inflight_max: usize,
}

impl Default for GossipConfig {
    fn default() -> Self {
        Self {
            probe_period_ms: 1_000,
            probe_rtt_ms: 300,
            suspect_to_down_ms: 3_000,
            membership_gossip_interval_ms: 200,
            membership_packet_bytes_max: 1_400,
            announce_interval_ms: 1_000,
            neighbors_min: 4,
            neighbors_max: 8,
            voter_fanout: 3,
            voter_announce_grace_ms: 20,
            lazy_flush_interval_ms: 20,
            status_interval_ms: 500,
            graft_timeout_ms: 60,
            graft_timeout_per_hop_us: 5_000,
            repair_timeout_ms: 200,
            graft_after_repairs: 4,
            repair_peer_attempts: 3,
            pull_messages_max: 256,
            pull_reply_bytes_max: 4 << 20,
            message_bytes_max: (1 << 20) + 4096,
            reorder_messages_max: 16_384,
            reorder_bytes_max: 64 << 20,
            cache_messages_max: 16_384,
            cache_bytes_max: 64 << 20,
            voter_reads_inflight_max: 64,
        }
    }
}

impl GossipConfig {
    /// Checks every field and the relations between them.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, reason: String| Err(ConfigError { field, reason });
        for (field, value) in [
            ("probe_period_ms", self.probe_period_ms),
            ("probe_rtt_ms", self.probe_rtt_ms),
            ("suspect_to_down_ms", self.suspect_to_down_ms),
            (
                "membership_gossip_interval_ms",
                self.membership_gossip_interval_ms,
            ),
            ("announce_interval_ms", self.announce_interval_ms),
            ("lazy_flush_interval_ms", self.lazy_flush_interval_ms),
            ("status_interval_ms", self.status_interval_ms),
            ("graft_timeout_ms", self.graft_timeout_ms),
            ("repair_timeout_ms", self.repair_timeout_ms),
            ("pull_messages_max", self.pull_messages_max),
            ("graft_after_repairs", u64::from(self.graft_after_repairs)),
            ("reorder_messages_max", self.reorder_messages_max),
        ] {
            if value == 0 {
                return err(field, "must be at least 1".into());
            }
        }
        if self.probe_rtt_ms >= self.probe_period_ms {
            return err(
                "probe_rtt_ms",
                format!(
                    "{} must be below probe_period_ms ({})",
                    self.probe_rtt_ms, self.probe_period_ms
                ),
            );
        }
        // foca needs room for a header and at least one member update.
        if self.membership_packet_bytes_max < 512 {
            return err(
                "membership_packet_bytes_max",
                format!("{} must be at least 512", self.membership_packet_bytes_max),
            );
        }
        if self.neighbors_min == 0 {
            return err("neighbors_min", "must be at least 1".into());
        }
        if self.neighbors_max < self.neighbors_min {
            return err(
                "neighbors_max",
                format!(
                    "{} must be at least neighbors_min ({})",
                    self.neighbors_max, self.neighbors_min
                ),
            );
        }
        if self.voter_fanout == 0 {
            return err("voter_fanout", "must be at least 1".into());
        }
        if self.message_bytes_max == 0 {
            return err("message_bytes_max", "must be at least 1".into());
        }
        // One message of the largest size must always fit, or a gap at it
        // could never close.
        for (field, value) in [
            ("pull_reply_bytes_max", self.pull_reply_bytes_max),
            ("reorder_bytes_max", self.reorder_bytes_max),
            ("cache_bytes_max", self.cache_bytes_max),
        ] {
            if value < self.message_bytes_max + 32 {
                return err(
                    field,
                    format!(
                        "{value} must hold one message of message_bytes_max ({}) plus 32",
                        self.message_bytes_max
                    ),
                );
            }
        }
        if self.cache_messages_max == 0 {
            return err("cache_messages_max", "must be at least 1".into());
        }
        if self.voter_reads_inflight_max == 0 {
            return err("voter_reads_inflight_max", "must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        GossipConfig::default().validate().unwrap();
    }

    #[test]
    fn errors_name_the_field() {
        let config = GossipConfig {
            neighbors_max: 1,
            neighbors_min: 2,
            ..GossipConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().field, "neighbors_max");
        let config = GossipConfig {
            reorder_bytes_max: 10,
            ..GossipConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().field, "reorder_bytes_max");
        let config = GossipConfig {
            probe_rtt_ms: 5_000,
            ..GossipConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().field, "probe_rtt_ms");
    }
}
