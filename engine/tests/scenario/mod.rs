//! The interpreter of the scenario scripts in `tests/testdata/*.txt`.
//!
//! Commands (ids are node ids; `key=value` arguments are optional):
//!
//! | command | effect |
//! |---|---|
//! | `cluster voters=3 [seed=1] [<CoreConfig field>=<value>…]` | a fresh cluster (`pre_vote`, `check_quorum`, `batch_entries_max`, `batch_bytes_max`, `inflight_messages_max`, `inflight_bytes_max`, `append_bytes_max`, `uncommitted_bytes_max`, `log_cache_bytes_max`, `snapshot_entries_threshold`, `proposal_queue_max`, `forward_inflight_max`, `session_results_max`) |
//! | `elect <n>` | `n`'s election timer fires; the cluster runs until quiet; `n` must lead |
//! | `campaign <n>` | the same, without requiring a win |
//! | `transfer <n> <m>` | the leader `n` hands leadership to `m` (thesis §3.10); runs until quiet |
//! | `propose <n> <payload> [client=<c> seq=<s>] [redirect]` | queues a proposal at `n`, prints its request id |
//! | `propose-many <n> <count> [size=<bytes>] [client=<c> seq=<first>]` | queues `count` proposals |
//! | `read <n>` | queues a linearizable read at `n` |
//! | `stabilize` | runs until quiet (no time passes) |
//! | `tick <ms>` | time passes; each timer fires at its deadline |
//! | `isolate <n>` / `heal` / `cut <a> <b>` / `cut-oneway <a> <b>` | drop messages on links |
//! | `hold <n>…` / `release <n>…` | queue messages to `n` instead of delivering them |
//! | `skew <n> <ms>` | offsets `n`'s wall clock (negative: behind) |
//! | `trace on\|off [hide=<kind>,…]` | print every message delivered or dropped, except the kinds hidden (`heartbeat`, `append_response`, …) |
//! | `status` | every node's role, term, leader, commit, last, applied |
//! | `log <n> [from=<i>]` | the entries in `n`'s log |
//! | `batches <n>` | the batches in `n`'s log (entries and payload bytes) |
//! | `terms <n>` | the term runs of `n`'s log |
//! | `progress <n>` | the leader `n`'s view of each follower |
//! | `net <n>` | messages held for `n`; checks the inflight window bounds |
//! | `stats` | messages delivered by kind since the last `stats` |
//! | `applied <n> [from=<i>]` | what `n`'s state machine applied |
//! | `expect r<id> <answer>` | the request's last answer reads exactly so |
//! | `expect <n> <field>=<value>…` | `n`'s `role`, `term`, `leader`, `commit`, `last`, `applied`, `durable` |
//! | `check` | the cross-node invariants (also checked after every command) |
//!
//! Role changes (with the time since the start) and answers to proposals
//! and reads are printed as they happen, whatever the command. `expect`
//! lines pin the claims a script makes: they fail the test even while
//! `ORDO_REWRITE=1` regenerates the printed output.

pub mod datadriven;
mod env;
mod format;

use std::collections::BTreeMap;
use std::path::PathBuf;

use bytes::Bytes;
use ordo_engine::core::{CoreConfig, ReplicationState, Role};
use ordo_net::Message;
use ordo_storage::NodeId;

use env::Env;

/// Runs `testdata/<name>.txt`: compares every output, or rewrites the file
/// with `ORDO_REWRITE=1`.
pub fn run_file(name: &str) {
    let path = testdata().join(format!("{name}.txt"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let script = datadriven::parse(name, &text);
    let mut interpreter = Interpreter { env: None };
    let mut outputs = Vec::new();
    let rewrite = std::env::var_os("ORDO_REWRITE").is_some_and(|v| v != "0");
    let mut mismatches = Vec::new();
    let mut errors = Vec::new();
    for case in &script.cases {
        // A failed command (or expectation) is recorded in place, so that a
        // rewritten file shows where it happened, and fails the test.
        let output = interpreter.execute(&case.command).unwrap_or_else(|error| {
            errors.push(format!(
                "{name}.txt:{}: `{}`: {error}",
                case.line, case.command
            ));
            vec![format!("error: {error}")]
        });
        if output != case.expected {
            mismatches.push(format!(
                "{name}.txt:{}: `{}`\n--- expected\n{}\n+++ actual\n{}",
                case.line,
                case.command,
                case.expected.join("\n"),
                output.join("\n")
            ));
        }
        outputs.push(output);
    }
    if rewrite {
        std::fs::write(&path, datadriven::render(&script, &outputs)).expect("rewrite the script");
    }
    assert!(
        errors.is_empty(),
        "{} command(s) failed:\n{}",
        errors.len(),
        errors.join("\n")
    );
    if rewrite {
        return;
    }
    assert!(
        mismatches.is_empty(),
        "{} case(s) differ (ORDO_REWRITE=1 regenerates the file; review the diff):\n\n{}",
        mismatches.len(),
        mismatches.join("\n\n")
    );
}

/// The directory of the scripts.
pub fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("testdata")
}

struct Interpreter {
    env: Option<Env>,
}

/// A command line split into positional and `key=value` arguments.
struct Args {
    positional: Vec<String>,
    named: BTreeMap<String, String>,
}

impl Args {
    fn parse(words: &[&str]) -> Self {
        let mut positional = Vec::new();
        let mut named = BTreeMap::new();
        for word in words {
            match word.split_once('=') {
                Some((key, value)) => {
                    named.insert(key.to_string(), value.to_string());
                }
                None => positional.push(word.to_string()),
            }
        }
        Self { positional, named }
    }

    fn node(&self, at: usize) -> Result<NodeId, String> {
        self.number(at).map_err(|e| format!("node id: {e}"))
    }

    fn number(&self, at: usize) -> Result<u64, String> {
        let word = self
            .positional
            .get(at)
            .ok_or(format!("missing argument {}", at + 1))?;
        word.parse()
            .map_err(|_| format!("`{word}` is not a number"))
    }

    fn nodes(&self) -> Result<Vec<NodeId>, String> {
        (0..self.positional.len()).map(|at| self.node(at)).collect()
    }

    fn named_u64(&mut self, key: &str, default: u64) -> Result<u64, String> {
        match self.named.remove(key) {
            Some(value) => value
                .parse()
                .map_err(|_| format!("{key}={value} is not a number")),
            None => Ok(default),
        }
    }

    fn flag(&self, word: &str) -> bool {
        self.positional.iter().any(|p| p == word)
    }

    fn done(&self) -> Result<(), String> {
        match self.named.keys().next() {
            Some(key) => Err(format!("unknown argument {key}")),
            None => Ok(()),
        }
    }
}

impl Interpreter {
    fn env(&mut self) -> Result<&mut Env, String> {
        self.env
            .as_mut()
            .ok_or_else(|| "no cluster yet (`cluster voters=N`)".to_string())
    }

    fn execute(&mut self, line: &str) -> Result<Vec<String>, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (command, rest) = words.split_first().ok_or("empty command")?;
        if *command == "expect" {
            expect(self.env()?, rest)?;
            let env = self.env()?;
            env.check();
            let mut output = env.take_output();
            output.push("ok".into());
            return Ok(output);
        }
        let mut args = Args::parse(rest);
        let mut printed = Vec::new();
        match *command {
            "cluster" => {
                let voters = args.named_u64("voters", 3)?;
                let seed = args.named_u64("seed", 1)?;
                let config = config_from(&mut args)?;
                config.validate().map_err(|e| e.to_string())?;
                self.env = Some(Env::new(voters, config, seed));
            }
            "elect" | "campaign" => {
                let node = args.node(0)?;
                let env = self.env()?;
                env.campaign(node);
                if *command == "elect" && env.host(node).role() != Role::Leader {
                    return Err(format!("node {node} did not win"));
                }
            }
            "transfer" => {
                let (from, to) = (args.node(0)?, args.node(1)?);
                let env = self.env()?;
                env.inject(
                    from,
                    ordo_engine::core::Event::TransferLeadership { to, request_id: 0 },
                );
                env.run();
            }
            "propose" => {
                let node = args.node(0)?;
                let payload = args.positional.get(1).ok_or("missing payload")?.clone();
                let client = args.named_u64("client", 0)?;
                let seq = args.named_u64("seq", 0)?;
                let redirect = args.flag("redirect");
                let env = self.env()?;
                let request = env.propose(
                    node,
                    Bytes::from(payload.into_bytes()),
                    client,
                    seq,
                    redirect,
                );
                printed.push(format!("r{request}"));
            }
            "propose-many" => {
                let node = args.node(0)?;
                let count = args.number(1)?;
                let size = args.named_u64("size", 0)? as usize;
                let client = args.named_u64("client", 0)?;
                let first_seq = args.named_u64("seq", 1)?;
                let env = self.env()?;
                let mut requests = Vec::new();
                for i in 0..count {
                    let mut payload = format!("m{}", i + 1).into_bytes();
                    payload.resize(size.max(payload.len()), b'.');
                    let seq = if client == 0 { 0 } else { first_seq + i };
                    requests.push(env.propose(node, Bytes::from(payload), client, seq, false));
                }
                if let (Some(first), Some(last)) = (requests.first(), requests.last()) {
                    printed.push(format!("r{first}..r{last}"));
                }
            }
            "read" => {
                let node = args.node(0)?;
                let request = self.env()?.read(node);
                printed.push(format!("r{request}"));
            }
            "stabilize" => self.env()?.run(),
            "tick" => {
                let ms = args.number(0)?;
                self.env()?.tick(ms);
            }
            "isolate" => {
                let node = args.node(0)?;
                let env = self.env()?;
                let others: Vec<NodeId> =
                    env.hosts.keys().copied().filter(|&n| n != node).collect();
                for other in others {
                    env.cut.insert((node, other));
                    env.cut.insert((other, node));
                }
            }
            "heal" => self.env()?.cut.clear(),
            "cut" | "cut-oneway" => {
                let (a, b) = (args.node(0)?, args.node(1)?);
                let env = self.env()?;
                env.cut.insert((a, b));
                if *command == "cut" {
                    env.cut.insert((b, a));
                }
            }
            "hold" => {
                let nodes = args.nodes()?;
                self.env()?.held.extend(nodes);
            }
            "release" => {
                let nodes = args.nodes()?;
                let env = self.env()?;
                for node in nodes {
                    env.held.remove(&node);
                }
            }
            "skew" => {
                let node = args.node(0)?;
                let word = args.positional.get(1).ok_or("missing offset")?;
                let ms: i64 = word
                    .parse()
                    .map_err(|_| format!("`{word}` is not a number"))?;
                self.env()?.skew_us.insert(node, ms * 1_000);
            }
            "trace" => {
                let on = match args.positional.first().map(String::as_str) {
                    Some("on") => true,
                    Some("off") => false,
                    _ => return Err("trace on|off [hide=<kind>,…]".into()),
                };
                let hidden = args.named.remove("hide").unwrap_or_default();
                let env = self.env()?;
                env.trace = on;
                env.trace_hidden = hidden
                    .split(',')
                    .filter(|k| !k.is_empty())
                    .map(String::from)
                    .collect();
            }
            "status" => printed = status(self.env()?),
            "log" => {
                let node = args.node(0)?;
                let from = args.named_u64("from", 1)?;
                printed = log(self.env()?, node, from);
            }
            "applied" => {
                let node = args.node(0)?;
                let from = args.named_u64("from", 1)?;
                let env = self.env()?;
                printed = env
                    .host(node)
                    .state_machine()
                    .iter()
                    .filter(|e| e.index >= from)
                    .map(format::applied)
                    .collect();
                if printed.is_empty() {
                    printed.push("(nothing applied)".into());
                }
            }
            "batches" => printed = batches(self.env()?, args.node(0)?),
            "terms" => printed = terms(self.env()?, args.node(0)?),
            "progress" => printed = progress(self.env()?, args.node(0)?)?,
            "net" => printed = net(self.env()?, args.node(0)?),
            "stats" => {
                let env = self.env()?;
                let stats = std::mem::take(&mut env.stats);
                printed = stats
                    .iter()
                    .map(|(kind, count)| format!("{kind}: {count}"))
                    .collect();
            }
            "check" => printed.push("invariants hold".into()),
            other => return Err(format!("unknown command `{other}`")),
        }
        args.done()?;
        let env = self.env()?;
        env.check();
        let mut output = env.take_output();
        output.extend(printed);
        if output.is_empty() {
            output.push("ok".into());
        }
        Ok(output)
    }
}

fn config_from(args: &mut Args) -> Result<CoreConfig, String> {
    let mut config = CoreConfig::default();
    let flags: Vec<(&str, &mut bool)> = vec![
        ("pre_vote", &mut config.pre_vote),
        ("check_quorum", &mut config.check_quorum),
    ];
    for (key, field) in flags {
        if let Some(value) = args.named.remove(key) {
            *field = value
                .parse()
                .map_err(|_| format!("{key}={value} is not a bool"))?;
        }
    }
    config.batch_entries_max =
        args.named_u64("batch_entries_max", config.batch_entries_max.into())? as u32;
    config.snapshot_entries_threshold = args.named_u64(
        "snapshot_entries_threshold",
        config.snapshot_entries_threshold,
    )?;
    // 0 unless a script asks: the transcripts were written with idle
    // followers told of a commit in the turn that made it, and read best so
    // (commit_notify.txt shows the delay; the simulator draws 0, 1 ms or
    // 20 ms per seed).
    config.commit_notify_delay_us = args.named_u64("commit_notify_delay_us", 0)?;
    let sizes: Vec<(&str, &mut usize)> = vec![
        ("batch_bytes_max", &mut config.batch_bytes_max),
        ("inflight_messages_max", &mut config.inflight_messages_max),
        ("inflight_bytes_max", &mut config.inflight_bytes_max),
        ("append_bytes_max", &mut config.append_bytes_max),
        ("uncommitted_bytes_max", &mut config.uncommitted_bytes_max),
        ("log_cache_bytes_max", &mut config.log_cache_bytes_max),
        ("proposal_queue_max", &mut config.proposal_queue_max),
        ("forward_inflight_max", &mut config.forward_inflight_max),
        ("session_results_max", &mut config.session_results_max),
    ];
    for (key, field) in sizes {
        *field = args.named_u64(key, *field as u64)? as usize;
    }
    Ok(config)
}

/// `expect r<id> <answer>`: the last answer to the request reads exactly
/// `<answer>`. `expect <node> <field>=<value>…`: the node's role, term,
/// leader, commit, last, applied or durable index. Unlike printed output, an
/// expectation fails the test even when the file is being rewritten.
fn expect(env: &Env, words: &[&str]) -> Result<(), String> {
    let (target, rest) = words.split_first().ok_or("expect what?")?;
    if let Some(request) = target.strip_prefix('r') {
        let request: u64 = request
            .parse()
            .map_err(|_| format!("`{target}` is not a request"))?;
        let want = rest.join(" ");
        return match env.answers.get(&request) {
            Some(got) if *got == want => Ok(()),
            Some(got) => Err(format!("expected r{request}: {want}, got {got}")),
            None => Err(format!("expected r{request}: {want}, but it has no answer")),
        };
    }
    let node: NodeId = target
        .parse()
        .map_err(|_| format!("`{target}` is neither a request nor a node"))?;
    let status = env.host(node).raft.status();
    for word in rest {
        let (key, want) = word
            .split_once('=')
            .ok_or(format!("`{word}`: expected field=value"))?;
        let got = match key {
            "role" => status.role.as_str().to_string(),
            "term" => status.term.to_string(),
            "leader" => status.leader.to_string(),
            "commit" => status.commit_index.to_string(),
            "last" => status.last_index.to_string(),
            "applied" => status.applied_index.to_string(),
            "durable" => status.durable_index.to_string(),
            _ => return Err(format!("unknown field {key}")),
        };
        if got != want {
            return Err(format!("expected node {node} {key}={want}, got {got}"));
        }
    }
    Ok(())
}

fn status(env: &Env) -> Vec<String> {
    env.hosts
        .values()
        .map(|h| {
            let s = h.raft.status();
            let leader = if s.role == Role::Leader {
                String::new()
            } else {
                format!(" leader={}", s.leader)
            };
            format!(
                "{}: {} t{}{leader} commit={} last={} applied={}",
                s.id,
                s.role.as_str(),
                s.term,
                s.commit_index,
                s.last_index,
                s.applied_index
            )
        })
        .collect()
}

fn log(env: &Env, node: NodeId, from: u64) -> Vec<String> {
    let host = env.host(node);
    let state = host.log.state_now();
    let from = from.max(state.prev.index + 1);
    if from > state.last.index {
        return vec!["(empty)".into()];
    }
    let batches = host.log.read_now(from, usize::MAX).expect("read");
    batches
        .iter()
        .flat_map(|b| {
            b.entries()
                .filter(|e| e.index >= from)
                .map(|e| format::entry(&e))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn batches(env: &Env, node: NodeId) -> Vec<String> {
    let host = env.host(node);
    let state = host.log.state_now();
    if state.last.index == state.prev.index {
        return vec!["(empty)".into()];
    }
    let batches = host
        .log
        .read_now(state.prev.index + 1, usize::MAX)
        .expect("read");
    batches
        .iter()
        .map(|b| {
            let payload: usize = b.entries().map(|e| e.payload.len()).sum();
            format!(
                "{}..{} t{} {:?} entries={} payload_bytes={payload}",
                b.first_index(),
                b.last_index(),
                b.term(),
                b.kind(),
                b.count()
            )
        })
        .collect()
}

fn terms(env: &Env, node: NodeId) -> Vec<String> {
    let host = env.host(node);
    let runs = host.log.term_runs_now();
    let last = host.log.state_now().last.index;
    if runs.is_empty() {
        return vec!["(empty)".into()];
    }
    let parts: Vec<String> = runs
        .iter()
        .enumerate()
        .map(|(i, run)| {
            let end = runs.get(i + 1).map_or(last, |next| next.first_index - 1);
            format!("t{}: {}..{}", run.term, run.first_index, end)
        })
        .collect();
    vec![parts.join(", ")]
}

fn progress(env: &Env, node: NodeId) -> Result<Vec<String>, String> {
    let host = env.host(node);
    if host.role() != Role::Leader {
        return Err(format!("node {node} does not lead"));
    }
    Ok(host
        .raft
        .voters()
        .iter()
        .filter_map(|&peer| host.raft.progress(peer).map(|p| (peer, p)))
        .map(|(peer, p)| {
            let state = match p.state {
                ReplicationState::Probe => "probe".to_string(),
                ReplicationState::Replicate => "replicate".to_string(),
                ReplicationState::Snapshot { index } => format!("snapshot@{index}"),
            };
            format!(
                "{peer}: {state} match={} next={} inflight={} ({} bytes)",
                p.match_index,
                p.next_index,
                p.inflight_messages(),
                p.inflight_bytes()
            )
        })
        .collect())
}

/// The messages held for `node`. While a follower is held, none of the
/// appends sent to it can have been acknowledged, so they are exactly the
/// leader's inflight window: check its bounds (the byte bound may be passed
/// by the last message only: the window had room when it left).
fn net(env: &Env, node: NodeId) -> Vec<String> {
    let mut out = Vec::new();
    let mut appends = Vec::new();
    for flight in env.net.iter().filter(|f| f.to == node) {
        out.push(format!(
            "{}->{} {}",
            flight.from,
            flight.to,
            format::message(&flight.message)
        ));
        let carries_entries =
            matches!(&flight.message, Message::Append(request) if !request.batches.is_empty());
        if carries_entries {
            appends.push(flight.message.batch_bytes());
        }
    }
    if !appends.is_empty() {
        let bytes: usize = appends.iter().sum();
        let before_last = bytes - appends.last().expect("non-empty");
        assert!(
            appends.len() <= env.config.inflight_messages_max,
            "{} appends in flight to {node}, limit {}",
            appends.len(),
            env.config.inflight_messages_max
        );
        assert!(
            before_last < env.config.inflight_bytes_max,
            "{before_last} bytes were in flight to {node} before the last append, limit {}",
            env.config.inflight_bytes_max
        );
        out.push(format!(
            "{} appends with entries, {bytes} bytes ({before_last} before the last)",
            appends.len()
        ));
    }
    if out.is_empty() {
        out.push("(nothing held)".into());
    }
    out
}
