//! `ordo`: run a voter, a gossip node or a local cluster, and talk to a
//! cluster from the command line.

#![forbid(unsafe_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::{Parser, Subcommand};
use ordo_engine::cli;
use ordo_engine::client::{AdminAnswer, AdminCommand, Client, ClientOptions};
use ordo_engine::gossip_node::{GossipNodeConfig, GossipNodeProcess};
use ordo_engine::node::{Node, NodeConfig, NullStateMachine};

/// mimalloc: fewer cycles per commit than glibc malloc under the runtime's
/// allocation pattern (many short-lived buffers across threads).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "ordo", version, about = "ordo: a Raft log replication engine")]
struct Cli {
    /// How `node`, `gossip` and `cluster` write their logs to stderr:
    /// `text` for people, `json` (one object per line) for collectors.
    #[arg(long, global = true, value_enum, default_value_t = cli::LogFormat::Text, env = "ORDO_LOG_FORMAT")]
    log_format: cli::LogFormat,
    #[command(subcommand)]
    command: Command,
    /// The cluster's client secret, for nodes that require one (`ordo
    /// init` writes DIR/client.secret). Default: the file named by
    /// $ORDO_CLIENT_SECRET.
    #[arg(long, global = true, value_name = "FILE")]
    client_secret: Option<PathBuf>,
    /// The cluster's CA certificate, for nodes that take clients over TLS
    /// (`ordo init` writes DIR/cluster-ca.crt). Default: $ORDO_TLS_CA, else
    /// cluster-ca.crt beside the client secret, if there.
    #[arg(long, global = true, value_name = "FILE", conflicts_with = "no_tls")]
    tls_ca: Option<PathBuf>,
    /// Connect in plain TCP even if a cluster CA is found (for nodes with
    /// `[tls] clients = false`).
    #[arg(long, global = true)]
    no_tls: bool,
}

/// `--client-secret`, for the commands that connect as clients.
static CLIENT_SECRET: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();

/// The client credential from `--client-secret` or $ORDO_CLIENT_SECRET.
fn client_credential() -> Result<ordo_net::auth::Credential, String> {
    let path = CLIENT_SECRET.get().and_then(Option::as_deref);
    ordo_engine::auth::client_credential(path).map_err(|e| e.to_string())
}

/// `--tls-ca` and `--no-tls`, for the commands that connect as clients.
static CLIENT_TLS: std::sync::OnceLock<(Option<PathBuf>, bool)> = std::sync::OnceLock::new();

/// What the client trusts for TLS (`ordo_engine::auth::client_tls`).
fn client_tls() -> Result<Option<ordo_net::tls::TlsClientConfig>, String> {
    let (ca, plain) = CLIENT_TLS.get().cloned().unwrap_or_default();
    let secret = CLIENT_SECRET.get().and_then(Option::as_deref);
    ordo_engine::auth::client_tls(0, ca.as_deref(), secret, plain).map_err(|e| e.to_string())
}

/// The nodes `--node` names and the options every client command shares:
/// its timeout, client secret and TLS trust.
fn client_setup(node: &str, timeout: f64) -> Result<(Vec<SocketAddr>, ClientOptions), String> {
    let addrs = parse_nodes(node)?;
    let options = ClientOptions {
        timeout: timeout_of(timeout)?,
        credential: client_credential()?,
        tls: client_tls()?,
        ..ClientOptions::default()
    };
    Ok((addrs, options))
}

#[derive(Subcommand)]
enum Command {
    /// Writes `DIR/node<i>/ordo.toml` for i = 1..N with a fresh key pair each,
    /// and DIR/cluster.keys; or, with `--add ID`, `DIR/node<ID>` for a node
    /// that will join the cluster in DIR.
    Init {
        /// Voters in the cluster.
        #[arg(long, required_unless_present_any = ["add", "hosts"], conflicts_with = "add")]
        nodes: Option<usize>,
        /// Lay out one node, `ID`, that joins the existing cluster in DIR
        /// once `ordo member add` adds it.
        #[arg(long, value_name = "ID")]
        add: Option<u64>,
        /// Where to write the cluster's files.
        #[arg(long)]
        dir: PathBuf,
        /// Node i's client address is 127.0.0.1:(P + i - 1); its peer port
        /// is P + 100 + i - 1, its gossip port P + 200 + i - 1 and its
        /// metrics port P + 400 + i - 1. With --hosts, every node uses
        /// P, P + 100, P + 200 and P + 400 on its own host.
        #[arg(long, default_value_t = 7000)]
        base_port: u16,
        /// One node per host, comma-separated (IP addresses or DNS names,
        /// resolved when each node starts): node i runs on the i-th.
        #[arg(long, value_delimiter = ',', conflicts_with = "add")]
        hosts: Vec<String>,
    },
    /// Runs one voter in the foreground until SIGTERM or SIGINT.
    Node {
        /// The node's ordo.toml.
        #[arg(long)]
        config: PathBuf,
        /// Only check the file (every key, its range, and that each
        /// address resolves) and exit: 0 and `valid` when it is.
        #[arg(long)]
        check: bool,
    },
    /// Sends a message (or one per stdin line) and prints where it committed.
    Send {
        /// Any node's client address (host:port), or several separated by
        /// commas, tried in turn until one answers.
        #[arg(long)]
        node: String,
        /// Ask a follower for a redirect to the leader instead of forwarding.
        #[arg(long)]
        redirect: bool,
        /// Read one message per line from stdin, each sent as it arrives
        /// (pipelined: up to 64 in flight), its result printed in input
        /// order as soon as it is known.
        #[arg(long, conflicts_with = "message")]
        stdin: bool,
        /// Give up after this many seconds without a leader.
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
        /// The message.
        #[arg(required_unless_present = "stdin")]
        message: Option<String>,
    },
    /// Prints committed messages as JSON lines, in id order.
    Log {
        /// Any node's client address (host:port), or several separated by
        /// commas, tried in turn until one answers.
        #[arg(long)]
        node: String,
        /// First message id.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Keep printing new messages as they commit.
        #[arg(long)]
        follow: bool,
        /// Print the configuration links first (as `ordo chain` does), so
        /// that `ordo verify` can check tokens signed by voters added
        /// after `ordo init`.
        #[arg(long)]
        chain: bool,
        /// Give up after this many seconds without an answer.
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
    },
    /// Changes or lists the cluster's members.
    Member {
        #[command(subcommand)]
        command: MemberCommand,
    },
    /// Hands leadership to voter `--to`; exits 0 once it leads.
    Transfer {
        /// Any member's client address (host:port), or several separated
        /// by commas, tried in turn until one answers.
        #[arg(long)]
        node: String,
        /// The voter to hand leadership to.
        #[arg(long)]
        to: u64,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
    },
    /// Prints one node's status as a JSON object.
    Status {
        /// The node's client address (host:port), or several separated by
        /// commas: the first that answers prints its status.
        #[arg(long)]
        node: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 5.0)]
        timeout: f64,
    },
    /// Prints the chain of configuration changes from cluster.keys to the
    /// voters in force, one JSON line per committed configuration entry
    /// with its token: {"link","index","term","voters","learners"}.
    /// `ordo verify` learns these lines before it checks tokens signed by
    /// voters added later.
    Chain {
        /// Any member's client address (host:port), or several separated
        /// by commas, tried in turn until one answers.
        #[arg(long)]
        node: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 5.0)]
        timeout: f64,
    },
    /// Verifies JSON lines from `send`, `log` or `chain` on stdin against
    /// the cluster's public keys (learning the configuration links among
    /// them); exits non-zero at the first failure.
    Verify {
        /// The cluster.keys file.
        #[arg(long)]
        keys: PathBuf,
    },
    /// Runs a gossip node in the foreground until SIGTERM or SIGINT: it
    /// receives every committed message, verifies it, stores it and
    /// forwards it; `ordo log --node ADDR` reads it, like a voter's log.
    Gossip(GossipArgs),
    /// Runs a local cluster in the foreground: N voters and M gossip nodes
    /// as child processes (laid out by `init` in DIR unless DIR has one
    /// already); prints every address; Ctrl-C or SIGTERM stops them all.
    Cluster {
        /// Voters.
        #[arg(long)]
        nodes: usize,
        /// Gossip nodes.
        #[arg(long, default_value_t = 0)]
        gossip: usize,
        /// The cluster's directory (configs, keys, data, logs).
        #[arg(long)]
        dir: PathBuf,
        /// Voter i's client port is P + i - 1, its gossip port P + 200 + i - 1;
        /// gossip node j listens on P + 300 + j - 1.
        #[arg(long, default_value_t = 7000)]
        base_port: u16,
    },
}

/// `ordo gossip`'s flags.
#[derive(clap::Args)]
struct GossipArgs {
    /// Where to listen for gossip peers and clients (ip:port; the
    /// address peers know this node by unless --advertise names one).
    #[arg(long)]
    listen: String,
    /// The address peers know this node by, when --listen is not it
    /// (for example --listen 0.0.0.0:7300).
    #[arg(long)]
    advertise: Option<String>,
    /// Serve /metrics, /health and /status over HTTP here (host:port).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    /// Members to join through, comma-separated (voters' gossip
    /// addresses serve).
    #[arg(long, value_delimiter = ',', required = true)]
    seeds: Vec<String>,
    /// The cluster.keys file.
    #[arg(long)]
    keys: PathBuf,
    /// Keep delivered messages here across restarts (otherwise only a
    /// window of recent ones, in memory).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// With --data-dir: keep the delivered messages' file under this
    /// many bytes, dropping the oldest (0: keep every message).
    #[arg(long, default_value_t = 0, value_name = "BYTES")]
    retain_bytes: u64,
    /// Accept gossip peers and clients without the cluster's secrets
    /// (benchmarks only: docs/operations.md, "Authentication").
    #[arg(long)]
    no_auth: bool,
}

/// The member `ordo member promote` and `remove` act on, and where to ask.
#[derive(clap::Args)]
struct MemberTarget {
    /// Any member's client address (host:port), or several separated by
    /// commas, tried in turn until one answers.
    #[arg(long)]
    node: String,
    /// The member (for `promote`, a learner).
    #[arg(long)]
    id: u64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
}

#[derive(Subcommand)]
enum MemberCommand {
    /// Adds node `--id`, laid out by `ordo init --add` in DIR; prints
    /// {"id","role","index"} once the change commits.
    Add {
        /// Any member's client address (host:port), or several separated
        /// by commas, tried in turn until one answers.
        #[arg(long)]
        node: String,
        /// The cluster's directory (where `ordo init --add` wrote the node).
        #[arg(long)]
        dir: PathBuf,
        /// The node's id.
        #[arg(long)]
        id: u64,
        /// Add it as a learner: it receives the log but does not vote.
        #[arg(long)]
        learner: bool,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
    },
    /// Makes learner `--id` a voter, once it has caught up.
    Promote(MemberTarget),
    /// Removes member `--id`.
    Remove(MemberTarget),
    /// Prints one JSON line per member:
    /// {"id","role","peer_addr","client_addr","match_index"}.
    List {
        /// Any member's client address (host:port), or several separated
        /// by commas, tried in turn until one answers.
        #[arg(long)]
        node: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 5.0)]
        timeout: f64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::set_log_format(cli.log_format);
    // Set once, here, before any reader: `set` cannot fail.
    let _ = CLIENT_SECRET.set(cli.client_secret.clone());
    let _ = CLIENT_TLS.set((cli.tls_ca.clone(), cli.no_tls));
    if cli.command.needs_executor()
        && let Err(error) = ordo_engine::preflight::check_machine(1, 256 << 10)
    {
        eprintln!("ordo: {error}");
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::Init {
            nodes,
            add,
            dir,
            base_port,
            hosts,
        } => match (nodes, add) {
            (_, Some(id)) => cli::init_joining(id, &dir, base_port).map_err(|e| e.to_string()),
            (nodes, None) if !hosts.is_empty() => {
                cli::init_on_hosts(nodes, &hosts, &dir, base_port).map_err(|e| e.to_string())
            }
            (Some(nodes), None) => cli::init(nodes, &dir, base_port).map_err(|e| e.to_string()),
            (None, None) => Err("--nodes, --hosts or --add is required".into()),
        }
        .map(|written| {
            for line in written {
                println!("{line}");
            }
        }),
        Command::Member { command } => member(command),
        Command::Transfer { node, to, timeout } => admin(
            &node,
            timeout,
            AdminCommand::TransferLeadership { to },
            |answer| match answer {
                AdminAnswer::Transferred { leader } => {
                    println!("{}", serde_json::json!({ "leader": leader }));
                }
                other => println!("{other:?}"),
            },
        ),
        Command::Node { config, check } => match check {
            true => NodeConfig::load(&config)
                .map(|_| println!("{}: valid", config.display()))
                .map_err(|e| e.to_string()),
            false => run_node(config),
        },
        Command::Send {
            node,
            redirect,
            stdin,
            timeout,
            message,
        } => send(&node, redirect, stdin, timeout, message),
        Command::Log {
            node,
            from,
            follow,
            chain,
            timeout,
        } => log(&node, from, follow, chain, timeout),
        Command::Status { node, timeout } => status(&node, timeout),
        Command::Chain { node, timeout } => chain(&node, timeout),
        Command::Verify { keys } => cli::verify_stdin(&keys).map_err(|e| e.to_string()),
        Command::Gossip(args) => run_gossip(args),
        Command::Cluster {
            nodes,
            gossip,
            dir,
            base_port,
        } => cluster::run(nodes, gossip, &dir, base_port),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ordo: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run_node(config: PathBuf) -> Result<(), String> {
    cli::init_tracing();
    let config = NodeConfig::load(&config).map_err(|e| e.to_string())?;
    let signals = cli::termination_signals().map_err(|e| e.to_string())?;
    let node = Node::start(config, || Box::new(NullStateMachine)).map_err(|e| e.to_string())?;
    let handle = node.handle();
    std::thread::spawn(move || {
        if let Some(signal) = signals.wait() {
            tracing::info!(signal, "shutting down on signal");
            handle.request_shutdown();
        }
    });
    node.wait().map_err(|e| e.to_string())
}

/// `--node`: one address or a comma-separated list.
fn parse_nodes(text: &str) -> Result<Vec<SocketAddr>, String> {
    cli::node_addrs(text).map_err(|e| e.to_string())
}

fn parse_addr_of(flag: &str, text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    text.to_socket_addrs()
        .map_err(|e| format!("invalid {flag} {text:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("invalid {flag} {text:?}: no address"))
}

impl Command {
    /// Whether the command runs a glommio executor (everything but the
    /// file-only commands), and so needs io_uring and locked memory.
    fn needs_executor(&self) -> bool {
        !matches!(
            self,
            Command::Init { .. } | Command::Verify { .. } | Command::Node { check: true, .. }
        )
    }
}

fn run_gossip(args: GossipArgs) -> Result<(), String> {
    let GossipArgs {
        listen,
        advertise,
        metrics,
        seeds,
        keys,
        data_dir,
        retain_bytes,
        no_auth,
    } = args;
    cli::init_tracing();
    let listen = parse_addr_of("--listen", &listen)?;
    let advertise = advertise
        .map(|a| parse_addr_of("--advertise", &a))
        .transpose()?;
    let metrics = metrics
        .map(|a| parse_addr_of("--metrics", &a))
        .transpose()?;
    let seeds = seeds
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| parse_addr_of("--seeds", s.trim()))
        .collect::<Result<Vec<_>, _>>()?;
    let signals = cli::termination_signals().map_err(|e| e.to_string())?;
    // Paths are taken from the working directory and made absolute (glommio
    // opens a relative directory with EBADF).
    let absolute = |flag: &str, path: PathBuf| {
        std::path::absolute(&path).map_err(|e| format!("invalid {flag} {}: {e}", path.display()))
    };
    let keys = absolute("--keys", keys)?;
    let data_dir = data_dir.map(|d| absolute("--data-dir", d)).transpose()?;
    let mut config = GossipNodeConfig::new(listen, seeds, keys);
    config.advertise = advertise;
    config.metrics = metrics;
    config.data_dir = data_dir;
    config.store.retain_bytes = retain_bytes;
    if no_auth {
        tracing::warn!(
            "--no-auth: any process that knows the cluster id may gossip with this node or read from it"
        );
        config.auth = ordo_engine::auth::AuthConfig::off();
    }
    if let Some(dir) = std::env::var_os("ORDO_GOSSIP_TIMINGS_DIR") {
        let name = format!("deliver-{}.txt", listen.port());
        config.timings_file = Some(PathBuf::from(dir).join(name));
    }
    let node = GossipNodeProcess::start(config).map_err(|e| e.to_string())?;
    let stop = node.stopper();
    std::thread::spawn(move || {
        if let Some(signal) = signals.wait() {
            tracing::info!(signal, "shutting down on signal");
            let _ = stop.send_blocking(());
        }
    });
    node.wait().map_err(|e| e.to_string())
}

fn timeout_of(seconds: f64) -> Result<Duration, String> {
    if !(seconds.is_finite() && seconds > 0.0) {
        return Err(format!(
            "invalid --timeout {seconds}: must be a positive number of seconds"
        ));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Runs `work` on a small glommio executor (the client's connections are
/// glommio's).
fn on_executor<T: Send + 'static>(
    work: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, String>>>>
    + Send
    + 'static,
) -> Result<T, String> {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .name("ordo-cli")
        .io_memory(256 << 10)
        .spawn(work)
        .map_err(|e| format!("cannot start the client executor: {e}"))?
        .join()
        .map_err(|e| format!("the client executor failed: {e}"))?
}

fn send(
    node: &str,
    redirect: bool,
    stdin: bool,
    timeout: f64,
    message: Option<String>,
) -> Result<(), String> {
    let (addrs, options) = client_setup(node, timeout)?;
    let options = ClientOptions {
        redirect,
        ..options
    };
    // Lines reach the client as they are read, never more than a window
    // ahead of the answers (`tail -f log | ordo send --stdin` streams).
    let (payloads, reader) = if stdin {
        let (payloads, reader) = cli::read_lines(std::io::stdin(), options.window);
        (payloads, Some(reader))
    } else {
        let (sender, payloads) = async_channel::bounded(1);
        let message = Bytes::from(message.unwrap_or_default());
        sender
            .try_send(message)
            .map_err(|e| format!("cannot queue the message: {e}"))?;
        (payloads, None)
    };
    on_executor(move || {
        Box::pin(async move {
            let mut client =
                Client::new(addrs.clone(), options.clone()).map_err(|e| e.to_string())?;
            let mut printer = cli::InOrder::new();
            let mut first_failure = None;
            let stdout = std::io::stdout();
            let outcome = client
                .propose_stream(payloads, |i, payload, result| {
                    let line = cli::send_line(&result, payload);
                    if let Err(error) = result {
                        first_failure.get_or_insert(error);
                    }
                    let mut out = stdout.lock();
                    for line in printer.ready(i, line) {
                        let _ = writeln!(out, "{line}");
                    }
                    let _ = out.flush();
                })
                .await;
            let failure = match outcome {
                Err(error) => Some(error),
                Ok(()) => first_failure,
            };
            match failure {
                Some(error @ ordo_engine::client::ClientError::Unavailable { .. }) => {
                    Err(match why_no_leader(addrs, options).await {
                        Some(why) => format!("{error}; {why}"),
                        None => error.to_string(),
                    })
                }
                Some(error) => Err(error.to_string()),
                None => Ok(()),
            }
        })
    })?;
    // The client read the input to its end, so the reader has finished:
    // its error, if any, is what ended the input.
    match reader.map(std::thread::JoinHandle::join) {
        Some(Ok(Err(error))) => Err(format!("reading stdin: {error}")),
        Some(Err(_)) => Err("the stdin reader failed".into()),
        Some(Ok(Ok(()))) | None => Ok(()),
    }
}

/// What the first node of `addrs` to answer says about a cluster that
/// elects no leader: it is repairing a loss (what and where), or it sees
/// no leader.
async fn why_no_leader(addrs: Vec<SocketAddr>, options: ClientOptions) -> Option<String> {
    let options = ClientOptions {
        timeout: options.timeout.min(Duration::from_secs(2)),
        ..options
    };
    let mut client = Client::new(addrs, options).ok()?;
    let (status, _) = client.status().await.ok()?;
    Some(if status.repairing {
        format!(
            "node {} is repairing and takes no part in elections until a leader repairs it: {}",
            status.id, status.repair
        )
    } else if !status.peers_repairing.is_empty() {
        let peers: Vec<String> = status.peers_repairing.iter().map(u64::to_string).collect();
        format!(
            "node {} sees no leader in term {}: node(s) {} answered that they are repairing a loss and grant no vote (`ordo status` on each names what it lost)",
            status.id,
            status.term,
            peers.join(", ")
        )
    } else {
        format!(
            "node {} sees no leader in term {} (nodes repairing a loss do not vote: `ordo status` on each names what it lost)",
            status.id, status.term
        )
    })
}

fn chain(node: &str, timeout: f64) -> Result<(), String> {
    log_or_chain(node, None, true, timeout)
}

fn log(node: &str, from: u64, follow: bool, chain: bool, timeout: f64) -> Result<(), String> {
    log_or_chain(node, Some((from, follow)), chain, timeout)
}

/// `ordo chain` (`log`: `None`) and `ordo log` (`log`: the first id and
/// whether to follow): the configuration links first if `chain`, so that
/// `ordo verify` can check tokens signed by voters added later, then the
/// messages.
fn log_or_chain(
    node: &str,
    log: Option<(u64, bool)>,
    chain: bool,
    timeout: f64,
) -> Result<(), String> {
    let (addrs, options) = client_setup(node, timeout)?;
    on_executor(move || {
        Box::pin(async move {
            let mut client = Client::new(addrs, options).map_err(|e| e.to_string())?;
            if chain {
                for link in client.chain().await.map_err(|e| e.to_string())? {
                    println!("{}", cli::link_line(&link));
                }
            }
            let Some((from, follow)) = log else {
                return Ok(());
            };
            let stdout = std::io::stdout();
            client
                .log(from, follow, |message| {
                    let mut out = stdout.lock();
                    writeln!(out, "{}", cli::log_line(message)).is_ok() && out.flush().is_ok()
                })
                .await
                .map_err(|e| e.to_string())
        })
    })
}

/// `ordo member …`.
fn member(command: MemberCommand) -> Result<(), String> {
    let changed = |id: u64, role: &'static str| {
        move |answer: AdminAnswer| {
            if let AdminAnswer::Changed { index } = answer {
                println!(
                    "{}",
                    serde_json::json!({ "id": id, "role": role, "index": index })
                );
            }
        }
    };
    match command {
        MemberCommand::Add {
            node,
            dir,
            id,
            learner,
            timeout,
        } => {
            let info = cli::member_info(&dir, id).map_err(|e| e.to_string())?;
            let role = if learner { "learner" } else { "voter" };
            admin(
                &node,
                timeout,
                AdminCommand::AddMember {
                    id,
                    learner,
                    info: info.to_vec(),
                },
                changed(id, role),
            )
        }
        MemberCommand::Promote(MemberTarget { node, id, timeout }) => admin(
            &node,
            timeout,
            AdminCommand::PromoteMember { id },
            changed(id, "voter"),
        ),
        MemberCommand::Remove(MemberTarget { node, id, timeout }) => admin(
            &node,
            timeout,
            AdminCommand::RemoveMember { id },
            changed(id, "removed"),
        ),
        MemberCommand::List { node, timeout } => {
            admin(&node, timeout, AdminCommand::ListMembers, |answer| {
                if let AdminAnswer::Members { members, .. } = answer {
                    for member in members {
                        println!("{}", cli::member_line(&member));
                    }
                }
            })
        }
    }
}

/// Sends one administrative request and prints its answer with `print`.
fn admin(
    node: &str,
    timeout: f64,
    command: AdminCommand,
    print: impl FnOnce(AdminAnswer) + Send + 'static,
) -> Result<(), String> {
    let (addrs, options) = client_setup(node, timeout)?;
    on_executor(move || {
        Box::pin(async move {
            let mut client = Client::new(addrs, options).map_err(|e| e.to_string())?;
            let answer = client.admin(command).await.map_err(|e| e.to_string())?;
            print(answer);
            Ok(())
        })
    })
}

fn status(node: &str, timeout: f64) -> Result<(), String> {
    let (addrs, options) = client_setup(node, timeout)?;
    on_executor(move || {
        Box::pin(async move {
            let mut client = Client::new(addrs, options).map_err(|e| e.to_string())?;
            let (status, _) = client.status().await.map_err(|e| e.to_string())?;
            println!("{}", ordo_engine::status::status_line(&status));
            Ok(())
        })
    })
}

/// `ordo cluster`: a local launcher of child `ordo` processes.
mod cluster {
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use ordo_engine::cli;
    use ordo_engine::node::{GOSSIP_PORT_OFFSET, NodeConfig};

    /// Gossip node j listens on `base_port + GOSSIP_NODE_PORT_OFFSET + j - 1`.
    pub const GOSSIP_NODE_PORT_OFFSET: u16 = 300;
    /// Most gossip nodes one launcher runs.
    pub const GOSSIP_NODES_MAX: usize = 100;
    /// How long a child gets to stop after SIGTERM before SIGKILL.
    const STOP_TIMEOUT: Duration = Duration::from_secs(10);

    struct Proc {
        name: String,
        child: Child,
        exited: bool,
    }

    fn spawn(binary: &Path, args: &[String], log: &Path, name: String) -> Result<Proc, String> {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
        let child = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        Ok(Proc {
            name,
            child,
            exited: false,
        })
    }

    /// Sends SIGTERM to every child still running, waits for them (up to
    /// `STOP_TIMEOUT`), then kills what is left.
    fn stop_all(procs: &mut [Proc]) {
        for proc in procs.iter().filter(|p| !p.exited) {
            // A child this launcher started and has not reaped (so its pid is
            // still its own). A failure means it already exited, which the
            // wait below sees.
            let pid = nix::unistd::Pid::from_raw(proc.child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        for proc in procs.iter_mut().filter(|p| !p.exited) {
            loop {
                match proc.child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        eprintln!("ordo cluster: {} did not stop; killing it", proc.name);
                        let _ = proc.child.kill();
                        let _ = proc.child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
            proc.exited = true;
        }
    }

    /// Runs `nodes` voters and `gossip` gossip nodes from `dir` until
    /// SIGINT or SIGTERM.
    pub fn run(nodes: usize, gossip: usize, dir: &Path, base_port: u16) -> Result<(), String> {
        if gossip > GOSSIP_NODES_MAX {
            return Err(format!(
                "invalid --gossip {gossip}: at most {GOSSIP_NODES_MAX}"
            ));
        }
        let top = u32::from(base_port) + u32::from(GOSSIP_NODE_PORT_OFFSET) + gossip as u32;
        if top > u32::from(u16::MAX) {
            return Err(format!(
                "invalid --base-port {base_port}: gossip ports up to {top} exceed 65535"
            ));
        }
        let keys = dir.join("cluster.keys");
        if keys.exists() {
            for i in 1..=nodes {
                let config = dir.join(format!("node{i}/ordo.toml"));
                if !config.exists() {
                    return Err(format!(
                        "{} has a cluster but no {}: use the --nodes it was made with, or a new --dir",
                        dir.display(),
                        config.display()
                    ));
                }
            }
        } else {
            cli::init(nodes, dir, base_port).map_err(|e| e.to_string())?;
        }
        let signals = cli::termination_signals().map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        {
            let stop = stop.clone();
            std::thread::spawn(move || {
                if signals.wait().is_some() {
                    stop.store(true, Ordering::SeqCst);
                }
            });
        }
        let binary =
            std::env::current_exe().map_err(|e| format!("cannot find the ordo binary: {e}"))?;
        let mut procs = Vec::new();
        let mut seeds = Vec::new();
        let mut lines = Vec::new();
        let started = (|| -> Result<(), String> {
            for i in 1..=nodes {
                let path = dir.join(format!("node{i}/ordo.toml"));
                let config = NodeConfig::load(&path).map_err(|e| e.to_string())?;
                let gossip_addr = config.gossip_addr.unwrap_or_else(|| {
                    let port = base_port + GOSSIP_PORT_OFFSET + i as u16 - 1;
                    std::net::SocketAddr::from(([127, 0, 0, 1], port))
                });
                seeds.push(gossip_addr.to_string());
                let log = dir.join(format!("node{i}.log"));
                let args = vec![
                    "node".to_string(),
                    "--config".to_string(),
                    path.display().to_string(),
                ];
                procs.push(spawn(&binary, &args, &log, format!("voter {i}"))?);
                let metrics = config
                    .metrics
                    .listen
                    .map(|addr| format!(" metrics http://{addr}/metrics"))
                    .unwrap_or_default();
                lines.push(format!(
                    "voter {i}: client {} gossip {gossip_addr} log {}{metrics}",
                    config.client_addr,
                    log.display()
                ));
            }
            for j in 1..=gossip {
                let port = base_port + GOSSIP_NODE_PORT_OFFSET + j as u16 - 1;
                let addr = format!("127.0.0.1:{port}");
                let data: PathBuf = dir.join(format!("gossip{j}"));
                let log = dir.join(format!("gossip{j}.log"));
                let args = vec![
                    "gossip".to_string(),
                    "--listen".to_string(),
                    addr.clone(),
                    "--seeds".to_string(),
                    seeds.join(","),
                    "--keys".to_string(),
                    keys.display().to_string(),
                    "--data-dir".to_string(),
                    data.display().to_string(),
                ];
                procs.push(spawn(&binary, &args, &log, format!("gossip node {j}"))?);
                lines.push(format!(
                    "gossip {j}: {addr} data {} log {}",
                    data.display(),
                    log.display()
                ));
            }
            Ok(())
        })();
        if let Err(error) = started {
            stop_all(&mut procs);
            return Err(error);
        }
        for line in &lines {
            println!("{line}");
        }
        println!("keys: {}", keys.display());
        println!(
            "client secret: {} (for the ordo commands: --client-secret or {})",
            dir.join(ordo_engine::auth::CLIENT_SECRET_FILE).display(),
            ordo_engine::auth::CLIENT_SECRET_ENV
        );
        println!(
            "ordo cluster: {nodes} voters and {gossip} gossip nodes running; Ctrl-C stops them"
        );
        while !stop.load(Ordering::SeqCst) {
            for proc in procs.iter_mut().filter(|p| !p.exited) {
                if let Ok(Some(status)) = proc.child.try_wait() {
                    proc.exited = true;
                    eprintln!("ordo cluster: {} exited ({status})", proc.name);
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("ordo cluster: stopping");
        stop_all(&mut procs);
        eprintln!("ordo cluster: stopped");
        Ok(())
    }
}
