//! Keys: the cluster id, a voter's ed25519 key pair and its secret key file.
//!
//! The secret key file, `node.key` in a voter's data directory, mode 0600:
//!
//! ```toml
//! # ordo node key: this voter's ed25519 secret key. Keep it private (mode 0600).
//! format = "ordo-node-key-v1"
//! secret_key = "<64 hex digits: the 32-byte ed25519 secret key (seed)>"
//! public_key = "<64 hex digits: its public key, as listed in cluster.keys>"
//! ```
//!
//! The public key is derived from the secret on load and must match the
//! stored one, which catches a hand-edited or mixed-up file.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ed25519_dalek::{SigningKey, VerifyingKey};

use super::hex::{self, HexError};

/// File name of a voter's secret key in its data directory.
pub const NODE_KEY_FILE: &str = "node.key";
/// `format` value of a node key file.
const NODE_KEY_FORMAT: &str = "ordo-node-key-v1";
/// Largest key file read (a node key file is ~300 bytes).
pub const NODE_KEY_FILE_BYTES_MAX: u64 = 64 * 1024;

/// What went wrong with a key file. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The file is larger than any valid one.
    #[error("{path}: larger than {bytes_max} bytes, not a key file")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        bytes_max: u64,
    },
    /// The file's content is not what it should be.
    #[error("{path}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What was wrong, naming the field.
        #[source]
        reason: MalformedKeyFile,
    },
    /// A secret key file that group or others may read.
    #[error(
        "{path}: mode {mode:o} lets group or others read this secret key; it must be 600 (chmod 600 {path})"
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Saving would overwrite an existing secret key.
    #[error("{path}: already exists; refusing to overwrite a secret key")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// The OS random number generator failed while generating a key.
    #[error("generating a key: the OS random number generator failed: {0}")]
    Random(getrandom::Error),
}

/// What is wrong with a key file's text (`node.key`, `cluster.keys`);
/// every variant names the field.
#[derive(Debug, thiserror::Error)]
pub enum MalformedKeyFile {
    /// The bytes are not UTF-8.
    #[error("not UTF-8 text (byte {valid_up_to})")]
    NotUtf8 {
        /// The length of the valid prefix.
        valid_up_to: usize,
    },
    /// The text is not TOML; the parser's error names line and column
    /// (boxed: it is large, and every key error carries this enum).
    #[error("not valid TOML: {0}")]
    Toml(#[source] Box<toml::de::Error>),
    /// A required field is absent.
    #[error("{field}: missing")]
    Missing {
        /// The field.
        field: String,
    },
    /// A field of the wrong TOML type.
    #[error("{field}: expected {expected}, found {found}")]
    WrongType {
        /// The field.
        field: String,
        /// The type it must have ("a string", "a table").
        expected: &'static str,
        /// The type it has.
        found: &'static str,
    },
    /// A field nobody asked for (a typo would otherwise pass silently).
    #[error("{field}: unknown field")]
    Unknown {
        /// The field.
        field: String,
    },
    /// The `format` field names another kind of file or version.
    #[error("format: expected \"{expected}\", found {found:?}")]
    Format {
        /// The format this file must have.
        expected: &'static str,
        /// The format it has.
        found: String,
    },
    /// A field that is not the hex it must be.
    #[error("{field}: {source}")]
    Hex {
        /// The field.
        field: String,
        /// What is wrong with the digits.
        source: HexError,
    },
    /// A field that is not a usable public key (its own message names the
    /// key).
    #[error("{}{source}", field_prefix(field))]
    PublicKey {
        /// The field (`None`: `public_key`, which the message names).
        field: Option<String>,
        /// What is wrong with the key.
        source: PublicKeyError,
    },
    /// `cluster_id` is not a cluster id.
    #[error(transparent)]
    ClusterId(#[from] ClusterIdError),
    /// A node key whose public key is not its secret key's.
    #[error("public_key does not belong to secret_key (mixed-up or edited file)")]
    KeyMismatch,
    /// A key listed under a name that is not a node id.
    #[error("{field}: not a node id (a decimal number)")]
    NotANodeId {
        /// The field (`keys.<name>`).
        field: String,
    },
    /// A listed key that cannot join the others.
    #[error("{field}: {source}")]
    Entry {
        /// The field (`keys.<id>`).
        field: String,
        /// Why it cannot join.
        source: super::ClusterKeysEntryError,
    },
    /// A cluster keys file that lists no key.
    #[error("keys: lists no voter")]
    NoVoter,
}

/// `"field: "`, or nothing.
fn field_prefix(field: &Option<String>) -> String {
    field.as_ref().map(|f| format!("{f}: ")).unwrap_or_default()
}

/// Why some text or bytes are not a usable public key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PublicKeyError {
    /// Not 64 hex digits.
    #[error("public key: {0}")]
    Hex(#[source] HexError),
    /// Not the encoding of a curve point.
    #[error("public key: not a valid ed25519 point")]
    NotAPoint,
    /// A small-order point: signatures under it prove nothing.
    #[error("public key: a weak (small-order) ed25519 point")]
    Weak,
}

/// Why some text is not a cluster id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cluster id: {0}")]
pub struct ClusterIdError(#[source] HexError);

/// A cluster's identity: 16 random bytes chosen by `ordo init`, written as
/// 32 hex digits. Every statement names it, so a token from one cluster
/// never verifies against another cluster's keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterId(pub [u8; 16]);

impl ClusterId {
    /// A fresh random cluster id from the OS.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes)?;
        Ok(Self(bytes))
    }

    /// The 64-bit id the transports' handshakes carry: the id's first 8
    /// bytes, little-endian, never 0 (`ordo init` writes it into every
    /// voter's config; a gossip node derives it from `cluster.keys`).
    pub fn transport_id(&self) -> u64 {
        let [a, b, c, d, e, f, g, h, ..] = self.0;
        u64::from_le_bytes([a, b, c, d, e, f, g, h]).max(1)
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl fmt::Debug for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterId({self})")
    }
}

impl FromStr for ClusterId {
    type Err = ClusterIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        hex::decode::<16>(text).map(Self).map_err(ClusterIdError)
    }
}

/// A voter's ed25519 public key, as listed in `cluster.keys`. Never a weak
/// (small-order) point.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Parses the 32-byte compressed encoding.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, PublicKeyError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| PublicKeyError::NotAPoint)?;
        if key.is_weak() {
            return Err(PublicKeyError::Weak);
        }
        Ok(Self(key))
    }

    /// The 32-byte compressed encoding.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The dalek key, for verification.
    pub(crate) fn verifying_key(&self) -> &VerifyingKey {
        &self.0
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0.as_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = PublicKeyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::from_bytes(&hex::decode::<32>(text).map_err(PublicKeyError::Hex)?)
    }
}

/// A voter's ed25519 key pair. The secret is zeroed on drop (dalek's
/// `zeroize`) and never printed.
#[derive(Clone)]
pub struct NodeKey {
    signing: SigningKey,
}

impl NodeKey {
    /// A fresh key pair from the OS random number generator.
    ///
    /// An ed25519 secret key is 32 uniformly random bytes; this is what
    /// `SigningKey::generate` does with an RNG, but `getrandom::fill`
    /// reports a failing OS generator as an error instead of panicking.
    pub fn generate() -> Result<Self, KeyError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(KeyError::Random)?;
        let key = Self::from_secret_bytes(&secret);
        secret.fill(0);
        Ok(key)
    }

    /// The key pair of a 32-byte secret key (deterministic tests, tools).
    pub fn from_secret_bytes(secret: &[u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_bytes(secret),
        }
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key())
    }

    /// Signs `message` (deterministic ed25519, RFC 8032).
    pub(crate) fn sign(&self, message: &[u8]) -> ed25519_dalek::Signature {
        use ed25519_dalek::Signer as _;
        self.signing.sign(message)
    }

    /// The expanded secret (scalar and hash prefix) for signing with
    /// prepared nonces ([`super::NoncePool`]).
    pub(crate) fn expanded(&self) -> ed25519_dalek::hazmat::ExpandedSecretKey {
        let mut secret = self.signing.to_bytes();
        let expanded = ed25519_dalek::hazmat::ExpandedSecretKey::from(&secret);
        zeroize::Zeroize::zeroize(&mut secret);
        expanded
    }

    /// `data_dir/node.key`.
    pub fn path_in(data_dir: &Path) -> PathBuf {
        data_dir.join(NODE_KEY_FILE)
    }

    /// Loads a secret key file. Refuses one that group or others may read.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let file = File::open(path).map_err(|source| io_error(path, source))?;
        check_private(&file, path)?;
        let text = read_bounded(file, path, NODE_KEY_FILE_BYTES_MAX)?;
        Self::parse_file(&text).map_err(|reason| KeyError::Malformed {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// The key a node key file's text holds.
    fn parse_file(text: &str) -> Result<Self, MalformedKeyFile> {
        let mut table = parse_toml(text, NODE_KEY_FORMAT)?;
        let secret = take_string(&mut table, "secret_key")?;
        let public = take_string(&mut table, "public_key")?;
        no_other_fields(&table)?;
        let mut secret = hex::decode::<32>(&secret).map_err(|source| MalformedKeyFile::Hex {
            field: "secret_key".into(),
            source,
        })?;
        let key = Self::from_secret_bytes(&secret);
        secret.fill(0);
        let public: PublicKey = public
            .parse()
            .map_err(|source| MalformedKeyFile::PublicKey {
                field: None,
                source,
            })?;
        if public != key.public_key() {
            return Err(MalformedKeyFile::KeyMismatch);
        }
        Ok(key)
    }

    /// Writes a new secret key file with mode 0600 and syncs it and its
    /// directory. Refuses to overwrite an existing file: replacing a voter's
    /// key silently would invalidate its entry in `cluster.keys`.
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        let text = format!(
            "# ordo node key: this voter's ed25519 secret key. Keep it private (mode 0600).\n\
             # Its public key is listed in cluster.keys.\n\
             format = \"{NODE_KEY_FORMAT}\"\n\
             secret_key = \"{}\"\n\
             public_key = \"{}\"\n",
            hex::encode(self.signing.as_bytes()),
            self.public_key(),
        );
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(|source| {
            if source.kind() == io::ErrorKind::AlreadyExists {
                KeyError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                io_error(path, source)
            }
        })?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|source| io_error(path, source))?;
        sync_parent(path)
    }
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "NodeKey {{ public: {}, secret: <redacted> }}",
            self.public_key()
        )
    }
}

pub(crate) fn io_error(path: &Path, source: io::Error) -> KeyError {
    KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Refuses a secret key file whose mode lets group or others read or write it.
fn check_private(file: &File, path: &Path) -> Result<(), KeyError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = file
            .metadata()
            .map_err(|source| io_error(path, source))?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = (file, path);
    Ok(())
}

/// Reads at most `bytes_max` bytes of UTF-8 text.
pub(crate) fn read_bounded(file: File, path: &Path, bytes_max: u64) -> Result<String, KeyError> {
    let mut bytes = Vec::new();
    file.take(bytes_max + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| io_error(path, source))?;
    if bytes.len() as u64 > bytes_max {
        return Err(KeyError::TooLarge {
            path: path.to_path_buf(),
            bytes_max,
        });
    }
    String::from_utf8(bytes).map_err(|error| KeyError::Malformed {
        path: path.to_path_buf(),
        reason: MalformedKeyFile::NotUtf8 {
            valid_up_to: error.utf8_error().valid_up_to(),
        },
    })
}

/// Syncs the directory holding `path`, so a new file's name is durable.
pub(crate) fn sync_parent(path: &Path) -> Result<(), KeyError> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(parent)
        .and_then(|directory| directory.sync_all())
        .map_err(|source| io_error(parent, source))
}

/// Parses a key file's TOML text into a table (the error names line and
/// column), and takes its `format` field, which must be `format`.
pub(crate) fn parse_toml(
    text: &str,
    format: &'static str,
) -> Result<toml::Table, MalformedKeyFile> {
    let mut table = toml::from_str::<toml::Table>(text)
        .map_err(|error| MalformedKeyFile::Toml(Box::new(error)))?;
    let found = take_string(&mut table, "format")?;
    if found != format {
        return Err(MalformedKeyFile::Format {
            expected: format,
            found,
        });
    }
    Ok(table)
}

/// Removes and returns the string field `name`.
pub(crate) fn take_string(table: &mut toml::Table, name: &str) -> Result<String, MalformedKeyFile> {
    match table.remove(name) {
        Some(toml::Value::String(text)) => Ok(text),
        Some(other) => Err(MalformedKeyFile::WrongType {
            field: name.into(),
            expected: "a string",
            found: other.type_str(),
        }),
        None => Err(MalformedKeyFile::Missing { field: name.into() }),
    }
}

/// Rejects fields nobody asked for (typos would otherwise pass silently).
pub(crate) fn no_other_fields(table: &toml::Table) -> Result<(), MalformedKeyFile> {
    match table.keys().next() {
        Some(name) => Err(MalformedKeyFile::Unknown {
            field: name.clone(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_key_round_trips_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = NodeKey::path_in(dir.path());
        let key = NodeKey::generate().unwrap();
        key.save(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let loaded = NodeKey::load(&path).unwrap();
        assert_eq!(loaded.public_key(), key.public_key());
        assert!(matches!(key.save(&path), Err(KeyError::Exists { .. })));
    }

    #[test]
    fn node_key_errors_name_the_file_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = NodeKey::path_in(dir.path());
        let write = |text: &str| {
            let _ = std::fs::remove_file(&path);
            let mut options = OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt as _;
                options.mode(0o600);
            }
            options
                .open(&path)
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        };
        let key = NodeKey::from_secret_bytes(&[9; 32]);
        let secret = hex::encode(&[9; 32]);
        let public = key.public_key().to_string();
        let cases = [
            ("", "format: missing".to_string()),
            ("format = 3", "format: expected a string".to_string()),
            (
                "format = \"x\"",
                "format: expected \"ordo-node-key-v1\"".to_string(),
            ),
            (
                "format = \"ordo-node-key-v1\"\nsecret_key = \"zz\"\npublic_key = \"\"",
                "secret_key: expected 64 hex digits".to_string(),
            ),
            (
                &format!(
                    "format = \"ordo-node-key-v1\"\nsecret_key = \"{secret}\"\npublic_key = \"{}\"",
                    hex::encode(&[1; 32])
                ),
                "public_key".to_string(),
            ),
            (
                &format!(
                    "format = \"ordo-node-key-v1\"\nsecret_key = \"{secret}\"\npublic_key = \"{public}\"\nextra = 1"
                ),
                "extra: unknown field".to_string(),
            ),
            ("secret_key = ", "not valid TOML".to_string()),
        ];
        for (text, expected) in cases {
            write(text);
            let error = NodeKey::load(&path).unwrap_err().to_string();
            assert!(error.contains("node.key"), "{error}");
            assert!(error.contains(&expected), "{error} lacks {expected}");
        }
        write(&format!(
            "format = \"ordo-node-key-v1\"\nsecret_key = \"{secret}\"\npublic_key = \"{public}\""
        ));
        assert_eq!(
            NodeKey::load(&path).unwrap().public_key(),
            public.parse().unwrap()
        );
    }

    #[cfg(unix)]
    #[test]
    fn node_key_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = NodeKey::path_in(dir.path());
        NodeKey::generate().unwrap().save(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = NodeKey::load(&path).unwrap_err();
        assert!(
            matches!(error, KeyError::Permissions { mode: 0o644, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("chmod 600"));
    }

    #[test]
    fn public_keys_and_cluster_ids_parse_strictly() {
        let key = NodeKey::from_secret_bytes(&[3; 32]).public_key();
        assert_eq!(key.to_string().parse::<PublicKey>(), Ok(key));
        assert!(matches!(
            "00".parse::<PublicKey>(),
            Err(PublicKeyError::Hex(_))
        ));
        // The identity point has small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(PublicKey::from_bytes(&identity), Err(PublicKeyError::Weak));
        let id = ClusterId([0xab; 16]);
        assert_eq!(id.to_string().parse::<ClusterId>(), Ok(id));
        assert!("abc".parse::<ClusterId>().is_err());
        assert_ne!(
            ClusterId::generate().unwrap(),
            ClusterId::generate().unwrap()
        );
    }
}
