//! Shared secrets (the cluster's gossip and client secrets) and the
//! handshake authenticator they make.

use std::path::{Path, PathBuf};

use ordo_net::auth::{AuthRefusal, Authenticator, SIGNATURE_BYTES, Signature};
use ordo_storage::NodeId;
use zeroize::Zeroizing;

/// Bytes of a secret.
pub const SECRET_BYTES: usize = 32;

/// The first line of a secret file; the second is the secret in hex.
const SECRET_HEADER: &str = "# ordo shared secret: keep it private (mode 0600)";

/// Why a secret file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file does not hold a secret.
    #[error("{path}: not an ordo secret file ({reason})")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The operating system's generator failed.
    #[error("no randomness for a secret: {0}")]
    Random(String),
}

/// A 32-byte shared secret, cleared from memory when dropped.
#[derive(Clone)]
pub struct Secret(Zeroizing<[u8; SECRET_BYTES]>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// A fresh secret from the operating system's generator.
    pub fn generate() -> Result<Self, SecretError> {
        let mut bytes = Zeroizing::new([0u8; SECRET_BYTES]);
        getrandom::fill(&mut *bytes).map_err(|e| SecretError::Random(e.to_string()))?;
        Ok(Self(bytes))
    }

    /// A secret from its bytes (tests).
    pub fn from_bytes(bytes: [u8; SECRET_BYTES]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Reads a secret file written by [`Secret::save`].
    pub fn load(path: &Path) -> Result<Self, SecretError> {
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| SecretError::Io {
                    path: path.to_path_buf(),
                    source,
                })?,
            );
        let malformed = |reason: &str| SecretError::Malformed {
            path: path.to_path_buf(),
            reason: reason.into(),
        };
        let hex = text
            .lines()
            .map(str::trim)
            .find(|line| !line.is_empty() && !line.starts_with('#'))
            .ok_or_else(|| malformed("no secret line"))?;
        if hex.len() != 2 * SECRET_BYTES {
            return Err(malformed("the secret must be 64 hexadecimal digits"));
        }
        let mut bytes = Zeroizing::new([0u8; SECRET_BYTES]);
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2).unwrap_or("zz"), 16)
                .map_err(|_| malformed("the secret must be 64 hexadecimal digits"))?;
        }
        Ok(Self(bytes))
    }

    /// Writes the secret to `path`, readable by its owner only, and syncs
    /// it. Refuses to overwrite an existing file.
    pub fn save(&self, path: &Path) -> Result<(), SecretError> {
        let hex: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
        let text = Zeroizing::new(format!("{SECRET_HEADER}\n{hex}\n"));
        write_new(path, text.as_bytes(), 0o600).map_err(|source| SecretError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Writes a new file (never over an existing one) with `mode`, and syncs
/// it: secrets, keys and certificates.
pub(crate) fn write_new(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Signs and verifies handshake transcripts with a keyed BLAKE3 hash of a
/// shared secret (its 32 bytes in the first half of the signature, zeros in
/// the second). Anyone holding the secret is accepted, whatever id it
/// gives: gossip nodes and clients have no identity of their own.
pub struct SecretAuth {
    key: Secret,
    /// Whether the other side's signature is checked. A client checks
    /// nothing: it proves itself to the node, and a node that does not
    /// require the secret may not hold it (see `docs/operations.md`).
    check_other: bool,
}

impl SecretAuth {
    /// Both sides prove they hold `key` (gossip connections; a node's
    /// client server).
    pub fn mutual(key: Secret) -> Self {
        Self {
            key,
            check_other: true,
        }
    }

    /// This side proves it holds `key` and does not check the other side
    /// (a client).
    pub fn prove_only(key: Secret) -> Self {
        Self {
            key,
            check_other: false,
        }
    }

    fn mac(&self, transcript: &[u8]) -> blake3::Hash {
        blake3::keyed_hash(&self.key.0, transcript)
    }
}

impl Authenticator for SecretAuth {
    fn sign(&self, transcript: &[u8]) -> Signature {
        let mut signature = [0u8; SIGNATURE_BYTES];
        signature[..32].copy_from_slice(self.mac(transcript).as_bytes());
        signature
    }

    fn verify(
        &self,
        _node: NodeId,
        transcript: &[u8],
        signature: &Signature,
    ) -> Result<(), AuthRefusal> {
        if !self.check_other {
            return Ok(());
        }
        let mut given = [0u8; 32];
        given.copy_from_slice(&signature[..32]);
        // `blake3::Hash`'s equality is constant-time.
        if self.mac(transcript) == blake3::Hash::from_bytes(given)
            && signature[32..].iter().all(|&b| b == 0)
        {
            Ok(())
        } else {
            Err(AuthRefusal(
                "the shared secret's proof does not verify (missing or different secret)".into(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_survives_its_file_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gossip.secret");
        let secret = Secret::generate().unwrap();
        secret.save(&path).unwrap();
        assert!(secret.save(&path).is_err(), "never overwritten");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
        let again = Secret::load(&path).unwrap();
        assert_eq!(*again.0, *secret.0);
        std::fs::write(&path, "# x\nnot hex\n").unwrap();
        assert!(Secret::load(&path).is_err());
        std::fs::write(&path, format!("{}é\n", "0".repeat(62))).unwrap();
        assert!(Secret::load(&path).is_err());
    }

    #[test]
    fn the_same_secret_verifies_and_another_does_not() {
        let a = SecretAuth::mutual(Secret::from_bytes([1; 32]));
        let b = SecretAuth::mutual(Secret::from_bytes([1; 32]));
        let stranger = SecretAuth::mutual(Secret::from_bytes([2; 32]));
        let signature = a.sign(b"transcript");
        assert!(b.verify(0, b"transcript", &signature).is_ok());
        assert!(b.verify(0, b"another transcript", &signature).is_err());
        assert!(stranger.verify(0, b"transcript", &signature).is_err());
        assert!(b.verify(0, b"transcript", &[0; 64]).is_err());
        let mut tail = signature;
        tail[40] = 1;
        assert!(b.verify(0, b"transcript", &tail).is_err());
        let client = SecretAuth::prove_only(Secret::from_bytes([1; 32]));
        assert!(client.verify(0, b"anything", &[0; 64]).is_ok());
        assert_eq!(client.sign(b"transcript"), signature);
    }
}
