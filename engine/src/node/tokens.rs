//! Commit certificates and tokens at runtime (filled in with
//! `ordo_engine::token` once it lands).

use bytes::Bytes;
use ordo_net::{Certificate, Committed, ForwardResults};
use ordo_storage::{EntryView, LogStore};

use super::config::NodeConfig;
use super::peers::Peers;
use crate::core::ApplyBatch;

/// The node's certificates.
pub struct Certificates {}

impl Certificates {
    /// Opens the certificate store of `config`'s node.
    pub fn open(_config: &NodeConfig) -> Result<Self, String> {
        Ok(Self {})
    }

    /// Leader: signs the entries of a commit advance.
    pub fn sign_commit(&self, _apply: &ApplyBatch, _term: u64, _peers: &Peers) {}

    /// Follower: notes a commit advance.
    pub fn observe_commit(&self, _apply: &ApplyBatch) {}

    /// A certificate from the leader.
    pub fn received(&self, _certificate: Certificate) {}

    /// Tokens the leader attached to forwarded answers.
    pub fn absorb_forward_tokens(&self, _results: &ForwardResults) {}

    /// The token of a just-committed entry.
    pub fn token_for(&self, _committed: &Committed) -> Option<Vec<u8>> {
        None
    }

    /// The token of any committed entry.
    pub async fn token<S: LogStore>(&self, _store: &S, _entry: &EntryView<'_>) -> Result<Bytes, String> {
        Err("tokens not available".into())
    }
}
