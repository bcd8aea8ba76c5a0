//! `[auth]` in `ordo.toml`, and the credentials it gives the transports.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ordo_net::auth::Credential;
use serde::{Deserialize, Serialize};

use super::{PeerKeys, Secret, SecretAuth, SecretError};
use crate::token::{ClusterKeys, KeyError, NodeKey};

/// The gossip secret's file name, beside `cluster.keys`.
pub const GOSSIP_SECRET_FILE: &str = "gossip.secret";
/// The client secret's file name, beside `cluster.keys`.
pub const CLIENT_SECRET_FILE: &str = "client.secret";
/// The environment variable the `ordo` commands read the client secret's
/// path from (when `--client-secret` is not given).
pub const CLIENT_SECRET_ENV: &str = "ORDO_CLIENT_SECRET";

/// Why a credential the config asks for cannot be had: each names the
/// config field, the file, and how to run without it.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Peer authentication is on and the node key file is missing.
    #[error(
        "invalid config field auth.peers: peers authenticate with the node key, and {} does not exist ({PEERS_OFF})",
        path.display()
    )]
    NoNodeKey {
        /// Where the node key should be.
        path: PathBuf,
    },
    /// Peer authentication is on and the config names no keys file.
    #[error("invalid config field auth.peers: peer authentication needs keys_file ({PEERS_OFF})")]
    NoKeysFile,
    /// The node key or the cluster keys file does not load.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A secret's path is not set and cannot be found beside a keys file.
    #[error("invalid config field {field}: not set, and no keys_file to find {name} beside")]
    NoSecretPath {
        /// The config field that would name it.
        field: &'static str,
        /// The file name looked for beside the keys file.
        name: &'static str,
    },
    /// A secret the config's switch asks for does not load.
    #[error(
        "invalid config field {switch}: {source} (`ordo init` writes it; set [auth] {} = false to run without)",
        switch.trim_start_matches("auth.")
    )]
    Secret {
        /// The switch that asks for it (`auth.gossip`, `auth.clients`).
        switch: &'static str,
        /// Why it does not load.
        source: SecretError,
    },
    /// The client secret a client was given does not load.
    #[error("client secret: {0}")]
    ClientSecret(#[source] SecretError),
    /// TLS for clients is on and the node's certificate or key does not
    /// load.
    #[error(
        "invalid config field tls.clients: {0} (`ordo init` writes the node's \
         certificate; set [tls] clients = false to serve clients in plain TCP)"
    )]
    Tls(#[source] ordo_net::tls::TlsError),
}

/// How to run without peer authentication, for the errors that need it.
const PEERS_OFF: &str = "set [auth] peers = false to run without peer authentication";

/// Which connections a voter authenticates (`[auth]`). Everything is on by
/// default; turning a kind off lets any process that knows the cluster id
/// open such connections (for benchmarks, see `docs/operations.md`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Peer connections prove the voter's node key (`data_dir/node.key`)
    /// and are checked against `cluster.keys` and the configuration in
    /// force. `false`: no peer authentication (every voter must agree).
    pub peers: bool,
    /// This voter's gossip endpoint requires the cluster's gossip secret.
    pub gossip: bool,
    /// Clients must prove they hold the client secret.
    pub clients: bool,
    /// The gossip secret; default: `gossip.secret` beside `keys_file`.
    pub gossip_secret_file: Option<PathBuf>,
    /// The client secret; default: `client.secret` beside `keys_file`.
    pub client_secret_file: Option<PathBuf>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            peers: true,
            gossip: true,
            clients: true,
            gossip_secret_file: None,
            client_secret_file: None,
        }
    }
}

impl AuthConfig {
    /// Every kind of authentication off (benchmarks, embedders without
    /// keys, tests).
    pub fn off() -> Self {
        Self {
            peers: false,
            gossip: false,
            clients: false,
            gossip_secret_file: None,
            client_secret_file: None,
        }
    }

    /// Makes the secret files' paths absolute, relative to `base` (the
    /// config file's directory).
    pub fn make_absolute(&mut self, base: &Path) {
        super::make_absolute(
            [&mut self.gossip_secret_file, &mut self.client_secret_file],
            base,
        );
    }

    /// The peer transport's credential: `None` when `peers` is off.
    pub fn peer_keys(
        &self,
        data_dir: &Path,
        keys_file: Option<&Path>,
    ) -> Result<Option<Arc<PeerKeys>>, AuthError> {
        if !self.peers {
            tracing::warn!(
                "auth.peers = false: any process that knows the cluster id may act as a voter"
            );
            return Ok(None);
        }
        let key_path = NodeKey::path_in(data_dir);
        if !key_path.exists() {
            return Err(AuthError::NoNodeKey { path: key_path });
        }
        let key = NodeKey::load(&key_path)?;
        let keys_path = keys_file.ok_or(AuthError::NoKeysFile)?;
        let keys = ClusterKeys::load(keys_path)?;
        Ok(Some(Arc::new(PeerKeys::new(key, &keys))))
    }

    /// The credential this voter's gossip endpoint uses.
    pub fn gossip_credential(&self, keys_file: Option<&Path>) -> Result<Credential, AuthError> {
        GOSSIP_SECRET.credential(self.gossip, self.gossip_secret_file.as_deref(), keys_file)
    }

    /// The credential this voter's client server checks clients with.
    pub fn client_server_credential(
        &self,
        keys_file: Option<&Path>,
    ) -> Result<Credential, AuthError> {
        CLIENT_SECRET.credential(self.clients, self.client_secret_file.as_deref(), keys_file)
    }
}

/// One of the cluster's shared secrets as `[auth]` names it: the switch
/// that requires it, the field that may give its path, and its file name
/// beside the keys file otherwise.
struct SharedSecret {
    switch: &'static str,
    path_field: &'static str,
    file_name: &'static str,
}

const GOSSIP_SECRET: SharedSecret = SharedSecret {
    switch: "auth.gossip",
    path_field: "auth.gossip_secret_file",
    file_name: GOSSIP_SECRET_FILE,
};

const CLIENT_SECRET: SharedSecret = SharedSecret {
    switch: "auth.clients",
    path_field: "auth.client_secret_file",
    file_name: CLIENT_SECRET_FILE,
};

impl SharedSecret {
    /// Both sides prove they hold the secret (at `explicit`, else beside
    /// `keys_file`); no authentication when the switch is off.
    fn credential(
        &self,
        on: bool,
        explicit: Option<&Path>,
        keys_file: Option<&Path>,
    ) -> Result<Credential, AuthError> {
        if !on {
            return Ok(Credential::none());
        }
        let path = secret_path(self.path_field, explicit, keys_file, self.file_name)?;
        let secret = load_secret(self.switch, &path)?;
        Ok(Credential::new(Arc::new(SecretAuth::mutual(secret))))
    }
}

/// The explicit path, or `name` beside the keys file.
fn secret_path(
    field: &'static str,
    explicit: Option<&Path>,
    keys_file: Option<&Path>,
    name: &'static str,
) -> Result<PathBuf, AuthError> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    keys_file
        .and_then(Path::parent)
        .map(|dir| dir.join(name))
        .ok_or(AuthError::NoSecretPath { field, name })
}

fn load_secret(switch: &'static str, path: &Path) -> Result<Secret, AuthError> {
    Secret::load(path).map_err(|source| AuthError::Secret { switch, source })
}

/// A client's credential: the secret at `path`, or at the path in
/// [`CLIENT_SECRET_ENV`]; none if neither is given (a node that requires
/// the secret then refuses, saying so).
pub fn client_credential(path: Option<&Path>) -> Result<Credential, AuthError> {
    let path = match path {
        Some(path) => path.to_path_buf(),
        None => match std::env::var_os(CLIENT_SECRET_ENV) {
            Some(path) if !path.is_empty() => PathBuf::from(path),
            _ => return Ok(Credential::none()),
        },
    };
    let secret = Secret::load(&path).map_err(AuthError::ClientSecret)?;
    Ok(Credential::new(Arc::new(SecretAuth::prove_only(secret))))
}
