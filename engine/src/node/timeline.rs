//! Timestamps of a commit's hops, for `ordo-bench timeline`: one trace
//! event per hop at target [`TARGET`], with the node, the hop, the peer
//! it concerns, the highest log index it carries and `CLOCK_MONOTONIC` in
//! nanoseconds (one clock for every thread and process of the machine).
//! Off unless a subscriber enables the target at `TRACE` level: a disabled
//! callsite costs one cached check and evaluates none of its fields.
//!
//! The hops, in the order a commit meets them at C = 1:
//! `client.call` (the leader takes the proposal), `append` (a node hands a
//! batch to its log), `send.append` / `recv.append` (AppendEntries),
//! `log.synced` (the group learns its log is durable), `send.append_response`
//! / `recv.append_response`, `apply` (the entries committed and are applied),
//! `respond` (the answer goes to the client's connection).

use ordo_storage::{Index, NodeId};

/// The tracing target of the hop events.
pub const TARGET: &str = "ordo::timeline";

/// `CLOCK_MONOTONIC` in nanoseconds.
pub fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
    })
}

/// Whether hops are being recorded: call sites that compute a mark's
/// fields (which hop a message is, the index it carries) check this first,
/// so that nothing is computed when the target is off (one cached check).
#[inline]
pub fn enabled() -> bool {
    tracing::enabled!(target: TARGET, tracing::Level::TRACE)
}

/// Records that `node` passed `hop` (about `peer`, 0 for none, carrying
/// entries up to `index`, 0 for none) now.
#[inline]
pub fn mark(node: NodeId, hop: &'static str, peer: NodeId, index: Index) {
    tracing::trace!(target: TARGET, node, hop, peer, index, t_ns = monotonic_ns());
}
