//! Counters a gossip core keeps about itself, for metrics and for the
//! simulator's measurements.

use std::collections::BTreeMap;

/// What one gossip core has done since it started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GossipStats {
    /// Messages published (voter).
    pub published: u64,
    /// Messages delivered to subscribers.
    pub delivered: u64,
    /// Full messages received: pushes plus messages in pull replies.
    /// `payload_received / delivered - 1` is the redundancy.
    pub payload_received: u64,
    /// ... of which were already delivered or buffered.
    pub duplicates: u64,
    /// Messages whose verification failed (or that were too large).
    pub rejected: u64,
    /// Configuration links learned.
    pub links_learned: u64,
    /// Configuration links refused (they did not extend the chain).
    pub links_refused: u64,
    /// New messages dropped because they were beyond the reorder window.
    pub out_of_window: u64,
    /// Grafts sent (tree repairs).
    pub grafts_sent: u64,
    /// Prunes sent (tree branches cut after a duplicate).
    pub prunes_sent: u64,
    /// Pulls sent to gossip peers (anti-entropy).
    pub pulls_sent: u64,
    /// Pulls sent to voters (the last resort).
    pub voter_pulls_sent: u64,
    /// Largest hop count of a delivered message.
    pub hops_max: u16,
    /// Messages sent, by kind ([`super::Wire::name`]).
    pub sent: BTreeMap<&'static str, u64>,
    /// Messages received, by kind.
    pub received: BTreeMap<&'static str, u64>,
}
