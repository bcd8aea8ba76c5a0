//! Who may connect: the credentials behind the handshake's challenge and
//! proof (`docs/protocol.md`, "Authentication"; `docs/operations.md`).
//!
//! - peer connections: each voter signs with its ed25519 node key and
//!   checks the other's signature with the key `cluster.keys` or the
//!   configuration in force lists for it ([`PeerKeys`]);
//! - gossip connections (voters' gossip endpoints and gossip nodes): a
//!   keyed BLAKE3 hash of the cluster's gossip secret (`gossip.secret`,
//!   written by `ordo init`) ([`SecretAuth`]);
//! - client connections: the same with the client secret (`client.secret`).
//!
//! `[auth]` in `ordo.toml` ([`AuthConfig`]) turns each off for
//! benchmarks. Client connections are also encrypted when `[tls] clients`
//! is on ([`TlsConfig`], [`ClusterCa`]); peer and gossip connections are
//! authenticated, not encrypted.

mod config;
mod peer_keys;
mod secret;
mod tls;

pub use config::{
    AuthConfig, AuthError, CLIENT_SECRET_ENV, CLIENT_SECRET_FILE, GOSSIP_SECRET_FILE,
    client_credential,
};
pub use peer_keys::PeerKeys;

/// Puts `base` (the config file's directory) before each relative path of
/// `paths`.
fn make_absolute<const N: usize>(
    paths: [&mut Option<std::path::PathBuf>; N],
    base: &std::path::Path,
) {
    for path in paths.into_iter().flatten() {
        if path.is_relative() {
            *path = base.join(&*path);
        }
    }
}
pub use secret::{Secret, SecretAuth, SecretError};
pub use tls::{
    CA_CERT_FILE, CA_KEY_FILE, CaError, ClusterCa, NODE_CERT_FILE, NODE_KEY_FILE, TLS_CA_ENV,
    TlsConfig, client_tls,
};
