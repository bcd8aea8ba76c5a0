//! `ordo`: run a voter, and talk to a cluster from the command line.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::{Parser, Subcommand};
use ordo_engine::cli;
use ordo_engine::client::{Client, ClientOptions};
use ordo_engine::node::{Node, NodeConfig, NullStateMachine};

/// mimalloc: fewer cycles per commit than glibc malloc under the runtime's
/// allocation pattern (many short-lived buffers across threads).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "ordo", version, about = "ordo: a Raft log replication engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes DIR/node<i>/ordo.toml for i = 1..N with a fresh key pair each,
    /// and DIR/cluster.keys.
    Init {
        /// Voters in the cluster.
        #[arg(long)]
        nodes: usize,
        /// Where to write the cluster's files.
        #[arg(long)]
        dir: PathBuf,
        /// Node i's client address is 127.0.0.1:(P + i - 1); its peer port
        /// is P + 100 + i - 1 and its gossip port P + 200 + i - 1.
        #[arg(long, default_value_t = 7000)]
        base_port: u16,
    },
    /// Runs one voter in the foreground until SIGTERM or SIGINT.
    Node {
        /// The node's ordo.toml.
        #[arg(long)]
        config: PathBuf,
    },
    /// Sends a message (or one per stdin line) and prints where it committed.
    Send {
        /// Any node's client address (host:port).
        #[arg(long)]
        node: String,
        /// Ask a follower for a redirect to the leader instead of forwarding.
        #[arg(long)]
        redirect: bool,
        /// Read one message per line from stdin (pipelined).
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
        /// Any node's client address (host:port).
        #[arg(long)]
        node: String,
        /// First message id.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Keep printing new messages as they commit.
        #[arg(long)]
        follow: bool,
        /// Give up after this many seconds without an answer.
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
    },
    /// Prints one node's status as a JSON object.
    Status {
        /// The node's client address (host:port).
        #[arg(long)]
        node: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 5.0)]
        timeout: f64,
    },
    /// Verifies JSON lines from `send` or `log` on stdin against the
    /// cluster's public keys; exits non-zero at the first failure.
    Verify {
        /// The cluster.keys file.
        #[arg(long)]
        keys: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init {
            nodes,
            dir,
            base_port,
        } => cli::init(nodes, &dir, base_port).map(|written| {
            for line in written {
                println!("{line}");
            }
        }),
        Command::Node { config } => run_node(config),
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
            timeout,
        } => log(&node, from, follow, timeout),
        Command::Status { node, timeout } => status(&node, timeout),
        Command::Verify { keys } => cli::verify_stdin(&keys),
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
    let signals = cli::termination_signals()?;
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

fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    text.to_socket_addrs()
        .map_err(|e| format!("invalid --node {text:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("invalid --node {text:?}: no address"))
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
    let addr = parse_addr(node)?;
    let options = ClientOptions {
        timeout: timeout_of(timeout)?,
        redirect,
        ..ClientOptions::default()
    };
    let payloads: Vec<Bytes> = if stdin {
        let mut lines = Vec::new();
        for line in std::io::stdin().lock().lines() {
            lines.push(Bytes::from(
                line.map_err(|e| format!("reading stdin: {e}"))?,
            ));
        }
        lines
    } else {
        vec![Bytes::from(message.unwrap_or_default())]
    };
    on_executor(move || {
        Box::pin(async move {
            let mut client = Client::new(vec![addr], options).map_err(|e| e.to_string())?;
            let mut printer = cli::InOrder::new(payloads.len());
            let texts = payloads.clone();
            let stdout = std::io::stdout();
            let results = client
                .propose_all(payloads, |i, result| {
                    let mut out = stdout.lock();
                    for line in printer.ready(i, cli::send_line(result, &texts[i])) {
                        let _ = writeln!(out, "{line}");
                    }
                    let _ = out.flush();
                })
                .await
                .map_err(|e| e.to_string())?;
            match results.into_iter().find_map(Result::err) {
                Some(error) => Err(error.to_string()),
                None => Ok(()),
            }
        })
    })
}

fn log(node: &str, from: u64, follow: bool, timeout: f64) -> Result<(), String> {
    let addr = parse_addr(node)?;
    let options = ClientOptions {
        timeout: timeout_of(timeout)?,
        ..ClientOptions::default()
    };
    on_executor(move || {
        Box::pin(async move {
            let mut client = Client::new(vec![addr], options).map_err(|e| e.to_string())?;
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

fn status(node: &str, timeout: f64) -> Result<(), String> {
    let addr = parse_addr(node)?;
    let options = ClientOptions {
        timeout: timeout_of(timeout)?,
        ..ClientOptions::default()
    };
    on_executor(move || {
        Box::pin(async move {
            let mut client = Client::new(vec![addr], options).map_err(|e| e.to_string())?;
            let (status, _) = client.status().await.map_err(|e| e.to_string())?;
            println!("{}", cli::status_line(&status));
            Ok(())
        })
    })
}
