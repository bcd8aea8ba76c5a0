//! Commit certificates at runtime: the leader signs one statement per
//! commit advance (`crate::token`), answers its proposers with tokens cut
//! from it, and replicates the signed statement to every voter, which
//! stores it so that it can hand out tokens for any committed entry
//! (`ordo log`, gossip) by rebuilding the Merkle path from the log.
//!
//! Statements live in a [`CertStore`] (recent ones in memory, all in
//! `data_dir/certificates`, appended without fsync: a statement lost in a power
//! failure only means that node cannot serve tokens for those entries; the
//! entries themselves are safe.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;

use bytes::Bytes;
use ordo_net::{Certificate, Committed, ForwardTokens, PeerMessage};
use ordo_storage::{Index, LogStore, NodeId};

use super::cert_store::{CertStore, decode_statement, encode_statement};
use super::chain_store::{CHAIN_FILE, ChainStore};
use super::config::NodeConfig;
use super::notify::Notify;
use super::peers::Peers;
use crate::core::ApplyBatch;
use crate::core::Membership;
use crate::token::{
    ClusterId, ClusterKeys, CommitProof, ConfigLink, KeySchedule, MerkleTree, NodeKey,
    SignedStatement, Signer, Token, TokenHash, entry_leaf,
};
use ordo_storage::{BatchKind, EntryView};

/// Proofs kept to cut tokens for just-committed entries without rehashing.
const RECENT_PROOFS_MAX: usize = 256;
/// Tokens from forwarded answers waiting for their proposer's answer.
const FORWARDED_TOKENS_MAX: usize = 65_536;
/// The certificates file's name in the data directory.
pub const CERTIFICATES_FILE: &str = "certificates";

/// Why a committed entry's token cannot be cut.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// No statement this node holds covers the entry yet: the leader's
    /// certificate was lost or has not arrived (the group's repair asks for
    /// it; a reader waits for [`Certificates::stored`]).
    #[error("no commit statement covers index {index} yet")]
    Missing {
        /// The entry's index.
        index: Index,
    },
    /// The statement's entries are not all in the log.
    #[error("entry {index} of its statement is not in the log")]
    NotInLog {
        /// The first entry missing.
        index: Index,
    },
    /// The log's entries do not hash to the statement's root: the log or
    /// the statement is damaged.
    #[error("the log's entries {first}..={last} do not match their commit statement")]
    Mismatch {
        /// The statement's first index.
        first: Index,
        /// The statement's last index.
        last: Index,
    },
    /// The log failed to read.
    #[error(transparent)]
    Storage(#[from] ordo_storage::StorageError),
}

/// Why a node's certificates could not be opened at start.
#[derive(Debug, thiserror::Error)]
pub enum CertificatesError {
    /// The node key or the cluster keys file does not load.
    #[error(transparent)]
    Key(#[from] crate::token::KeyError),
    /// The data directory holds a node key but the config names no keys
    /// file to check it against.
    #[error(
        "invalid config field keys_file: {} has a key, so keys_file is needed",
        data_dir.display()
    )]
    NoKeysFile {
        /// The data directory.
        data_dir: PathBuf,
    },
    /// The keys file lists another key for this node (or none, for a node
    /// that is not joining).
    #[error(
        "invalid config field keys_file: {} does not list node {id}'s public key from {}",
        keys_file.display(),
        key_file.display()
    )]
    KeyNotListed {
        /// The cluster keys file.
        keys_file: PathBuf,
        /// This node.
        id: NodeId,
        /// Its node key file.
        key_file: PathBuf,
    },
    /// The thread that prepares signing nonces did not start.
    #[error("cannot start the signing nonce thread: {0}")]
    NonceThread(#[source] std::io::Error),
    /// The certificates file does not open.
    #[error(transparent)]
    Statements(#[from] super::cert_store::CertStoreError),
    /// The chain file does not open.
    #[error(transparent)]
    Chain(#[from] super::chain_store::ChainStoreError),
}

/// Why a configuration entry's link could not be formed (it is tried
/// again later).
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The entry's token cannot be cut.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The token cut does not decode.
    #[error(transparent)]
    Decode(#[from] crate::token::TokenDecodeError),
    /// The statement does not fit the key schedule.
    #[error("its statement does not fit the chain: {0}")]
    Unfit(#[source] crate::token::VerifyError),
    /// The log failed to read.
    #[error(transparent)]
    Storage(#[from] ordo_storage::StorageError),
    /// The log has no configuration entry there.
    #[error("no configuration entry at index {0}")]
    NoEntry(Index),
}

/// Why committed entries could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignGapError {
    /// This node has no node key.
    #[error("no key to sign with")]
    NoKey,
    /// The log failed to read.
    #[error(transparent)]
    Storage(#[from] ordo_storage::StorageError),
    /// The log no longer holds the entries.
    #[error("entries from {0} are not in the log")]
    NotInLog(Index),
    /// The signer refused the entries.
    #[error(transparent)]
    Proof(#[from] crate::token::ProofError),
    /// Some entries were committed under a configuration this node is no
    /// voter of: one of its voters signs them.
    #[error(
        "entries {first}..={last} were committed under a configuration this node is no voter of"
    )]
    NotAVoter {
        /// The first such entry.
        first: Index,
        /// The last.
        last: Index,
    },
}

/// A node's certificates. Lives on the group's shard.
pub struct Certificates {
    id: NodeId,
    signer: Option<Signer>,
    /// Whose key may sign which statement: `cluster.keys`, then every
    /// configuration this node applied (`token::KeySchedule`). `None`
    /// without a keys file (no tokens: nothing to check).
    schedule: RefCell<Option<KeySchedule>>,
    /// `cluster.keys` alone: what links from a peer's snapshot are checked
    /// against before they are kept.
    bootstrap: RefCell<Option<KeySchedule>>,
    /// The configuration links this node holds (`data_dir/chain`).
    chain: RefCell<ChainStore>,
    /// Committed configuration entries whose link has not formed yet (no
    /// statement ending at them has arrived); the log is not compacted
    /// past the first.
    pending_links: RefCell<std::collections::BTreeSet<Index>>,
    /// Links are being formed (one task at a time).
    forming_links: std::cell::Cell<bool>,
    /// When links were last tried (µs, monotonic).
    links_tried_us: std::cell::Cell<u64>,
    /// Statements this node holds (bounded memory; older ones in a file).
    statements: RefCell<CertStore>,
    recent: RefCell<VecDeque<CommitProof>>,
    forwarded: RefCell<HashMap<Index, Vec<u8>>>,
    forwarded_order: RefCell<VecDeque<Index>>,
    /// The tree of the statement last used to serve a token (readers walk
    /// the log in order, so consecutive entries share it).
    tree: RefCell<Option<(crate::token::Digest, MerkleTree<TokenHash>)>>,
    /// Every index in `[floor, covered]` has a statement (the frontier of
    /// contiguous coverage; gaps behind it are filled before it moves).
    covered: std::cell::Cell<Index>,
    /// An applied index whose only statements start before the log does
    /// (so no token can be cut for it here): the repair fetches one.
    wanted: std::cell::Cell<Option<Index>>,
    /// Leader: a statement a voter asked for is being signed (one at a
    /// time: each reads and hashes up to `GAP_STATEMENT_ENTRIES_MAX`
    /// entries).
    signing_for_peer: std::cell::Cell<bool>,
    /// A gap is being signed (leader) or was asked for (follower) at this
    /// time (µs, monotonic), to rate-limit repairs.
    repair_started_us: std::cell::Cell<Option<u64>>,
    /// Certificates signed and not yet sent to the voters (see
    /// [`Certificates::send_signed`]).
    unsent: RefCell<Vec<Certificate>>,
    /// When a turn first held `unsent` back (µs, monotonic).
    unsent_since_us: std::cell::Cell<Option<u64>>,
    /// How long `unsent` may wait for other messages to ride with
    /// (`raft.commit_notify_delay_us`).
    send_delay_us: u64,
    /// Moves whenever a statement is stored: readers waiting for a
    /// missing token look again.
    pub stored: Notify,
    /// The cluster uses tokens (the config names a `keys_file` that exists). Without,
    /// entries are served with empty tokens: there is nothing to wait for.
    enabled: bool,
}

/// How often forming a pending configuration link is tried (µs).
const LINK_RETRY_US: u64 = 20_000;
/// Entries signed per statement when filling a gap.
const GAP_STATEMENT_ENTRIES_MAX: u64 = 4096;
/// How long a gap repair may take before it is tried again.
const REPAIR_RETRY_US: u64 = 200_000;

impl Certificates {
    /// Loads the node's key and the cluster's keys named by `config`, and
    /// the statements stored in its data directory. A node without a key
    /// file signs nothing (its tokens come from other leaders).
    pub fn open(config: &NodeConfig) -> Result<Self, CertificatesError> {
        let key_path = NodeKey::path_in(&config.data_dir);
        let signer = if key_path.exists() {
            let key = NodeKey::load(&key_path)?;
            let keys_path =
                config
                    .keys_file
                    .clone()
                    .ok_or_else(|| CertificatesError::NoKeysFile {
                        data_dir: config.data_dir.clone(),
                    })?;
            let keys = ClusterKeys::load(&keys_path)?;
            match keys.get(config.id) {
                Some(public) if *public == key.public_key() => {}
                None if config.join => {
                    // Not in `cluster.keys`: verifiers learn this key from
                    // the configuration entry that adds the node (the chain
                    // of configuration links, docs/tokens.md). It signs
                    // once it is a voter of the configuration in force.
                    tracing::info!(
                        id = config.id,
                        "joining node: its key will be trusted through the configuration that adds it"
                    );
                }
                _ => {
                    return Err(CertificatesError::KeyNotListed {
                        keys_file: keys_path,
                        id: config.id,
                        key_file: key_path,
                    });
                }
            }
            let signer = Signer::new(keys.cluster_id(), config.id, key);
            let schedule = KeySchedule::new(&keys);
            // Nonces prepared on a thread of their own take the signature's
            // base-point multiplication off the commit path.
            Some((
                signer
                    .with_nonce_pool(format!("ordo-{}-nonces", config.id))
                    .map_err(CertificatesError::NonceThread)?,
                schedule,
            ))
        } else {
            tracing::warn!(id = config.id, path = %key_path.display(), "no node key: this node will not sign commit statements");
            None
        };
        let (signer, schedule) = match signer {
            Some((signer, schedule)) => (Some(signer), Some(schedule)),
            None => (None, None),
        };
        let certificates = Self::open_with(config, signer)?;
        certificates.rebuild_schedule(schedule);
        Ok(certificates)
    }

    /// The statements stored in the node's data directory, signed from now
    /// on with `signer` (`None`: the node stores and serves statements
    /// other voters sign).
    fn open_with(config: &NodeConfig, signer: Option<Signer>) -> Result<Self, CertificatesError> {
        let path: PathBuf = config.data_dir.join(CERTIFICATES_FILE);
        let (store, ranges) = CertStore::open(&path)?;
        // Tokens exist only where the cluster's keys do: a config naming a
        // keys file that is not there (a test cluster without keys) serves
        // empty tokens rather than waiting for statements no one signs.
        let enabled = config.keys_file.as_ref().is_some_and(|path| path.exists());
        let chain = ChainStore::open(&config.data_dir.join(CHAIN_FILE))?;
        Ok(Self::assemble(
            config, signer, store, ranges, enabled, chain,
        ))
    }

    /// Certificates kept in memory only, starting from `statements` (the
    /// simulator keeps them across a restart, as the certificates file
    /// survives one), signed with `key`.
    pub fn in_memory(
        config: &NodeConfig,
        key: Option<NodeKey>,
        keys: Option<&ClusterKeys>,
        statements: Vec<SignedStatement>,
        links: Vec<ConfigLink>,
        configs: Vec<(Index, Bytes)>,
    ) -> Self {
        let cluster = keys.map_or(ClusterId([0; 16]), ClusterKeys::cluster_id);
        let signer = key.map(|key| Signer::new(cluster, config.id, key));
        let mut store = CertStore::in_memory_complete();
        let mut ranges = Vec::with_capacity(statements.len());
        for signed in statements {
            ranges.push((signed.statement.first_index, signed.statement.last_index));
            // In memory only: cannot fail.
            let _ = store.insert(signed);
        }
        let certificates = Self::assemble(
            config,
            signer,
            store,
            ranges,
            true,
            ChainStore::in_memory(links, configs),
        );
        certificates.rebuild_schedule(keys.map(KeySchedule::new));
        certificates
    }

    /// The key schedule from `cluster.keys` (`schedule`) and every
    /// configuration the chain file recorded.
    fn rebuild_schedule(&self, schedule: Option<KeySchedule>) {
        let Some(mut schedule) = schedule else {
            return;
        };
        *self.bootstrap.borrow_mut() = Some(schedule.clone());
        for (index, encoded) in self.chain.borrow().configs() {
            match Membership::decode(encoded) {
                Ok(membership) => {
                    schedule.push_trusted(index, &membership);
                }
                Err(error) => {
                    tracing::error!(id = self.id, index, %error, "recorded configuration unreadable")
                }
            }
        }
        *self.schedule.borrow_mut() = Some(schedule);
    }

    /// Links that came with a snapshot (`chain_store::unwrap_snapshot`):
    /// each is checked from `cluster.keys` on, in order, and the ones that
    /// verify are kept, so that a node that joined from a snapshot can
    /// serve the whole chain. The first that does not verify ends it.
    pub fn adopt_links(&self, mut links: Vec<ConfigLink>) {
        let Some(mut check) = self.bootstrap.borrow().clone() else {
            return;
        };
        links.sort_by_key(|link| link.index);
        let mut kept = 0;
        for link in links {
            if let Err(error) = check.learn(&link) {
                tracing::warn!(id = self.id, index = link.index, %error, "a snapshot's configuration link does not verify; the chain it carries ends before it");
                break;
            }
            if !self.chain.borrow().contains(link.index) {
                if let Err(error) = self.chain.borrow_mut().insert(link) {
                    tracing::warn!(id = self.id, %error, "cannot keep a configuration link");
                    break;
                }
                kept += 1;
            }
        }
        if kept > 0 {
            tracing::info!(
                id = self.id,
                kept,
                "configuration links taken from a snapshot"
            );
        }
    }

    /// Every configuration recorded (the simulator carries them across a
    /// restart).
    pub fn configs_held(&self) -> Vec<(Index, Bytes)> {
        self.chain
            .borrow()
            .configs()
            .map(|(index, encoded)| (index, encoded.clone()))
            .collect()
    }

    /// The log was compacted through `upto`: statements ending there or
    /// before are dropped from memory and their file space freed
    /// (`CertStore::compact`).
    pub fn compact(&self, upto: Index) {
        match self.statements.borrow_mut().compact(upto) {
            Ok(0) => {}
            Ok(freed) => tracing::debug!(id = self.id, upto, freed, "freed compacted statements"),
            Err(error) => {
                tracing::warn!(id = self.id, upto, %error, "cannot free compacted statements")
            }
        }
    }

    /// Number of configuration links held.
    pub fn chain_len(&self) -> usize {
        self.chain.borrow().links().count()
    }

    /// Every configuration link held (the simulator carries them across a
    /// restart).
    pub fn links_held(&self) -> Vec<ConfigLink> {
        self.chain.borrow().links().cloned().collect()
    }

    /// Every statement held in memory (the simulator carries them across
    /// a restart).
    pub fn statements_held(&self) -> Vec<SignedStatement> {
        self.statements
            .borrow()
            .recent()
            .values()
            .copied()
            .collect()
    }

    fn assemble(
        config: &NodeConfig,
        signer: Option<Signer>,
        store: CertStore,
        mut ranges: Vec<(Index, Index)>,
        enabled: bool,
        chain: ChainStore,
    ) -> Self {
        // The coverage frontier from every statement ever stored (memory
        // keeps only the newest).
        ranges.sort_unstable();
        let mut covered = 0;
        for (first, last) in ranges {
            if first <= covered + 1 {
                covered = covered.max(last);
            }
        }
        Self {
            id: config.id,
            signer,
            schedule: RefCell::new(None),
            bootstrap: RefCell::new(None),
            chain: RefCell::new(chain),
            pending_links: RefCell::default(),
            forming_links: std::cell::Cell::new(false),
            links_tried_us: std::cell::Cell::new(0),
            statements: RefCell::new(store),
            recent: RefCell::default(),
            forwarded: RefCell::default(),
            forwarded_order: RefCell::default(),
            tree: RefCell::default(),
            covered: std::cell::Cell::new(covered),
            wanted: std::cell::Cell::new(None),
            signing_for_peer: std::cell::Cell::new(false),
            repair_started_us: std::cell::Cell::new(None),
            unsent: RefCell::default(),
            unsent_since_us: std::cell::Cell::new(None),
            send_delay_us: config.raft.commit_notify_delay_us,
            stored: Notify::default(),
            enabled,
        }
    }

    fn store(&self, signed: SignedStatement) {
        if let Err(error) = self.statements.borrow_mut().insert(signed) {
            tracing::warn!(id = self.id, %error, "cannot store a commit statement");
        }
        self.stored.notify();
    }

    /// The node starts from the configuration in force at `index` (its
    /// snapshot's; `0`: the bootstrap one): the configurations after it
    /// come with the applies.
    pub fn start_schedule(&self, index: Index, membership: &Membership) {
        // Entries at or below a snapshot point are gone from the log: their
        // links come from the chain file or not at all.
        self.pending_links.borrow_mut().retain(|&i| i > index);
        if let Some(schedule) = &mut *self.schedule.borrow_mut()
            && index > 0
            && schedule.push_trusted(index, membership)
        {
            self.record_configuration(index, membership.encode());
        }
    }

    /// Every node, for each apply (after [`Certificates::sign_commit`] on
    /// the leader): the configurations it commits join the schedule.
    pub fn applied(&self, apply: &ApplyBatch) {
        for entry in apply.entries() {
            self.note_configuration(&entry);
        }
    }

    fn note_configuration(&self, entry: &EntryView<'_>) {
        if entry.kind != BatchKind::Config {
            return;
        }
        if self.enabled && !self.chain.borrow().contains(entry.index) {
            self.pending_links.borrow_mut().insert(entry.index);
        }
        if let Some(schedule) = &mut *self.schedule.borrow_mut() {
            match Membership::decode(entry.payload) {
                Ok(membership) => {
                    if schedule.push_trusted(entry.index, &membership) {
                        self.record_configuration(
                            entry.index,
                            Bytes::copy_from_slice(entry.payload),
                        );
                    }
                }
                Err(error) => tracing::error!(
                    id = self.id,
                    index = entry.index,
                    %error,
                    "committed configuration entry unreadable: its voters cannot sign"
                ),
            }
        }
    }

    /// The key the newest configuration this node applied names for voter
    /// `id` (for the bootstrap voters, `cluster.keys`'s).
    pub fn voter_key(&self, id: NodeId) -> Option<[u8; 32]> {
        let schedule = self.schedule.borrow();
        let schedule = schedule.as_ref()?;
        schedule
            .configs()
            .iter()
            .rev()
            .find_map(|config| config.voters.get(&id).copied().flatten())
            .map(|key| key.to_bytes())
    }

    /// Keeps a configuration in the chain file, so that a start after the
    /// log was compacted past it still knows whose key signs what.
    fn record_configuration(&self, index: Index, encoded: Bytes) {
        if let Err(error) = self.chain.borrow_mut().insert_config(index, encoded) {
            tracing::error!(id = self.id, index, %error, "cannot record a configuration");
        }
    }

    /// Whether this node may sign a statement starting at `first`: it
    /// holds a key, and the configuration in force after `first - 1` names
    /// it as a voter with that key (`token::KeySchedule`).
    pub fn may_sign(&self, first: Index) -> bool {
        let Some(signer) = &self.signer else {
            return false;
        };
        match &*self.schedule.borrow() {
            Some(schedule) => matches!(
                schedule.at(first.saturating_sub(1)).voters.get(&self.id),
                Some(Some(key)) if *key == signer.public_key()
            ),
            None => true,
        }
    }

    /// The first committed configuration entry whose link has not formed
    /// (the log must keep it).
    pub fn first_pending_link(&self) -> Option<Index> {
        self.pending_links.borrow().first().copied()
    }

    /// Whether links should be formed now (`now_us`, monotonic): one is
    /// pending at or below `applied`, no task is forming them, and the
    /// last try was `LINK_RETRY_US` ago (a statement that does not end at
    /// the entry costs a log read and its hashes per try).
    pub fn links_due(&self, applied: Index, now_us: u64) -> bool {
        let due = !self.forming_links.get()
            && self
                .first_pending_link()
                .is_some_and(|index| index <= applied)
            && now_us >= self.links_tried_us.get().saturating_add(LINK_RETRY_US);
        if due {
            self.links_tried_us.set(now_us);
        }
        due
    }

    /// Links from index `after` on (exclusive), at most `bytes_max` of
    /// them encoded (at least one); and whether more follow.
    pub fn chain_after(&self, after: Index, bytes_max: usize) -> (Vec<ConfigLink>, bool) {
        let chain = self.chain.borrow();
        let mut links = Vec::new();
        let mut bytes = 0;
        for link in chain.links().filter(|link| link.index > after) {
            let len = link.to_bytes().len();
            if !links.is_empty() && bytes + len > bytes_max {
                return (links, true);
            }
            bytes += len;
            links.push(link.clone());
        }
        (links, false)
    }

    /// Forms the links of committed configuration entries up to `applied`
    /// whose statement has arrived: the entry and its token, checked
    /// against the schedule (the statement must end at the entry and be
    /// signed under the configuration before it), kept in the chain file.
    pub async fn form_links<S: LogStore>(&self, store: &S, applied: Index) {
        if self.forming_links.replace(true) {
            return;
        }
        let pending: Vec<Index> = self
            .pending_links
            .borrow()
            .range(..=applied)
            .copied()
            .collect();
        for index in pending {
            match self.form_link(store, index).await {
                Ok(Some(link)) => {
                    if let Err(error) = self.chain.borrow_mut().insert(link) {
                        tracing::warn!(id = self.id, index, %error, "cannot keep a configuration link");
                        continue;
                    }
                    tracing::info!(id = self.id, index, "configuration link formed");
                    self.pending_links.borrow_mut().remove(&index);
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(id = self.id, index, %error, "cannot form a configuration link");
                    if index < store.state().first_index() {
                        self.pending_links.borrow_mut().remove(&index);
                    }
                }
            }
        }
        self.forming_links.set(false);
    }

    /// The link of the configuration entry at `index`, if a statement
    /// fitting it is held (`None`: not yet).
    async fn form_link<S: LogStore>(
        &self,
        store: &S,
        index: Index,
    ) -> Result<Option<ConfigLink>, LinkError> {
        let token = match self.token_at(store, index).await {
            Ok(bytes) => Token::from_bytes(&bytes)?,
            Err(TokenError::Missing { .. }) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        let statement = token.signed.statement;
        if statement.last_index != index {
            // Signed before statements ended at configuration entries:
            // wait for one that does (the repair asks for it).
            return Ok(None);
        }
        if let Some(schedule) = &*self.schedule.borrow()
            && let Err(error) = schedule.signer_key(&statement)
        {
            return Err(LinkError::Unfit(error));
        }
        let batches = store.read(index, 1).await?;
        let entry = batches
            .iter()
            .flat_map(|b| b.entries())
            .find(|e| e.index == index && e.kind == BatchKind::Config)
            .ok_or(LinkError::NoEntry(index))?;
        Ok(Some(ConfigLink {
            index,
            term: entry.term,
            id: entry.id,
            ts: entry.ts,
            payload: Bytes::copy_from_slice(entry.payload),
            token,
        }))
    }

    /// Leader: signs the entries of a commit advance (all of them, no-ops
    /// included, so the statement covers a contiguous range); the turn's
    /// end sends the signed statement to every voter
    /// ([`Certificates::send_signed`]). A configuration entry ends a
    /// statement: the entries after it are signed under the configuration
    /// it starts, by a voter of that one (`token::chain`). A part this
    /// node may not sign is left to the voters that may (the repair).
    pub fn sign_commit(&self, apply: &ApplyBatch, term: u64) {
        if self.signer.is_none() {
            return;
        }
        let mut part: Vec<EntryView<'_>> = Vec::new();
        for entry in apply.entries() {
            let ends = entry.kind == BatchKind::Config;
            part.push(entry);
            if ends {
                self.sign_part(std::mem::take(&mut part), term);
                self.note_configuration(&entry);
            }
        }
        if !part.is_empty() {
            self.sign_part(part, term);
        }
    }

    fn sign_part(&self, entries: Vec<EntryView<'_>>, term: u64) {
        let (Some(signer), Some(first)) = (&self.signer, entries.first()) else {
            return;
        };
        if !self.may_sign(first.index) {
            tracing::debug!(
                id = self.id,
                first = first.index,
                "not a voter of the configuration these entries were committed under: leaving them to one"
            );
            return;
        }
        let proof = match signer.sign_entries(term, entries) {
            Ok(proof) => proof,
            Err(error) => {
                tracing::error!(id = self.id, %error, "cannot sign a commit advance");
                return;
            }
        };
        let signed = *proof.signed();
        self.store(signed);
        let certificate = Certificate {
            term,
            statement: encode_statement(&signed),
        };
        self.unsent.borrow_mut().push(certificate);
        let mut recent = self.recent.borrow_mut();
        recent.push_back(proof);
        if recent.len() > RECENT_PROOFS_MAX {
            recent.pop_front();
        }
    }

    /// Sends the certificates signed so far to every other voter, at the
    /// end of a turn (`now_us`), after the clients' answers are queued: at
    /// C = 1 sending them first cost ~80 µs of commit latency on this 2-core
    /// machine (two follower wake-ups competing with the client for the
    /// cores before its answer left); see docs/benchmarks.md.
    ///
    /// They leave in a turn that sent the voters other messages (`riding`:
    /// the same socket writes carry them), or once they have waited
    /// `raft.commit_notify_delay_us`, when the core also tells idle
    /// followers the commit index they belong to. A closed-loop client's
    /// next proposal thus carries the last one's certificate, instead of a
    /// message of its own waking every follower.
    pub fn send_signed(&self, peers: &Peers, voters: &[NodeId], now_us: u64, riding: bool) {
        let alone = voters.iter().all(|&voter| voter == self.id);
        if alone {
            self.unsent.borrow_mut().clear();
        }
        if self.unsent.borrow().is_empty() {
            self.unsent_since_us.set(None);
            return;
        }
        let since = *self.unsent_since_us.get().get_or_insert(now_us);
        if !riding && now_us < since.saturating_add(self.send_delay_us) {
            self.unsent_since_us.set(Some(since));
            return;
        }
        self.unsent_since_us.set(None);
        let unsent = std::mem::take(&mut *self.unsent.borrow_mut());
        for certificate in unsent {
            for &voter in voters {
                if voter != self.id {
                    // A full queue drops it: the follower fetches missing certificates from the leader (certificate repair).
                    let _ = peers.try_send(voter, PeerMessage::Certificate(certificate.clone()));
                }
            }
        }
    }

    /// When held-back certificates must be sent (µs, monotonic), if any
    /// are.
    pub fn send_due_us(&self) -> Option<u64> {
        self.unsent_since_us
            .get()
            .map(|since| since.saturating_add(self.send_delay_us))
    }

    /// Writes buffered statements that have waited long enough by `now`
    /// (called every turn; see `CertStore::flush_stale`).
    pub fn flush_stale(&self, now: std::time::Instant) {
        if let Err(error) = self.statements.borrow_mut().flush_stale(now) {
            tracing::warn!(id = self.id, %error, "cannot store commit statements");
        }
    }

    /// A voter stores a statement the leader replicated.
    pub fn received(&self, certificate: Certificate) {
        match decode_statement(&certificate.statement) {
            Some(signed) => self.store(signed),
            None => tracing::warn!(
                id = self.id,
                "malformed certificate from the leader ignored"
            ),
        }
    }

    /// A follower keeps the tokens the leader attached to forwarded
    /// answers until its proposers are answered.
    pub fn absorb_forward_tokens(&self, tokens: ForwardTokens) {
        let mut forwarded = self.forwarded.borrow_mut();
        let mut order = self.forwarded_order.borrow_mut();
        for (index, token) in tokens.tokens {
            if !token.is_empty() {
                forwarded.insert(index, token);
                order.push_back(index);
            }
        }
        while order.len() > FORWARDED_TOKENS_MAX {
            if let Some(index) = order.pop_front() {
                forwarded.remove(&index);
            }
        }
    }

    /// The encoded token of an entry that just committed (the leader's own
    /// recent proofs, or a token the leader sent with a forwarded answer).
    pub fn token_for(&self, committed: &Committed) -> Option<Vec<u8>> {
        let mut forwarded = self.forwarded.borrow_mut();
        if !forwarded.is_empty()
            && let Some(token) = forwarded.remove(&committed.index)
        {
            return Some(token);
        }
        drop(forwarded);
        self.recent
            .borrow()
            .iter()
            .rev()
            .find(|proof| {
                let statement = proof.statement();
                statement.first_index <= committed.index && committed.index <= statement.last_index
            })
            .and_then(|proof| proof.token_bytes(committed.index))
    }

    /// The first run of indexes in `[floor, applied]` without a statement,
    /// if any (as `(from, to)`).
    pub fn first_gap(&self, floor: Index, applied: Index) -> Option<(Index, Index)> {
        let store = self.statements.borrow();
        let statements = store.recent();
        let mut covered = self.covered.get().max(floor.saturating_sub(1));
        'extend: while covered < applied {
            // Statements overlap (a new leader re-signs what its
            // predecessor may have signed), so the first one ending after
            // `covered` may start later than one ending further on: look
            // at every statement ending after `covered` for one that
            // continues it, and note where the nearest later one starts.
            let mut next_start = Index::MAX;
            for (&last, signed) in statements.range(covered + 1..) {
                if signed.statement.first_index <= covered + 1 {
                    covered = last;
                    continue 'extend;
                }
                next_start = next_start.min(signed.statement.first_index);
            }
            self.covered.set(covered);
            return Some((covered + 1, next_start.saturating_sub(1).min(applied)));
        }
        self.covered.set(covered);
        None
    }

    /// The first run of indexes in `[floor, applied]` this node cannot cut
    /// tokens for: one without a statement ([`Certificates::first_gap`]),
    /// else one whose statements start before `floor`
    /// ([`Certificates::token_at`] noted it).
    pub fn first_unservable(&self, floor: Index, applied: Index) -> Option<(Index, Index)> {
        if let Some(gap) = self.first_gap(floor, applied) {
            return Some(gap);
        }
        // Kept until a statement that fits arrives (or the log moves past
        // it), so that each repair round asks again and the voter signs
        // the entries itself once no one could help: taken once per ask, a
        // reader's 5 s wait paced the rounds and the fallback came after a
        // minute (runtime simulator, seed 44262).
        let wanted = self.wanted.get()?;
        if wanted < floor || wanted > applied || self.covers_from(wanted, floor) {
            self.wanted.set(None);
            return None;
        }
        let last = applied.min(wanted + GAP_STATEMENT_ENTRIES_MAX - 1);
        Some((wanted, last))
    }

    /// Whether a statement that starts at or after `floor` covers `from`.
    pub fn covers_from(&self, from: Index, floor: Index) -> bool {
        self.statements.borrow().lookup_from(from, floor).is_some()
    }

    /// Leader: whether signing statements a voter asked for may start
    /// now (none is in progress); marks it started.
    pub fn start_signing_for_peer(&self) -> bool {
        !self.signing_for_peer.replace(true)
    }

    /// Leader: the statements a voter asked for are signed and sent.
    pub fn signing_for_peer_done(&self) {
        self.signing_for_peer.set(false);
    }

    /// Whether a repair may start now; marks it started.
    pub fn start_repair(&self, now_us: u64) -> bool {
        match self.repair_started_us.get() {
            Some(started) if now_us < started + REPAIR_RETRY_US => false,
            _ => {
                self.repair_started_us.set(Some(now_us));
                true
            }
        }
    }

    /// A repair finished; the next may start at once.
    pub fn repair_done(&self) {
        self.repair_started_us.set(None);
    }

    /// Statements overlapping `[from, to]` that start at or after `floor`,
    /// at most `max`, as certificates.
    pub fn certificates_in(
        &self,
        term: u64,
        from: Index,
        to: Index,
        floor: Index,
        max: usize,
    ) -> Vec<Certificate> {
        self.statements
            .borrow()
            .range(from, to, floor, max)
            .iter()
            .map(|signed| Certificate {
                term,
                statement: encode_statement(signed),
            })
            .collect()
    }

    /// Leader: signs committed entries `[from, to]` that no statement
    /// covers (their leader died before signing), in statements of at most
    /// `GAP_STATEMENT_ENTRIES_MAX` entries, and sends them to every voter.
    pub async fn sign_gap<S: LogStore>(
        &self,
        store: &S,
        term: u64,
        from: Index,
        to: Index,
        peers: &Peers,
        voters: &[NodeId],
    ) -> Result<(), SignGapError> {
        let Some(signer) = &self.signer else {
            return Err(SignGapError::NoKey);
        };
        let cuts = match &*self.schedule.borrow() {
            Some(schedule) => schedule.cuts(from, to),
            None => vec![to],
        };
        let mut next = from;
        let mut refused = None;
        for cut in cuts {
            while next <= cut {
                let last = cut.min(next + GAP_STATEMENT_ENTRIES_MAX - 1);
                if !self.may_sign(next) {
                    // Not a voter of the configuration these entries were
                    // committed under: one of its voters signs them.
                    refused.get_or_insert((next, cut));
                    next = cut + 1;
                    break;
                }
                let batches = store.read(next, 4 << 20).await?;
                let entries: Vec<_> = batches
                    .iter()
                    .flat_map(|b| b.entries())
                    .filter(|e| e.index >= next && e.index <= last)
                    .collect();
                let Some(end) = entries.last().map(|e| e.index) else {
                    return Err(SignGapError::NotInLog(next));
                };
                let proof = signer.sign_entries(term, entries)?;
                let signed = *proof.signed();
                tracing::debug!(
                    id = self.id,
                    first = signed.statement.first_index,
                    last = signed.statement.last_index,
                    "signed a gap"
                );
                self.store(signed);
                let certificate = Certificate {
                    term,
                    statement: encode_statement(&signed),
                };
                for &voter in voters {
                    if voter != self.id {
                        // A full queue drops it: the follower fetches missing certificates from the leader (certificate repair).
                        let _ =
                            peers.try_send(voter, PeerMessage::Certificate(certificate.clone()));
                    }
                }
                next = end + 1;
            }
        }
        match refused {
            Some((first, last)) => Err(SignGapError::NotAVoter { first, last }),
            None => Ok(()),
        }
    }

    /// The token of any committed entry this node holds a statement for:
    /// the statement's entries are read back and hashed into the path.
    pub async fn token<S: LogStore>(
        &self,
        store: &S,
        entry: &ordo_storage::EntryView<'_>,
    ) -> Result<Bytes, TokenError> {
        self.token_at(store, entry.index).await
    }

    /// Whether the cluster uses tokens (without, every token is empty).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The token of the committed entry at `index` ([`Certificates::token`]).
    pub async fn token_at<S: LogStore>(
        &self,
        store: &S,
        index: Index,
    ) -> Result<Bytes, TokenError> {
        if !self.enabled {
            return Ok(Bytes::new());
        }
        let floor = store.state().first_index();
        let found = self.statements.borrow().lookup_from(index, floor);
        let Some(signed) = found else {
            if self.statements.borrow().lookup(index).is_some() {
                // Only statements that start before the log does (it was
                // compacted or reset to a snapshot since): the repair asks
                // the leader for one that fits.
                self.wanted.set(Some(index));
            }
            return Err(TokenError::Missing { index });
        };
        let first = signed.statement.first_index;
        // Keyed by root: two statements may start at the same index (a
        // leader's and, after it died, its successor's).
        let root = signed.statement.root;
        let cached = matches!(&*self.tree.borrow(), Some((at, _)) if *at == root);
        if !cached {
            let last = signed.statement.last_index;
            let mut leaves = Vec::with_capacity((last - first + 1) as usize);
            let mut next = first;
            while next <= last {
                let batches = store.read(next, 1 << 20).await?;
                if batches.is_empty() {
                    return Err(TokenError::NotInLog { index: next });
                }
                for batch in &batches {
                    for view in batch.entries() {
                        if view.index == next && next <= last {
                            leaves.push(entry_leaf::<TokenHash>(&view));
                            next += 1;
                        }
                    }
                }
            }
            let tree =
                MerkleTree::from_leaves(leaves).ok_or(TokenError::Mismatch { first, last })?;
            if tree.root() != signed.statement.root {
                return Err(TokenError::Mismatch { first, last });
            }
            *self.tree.borrow_mut() = Some((root, tree));
        }
        let tree = self.tree.borrow();
        let (_, tree) = tree.as_ref().expect("cached above");
        let path = tree
            .path((index - first) as usize)
            .ok_or(TokenError::Mismatch {
                first,
                last: signed.statement.last_index,
            })?;
        Ok(Bytes::from(Token { signed, path }.to_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::node::cert_store::test_statement as statement;

    fn certificates() -> Certificates {
        let config = NodeConfig::cluster(3, 20_000, 1).unwrap().remove(0);
        Certificates::in_memory(&config, None, None, Vec::new(), Vec::new(), Vec::new())
    }

    #[test]
    fn a_gap_is_not_reported_where_a_longer_statement_covers_it() {
        // Found by the runtime simulator: [150, 151] from one leader hid
        // [144, 151] from the next, and the node asked for 144..149
        // forever.
        let certificates = certificates();
        assert!(certificates.statements_held().is_empty());
        certificates.store(statement(1, 143));
        certificates.store(statement(150, 150));
        certificates.store(statement(144, 151));
        assert_eq!(certificates.first_gap(1, 151), None);
        certificates.store(statement(160, 170));
        assert_eq!(certificates.first_gap(1, 170), Some((152, 159)));
        assert_eq!(certificates.first_gap(1, 155), Some((152, 155)));
    }
}
