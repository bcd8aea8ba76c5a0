//! Encrypted client connections: `[tls]` in `ordo.toml`, and the cluster
//! certificate authority and node certificates `ordo init` writes
//! (`docs/operations.md`, "Encryption").
//!
//! Each cluster has its own CA (`cluster-ca.crt`, and its key
//! `cluster-ca.key`, beside `cluster.keys`). Each voter has a certificate
//! signed by it (`tls.crt`, `tls.key` in its data directory) naming the
//! cluster: `<cluster id>.cluster.ordo` and `cluster.ordo`, plus the host
//! `ordo init --hosts` gave it. Clients trust the cluster CA only.

use std::path::{Path, PathBuf};

use ordo_net::tls::{TlsClientConfig, TlsError, TlsServerConfig, cluster_server_name};
use ordo_storage::NodeId;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    date_time_ymd,
};
use serde::{Deserialize, Serialize};

/// The cluster CA's certificate, beside `cluster.keys`; given to clients.
pub const CA_CERT_FILE: &str = "cluster-ca.crt";
/// The cluster CA's private key, beside `cluster.keys`; only `ordo init`
/// reads it (to issue a joining node's certificate). Never copy it to a
/// node or a client.
pub const CA_KEY_FILE: &str = "cluster-ca.key";
/// A voter's certificate, in its data directory.
pub const NODE_CERT_FILE: &str = "tls.crt";
/// A voter's TLS private key, in its data directory.
pub const NODE_KEY_FILE: &str = "tls.key";
/// The environment variable the `ordo` commands read the cluster CA's path
/// from (when `--tls-ca` is not given).
pub const TLS_CA_ENV: &str = "ORDO_TLS_CA";

/// Years a cluster CA is valid.
const CA_YEARS: i32 = 20;
/// Years a node certificate is valid.
const NODE_YEARS: i32 = 10;

/// `[tls]`: whether this voter's client port speaks TLS, and with which
/// certificate. Off by default; `ordo init` turns it on and writes the
/// files.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Clients must connect with TLS (1.3). Plain clients are refused.
    pub clients: bool,
    /// The certificate chain (PEM, the node's certificate first); default:
    /// `data_dir/tls.crt`.
    pub cert_file: Option<PathBuf>,
    /// The certificate's private key (PEM); default: `data_dir/tls.key`.
    pub key_file: Option<PathBuf>,
}

impl TlsConfig {
    /// Makes the files' paths absolute, relative to `base` (the config
    /// file's directory).
    pub fn make_absolute(&mut self, base: &Path) {
        super::make_absolute([&mut self.cert_file, &mut self.key_file], base);
    }

    /// The client server's TLS configuration: `None` when `clients` is
    /// off. Errors name the key and the file.
    pub fn server_config(
        &self,
        data_dir: &Path,
    ) -> Result<Option<TlsServerConfig>, super::AuthError> {
        if !self.clients {
            return Ok(None);
        }
        let cert = self
            .cert_file
            .clone()
            .unwrap_or_else(|| data_dir.join(NODE_CERT_FILE));
        let key = self
            .key_file
            .clone()
            .unwrap_or_else(|| data_dir.join(NODE_KEY_FILE));
        TlsServerConfig::from_files(&cert, &key)
            .map(Some)
            .map_err(super::AuthError::Tls)
    }
}

/// What a client trusts: the CA at `explicit`, else at the path in
/// [`TLS_CA_ENV`], else `cluster-ca.crt` beside the client secret
/// `secret_file` if it is there; `None` (plain TCP) if none is found, or
/// when `plain` asks for it.
pub fn client_tls(
    cluster_id: u64,
    explicit: Option<&Path>,
    secret_file: Option<&Path>,
    plain: bool,
) -> Result<Option<TlsClientConfig>, TlsError> {
    if plain {
        return Ok(None);
    }
    let path = match explicit {
        Some(path) => path.to_path_buf(),
        None => match std::env::var_os(TLS_CA_ENV) {
            Some(path) if !path.is_empty() => PathBuf::from(path),
            _ => {
                let secret = secret_file.map(Path::to_path_buf).or_else(|| {
                    std::env::var_os(super::CLIENT_SECRET_ENV)
                        .filter(|p| !p.is_empty())
                        .map(PathBuf::from)
                });
                match secret
                    .as_deref()
                    .and_then(Path::parent)
                    .map(|dir| dir.join(CA_CERT_FILE))
                {
                    Some(beside) if beside.exists() => beside,
                    _ => return Ok(None),
                }
            }
        },
    };
    TlsClientConfig::from_file(&path, cluster_id).map(Some)
}

/// Why a certificate could not be made, read or written.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// Generating a key or signing a certificate failed.
    #[error("cannot make a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The CA key file does not hold a key.
    #[error("{path} is not a CA key: {detail}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        detail: String,
    },
}

/// A cluster's certificate authority: its key, and the parameters its
/// certificate is made from (the same for a cluster id, so that a loaded
/// key issues certificates that chain to the saved certificate).
pub struct ClusterCa {
    cluster_id: u64,
    key: KeyPair,
}

/// The current calendar year (UTC), from the system clock.
fn this_year() -> i32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // 365.2425 days a year: exact enough to name the year, and validity
    // starts on January 1st of it.
    1970 + (secs / 31_556_952) as i32
}

impl ClusterCa {
    /// A fresh CA for `cluster_id` (ECDSA P-256).
    pub fn generate(cluster_id: u64) -> Result<Self, CaError> {
        Ok(Self {
            cluster_id,
            key: KeyPair::generate()?,
        })
    }

    fn params(cluster_id: u64) -> CertificateParams {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "ordo");
        params.distinguished_name.push(
            DnType::CommonName,
            format!("ordo cluster {cluster_id:016x} CA"),
        );
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let year = this_year();
        params.not_before = date_time_ymd(year, 1, 1);
        params.not_after = date_time_ymd(year + CA_YEARS, 1, 1);
        params
    }

    /// The CA of `cluster_id` whose key `ordo init` saved in `dir`.
    pub fn load(dir: &Path, cluster_id: u64) -> Result<Self, CaError> {
        let path = dir.join(CA_KEY_FILE);
        let pem = std::fs::read_to_string(&path).map_err(|source| CaError::Io {
            path: path.clone(),
            source,
        })?;
        let key = KeyPair::from_pem(&pem).map_err(|e| CaError::Key {
            path,
            detail: e.to_string(),
        })?;
        Ok(Self { cluster_id, key })
    }

    /// Writes `dir/cluster-ca.crt` and `dir/cluster-ca.key` (0600); returns
    /// their paths.
    pub fn save(&self, dir: &Path) -> Result<Vec<PathBuf>, CaError> {
        let cert = Self::params(self.cluster_id).self_signed(&self.key)?;
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        write_new(&cert_path, cert.pem().as_bytes(), 0o644)?;
        write_new(&key_path, self.key.serialize_pem().as_bytes(), 0o600)?;
        Ok(vec![cert_path, key_path])
    }

    /// Issues node `id`'s certificate (for the cluster names and `host`, an
    /// IP address or DNS name, when given) into `data_dir/tls.crt` and
    /// `data_dir/tls.key` (0600); returns their paths.
    pub fn issue(
        &self,
        id: NodeId,
        host: Option<&str>,
        data_dir: &Path,
    ) -> Result<Vec<PathBuf>, CaError> {
        let mut names = vec![cluster_server_name(self.cluster_id), cluster_server_name(0)];
        names.extend(host.map(str::to_string));
        let mut params = CertificateParams::new(names)?;
        params.distinguished_name.push(
            DnType::CommonName,
            format!("ordo node {id} of cluster {:016x}", self.cluster_id),
        );
        let year = this_year();
        params.not_before = date_time_ymd(year, 1, 1);
        params.not_after = date_time_ymd(year + NODE_YEARS, 1, 1);
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let issuer = Issuer::new(Self::params(self.cluster_id), &self.key);
        let cert = params.signed_by(&key, &issuer)?;
        let cert_path = data_dir.join(NODE_CERT_FILE);
        let key_path = data_dir.join(NODE_KEY_FILE);
        write_new(&cert_path, cert.pem().as_bytes(), 0o644)?;
        write_new(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
        Ok(vec![cert_path, key_path])
    }
}

/// [`super::secret::write_new`], naming the file in the error.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CaError> {
    super::secret::write_new(path, bytes, mode).map_err(|source| CaError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loaded_ca_issues_certificates_that_chain_to_the_saved_one() {
        let dir = tempfile::tempdir().unwrap();
        let cluster = 0xfeed_beef_0000_0001;
        ClusterCa::generate(cluster)
            .unwrap()
            .save(dir.path())
            .unwrap();
        // As `ordo init --add` does: from the key file alone.
        let ca = ClusterCa::load(dir.path(), cluster).unwrap();
        let node_dir = dir.path().join("node4");
        std::fs::create_dir(&node_dir).unwrap();
        ca.issue(4, Some("10.0.0.4"), &node_dir).unwrap();
        let server = TlsConfig {
            clients: true,
            ..TlsConfig::default()
        }
        .server_config(&node_dir)
        .unwrap();
        assert!(server.is_some());
        let mode = |p: &Path| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(p).unwrap().permissions().mode() & 0o777
        };
        assert_eq!(mode(&node_dir.join(NODE_KEY_FILE)), 0o600);
        assert_eq!(mode(&dir.path().join(CA_KEY_FILE)), 0o600);
        // A client with the saved CA accepts it (checked over a socket in
        // net/tests/tls_clients.rs; here: the CA file loads).
        let client =
            client_tls(cluster, Some(&dir.path().join(CA_CERT_FILE)), None, false).unwrap();
        assert!(client.is_some());
        // Off means off.
        assert!(
            TlsConfig::default()
                .server_config(&node_dir)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn missing_files_name_the_key_and_the_way_out() {
        let dir = tempfile::tempdir().unwrap();
        let error = TlsConfig {
            clients: true,
            ..TlsConfig::default()
        }
        .server_config(dir.path())
        .unwrap_err()
        .to_string();
        assert!(error.contains("tls.clients"), "{error}");
        assert!(error.contains("tls.crt"), "{error}");
        assert!(error.contains("clients = false"), "{error}");
        let error = ClusterCa::load(dir.path(), 1).err().unwrap().to_string();
        assert!(error.contains(CA_KEY_FILE), "{error}");
    }
}
