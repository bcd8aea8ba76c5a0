//! What the `ordo` binary's commands share: JSON lines, `init`, `verify`,
//! logging and signals. Kept in the library so it is tested, and so that
//! `ordo-bench` and the tests lay out clusters as `ordo init` does. The
//! process pieces (the log format's command-line value, the log output,
//! signal handling) need the `cli` feature, on by default; an embedder
//! with `default-features = false` compiles no clap, tracing-subscriber
//! or mimalloc (glommio brings its own signal-hook either way).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::Path;

use base64::Engine;
use ordo_net::{CommittedMessage, MemberEntry};
use serde_json::{Value, json};

use crate::auth::ClusterCa;
use crate::client::{ClientError, ClientReceipt};
use crate::node::NodeConfig;
use crate::node::members::MemberInfo;
use crate::token::{ClusterId, ClusterKeys, NodeKey, Token, Verifier};

/// A token's text form for JSON (empty when there is none).
pub fn token_text(token: &[u8]) -> String {
    if token.is_empty() {
        return String::new();
    }
    match Token::from_bytes(token) {
        Ok(token) => token.to_text(),
        Err(_) => String::new(),
    }
}

/// The payload fields of a JSON line: `payload` when it is UTF-8,
/// `payload_b64` otherwise.
fn payload_field(line: &mut serde_json::Map<String, Value>, payload: &[u8]) {
    match std::str::from_utf8(payload) {
        Ok(text) => {
            line.insert("payload".into(), Value::String(text.into()));
        }
        Err(_) => {
            let encoded = base64::engine::general_purpose::STANDARD.encode(payload);
            line.insert("payload_b64".into(), Value::String(encoded));
        }
    }
}

/// `ordo send`'s line for one result: `{"id","index","term","ts","token",
/// "node","leader"}` plus `"payload"` (so that `ordo verify` can check the
/// line on its own), or `{"error": ...}`.
pub fn send_line(result: &Result<ClientReceipt, ClientError>, payload: &[u8]) -> String {
    match result {
        Ok(receipt) => {
            let mut line = serde_json::Map::new();
            line.insert("id".into(), json!(receipt.id));
            line.insert("index".into(), json!(receipt.index));
            line.insert("term".into(), json!(receipt.term));
            line.insert("ts".into(), json!(receipt.ts));
            line.insert("token".into(), json!(token_text(&receipt.token)));
            line.insert("node".into(), json!(receipt.node));
            line.insert("leader".into(), json!(receipt.leader));
            payload_field(&mut line, payload);
            Value::Object(line).to_string()
        }
        Err(error) => json!({ "error": error.to_string() }).to_string(),
    }
}

/// `ordo log`'s line: `{"id","index","term","ts","payload","token"}`.
pub fn log_line(message: &CommittedMessage) -> String {
    let mut line = serde_json::Map::new();
    line.insert("id".into(), json!(message.id));
    line.insert("index".into(), json!(message.index));
    line.insert("term".into(), json!(message.term));
    line.insert("ts".into(), json!(message.ts));
    payload_field(&mut line, &message.payload);
    line.insert("token".into(), json!(token_text(&message.token)));
    Value::Object(line).to_string()
}

/// One line of `ordo chain` (and the first lines of `ordo log`): a
/// configuration link, with the configuration it starts for people to
/// read. `ordo verify` learns the link from its `"link"` field only.
pub fn link_line(link: &crate::token::ConfigLink) -> String {
    let (voters, learners) = match link.membership() {
        Ok(membership) => (membership.voters(), membership.learners()),
        Err(_) => (Vec::new(), Vec::new()),
    };
    json!({
        "link": link.to_text(),
        "index": link.index,
        "term": link.term,
        "voters": voters,
        "learners": learners,
    })
    .to_string()
}

/// Releases results in input order as they complete out of order. It
/// holds only the results that complete ahead of an earlier one, so with
/// the client's window `w` in flight it holds fewer than `w`.
#[derive(Default)]
pub struct InOrder {
    next: usize,
    waiting: BTreeMap<usize, String>,
}

impl InOrder {
    /// Starting at result 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Result `i` is `line`; returns the lines now printable, in order.
    pub fn ready(&mut self, i: usize, line: String) -> Vec<String> {
        self.waiting.insert(i, line);
        let mut out = Vec::new();
        while let Some(line) = self.waiting.remove(&self.next) {
            out.push(line);
            self.next += 1;
        }
        out
    }
}

/// Why a `--node` value names no address.
#[derive(Debug, thiserror::Error)]
pub enum NodeListError {
    /// One entry of the list is not `host:port`, or does not resolve.
    #[error("invalid --node {entry:?}: {reason}")]
    Invalid {
        /// The entry.
        entry: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The value has no entry at all.
    #[error(
        "invalid --node {0:?}: no address (expected host:port, or several separated by commas)"
    )]
    Empty(String),
}

/// The addresses of `--node`: one `host:port`, or several separated by
/// commas (`127.0.0.1:7000,127.0.0.1:7001`), which the client tries in turn
/// until one answers. Empty entries (a trailing comma) are skipped.
pub fn node_addrs(text: &str) -> Result<Vec<SocketAddr>, NodeListError> {
    use std::net::ToSocketAddrs;
    let mut addrs = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let invalid = |reason: String| NodeListError::Invalid {
            entry: entry.to_string(),
            reason,
        };
        let addr = entry
            .to_socket_addrs()
            .map_err(|e| invalid(e.to_string()))?
            .next()
            .ok_or_else(|| invalid("no address".to_string()))?;
        addrs.push(addr);
    }
    if addrs.is_empty() {
        return Err(NodeListError::Empty(text.to_string()));
    }
    Ok(addrs)
}

/// Reads `input` line by line on a thread of its own and hands each line
/// (without its `\n` or `\r\n`; any bytes, UTF-8 or not) to the returned
/// channel as soon as it is read, so that `ordo send --stdin` sends what
/// `tail -f` writes as it arrives. The channel holds at most `capacity`
/// lines: the thread waits while it is full, so an input faster than the
/// cluster is read no further ahead than that. The channel ends with the
/// input; the thread returns the read error that ended it early, if any.
/// It also stops when the receiver is dropped (after its next line).
pub fn read_lines(
    input: impl std::io::Read + Send + 'static,
    capacity: usize,
) -> (
    async_channel::Receiver<bytes::Bytes>,
    std::thread::JoinHandle<std::io::Result<()>>,
) {
    let (sender, receiver) = async_channel::bounded(capacity.max(1));
    let reader = std::thread::spawn(move || {
        let mut input = std::io::BufReader::new(input);
        loop {
            let mut line = Vec::new();
            if input.read_until(b'\n', &mut line)? == 0 {
                return Ok(());
            }
            if line.last() == Some(&b'\n') {
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
            }
            if sender.send_blocking(bytes::Bytes::from(line)).is_err() {
                // The sender gave up (its error is its own to report).
                return Ok(());
            }
        }
    });
    (receiver, reader)
}

/// Why `ordo init` could not lay out a cluster or a node.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The operating system gave no randomness for the cluster id.
    #[error("no randomness for the cluster id: {0}")]
    Random(#[source] getrandom::Error),
    /// The layout's configs do not validate (a port out of range, ...).
    #[error(transparent)]
    Layout(#[from] crate::node::NodeConfigError),
    /// A directory or file could not be created, written or synced.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done ("create", "write", "sync").
        op: &'static str,
        /// The file or directory.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The cluster CA or a node certificate could not be made or saved.
    #[error(transparent)]
    Ca(#[from] crate::auth::CaError),
    /// A node key could not be made or saved, or `cluster.keys` saved.
    #[error(transparent)]
    Key(#[from] crate::token::KeyError),
    /// A node's key cannot join `cluster.keys`.
    #[error(transparent)]
    Keys(#[from] crate::token::ClusterKeysEntryError),
    /// A shared secret could not be made or saved.
    #[error(transparent)]
    Secret(#[from] crate::auth::SecretError),
    /// The membership marker could not be written.
    #[error(transparent)]
    Member(#[from] crate::node::durability::DurabilityError),
    /// `--nodes` and `--hosts` disagree.
    #[error("--nodes {nodes} but --hosts names {hosts} hosts: one node per host")]
    HostCount {
        /// `--nodes`.
        nodes: usize,
        /// The hosts named.
        hosts: usize,
    },
    /// A host that other nodes cannot reach (`0.0.0.0`, `::`).
    #[error("--hosts: {0} is not an address other nodes can reach")]
    Unreachable(String),
    /// A host that is neither an IP address nor a DNS name.
    #[error("--hosts: {0:?} is not an IP address or a DNS name")]
    NotAHost(String),
    /// A host in the range names are laid out in.
    #[error("--hosts: 192.0.2.0/24 is a documentation range, not a host")]
    DocumentationRange,
    /// `ordo init --add` in a directory without a loadable `cluster.keys`.
    #[error("{} is not a cluster's directory: {source}", dir.display())]
    NotACluster {
        /// The directory.
        dir: std::path::PathBuf,
        /// Why `cluster.keys` does not load.
        source: crate::token::KeyError,
    },
    /// `ordo init --add` for a node laid out already.
    #[error("{} exists: node {id} is laid out already", dir.display())]
    NodeExists {
        /// The node's directory.
        dir: std::path::PathBuf,
        /// The node.
        id: u64,
    },
}

/// `f`'s IO error as an [`InitError`] naming `op` and `path`.
fn init_io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> InitError {
    let path = path.to_path_buf();
    move |source| InitError::Io { op, path, source }
}

/// `ordo init`: writes `dir/node<i>/ordo.toml` and `dir/node<i>/node.key`
/// for each voter, `dir/cluster.keys`, and the cluster's shared secrets
/// `dir/gossip.secret` and `dir/client.secret`; returns what it wrote.
pub fn init(nodes: usize, dir: &Path, base_port: u16) -> Result<Vec<String>, InitError> {
    init_layout(
        dir,
        |transport_id| NodeConfig::cluster(nodes, base_port, transport_id),
        &[],
    )
}

/// Writes the configs `layout` makes for a fresh cluster id, a key per
/// node and `cluster.keys`; `names` are the text substitutions that write
/// DNS names for their placeholder addresses.
fn init_layout(
    dir: &Path,
    layout: impl FnOnce(u64) -> Result<Vec<NodeConfig>, crate::node::NodeConfigError>,
    names: &[(String, String)],
) -> Result<Vec<String>, InitError> {
    let cluster = ClusterId::generate().map_err(InitError::Random)?;
    let transport_id = cluster.transport_id();
    let mut configs = layout(transport_id)?;
    std::fs::create_dir_all(dir).map_err(init_io("create", dir))?;
    // Client connections are encrypted: a CA for the cluster, and a
    // certificate per voter signed by it (crate::auth::tls).
    let ca = ClusterCa::generate(transport_id)?;
    let mut written: Vec<String> = ca
        .save(dir)?
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let mut keys = ClusterKeys::new(cluster);
    for config in &mut configs {
        config.tls.clients = true;
        let (path, key) = lay_out_node(dir, config, names)?;
        keys.insert(config.id, key.public_key())?;
        written.push(path);
        written.extend(issue_node_certificate(&ca, dir, config, names)?);
    }
    let keys_path = dir.join("cluster.keys");
    keys.save(&keys_path)?;
    written.push(keys_path.display().to_string());
    // The shared secrets gossip members and clients prove they hold
    // (crate::auth): beside cluster.keys, where nodes look by default.
    for name in [
        crate::auth::GOSSIP_SECRET_FILE,
        crate::auth::CLIENT_SECRET_FILE,
    ] {
        let path = dir.join(name);
        crate::auth::Secret::generate().and_then(|secret| secret.save(&path))?;
        written.push(path.display().to_string());
    }
    // Durable before `init` says it is done: a power loss right after must
    // not leave nodes without their config, key or membership marker.
    sync_tree(dir).map_err(init_io("sync", dir))?;
    Ok(written)
}

/// `ordo init --hosts h1,h2,..`: one voter per host, each on the same
/// ports of its own host (`NodeConfig::cluster_on_hosts`). A host is an IP
/// address or a DNS name; names are written as they are and resolved by
/// each node when it starts. `nodes`, when given, must be the host count.
pub fn init_on_hosts(
    nodes: Option<usize>,
    hosts: &[String],
    dir: &Path,
    base_port: u16,
) -> Result<Vec<String>, InitError> {
    if let Some(n) = nodes
        && n != hosts.len()
    {
        return Err(InitError::HostCount {
            nodes: n,
            hosts: hosts.len(),
        });
    }
    let mut ips = Vec::new();
    let mut names = Vec::new();
    for (i, host) in hosts.iter().enumerate() {
        let host = host.trim();
        if let Ok(ip) = host.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
            if ip.is_unspecified() {
                return Err(InitError::Unreachable(host.into()));
            }
            ips.push(ip);
            continue;
        }
        let valid = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !valid {
            return Err(InitError::NotAHost(host.into()));
        }
        // A name stands in the layout as 192.0.2.<i> (TEST-NET-1, never a
        // real host) and is written back as the name.
        let placeholder = std::net::IpAddr::from([192, 0, 2, i as u8 + 1]);
        ips.push(placeholder);
        names.push((format!("\"{placeholder}:"), format!("\"{host}:")));
    }
    let documentation_range = |ip: &std::net::IpAddr| matches!(ip, std::net::IpAddr::V4(v4) if v4.octets()[..3] == [192, 0, 2]);
    if !names.is_empty()
        && hosts
            .iter()
            .any(|h| h.trim().parse().is_ok_and(|ip| documentation_range(&ip)))
    {
        return Err(InitError::DocumentationRange);
    }
    init_layout(
        dir,
        |transport_id| NodeConfig::cluster_on_hosts(&ips, base_port, transport_id),
        &names,
    )
}

/// `ordo init --add ID`: lays out node `id` in `dir/node<ID>` (its
/// `ordo.toml`, with `join = true`, and its key) on the port layout of
/// `ordo init`, for the cluster whose `cluster.keys` is in `dir`. The keys
/// file is left alone: the node's public key reaches verifiers through the
/// configuration entry that adds it (docs/tokens.md).
pub fn init_joining(id: u64, dir: &Path, base_port: u16) -> Result<Vec<String>, InitError> {
    let keys_path = dir.join("cluster.keys");
    let keys = ClusterKeys::load(&keys_path).map_err(|source| InitError::NotACluster {
        dir: dir.to_path_buf(),
        source,
    })?;
    let transport_id = keys.cluster_id().transport_id();
    let config = NodeConfig::joining(id, base_port, transport_id)?;
    let node_dir = dir.join(format!("node{id}"));
    if node_dir.exists() {
        return Err(InitError::NodeExists { dir: node_dir, id });
    }
    // Encrypted client connections when the cluster has a CA (`ordo
    // init` writes one); a cluster laid out without one stays plain.
    let ca = match ClusterCa::load(dir, transport_id) {
        Ok(ca) => Some(ca),
        Err(_) if !dir.join(crate::auth::CA_KEY_FILE).exists() => None,
        Err(e) => return Err(e.into()),
    };
    let mut config = config;
    config.tls.clients = ca.is_some();
    let (path, _) = lay_out_node(dir, &config, &[])?;
    let mut written = vec![path];
    if let Some(ca) = &ca {
        written.extend(issue_node_certificate(ca, dir, &config, &[])?);
    }
    sync_tree(&node_dir).map_err(init_io("sync", &node_dir))?;
    Ok(written)
}

/// Issues `config`'s node certificate into its data directory, naming its
/// host: the DNS name `ordo init --hosts` gave it (`names` maps the
/// placeholder address back to it), else its client address's IP.
fn issue_node_certificate(
    ca: &ClusterCa,
    dir: &Path,
    config: &NodeConfig,
    names: &[(String, String)],
) -> Result<Vec<String>, InitError> {
    let ip = config.client_addr.ip().to_string();
    let placeholder = format!("\"{ip}:");
    let host = names
        .iter()
        .find(|(p, _)| *p == placeholder)
        .map(|(_, name)| name.trim_matches(['"', ':']).to_string())
        .unwrap_or(ip);
    let data_dir = dir
        .join(format!("node{}", config.id))
        .join(&config.data_dir);
    Ok(ca
        .issue(config.id, Some(&host), &data_dir)?
        .iter()
        .map(|p| p.display().to_string())
        .collect())
}

/// Writes `dir/node<ID>`: the data directory with a fresh key and the
/// membership marker, and `ordo.toml`. Returns the config's path and the key.
fn lay_out_node(
    dir: &Path,
    config: &NodeConfig,
    names: &[(String, String)],
) -> Result<(String, NodeKey), InitError> {
    let node_dir = dir.join(format!("node{}", config.id));
    let data_dir = node_dir.join(&config.data_dir);
    std::fs::create_dir_all(&data_dir).map_err(init_io("create", &data_dir))?;
    let key = NodeKey::generate()?;
    key.save(&NodeKey::path_in(&data_dir))?;
    // Its first start may create a log; any later start that finds none
    // has lost its disk (node/durability.rs).
    crate::node::durability::bootstrap_member(&data_dir)?;
    let path = node_dir.join("ordo.toml");
    let mut text = config.to_toml_minimal();
    for (placeholder, name) in names {
        text = text.replace(placeholder.as_str(), name);
    }
    std::fs::write(&path, text).map_err(init_io("write", &path))?;
    Ok((path.display().to_string(), key))
}

/// Why `ordo member add` cannot describe a node.
#[derive(Debug, thiserror::Error)]
pub enum MemberInfoError {
    /// The node was never laid out.
    #[error(
        "unknown node {id}: {} does not exist (lay it out with `ordo init --add {id}`)",
        path.display()
    )]
    Unknown {
        /// The node.
        id: u64,
        /// The config it should have.
        path: std::path::PathBuf,
    },
    /// Its config does not load.
    #[error(transparent)]
    Config(#[from] crate::node::NodeConfigError),
    /// Its config is another node's.
    #[error("{} is node {found}, not {id}", path.display())]
    OtherNode {
        /// The config.
        path: std::path::PathBuf,
        /// The id it holds.
        found: u64,
        /// The id asked for.
        id: u64,
    },
    /// Its key does not load.
    #[error(transparent)]
    Key(#[from] crate::token::KeyError),
}

/// What `ordo member add` tells the cluster about node `id` of `dir`: its
/// addresses from `dir/node<ID>/ordo.toml` and its public key.
pub fn member_info(dir: &Path, id: u64) -> Result<bytes::Bytes, MemberInfoError> {
    let path = dir.join(format!("node{id}")).join("ordo.toml");
    if !path.exists() {
        return Err(MemberInfoError::Unknown { id, path });
    }
    let config = NodeConfig::load(&path)?;
    if config.id != id {
        return Err(MemberInfoError::OtherNode {
            path,
            found: config.id,
            id,
        });
    }
    let key = NodeKey::load(&NodeKey::path_in(&config.data_dir))?;
    let info = MemberInfo {
        peer_addr: config.peer_addr,
        client_addr: config.client_addr,
        gossip_addr: config.gossip_addr,
        public_key: key.public_key().to_bytes(),
    };
    Ok(info.encode())
}

/// One member as `ordo member list` prints it.
pub fn member_line(member: &MemberEntry) -> String {
    json!({
        "id": member.id,
        "role": if member.voter { "voter" } else { "learner" },
        "peer_addr": member.peer_addr,
        "client_addr": member.client_addr,
        "match_index": member.match_index,
    })
    .to_string()
}

/// fsyncs every file under `dir`, then every directory from the deepest
/// up, `dir` itself and its parent (which holds `dir`'s name) last.
fn sync_tree(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            sync_tree(&path)?;
        } else {
            std::fs::File::open(&path)?.sync_all()?;
        }
    }
    std::fs::File::open(dir)?.sync_all()?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// Why a line of `ordo send` or `ordo log` output does not verify.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// The line is not JSON.
    #[error("not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// A field is absent or of the wrong type.
    #[error("missing or invalid \"{0}\"")]
    Field(&'static str),
    /// The `token` field is empty (a cluster without keys).
    #[error("empty \"token\"")]
    EmptyToken,
    /// Neither `payload` nor `payload_b64` is there.
    #[error("missing \"payload\" (or \"payload_b64\")")]
    NoPayload,
    /// `payload_b64` is not base64.
    #[error("invalid \"payload_b64\": {0}")]
    Base64(#[source] base64::DecodeError),
    /// A configuration link that does not decode or extend the chain.
    #[error(transparent)]
    Link(#[from] crate::token::ChainError),
    /// A token that does not prove the line.
    #[error(transparent)]
    Token(#[from] crate::token::VerifyError),
}

/// Why `ordo verify` failed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyStdinError {
    /// `cluster.keys` does not load.
    #[error(transparent)]
    Keys(#[from] crate::token::KeyError),
    /// Standard input could not be read.
    #[error("reading stdin: {0}")]
    Stdin(#[source] std::io::Error),
    /// A line does not verify (numbered from 1).
    #[error("line {number}: {source}")]
    Line {
        /// The line's number.
        number: usize,
        /// Why.
        source: LineError,
    },
}

fn field_u64(line: &Value, name: &'static str) -> Result<u64, LineError> {
    line.get(name)
        .and_then(Value::as_u64)
        .ok_or(LineError::Field(name))
}

/// Verifies one JSON line as printed by `ordo send` or `ordo log`.
pub fn verify_line(verifier: &mut Verifier, text: &str) -> Result<(), LineError> {
    let line: Value = serde_json::from_str(text).map_err(LineError::NotJson)?;
    if let Some(link) = line.get("link") {
        // A configuration link (`ordo chain`, the head of `ordo log`):
        // checked against the configurations before it and learned.
        let text = link.as_str().ok_or(LineError::Field("link"))?;
        let link = crate::token::ConfigLink::from_text(text)?;
        verifier.learn(&link)?;
        return Ok(());
    }
    let token = line
        .get("token")
        .and_then(Value::as_str)
        .ok_or(LineError::Field("token"))?;
    if token.is_empty() {
        return Err(LineError::EmptyToken);
    }
    let payload = match (line.get("payload"), line.get("payload_b64")) {
        (Some(Value::String(text)), _) => text.as_bytes().to_vec(),
        (_, Some(Value::String(encoded))) => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(LineError::Base64)?,
        _ => return Err(LineError::NoPayload),
    };
    verifier.verify_text(
        token,
        &payload,
        field_u64(&line, "id")?,
        field_u64(&line, "index")?,
        field_u64(&line, "term")?,
        field_u64(&line, "ts")?,
    )?;
    Ok(())
}

/// `ordo verify`: every stdin line must verify; the first that does not is
/// named in the error.
pub fn verify_stdin(keys: &Path) -> Result<(), VerifyStdinError> {
    let mut verifier = Verifier::load(keys)?;
    let mut count = 0u64;
    for (number, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line.map_err(VerifyStdinError::Stdin)?;
        if line.trim().is_empty() {
            continue;
        }
        verify_line(&mut verifier, &line).map_err(|source| VerifyStdinError::Line {
            number: number + 1,
            source,
        })?;
        count += 1;
    }
    eprintln!("ordo: {count} lines verified");
    Ok(())
}

/// How [`init_tracing`] writes.
#[cfg(feature = "cli")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line per event for people: time, level, target, message, fields.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`
    /// with `message` and every structured field), for log collectors.
    Json,
}

#[cfg(feature = "cli")]
static LOG_FORMAT: std::sync::OnceLock<LogFormat> = std::sync::OnceLock::new();

/// Chooses the format of every later [`init_tracing`] (the first call wins).
#[cfg(feature = "cli")]
pub fn set_log_format(format: LogFormat) {
    // A second call keeps the first choice, as documented.
    let _ = LOG_FORMAT.set(format);
}

/// Logs through `tracing` to stderr, in the format [`set_log_format`]
/// chose; `RUST_LOG` filters (default `info`).
#[cfg(feature = "cli")]
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // `try_init` fails only when a subscriber is set already (tests that
    // start several nodes): the first one keeps logging.
    let _ = match LOG_FORMAT.get().copied().unwrap_or_default() {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(false).try_init(),
    };
}

/// SIGTERM and SIGINT, to be waited for on a thread.
#[cfg(feature = "cli")]
pub struct Signals(signal_hook::iterator::Signals);

#[cfg(feature = "cli")]
impl Signals {
    /// Blocks until one arrives; returns its number.
    pub fn wait(mut self) -> Option<i32> {
        self.0.forever().next()
    }
}

/// Catches SIGTERM and SIGINT (installed before the node starts, so a
/// signal during start-up is not lost).
#[cfg(feature = "cli")]
pub fn termination_signals() -> Result<Signals, SignalsError> {
    signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT])
        .map(Signals)
        .map_err(SignalsError)
}

/// Why the signal handlers could not be installed.
#[cfg(feature = "cli")]
#[derive(Debug, thiserror::Error)]
#[error("cannot install signal handlers: {0}")]
pub struct SignalsError(#[source] pub std::io::Error);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_on_hosts_writes_one_node_per_host_with_names_kept() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = [
            "db1.example.internal".to_string(),
            "10.0.0.2".into(),
            "db3".into(),
        ];
        let written = init_on_hosts(None, &hosts, dir.path(), 7000).unwrap();
        assert!(
            written.iter().any(|w| w.ends_with("cluster.keys")),
            "{written:?}"
        );
        assert_eq!(
            written.iter().filter(|w| w.ends_with("ordo.toml")).count(),
            3
        );
        let one = std::fs::read_to_string(dir.path().join("node1/ordo.toml")).unwrap();
        for expected in [
            "client_addr = \"db1.example.internal:7000\"",
            "peer_addr = \"db1.example.internal:7100\"",
            "listen = \"db1.example.internal:7400\"",
            "peer_addr = \"10.0.0.2:7100\"",
            "client_addr = \"db3:7000\"",
        ] {
            assert!(one.contains(expected), "{expected} in {one}");
        }
        assert!(!one.contains("192.0.2."), "{one}");
        assert!(init_on_hosts(Some(2), &hosts, &dir.path().join("x"), 7000).is_err());
        let bad = ["ok".to_string(), "not a host!".into()];
        assert!(init_on_hosts(None, &bad, &dir.path().join("y"), 7000).is_err());
    }

    #[test]
    fn in_order_releases_prefixes() {
        let mut order = InOrder::new();
        assert!(order.ready(1, "b".into()).is_empty());
        assert_eq!(order.ready(0, "a".into()), vec!["a", "b"]);
        assert_eq!(order.ready(2, "c".into()), vec!["c"]);
    }

    #[test]
    fn node_lists_parse_in_order() {
        let addrs = node_addrs("127.0.0.1:7000, 127.0.0.1:7001,").unwrap();
        let ports: Vec<u16> = addrs.iter().map(SocketAddr::port).collect();
        assert_eq!(ports, vec![7000, 7001]);
        assert_eq!(node_addrs("127.0.0.1:7000").unwrap().len(), 1);
        let error = node_addrs("127.0.0.1:7000,nope").unwrap_err().to_string();
        assert!(error.contains("\"nope\""), "{error}");
        assert!(
            node_addrs(" , ")
                .unwrap_err()
                .to_string()
                .contains("no address")
        );
    }

    #[test]
    fn lines_are_read_one_at_a_time() {
        let input: &'static [u8] = b"a\r\nb\n\xff\nlast";
        let (lines, reader) = read_lines(input, 1);
        let got: Vec<bytes::Bytes> = std::iter::from_fn(|| lines.recv_blocking().ok()).collect();
        assert_eq!(got, vec![&b"a"[..], b"b", b"\xff", b"last"]);
        assert!(reader.join().unwrap().is_ok());
    }

    #[test]
    fn binary_payloads_go_to_payload_b64() {
        let message = CommittedMessage {
            id: 1,
            index: 2,
            term: 3,
            ts: 4,
            payload: bytes::Bytes::from_static(&[0xff, 0x00]),
            token: bytes::Bytes::new(),
        };
        let line: Value = serde_json::from_str(&log_line(&message)).unwrap();
        assert_eq!(line["payload_b64"], "/wA=");
        assert!(line.get("payload").is_none());
    }
}
