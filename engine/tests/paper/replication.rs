//! Log replication and commitment: Raft §5.3, §5.4.2 (and the thesis
//! §10.2.1 durability rules where they change them).

use std::collections::{BTreeMap, VecDeque};

use super::common::*;
use super::election::node_in_role;
use ordo_engine::core::{Command, CoreConfig, Event, Role};
use ordo_net::{AppendResult, Message, VoteResponse};
use ordo_storage::{BatchKind, HardState, LogId, NodeId, Term};

// ---------------------------------------------------------- §5.3 replication

/// Raft §5.3: "The leader appends the command to its log as a new entry,
/// then issues AppendEntries RPCs in parallel to each of the other servers
/// to replicate the entry", including "the index and term of the entry in
/// its log that immediately precedes the new entries". It writes the entry
/// to stable storage (an `Append` then a `Sync`) in parallel with sending
/// (thesis §10.2.1), and does not commit it yet.
#[test]
fn leader_start_replication() {
    let mut node = Node::new(1, &ids(3), paper_config());
    node.elect_and_commit_noop();
    let li = node.raft.log().last_index();
    let commands = node.propose(1, b"some data");
    assert_eq!(node.raft.log().last_index(), li + 1);
    assert_eq!(node.raft.log().commit(), li);
    let written = appended(&commands);
    assert_eq!(written.len(), 1);
    let entries: Vec<_> = written[0]
        .entries()
        .map(|e| (e.index, e.term, e.id, e.payload.to_vec()))
        .collect();
    assert_eq!(entries, vec![(li + 1, 1, 1, b"some data".to_vec())]);
    assert!(syncs(&commands), "the entry is made durable");
    let expected = append(1, LogId::new(1, li), li, written.clone());
    assert_eq!(sends(&commands), vec![(2, expected.clone()), (3, expected)]);
}

/// Raft §5.3: "When the entry has been safely replicated, the leader applies
/// the entry to its state machine and returns the result of that execution
/// to the client. … The leader keeps track of the highest index it knows
/// to be committed, and it includes that index in future AppendEntries RPCs
/// (including heartbeats) so that the other servers eventually find out."
/// ordo tells idle followers by heartbeat, `commit_notify_delay_us` after
/// the turn the commit advanced in, unless an AppendEntries carried it
/// first.
#[test]
fn leader_commit_entry() {
    let mut node = Node::new(1, &ids(3), paper_config());
    node.elect_and_commit_noop();
    let li = node.raft.log().last_index();
    let commands = node.propose(7, b"some data");
    let commands = node.settle(commands);
    let acks: Vec<Event> = appends(&commands)
        .iter()
        .map(|(to, request)| Event::Message {
            from: *to,
            message: accept(request),
        })
        .collect();
    let applied_before = node.applied.len();
    let node_commit_us = node.now.mono_us;
    let commands = node.turn(acks);
    assert_eq!(node.raft.log().commit(), li + 1);
    let applied: Vec<_> = node.applied[applied_before..]
        .iter()
        .map(|a| (a.index, a.payload.clone()))
        .collect();
    assert_eq!(applied, vec![(li + 1, b"some data".to_vec())]);
    let answer = commands.iter().find_map(|c| match c {
        Command::Respond {
            request_id: 7,
            result,
        } => Some(*result),
        _ => None,
    });
    let committed = answer.expect("the client is answered").expect("committed");
    assert_eq!(
        (committed.id, committed.index, committed.term),
        (1, li + 1, 1)
    );
    assert!(
        sends(&commands).is_empty(),
        "the followers' news waits for the next append"
    );
    let delay_us = paper_config().commit_notify_delay_us;
    let commands = node.tick_at(node.raft.next_deadline_us());
    assert_eq!(node.now.mono_us, node_commit_us + delay_us);
    assert_eq!(
        sends(&commands),
        vec![(2, heartbeat(1, li + 1)), (3, heartbeat(1, li + 1))]
    );
    // The next append carries the commit index too.
    let commands = node.propose(8, b"more");
    for (_, request) in appends(&commands) {
        assert_eq!(request.commit, li + 1);
    }
}

/// Raft §5.3: "A log entry is committed once the leader that created the
/// entry has replicated it on a majority of the servers." The leader's own
/// copy counts (its sync completed here).
#[test]
fn leader_acknowledge_commit() {
    let cases: Vec<(u64, Vec<NodeId>, bool)> = vec![
        (1, vec![], true),
        (3, vec![], false),
        (3, vec![2], true),
        (3, vec![2, 3], true),
        (5, vec![], false),
        (5, vec![2], false),
        (5, vec![2, 3], true),
        (5, vec![2, 3, 4], true),
        (5, vec![2, 3, 4, 5], true),
    ];
    for (i, (size, acceptors, committed)) in cases.into_iter().enumerate() {
        let mut node = Node::new(1, &ids(size), paper_config());
        node.elect_and_commit_noop();
        let li = node.raft.log().last_index();
        let commands = node.propose(1, b"some data");
        let commands = node.settle(commands);
        for (to, request) in appends(&commands) {
            if acceptors.contains(&to) {
                node.receive(to, accept(&request));
            }
        }
        assert_eq!(node.raft.log().commit() > li, committed, "case {i}");
    }
}

/// Thesis §10.2.1: the leader writes its log in parallel with replication
/// and counts itself toward the majority only up to its own durable index.
/// Two followers are a majority of three without it.
#[test]
fn leader_counts_itself_only_up_to_its_durable_index() {
    let mut node = Node::new(1, &ids(3), paper_config());
    node.elect_and_commit_noop();
    let li = node.raft.log().last_index();
    let proposed = node.propose(1, b"some data");
    let requests = appends(&proposed);
    node.receive(2, accept(&requests[0].1));
    assert_eq!(
        node.raft.log().commit(),
        li,
        "one follower and a leader that has not synced"
    );
    node.settle(proposed);
    assert_eq!(
        node.raft.log().commit(),
        li + 1,
        "the leader's sync completes the majority"
    );

    let proposed = node.propose(2, b"more data");
    for (to, request) in appends(&proposed) {
        node.receive(to, accept(&request));
    }
    assert_eq!(
        node.raft.log().commit(),
        li + 2,
        "two durable followers are a majority"
    );
}

/// Raft §5.3: "When the leader commits a log entry, it also commits all
/// preceding entries in the leader's log, including entries created by
/// previous leaders", and applies them in log order. In ordo the new
/// leader's no-op is its first entry of the term; proposals wait until it is
/// applied.
#[test]
fn leader_commit_preceding_entries() {
    let logs: [&[Term]; 4] = [&[], &[2], &[1, 2], &[1]];
    for (i, terms) in logs.into_iter().enumerate() {
        let hard_state = HardState {
            term: 2,
            vote: 0,
            commit: 0,
        };
        let mut node = Node::restore(1, &ids(3), paper_config(), hard_state, terms);
        let commands = node.elect();
        assert_eq!(node.raft.term(), 3);
        node.accept_all(&commands);
        let commands = node.propose(1, b"some data");
        node.accept_all(&commands);
        let li = terms.len() as u64;
        let mut want: Vec<(u64, Term, BatchKind)> = terms
            .iter()
            .enumerate()
            .map(|(at, &t)| (at as u64 + 1, t, BatchKind::Entries))
            .collect();
        want.push((li + 1, 3, BatchKind::Noop));
        want.push((li + 2, 3, BatchKind::Entries));
        let got: Vec<_> = node
            .applied
            .iter()
            .map(|a| (a.index, a.term, a.kind))
            .collect();
        assert_eq!(got, want, "case {i}");
        assert_eq!(
            node.applied.last().map(|a| a.payload.clone()),
            Some(b"some data".to_vec())
        );
    }
}

/// Raft §5.3: "Once a follower learns that a log entry is committed, it
/// applies the entry to its local state machine (in log order)."
#[test]
fn follower_commit_entry() {
    let cases: [(&[&[u8]], u64); 4] = [
        (&[b"some data"], 1),
        (&[b"some data", b"some data2"], 2),
        (&[b"some data2", b"some data"], 2),
        (&[b"some data", b"some data2"], 1),
    ];
    for (i, (payloads, commit)) in cases.into_iter().enumerate() {
        let mut node = node_in_role(Role::Follower);
        node.receive(
            2,
            append(
                1,
                LogId::new(0, 0),
                commit,
                vec![user_batch(1, 1, payloads)],
            ),
        );
        assert_eq!(node.raft.log().commit(), commit, "case {i}");
        let applied: Vec<_> = node
            .applied
            .iter()
            .map(|a| (a.index, a.payload.clone()))
            .collect();
        let want: Vec<_> = payloads[..commit as usize]
            .iter()
            .enumerate()
            .map(|(at, p)| (at as u64 + 1, p.to_vec()))
            .collect();
        assert_eq!(applied, want, "case {i}");
    }
}

/// Raft §5.3: "If the follower does not find an entry in its log with the
/// same index and term [as prevLogIndex, prevLogTerm], then it refuses the
/// new entries", otherwise it accepts. ordo's rejection carries a hint for
/// fast backtracking: its entry at the latest index whose term is at most
/// the rejected one. An acceptance acknowledges what the request proved to
/// match (a request below the commit index proves nothing more).
#[test]
fn follower_check_msg_app() {
    let hard_state = HardState {
        term: 2,
        vote: 0,
        commit: 1,
    };
    let cases = [
        // Matches committed entries.
        (LogId::new(0, 0), AppendResult::Success { match_index: 0 }),
        (LogId::new(1, 1), AppendResult::Success { match_index: 1 }),
        // Matches an uncommitted entry.
        (LogId::new(2, 2), AppendResult::Success { match_index: 2 }),
        // Mismatches an existing entry.
        (
            LogId::new(1, 2),
            AppendResult::Conflict {
                rejected: 2,
                hint: LogId::new(1, 1),
            },
        ),
        // Beyond the log.
        (
            LogId::new(3, 3),
            AppendResult::Conflict {
                rejected: 3,
                hint: LogId::new(2, 2),
            },
        ),
    ];
    for (i, (prev, result)) in cases.into_iter().enumerate() {
        let mut node = Node::restore(1, &ids(3), paper_config(), hard_state, &[1, 2]);
        let commands = node.receive(2, append(2, prev, 1, vec![]));
        let responses = append_responses(&commands);
        assert_eq!(responses.len(), 1, "case {i}");
        assert_eq!(responses[0].0, 2);
        assert_eq!(responses[0].1.result, result, "case {i}");
        assert_eq!(
            node.log_terms(),
            vec![1, 2],
            "case {i}: the log is unchanged"
        );
    }
}

/// Raft §5.3: "If an existing entry conflicts with a new one (same index but
/// different terms), delete the existing entry and all that follow it; …
/// append any new entries not already in the log", written to stable storage
/// (a `Truncate`, an `Append`, a `Sync`). The leader here is at term 4 (etcd
/// sends term-3 and -4 entries from a term-2 leader, which cannot happen).
#[test]
fn follower_append_entries() {
    let hard_state = HardState {
        term: 2,
        vote: 0,
        commit: 0,
    };
    let b = ordo_storage::conformance::batch;
    let cases = [
        (LogId::new(2, 2), vec![b(3, 3, 1)], vec![1, 2, 3], vec![]),
        (
            LogId::new(1, 1),
            vec![b(3, 2, 1), b(4, 3, 1)],
            vec![1, 3, 4],
            vec![2],
        ),
        (LogId::new(0, 0), vec![b(1, 1, 1)], vec![1, 2], vec![]),
        (LogId::new(0, 0), vec![b(3, 1, 1)], vec![3], vec![1]),
    ];
    for (i, (prev, batches, terms, truncated)) in cases.into_iter().enumerate() {
        let mut node = Node::restore(1, &ids(3), paper_config(), hard_state, &[1, 2]);
        let already_held = terms == [1, 2];
        let last = batches.last().expect("entries").last_index();
        let commands = node.receive(2, append(4, prev, 0, batches.clone()));
        assert_eq!(node.log_terms(), terms, "case {i}");
        assert_eq!(truncations(&commands), truncated, "case {i}");
        if already_held {
            assert!(
                appended(&commands).is_empty(),
                "case {i}: nothing new to write"
            );
        } else {
            assert_eq!(appended(&commands), batches, "case {i}");
            assert!(syncs(&commands), "case {i}");
        }
        let stored: Vec<Term> = node.stored_entries().iter().map(|e| e.1).collect();
        assert_eq!(stored, terms, "case {i}: storage holds the same log");
        // Acknowledgements cover only durable entries: before the sync, at
        // most what was durable and matched already; after it, everything.
        let durable = node.raft.log().durable();
        for (_, response) in append_responses(&commands) {
            let AppendResult::Success { match_index } = response.result else {
                panic!("case {i}: rejected")
            };
            assert!(
                match_index <= durable,
                "case {i}: ack {match_index} before the sync"
            );
        }
        let commands = node.settle(commands);
        let acks: Vec<_> = append_responses(&commands)
            .into_iter()
            .map(|(_, r)| r.result)
            .collect();
        assert_eq!(
            acks.last(),
            Some(&AppendResult::Success { match_index: last }),
            "case {i}"
        );
    }
}

/// Raft Figure 2 and the design's durability rule: a follower acknowledges
/// an append only once a completed sync covers the entries.
#[test]
fn follower_acknowledges_only_durable_entries() {
    let mut node = node_in_role(Role::Follower);
    let commands = node.receive(
        2,
        append(
            1,
            LogId::new(0, 0),
            0,
            vec![user_batch(1, 1, &[b"a", b"b"])],
        ),
    );
    assert!(syncs(&commands));
    assert!(
        append_responses(&commands).is_empty(),
        "no acknowledgement before the sync"
    );
    let commands = node.settle(commands);
    let acks: Vec<_> = append_responses(&commands)
        .into_iter()
        .map(|(to, r)| (to, r.result))
        .collect();
    assert_eq!(acks, vec![(2, AppendResult::Success { match_index: 2 })]);
}

/// Raft §5.3 and Figure 7: "the leader handles inconsistencies by forcing
/// the followers' logs to duplicate its own." The leader of term 8's log is
/// the top row of Figure 7; each follower (a)–(f) ends with the leader's log
/// (plus the new term's entries). A third voter only grants the vote (a
/// follower may hold a more up-to-date log and refuse). Fast backtracking
/// needs at most one rejected append per follower here; the test counts
/// them.
#[test]
fn leader_sync_follower_log() {
    let leader_terms: &[Term] = &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
    let followers: [(&[Term], usize); 6] = [
        (&[1, 1, 1, 4, 4, 5, 5, 6, 6], 1),
        (&[1, 1, 1, 4], 1),
        (&[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6], 0),
        (&[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7], 0),
        (&[1, 1, 1, 4, 4, 4, 4], 1),
        (&[1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3], 1),
    ];
    for (i, (follower_terms, rejections_max)) in followers.into_iter().enumerate() {
        let term = 8;
        let leader_state = HardState {
            term,
            vote: 0,
            commit: leader_terms.len() as u64,
        };
        let follower_state = HardState {
            term: term - 1,
            vote: 0,
            commit: 0,
        };
        let mut nodes = BTreeMap::new();
        nodes.insert(
            1,
            Node::restore(1, &ids(3), paper_config(), leader_state, leader_terms),
        );
        nodes.insert(
            2,
            Node::restore(2, &ids(3), paper_config(), follower_state, follower_terms),
        );
        let fired = nodes.get_mut(&1).expect("leader").fire_election();
        let mut rejections = exchange(&mut nodes, 1, fired);
        assert_eq!(nodes[&1].raft.role(), Role::Leader, "case {i}");
        let proposed = nodes.get_mut(&1).expect("leader").propose(1, b"");
        rejections += exchange(&mut nodes, 1, proposed);
        let (leader, follower) = (&nodes[&1], &nodes[&2]);
        assert_eq!(
            leader.raft.log().last_index(),
            leader_terms.len() as u64 + 2,
            "case {i}: no-op and proposal"
        );
        assert_eq!(follower.log_terms(), leader.log_terms(), "case {i}");
        assert_eq!(
            follower.stored_entries(),
            leader.stored_entries(),
            "case {i}"
        );
        assert_eq!(rejections, rejections_max, "case {i}: rejected appends");
    }
}

/// Delivers messages among the nodes of `nodes` (voter 3 is absent: it
/// grants every vote request and drops everything else) until none is
/// left, completing storage requests at once. Returns the number of
/// rejected appends.
fn exchange(nodes: &mut BTreeMap<NodeId, Node>, from: NodeId, first: Vec<Command>) -> usize {
    let mut queue: VecDeque<(NodeId, Vec<Command>)> = VecDeque::from([(from, first)]);
    let mut rejections = 0;
    while let Some((from, commands)) = queue.pop_front() {
        let node = nodes.get_mut(&from).expect("node");
        let commands = node.settle(commands);
        for (to, message) in sends(&commands) {
            let rejected = matches!(
                &message,
                Message::AppendResponse(response) if matches!(response.result, AppendResult::Conflict { .. })
            );
            rejections += usize::from(rejected);
            match nodes.get_mut(&to) {
                Some(node) => {
                    let commands = node.receive(from, message);
                    queue.push_back((to, commands));
                }
                None => {
                    if let Message::Vote(request) = message {
                        let granted = Message::VoteResponse(VoteResponse {
                            term: request.term,
                            granted: true,
                            pre_vote: request.pre_vote,
                            repairing: false,
                        });
                        let node = nodes.get_mut(&from).expect("sender");
                        let commands = node.receive(to, granted);
                        queue.push_back((from, commands));
                    }
                }
            }
        }
    }
    rejections
}

// ---------------------------------------------------------- §5.4.2 committing entries from previous terms

/// Raft §5.4.2: "Raft never commits log entries from previous terms by
/// counting replicas. Only log entries from the leader's current term are
/// committed by counting replicas." The leader of term 3 holds entries of
/// terms 1 and 2 and its no-op at index 3; a follower's acknowledgement of
/// index 1 or 2 commits nothing, of index 3 commits all three.
#[test]
fn leader_only_commits_log_from_current_term() {
    for (match_index, want_commit) in [(1, 0), (2, 0), (3, 3)] {
        let hard_state = HardState {
            term: 2,
            vote: 0,
            commit: 0,
        };
        let mut node = Node::restore(1, &[1, 2], paper_config(), hard_state, &[1, 2]);
        let commands = node.elect();
        assert_eq!((node.raft.term(), node.raft.log().last_index()), (3, 3));
        node.settle(commands);
        assert_eq!(
            node.raft.log().durable(),
            3,
            "the leader holds its no-op durably"
        );
        node.receive(2, append_ok(3, match_index));
        assert_eq!(
            node.raft.log().commit(),
            want_commit,
            "follower at {match_index}"
        );
    }
}

/// Not in the paper: how long idle followers wait to hear a new commit
/// index (`commit_notify_delay_us`). A proposal made meanwhile carries it
/// in its AppendEntries and no heartbeat follows; with the delay at 0 the
/// heartbeats leave in the committing turn; a follower whose acknowledgement
/// arrives after the commit (it was slow) is told as well.
#[test]
fn commit_index_reaches_idle_followers_within_the_delay() {
    // Committed by follower 2's ack; returns the acks of follower 3.
    fn commit_one(node: &mut Node, request_id: u64) -> (Vec<Command>, Vec<Event>) {
        let commands = node.propose(request_id, b"x");
        let commands = node.settle(commands);
        let mut acks: Vec<Event> = appends(&commands)
            .iter()
            .map(|(to, request)| Event::Message {
                from: *to,
                message: accept(request),
            })
            .collect();
        let late = acks.split_off(1);
        (node.turn(acks), late)
    }

    // The next proposal comes first: no heartbeat at all.
    let mut node = Node::new(1, &ids(3), paper_config());
    node.elect_and_commit_noop();
    let delay_us = paper_config().commit_notify_delay_us;
    node.tick_at(node.raft.next_deadline_us()); // the no-op's news
    let (commands, late) = commit_one(&mut node, 1);
    let commit = node.raft.log().commit();
    assert!(sends(&commands).is_empty());
    let commands = node.turn(late);
    assert!(sends(&commands).is_empty(), "3 caught up, waits too");
    let due = node.raft.next_deadline_us();
    assert_eq!(due, node.now.mono_us + delay_us);
    node.now.mono_us += delay_us / 2;
    let commands = node.propose(2, b"y");
    for (_, request) in appends(&commands) {
        assert_eq!(request.commit, commit, "the append carries it");
    }
    let commands = node.tick_at(due);
    assert!(
        sends(&commands).is_empty(),
        "nothing left to tell: {commands:?}"
    );

    // Delay 0: heartbeats in the committing turn, as before the knob.
    let config = CoreConfig {
        commit_notify_delay_us: 0,
        ..paper_config()
    };
    let mut node = Node::new(1, &ids(3), config);
    node.elect_and_commit_noop();
    node.turn([Event::Tick]);
    let (commands, late) = commit_one(&mut node, 1);
    let commit = node.raft.log().commit();
    // Follower 3 still has the append in flight: only 2 is idle.
    assert_eq!(sends(&commands), vec![(2, heartbeat(1, commit))]);
    // 3's late ack makes it idle and behind: told in that turn.
    let commands = node.turn(late);
    assert_eq!(sends(&commands), vec![(3, heartbeat(1, commit))]);

    // With the delay, the late follower is told once it passed.
    let mut node = Node::new(1, &ids(3), paper_config());
    node.elect_and_commit_noop();
    node.tick_at(node.raft.next_deadline_us());
    let (_, late) = commit_one(&mut node, 1);
    let commit = node.raft.log().commit();
    node.turn(late);
    let commands = node.tick_at(node.raft.next_deadline_us());
    assert_eq!(
        sends(&commands),
        vec![(2, heartbeat(1, commit)), (3, heartbeat(1, commit))]
    );
}
