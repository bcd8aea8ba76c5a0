//! `ordo status`'s JSON object for a node's status, one form for every
//! place that shows it: the `ordo status` command, and the `/status` and
//! `/health` endpoints of a voter (`node/health.rs`) and of a gossip node
//! (`gossip_node/runtime.rs`). Neither runtime depends on the CLI for it.

use ordo_net::{NodeRole, NodeStatus};
use serde_json::{Value, json};

/// The role's name in the object.
fn role_name(role: NodeRole) -> &'static str {
    match role {
        NodeRole::Follower => "follower",
        NodeRole::PreCandidate => "pre_candidate",
        NodeRole::Candidate => "candidate",
        NodeRole::Leader => "leader",
        NodeRole::Learner => "learner",
        NodeRole::Gossip => "gossip",
    }
}

/// `ordo status`'s object, as a JSON value (to embed in another object,
/// as `/health` does).
pub fn status_json(status: &NodeStatus) -> Value {
    json!({
        "id": status.id,
        "role": role_name(status.role),
        "term": status.term,
        "leader": status.leader,
        "commit_index": status.commit_index,
        "last_index": status.last_index,
        "durable_index": status.durable_index,
        "applied_index": status.applied_index,
        "repairing": status.repairing,
        "repair": status.repair,
        "peers_repairing": status.peers_repairing,
    })
}

/// `ordo status`'s object, as one line of text.
pub fn status_line(status: &NodeStatus) -> String {
    status_json(status).to_string()
}
