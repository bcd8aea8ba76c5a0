//! What the metrics endpoint answers for a voter: `/metrics`, `/health`
//! and `/status` (docs/operations.md, "Monitoring").

use std::sync::Arc;
use std::time::Duration;

use ordo_net::NodeStatus;
use serde_json::json;

use crate::metrics::{Answer, Handler, NodeMetrics, OPENMETRICS, not_found};

use super::NodeHandle;
use super::config::NodeConfig;

/// How long `/health` and `/status` wait for the group's answer.
const STATUS_WAIT: Duration = Duration::from_secs(2);

/// The endpoint's answers for the node behind `handle`.
pub fn handler(metrics: NodeMetrics, handle: NodeHandle, _config: &NodeConfig) -> Handler {
    Arc::new(move |path: &str| match path {
        "/metrics" => Answer {
            status: 200,
            content_type: OPENMETRICS,
            body: metrics.render(),
        },
        "/status" => match handle.node_status_blocking(STATUS_WAIT) {
            Ok(status) => Answer::json(200, crate::status::status_line(&status)),
            Err(error) => Answer::json(503, json!({ "error": error.to_string() }).to_string()),
        },
        "/health" => {
            let (healthy, body) = health(handle.node_status_blocking(STATUS_WAIT));
            Answer::json(if healthy { 200 } else { 503 }, body.to_string())
        }
        other => not_found(other),
    })
}

/// Healthy while the node knows a leader of its term and is not repairing.
/// A leader keeps its role only while a quorum answers it (check-quorum),
/// and a follower drops its leader once it stops hearing from it for an
/// election timeout, so a known leader means a reachable quorum.
pub fn health(status: Result<NodeStatus, super::HandleError>) -> (bool, serde_json::Value) {
    let status = match status {
        Ok(status) => status,
        Err(error) => {
            return (
                false,
                json!({ "healthy": false, "reason": format!("the node does not answer: {error}") }),
            );
        }
    };
    let value = crate::status::status_json(&status);
    let (healthy, reason) = if status.repairing {
        (
            false,
            format!(
                "repairing lost durable state ({}): it takes no part in elections until a leader repairs it",
                status.repair
            ),
        )
    } else if status.leader == 0 {
        (
            false,
            format!(
                "no leader known in term {}: the node cannot reach a quorum of voters",
                status.term
            ),
        )
    } else if status.leader == status.id {
        (
            true,
            format!(
                "leader of term {}, with a quorum (check-quorum)",
                status.term
            ),
        )
    } else {
        (
            true,
            format!("follows leader {} in term {}", status.leader, status.term),
        )
    };
    (
        healthy,
        json!({ "healthy": healthy, "reason": reason, "status": value }),
    )
}
