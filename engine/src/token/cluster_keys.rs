//! `cluster.keys`: the cluster id and every voter's public key, the one file
//! a verifier (gossip node, `ordo verify`) needs.
//!
//! ```toml
//! # ordo cluster keys: the ed25519 public keys of this cluster's voters.
//! format = "ordo-cluster-keys-v1"
//! cluster_id = "<32 hex digits>"
//!
//! [keys]
//! # node id = "<64 hex digits: its ed25519 public key>"
//! 1 = "…"
//! 2 = "…"
//! ```
//!
//! Node ids are the keys of the `[keys]` table (decimal, non-zero); a key
//! may appear for one node only. Unknown fields are errors, so a typo never
//! passes silently.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::Path;

use ordo_storage::NodeId;

use super::keys::{
    ClusterId, KeyError, MalformedKeyFile, PublicKey, io_error, no_other_fields, parse_toml,
    read_bounded, sync_parent, take_string,
};

/// Conventional file name of the cluster keys file.
pub const CLUSTER_KEYS_FILE: &str = "cluster.keys";
/// `format` value of a cluster keys file.
const CLUSTER_KEYS_FORMAT: &str = "ordo-cluster-keys-v1";
/// Largest cluster keys file read (~90 bytes a voter).
pub const CLUSTER_KEYS_FILE_BYTES_MAX: u64 = 1024 * 1024;

/// Why a voter's key cannot join a [`ClusterKeys`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClusterKeysEntryError {
    /// Node id 0 means "no node".
    #[error("node id 0 is reserved")]
    NodeIdZero,
    /// The node already has a key.
    #[error("node {0} is listed twice")]
    DuplicateNode(NodeId),
    /// Another node already has this key.
    #[error("node {node_id} has the same key as node {other}")]
    DuplicateKey {
        /// The node being added.
        node_id: NodeId,
        /// The node that has the key.
        other: NodeId,
    },
}

/// The cluster id and the public key of each voter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterKeys {
    cluster_id: ClusterId,
    // Invariant: no key 0, no public key twice.
    keys: BTreeMap<NodeId, PublicKey>,
}

impl ClusterKeys {
    /// No keys yet.
    pub fn new(cluster_id: ClusterId) -> Self {
        Self {
            cluster_id,
            keys: BTreeMap::new(),
        }
    }

    /// Adds a voter's key.
    pub fn insert(&mut self, node_id: NodeId, key: PublicKey) -> Result<(), ClusterKeysEntryError> {
        if node_id == 0 {
            return Err(ClusterKeysEntryError::NodeIdZero);
        }
        if self.keys.contains_key(&node_id) {
            return Err(ClusterKeysEntryError::DuplicateNode(node_id));
        }
        if let Some((&other, _)) = self.keys.iter().find(|(_, listed)| **listed == key) {
            return Err(ClusterKeysEntryError::DuplicateKey { node_id, other });
        }
        self.keys.insert(node_id, key);
        Ok(())
    }

    /// The cluster id.
    pub fn cluster_id(&self) -> ClusterId {
        self.cluster_id
    }

    /// The key of `node_id`, if it is listed.
    pub fn get(&self, node_id: NodeId) -> Option<&PublicKey> {
        self.keys.get(&node_id)
    }

    /// Every listed voter and its key, by node id.
    pub fn iter(&self) -> impl Iterator<Item = (NodeId, &PublicKey)> + '_ {
        self.keys.iter().map(|(&node_id, key)| (node_id, key))
    }

    /// Number of listed voters.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no voter is listed.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The file's text.
    pub fn to_toml(&self) -> String {
        let mut text = format!(
            "# ordo cluster keys: the ed25519 public keys of this cluster's voters.\n\
             # A token verifies only if its statement names this cluster id and is\n\
             # signed by the key listed here for its leader.\n\
             format = \"{CLUSTER_KEYS_FORMAT}\"\n\
             cluster_id = \"{}\"\n\
             \n\
             [keys]\n\
             # node id = ed25519 public key\n",
            self.cluster_id
        );
        for (node_id, key) in &self.keys {
            text.push_str(&format!("{node_id} = \"{key}\"\n"));
        }
        text
    }

    /// Parses the file's text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, KeyError> {
        Self::parse_table(text).map_err(|reason| KeyError::Malformed {
            path: path.to_path_buf(),
            reason,
        })
    }

    fn parse_table(text: &str) -> Result<Self, MalformedKeyFile> {
        let mut table = parse_toml(text, CLUSTER_KEYS_FORMAT)?;
        let cluster_id: ClusterId = take_string(&mut table, "cluster_id")?.parse()?;
        let listed = match table.remove("keys") {
            Some(toml::Value::Table(listed)) => listed,
            Some(other) => {
                return Err(MalformedKeyFile::WrongType {
                    field: "keys".into(),
                    expected: "a table",
                    found: other.type_str(),
                });
            }
            None => {
                return Err(MalformedKeyFile::Missing {
                    field: "keys".into(),
                });
            }
        };
        no_other_fields(&table)?;
        let mut keys = Self::new(cluster_id);
        for (name, value) in listed {
            let field = format!("keys.{name}");
            let Ok(node_id) = name.parse::<NodeId>() else {
                return Err(MalformedKeyFile::NotANodeId { field });
            };
            let toml::Value::String(text) = value else {
                return Err(MalformedKeyFile::WrongType {
                    field,
                    expected: "a string",
                    found: value.type_str(),
                });
            };
            let key: PublicKey = match text.parse() {
                Ok(key) => key,
                Err(source) => {
                    return Err(MalformedKeyFile::PublicKey {
                        field: Some(field),
                        source,
                    });
                }
            };
            keys.insert(node_id, key)
                .map_err(|source| MalformedKeyFile::Entry { field, source })?;
        }
        if keys.is_empty() {
            return Err(MalformedKeyFile::NoVoter);
        }
        Ok(keys)
    }

    /// Loads a cluster keys file.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let file = File::open(path).map_err(|source| io_error(path, source))?;
        let text = read_bounded(file, path, CLUSTER_KEYS_FILE_BYTES_MAX)?;
        Self::parse(&text, path)
    }

    /// Writes the file atomically (a temporary file renamed over it) and
    /// syncs it and its directory.
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(".tmp");
        let temporary = Path::new(&temporary);
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(temporary)
            .map_err(|source| io_error(temporary, source))?;
        file.write_all(self.to_toml().as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|source| io_error(temporary, source))?;
        std::fs::rename(temporary, path).map_err(|source| io_error(path, source))?;
        sync_parent(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::keys::NodeKey;

    fn sample() -> ClusterKeys {
        let mut keys = ClusterKeys::new(ClusterId([7; 16]));
        for node_id in 1..=3u8 {
            keys.insert(
                u64::from(node_id),
                NodeKey::from_secret_bytes(&[node_id; 32]).public_key(),
            )
            .unwrap();
        }
        keys
    }

    #[test]
    fn round_trips_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CLUSTER_KEYS_FILE);
        let keys = sample();
        keys.save(&path).unwrap();
        assert_eq!(ClusterKeys::load(&path).unwrap(), keys);
        assert_eq!(keys.len(), 3);
        assert!(keys.get(4).is_none());
    }

    #[test]
    fn rejects_bad_entries() {
        let mut keys = sample();
        let key = NodeKey::from_secret_bytes(&[1; 32]).public_key();
        assert_eq!(keys.insert(0, key), Err(ClusterKeysEntryError::NodeIdZero));
        assert_eq!(
            keys.insert(1, key),
            Err(ClusterKeysEntryError::DuplicateNode(1))
        );
        assert_eq!(
            keys.insert(9, key),
            Err(ClusterKeysEntryError::DuplicateKey {
                node_id: 9,
                other: 1
            })
        );
    }

    #[test]
    fn errors_name_the_file_and_field() {
        let good = sample().to_toml();
        let path = Path::new("/etc/ordo/cluster.keys");
        let key1 = NodeKey::from_secret_bytes(&[1; 32])
            .public_key()
            .to_string();
        let cases = [
            (
                good.replace("ordo-cluster-keys-v1", "v0"),
                "format: expected",
            ),
            (
                good.replace("cluster_id = \"", "cluster_id = \"0"),
                "cluster id: expected 32 hex digits",
            ),
            (good.replace("1 = ", "one = "), "keys.one: not a node id"),
            (
                good.replace("1 = ", "0 = "),
                "keys.0: node id 0 is reserved",
            ),
            (
                good.replace(&key1, "00"),
                "keys.1: public key: expected 64 hex digits",
            ),
            (
                good.replace("2 = \"", "2 = 5 #"),
                "keys.2: expected a string",
            ),
            (
                good.replace("[keys]", "colour = \"red\"\n[keys]"),
                "colour: unknown field",
            ),
            (
                good.replace("[keys]", &format!("[keys]\n7 = \"{key1}\"")),
                "has the same key as node",
            ),
            (good.replace("cluster_id", "cluster"), "cluster_id: missing"),
            (good.replace("[keys]", "[other]"), "keys: missing"),
            (
                good.split("[keys]").next().unwrap().to_string() + "[keys]\n",
                "lists no voter",
            ),
            ("format = [".to_string(), "not valid TOML"),
        ];
        for (text, expected) in cases {
            let error = ClusterKeys::parse(&text, path).unwrap_err().to_string();
            assert!(error.starts_with("/etc/ordo/cluster.keys: "), "{error}");
            assert!(error.contains(expected), "{error} lacks {expected}");
        }
    }

    #[test]
    fn missing_and_oversized_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.keys");
        let error = ClusterKeys::load(&path).unwrap_err();
        assert!(matches!(error, KeyError::Io { .. }));
        assert!(error.to_string().contains("absent.keys"));
        std::fs::write(&path, vec![b'#'; CLUSTER_KEYS_FILE_BYTES_MAX as usize + 1]).unwrap();
        assert!(matches!(
            ClusterKeys::load(&path),
            Err(KeyError::TooLarge { .. })
        ));
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        assert!(
            ClusterKeys::load(&path)
                .unwrap_err()
                .to_string()
                .contains("not UTF-8")
        );
    }
}
