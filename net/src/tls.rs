//! TLS for client connections: the configurations a node and a client need,
//! loaded from the PEM files `ordo init` writes (`docs/operations.md`,
//! "Encryption").
//!
//! TLS 1.3 only, with rustls's `ring` provider. Trust is one certificate
//! authority per cluster, never the system roots. A client checks the
//! node's certificate against the *cluster name*
//! ([`cluster_server_name`]), whatever address it dialled: clients reach
//! nodes by addresses learnt from redirects, and which node answered is
//! checked again by ordo's own handshake.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// The ALPN protocol name ordo's client connections negotiate.
pub const ALPN: &[u8] = b"ordo/1";

/// Why a TLS configuration could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("{what} {path}: {detail}")]
    Pem {
        /// What the file should hold.
        what: &'static str,
        /// The file.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// rustls refused the certificate, key or settings.
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
}

/// The DNS name every node certificate of cluster `cluster_id` carries and
/// every client checks: `<cluster id in hex>.cluster.ordo`.
pub fn cluster_server_name(cluster_id: u64) -> String {
    format!("{cluster_id:016x}.cluster.ordo")
}

/// rustls with *ring*: X25519 and P-256 key exchange, AES-GCM and
/// ChaCha20-Poly1305. rustls marks it deprecated because *ring* has no
/// post-quantum key exchange; `aws-lc-rs` has, at the price of a large C
/// build (docs/dependencies.md says why ordo takes *ring* for now).
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pem_error(what: &'static str, path: &str, detail: impl fmt::Display) -> TlsError {
    TlsError::Pem {
        what,
        path: path.to_string(),
        detail: detail.to_string(),
    }
}

/// A node's side: its certificate chain and key.
#[derive(Clone)]
pub struct TlsServerConfig {
    pub(crate) config: Arc<rustls::ServerConfig>,
}

/// Equal when they are the same loaded configuration.
impl PartialEq for TlsServerConfig {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.config, &other.config)
    }
}

impl Eq for TlsServerConfig {}

impl fmt::Debug for TlsServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsServerConfig")
    }
}

impl TlsServerConfig {
    /// From a PEM certificate chain (the node's certificate first) and a
    /// PEM private key. `origin` names where they came from, for errors.
    pub fn from_pem(cert_chain: &[u8], key: &[u8], origin: &str) -> Result<Self, TlsError> {
        let certs = CertificateDer::pem_slice_iter(cert_chain)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_error("certificate", origin, e))?;
        if certs.is_empty() {
            return Err(pem_error("certificate", origin, "no CERTIFICATE block"));
        }
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| pem_error("key", origin, e))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        // Connections are long-lived: a resumption ticket would be a write
        // after the handshake for nothing.
        config.send_tls13_tickets = 0;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(Self {
            config: Arc::new(config),
        })
    }

    /// From the PEM files at `cert_file` and `key_file`.
    pub fn from_files(cert_file: &Path, key_file: &Path) -> Result<Self, TlsError> {
        let cert = std::fs::read(cert_file)
            .map_err(|e| pem_error("certificate", &cert_file.display().to_string(), e))?;
        let key = std::fs::read(key_file)
            .map_err(|e| pem_error("key", &key_file.display().to_string(), e))?;
        Self::from_pem(
            &cert,
            &key,
            &format!("{} / {}", cert_file.display(), key_file.display()),
        )
    }
}

/// A client's side: the cluster's certificate authority and the name its
/// nodes' certificates carry.
#[derive(Clone)]
pub struct TlsClientConfig {
    pub(crate) config: Arc<rustls::ClientConfig>,
    pub(crate) server_name: ServerName<'static>,
}

/// Equal when they are the same loaded configuration.
impl PartialEq for TlsClientConfig {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.config, &other.config) && self.server_name == other.server_name
    }
}

impl Eq for TlsClientConfig {}

impl fmt::Debug for TlsClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClientConfig")
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl TlsClientConfig {
    /// Trusts the certificate authorities in `ca_pem` (and nothing else) for
    /// the nodes of cluster `cluster_id`. `origin` names the file, for
    /// errors.
    pub fn from_pem(ca_pem: &[u8], cluster_id: u64, origin: &str) -> Result<Self, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        let mut count = 0;
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            let cert = cert.map_err(|e| pem_error("cluster CA", origin, e))?;
            roots
                .add(cert)
                .map_err(|e| pem_error("cluster CA", origin, e))?;
            count += 1;
        }
        if count == 0 {
            return Err(pem_error("cluster CA", origin, "no CERTIFICATE block"));
        }
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![ALPN.to_vec()];
        let server_name = ServerName::try_from(cluster_server_name(cluster_id))
            .map_err(|e| pem_error("cluster CA", origin, e))?;
        Ok(Self {
            config: Arc::new(config),
            server_name,
        })
    }

    /// From the PEM file at `ca_file`.
    pub fn from_file(ca_file: &Path, cluster_id: u64) -> Result<Self, TlsError> {
        let origin = ca_file.display().to_string();
        let pem = std::fs::read(ca_file).map_err(|e| pem_error("cluster CA", &origin, e))?;
        Self::from_pem(&pem, cluster_id, &origin)
    }
}
