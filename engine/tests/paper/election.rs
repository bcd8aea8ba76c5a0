//! Terms, leader election and the election restriction: Raft §5.1, §5.2,
//! §5.4.1 (and the thesis §9.6 pre-vote where it changes them).

use std::collections::BTreeSet;

use super::common::*;
use ordo_engine::core::{Command, CoreConfig, Role};
use ordo_net::{Message, TimeoutNow, VoteRequest, VoteResponse};
use ordo_storage::{HardState, LogId, NodeId, Term};

// ---------------------------------------------------------------- §5.1 terms

/// Messages of term 2 that a node at term 1 may receive, with the leader it
/// should follow afterwards (only messages from a leader name one).
fn higher_term_messages() -> Vec<(&'static str, Message, NodeId)> {
    vec![
        ("append", append(2, LogId::new(0, 0), 0, vec![]), 2),
        ("heartbeat", heartbeat(2, 0), 2),
        ("vote", vote(2, LogId::new(5, 5)), 0),
        ("vote_response", vote_response(2, false), 0),
        ("append_response", append_ok(2, 0), 0),
        ("heartbeat_response", heartbeat_response(2, 0), 0),
    ]
}

/// Puts a fresh node of `{1, 2, 3}` in `role` at term 1.
pub(super) fn node_in_role(role: Role) -> Node {
    let mut node = Node::new(1, &ids(3), paper_config());
    match role {
        Role::Follower => {
            node.receive(2, heartbeat(1, 0));
        }
        Role::Candidate => {
            node.fire_election();
        }
        Role::Leader => {
            node.elect();
        }
        Role::PreCandidate => unreachable!("not a paper role"),
    }
    assert_eq!((node.raft.role(), node.raft.term()), (role, 1));
    node
}

/// "If one server's current term is smaller than the other's, then it
/// updates its current term to the larger value. If a candidate or leader
/// discovers that its term is out of date, it immediately reverts to
/// follower state." Checked for every kind of message, and the new term is
/// handed to storage (Figure 2: `currentTerm` is persistent state).
fn update_term_from_message(role: Role) {
    for (kind, message, leader) in higher_term_messages() {
        let mut node = node_in_role(role);
        let commands = node.receive(2, message);
        assert_eq!(node.raft.term(), 2, "{kind}");
        assert_eq!(node.raft.role(), Role::Follower, "{kind}");
        assert_eq!(node.raft.leader(), leader, "{kind}");
        let persisted = hard_states(&commands);
        assert!(
            persisted.iter().any(|h| h.term == 2),
            "{kind}: term 2 persisted, got {persisted:?}"
        );
    }
}

/// Raft §5.1 (see `update_term_from_message`).
#[test]
fn follower_update_term_from_message() {
    update_term_from_message(Role::Follower);
}

/// Raft §5.1 (see `update_term_from_message`).
#[test]
fn candidate_update_term_from_message() {
    update_term_from_message(Role::Candidate);
}

/// Raft §5.1 (see `update_term_from_message`). With check-quorum off: with
/// it on, a leader ignores vote requests (thesis §9.6, tested in the
/// scenarios).
#[test]
fn leader_update_term_from_message() {
    update_term_from_message(Role::Leader);
}

/// Raft §5.1: "If a server receives a request with a stale term number, it
/// rejects the request." ordo ignores stale requests without changing any
/// state, except that it answers a stale leader's append or heartbeat with
/// its term (so that the stale leader steps down even when pre-vote and
/// check-quorum keep it from seeing a vote request) and rejects a stale
/// pre-vote explicitly.
#[test]
fn reject_stale_term_message() {
    let hard_state = HardState {
        term: 2,
        vote: 3,
        commit: 0,
    };
    let fresh = || Node::restore(1, &ids(3), paper_config(), hard_state, &[]);

    let mut node = fresh();
    let commands = node.receive(
        2,
        append(1, LogId::new(0, 0), 0, vec![user_batch(1, 1, &[b"stale"])]),
    );
    assert_eq!(
        (node.raft.term(), node.raft.role(), node.raft.leader()),
        (2, Role::Follower, 0)
    );
    assert_eq!(
        node.raft.log().last_index(),
        0,
        "stale entries not appended"
    );
    assert!(appended(&commands).is_empty() && hard_states(&commands).is_empty());
    assert_eq!(
        sends(&commands),
        vec![(2, heartbeat_response(2, 0))],
        "the stale leader learns the term"
    );

    let mut node = fresh();
    let commands = node.receive(2, heartbeat(1, 0));
    assert_eq!(node.raft.leader(), 0, "a stale heartbeat makes no leader");
    assert_eq!(sends(&commands), vec![(2, heartbeat_response(2, 0))]);

    let mut node = fresh();
    let commands = node.receive(2, vote(1, LogId::new(1, 10)));
    assert_eq!(node.raft.vote(), 3, "a stale vote request changes no vote");
    assert!(sends(&commands).is_empty(), "and gets no answer");

    let mut node = fresh();
    let pre_vote = Message::Vote(VoteRequest {
        term: 2,
        last: LogId::new(1, 10),
        pre_vote: true,
        transfer: false,
    });
    let commands = node.receive(2, pre_vote);
    let rejected = VoteResponse {
        term: 2,
        granted: false,
        pre_vote: true,
        repairing: false,
    };
    assert_eq!(
        vote_responses(&commands),
        vec![(2, rejected)],
        "a pre-vote for the current term"
    );

    // A leader of term 2 ignores an acknowledgement of term 1.
    let hard_state = HardState {
        term: 1,
        vote: 0,
        commit: 0,
    };
    let mut node = Node::restore(1, &ids(3), paper_config(), hard_state, &[]);
    node.elect();
    assert_eq!(node.raft.term(), 2);
    node.receive(2, append_ok(1, 1));
    assert_eq!(
        node.raft.progress(2).expect("follower").match_index,
        0,
        "stale ack ignored"
    );
}

// ------------------------------------------------------------ §5.2 elections

/// Raft §5.2: "When servers start up, they begin as followers." Also after a
/// restart, at the durable term, with the durable vote.
#[test]
fn start_as_follower() {
    let mut node = Node::new(1, &ids(3), paper_config());
    assert_eq!(
        (
            node.raft.role(),
            node.raft.term(),
            node.raft.leader(),
            node.raft.vote()
        ),
        (Role::Follower, 0, 0, 0)
    );
    let commands = node.turn([]);
    assert!(commands.iter().any(|c| matches!(
        c,
        Command::RoleChanged {
            role: Role::Follower,
            term: 0,
            leader: 0
        }
    )));
    assert!(
        sends(&commands).is_empty(),
        "a follower sends nothing unprompted"
    );

    let hard_state = HardState {
        term: 5,
        vote: 3,
        commit: 0,
    };
    let node = Node::restore(1, &ids(3), paper_config(), hard_state, &[1, 2]);
    assert_eq!(
        (node.raft.role(), node.raft.term(), node.raft.vote()),
        (Role::Follower, 5, 3)
    );
}

/// Raft §5.2: "Leaders send periodic heartbeats (AppendEntries RPCs that
/// carry no log entries) to all followers in order to maintain their
/// authority." In ordo a heartbeat is a message of its own, sent every
/// `heartbeat_interval_ms`; it carries the commit index bounded by the
/// follower's match index.
#[test]
fn leader_bcast_beat() {
    let mut node = Node::new(1, &ids(3), paper_config());
    node.elect_and_commit_noop();
    // The no-op's commit index reaches the idle followers once
    // `commit_notify_delay_us` passed (replication.rs tests it).
    let delay_ms = paper_config().commit_notify_delay_us.div_ceil(1_000);
    let commands = node.advance(delay_ms);
    assert_eq!(
        sends(&commands),
        vec![(2, heartbeat(1, 1)), (3, heartbeat(1, 1))]
    );
    let interval = paper_config().heartbeat_interval_ms;
    let commands = node.advance(interval - 1 - delay_ms);
    assert!(
        sends(&commands).is_empty(),
        "no heartbeat before the interval"
    );
    for _ in 0..3 {
        let commands = node.advance(interval);
        assert_eq!(
            sends(&commands),
            vec![(2, heartbeat(1, 1)), (3, heartbeat(1, 1))]
        );
    }
}

/// Raft §5.2: "If a follower receives no communication over a period of time
/// called the election timeout, then it assumes there is no viable leader
/// and begins an election": it increments its term, becomes a candidate,
/// votes for itself and sends RequestVote to every other server. ordo asks
/// storage to persist the term and vote first; its own vote counts once
/// durable (Figure 2).
#[test]
fn follower_start_election() {
    let mut node = node_in_role(Role::Follower);
    nonleader_start_election(&mut node);
}

/// Raft §5.2: "If many followers become candidates at the same time, votes
/// could be split … each candidate will time out and start a new election
/// by incrementing its term and initiating another round of RequestVote
/// RPCs."
#[test]
fn candidate_start_new_election() {
    let mut node = node_in_role(Role::Candidate);
    // One rejection is not a majority: still a candidate.
    node.receive(2, vote_response(1, false));
    assert_eq!(node.raft.role(), Role::Candidate);
    nonleader_start_election(&mut node);
}

/// A node at term 1 times out and starts an election at term 2.
fn nonleader_start_election(node: &mut Node) {
    let config = CoreConfig::default();
    let commands = node.advance(config.election_timeout_ms_min - 1);
    assert!(
        vote_requests(&commands).is_empty(),
        "no election before the minimum timeout"
    );
    let commands =
        node.advance(config.election_timeout_ms_max - config.election_timeout_ms_min + 1);
    assert_eq!(
        (node.raft.term(), node.raft.role(), node.raft.vote()),
        (2, Role::Candidate, 1)
    );
    let request = VoteRequest {
        term: 2,
        last: LogId::new(0, 0),
        pre_vote: false,
        transfer: false,
    };
    assert_eq!(
        vote_requests(&commands),
        vec![(2, request.clone()), (3, request)]
    );
    assert_eq!(
        hard_states(&commands).last().map(|h| (h.term, h.vote)),
        Some((2, 1))
    );
    // Its own vote counts once durable: then one more vote wins.
    node.settle(commands);
    node.receive(3, vote_response(2, true));
    assert_eq!(node.raft.role(), Role::Leader);
}

/// Thesis §9.6: with pre-vote, a follower whose election timer fires first
/// asks "would you vote for me in term + 1?" without changing its term or
/// vote; only a majority of yes starts the real election.
#[test]
fn follower_start_election_with_pre_vote() {
    let mut node = Node::new(1, &ids(3), CoreConfig::default());
    node.receive(2, heartbeat(1, 0));
    let commands = node.fire_election();
    assert_eq!(
        (node.raft.term(), node.raft.role(), node.raft.vote()),
        (1, Role::PreCandidate, 0)
    );
    assert!(
        hard_states(&commands).is_empty(),
        "a pre-vote changes nothing durable"
    );
    let request = VoteRequest {
        term: 2,
        last: LogId::new(0, 0),
        pre_vote: true,
        transfer: false,
    };
    assert_eq!(
        vote_requests(&commands),
        vec![(2, request.clone()), (3, request)]
    );
    let granted = Message::VoteResponse(VoteResponse {
        term: 2,
        granted: true,
        pre_vote: true,
        repairing: false,
    });
    let commands = node.receive(3, granted);
    assert_eq!(
        (node.raft.term(), node.raft.role(), node.raft.vote()),
        (2, Role::Candidate, 1)
    );
    let real: Vec<bool> = vote_requests(&commands)
        .iter()
        .map(|(_, r)| r.pre_vote)
        .collect();
    assert_eq!(real, vec![false, false], "the real election follows");
}

/// Raft §5.2: a candidate "wins an election if it receives votes from a
/// majority of the servers", returns to follower on a majority of
/// rejections (etcd's addition), and otherwise stays a candidate.
#[test]
fn leader_election_in_one_round_rpc() {
    // (cluster size, votes received, role after them)
    type Case = (u64, Vec<(NodeId, bool)>, Role);
    let cases: Vec<Case> = vec![
        // Wins with votes from a majority.
        (1, vec![], Role::Leader),
        (3, vec![(2, true), (3, true)], Role::Leader),
        (3, vec![(2, true)], Role::Leader),
        (
            5,
            vec![(2, true), (3, true), (4, true), (5, true)],
            Role::Leader,
        ),
        (5, vec![(2, true), (3, true), (4, true)], Role::Leader),
        (5, vec![(2, true), (3, true)], Role::Leader),
        // Back to follower on rejections from a majority.
        (3, vec![(2, false), (3, false)], Role::Follower),
        (
            5,
            vec![(2, false), (3, false), (4, false), (5, false)],
            Role::Follower,
        ),
        (
            5,
            vec![(2, true), (3, false), (4, false), (5, false)],
            Role::Follower,
        ),
        // Still a candidate without a majority either way.
        (3, vec![], Role::Candidate),
        (5, vec![(2, true)], Role::Candidate),
        (5, vec![(2, false), (3, false)], Role::Candidate),
        (5, vec![], Role::Candidate),
    ];
    for (i, (size, votes, want)) in cases.into_iter().enumerate() {
        let mut node = Node::new(1, &ids(size), paper_config());
        let commands = node.fire_election();
        node.settle(commands);
        for (from, granted) in votes {
            node.receive(from, vote_response(1, granted));
        }
        assert_eq!(node.raft.role(), want, "case {i}");
        assert_eq!(node.raft.term(), 1, "case {i}");
    }
}

/// Raft Figure 2 ("persistent state … updated on stable storage before
/// responding to RPCs"): a candidate counts its own vote only once the
/// vote is durable, so a majority that includes it waits for the write.
#[test]
fn candidate_counts_its_own_vote_only_once_durable() {
    let mut node = Node::new(1, &ids(3), paper_config());
    let commands = node.fire_election();
    node.receive(2, vote_response(1, true));
    assert_eq!(
        node.raft.role(),
        Role::Candidate,
        "own vote not yet durable"
    );
    node.settle(commands);
    assert_eq!(node.raft.role(), Role::Leader);
}

/// Raft §5.2: "Each server will vote for at most one candidate in a given
/// term, on a first-come-first-served basis." ordo sends a granted vote only
/// once the vote is durable (Figure 2); a vote already durable is answered
/// at once.
#[test]
fn follower_vote() {
    let cases = [
        (0, 2, true),
        (0, 3, true),
        (2, 2, true),
        (3, 3, true),
        (2, 3, false),
        (3, 2, false),
    ];
    for (i, (voted, candidate, granted)) in cases.into_iter().enumerate() {
        let hard_state = HardState {
            term: 1,
            vote: voted,
            commit: 0,
        };
        let mut node = Node::restore(1, &ids(3), paper_config(), hard_state, &[]);
        let commands = node.receive(candidate, vote(1, LogId::new(0, 0)));
        let answer = (
            candidate,
            VoteResponse {
                term: 1,
                granted,
                pre_vote: false,
                repairing: false,
            },
        );
        if voted == 0 {
            assert!(
                vote_responses(&commands).is_empty(),
                "case {i}: the vote waits for durability"
            );
            assert_eq!(
                hard_states(&commands),
                vec![HardState {
                    term: 1,
                    vote: candidate,
                    commit: 0
                }],
                "case {i}"
            );
            let commands = node.settle(commands);
            assert_eq!(vote_responses(&commands), vec![answer], "case {i}");
        } else {
            assert_eq!(vote_responses(&commands), vec![answer], "case {i}");
        }
        let expected_vote = if granted { candidate } else { voted };
        assert_eq!(node.raft.vote(), expected_vote, "case {i}");
    }
}

/// Raft §5.2: "While waiting for votes, a candidate may receive an
/// AppendEntries RPC from another server claiming to be leader. If the
/// leader's term … is at least as large as the candidate's current term,
/// then the candidate recognizes the leader as legitimate and returns to
/// follower state." Also for ordo's heartbeat.
#[test]
fn candidate_fallback() {
    for term in [1, 2] {
        for message in [
            append(term, LogId::new(0, 0), 0, vec![]),
            heartbeat(term, 0),
        ] {
            let mut node = node_in_role(Role::Candidate);
            node.receive(2, message.clone());
            assert_eq!(
                (node.raft.role(), node.raft.term(), node.raft.leader()),
                (Role::Follower, term, 2),
                "{message:?}"
            );
        }
    }
}

/// Raft §5.2: "Raft uses randomized election timeouts … chosen randomly
/// from a fixed interval". Behaviourally: the tick a microsecond before the
/// deadline does nothing and the tick at it campaigns; over 500 elections
/// every 10 ms slice of `[election_timeout_ms_min, election_timeout_ms_max)`
/// occurs.
#[test]
fn follower_election_timeout_randomized() {
    nonleader_election_timeout_randomized(Role::Follower);
}

/// Raft §5.2, as `follower_election_timeout_randomized`, for a candidate
/// timing out into its next election.
#[test]
fn candidate_election_timeout_randomized() {
    nonleader_election_timeout_randomized(Role::Candidate);
}

fn nonleader_election_timeout_randomized(role: Role) {
    let config = paper_config();
    let (min_us, max_us) = (
        config.election_timeout_ms_min * 1_000,
        config.election_timeout_ms_max * 1_000,
    );
    let mut node = Node::new(1, &ids(3), config);
    let mut slices = BTreeSet::new();
    for round in 0..500 {
        match role {
            Role::Follower => {
                let term = node.raft.term() + 1;
                node.receive(2, heartbeat(term, 0));
            }
            _ => {
                if round == 0 {
                    node.fire_election();
                }
            }
        }
        assert_eq!(node.raft.role(), role);
        let start = node.now.mono_us;
        let deadline = node.raft.next_deadline_us();
        let timeout = deadline - start;
        assert!(
            (min_us..max_us).contains(&timeout),
            "round {round}: timeout {timeout} µs"
        );
        let commands = node.tick_at(deadline - 1);
        assert!(vote_requests(&commands).is_empty(), "round {round}: early");
        let term = node.raft.term();
        let commands = node.tick_at(deadline);
        assert_eq!(
            vote_requests(&commands).len(),
            2,
            "round {round}: campaigns at the deadline"
        );
        assert_eq!(node.raft.term(), term + 1);
        slices.insert(timeout / 10_000);
    }
    let want: BTreeSet<u64> = (min_us / 10_000..max_us / 10_000).collect();
    assert_eq!(slices, want, "every 10 ms slice of the range occurs");
}

/// Raft §5.2: randomized timeouts make it likely that "in most cases only a
/// single server will time out". Five followers reset at the same instant;
/// time advances in ticks of a tenth of the minimum timeout (etcd's tick);
/// at most 30% of 1000 rounds see two servers time out in the same tick.
#[test]
fn followers_election_timeout_nonconflict() {
    nonleaders_election_timeout_nonconflict(Role::Follower);
}

/// Raft §5.2, as `followers_election_timeout_nonconflict`, for five
/// candidates that started an election at the same instant (made to
/// campaign by a `TimeoutNow`, ordo's immediate campaign).
#[test]
fn candidates_election_timeout_nonconflict() {
    nonleaders_election_timeout_nonconflict(Role::Candidate);
}

fn nonleaders_election_timeout_nonconflict(role: Role) {
    let config = paper_config();
    let tick_ms = config.election_timeout_ms_min / 10;
    let mut nodes: Vec<Node> = ids(5)
        .into_iter()
        .map(|id| Node::new(id, &ids(5), config.clone()))
        .collect();
    let mut conflicts = 0;
    for round in 0..1000 {
        for node in &mut nodes {
            let peer = node.raft.id() % 5 + 1;
            let term = node.raft.term();
            match role {
                // A higher term from a non-leader: follower of nobody, timer reset.
                Role::Follower => node.receive(peer, heartbeat_response(term + 1, 0)),
                _ => node.receive(peer, Message::TimeoutNow(TimeoutNow { term })),
            };
            assert_eq!(node.raft.role(), role, "round {round}");
        }
        let mut timed_out = 0;
        while timed_out == 0 {
            for node in &mut nodes {
                if !vote_requests(&node.advance(tick_ms)).is_empty() {
                    timed_out += 1;
                }
            }
        }
        if timed_out > 1 {
            conflicts += 1;
        }
    }
    assert!(
        conflicts <= 300,
        "{conflicts} of 1000 rounds had several servers time out in one tick"
    );
}

// ---------------------------------------------------------- §5.4.1 election restriction

/// Raft §5.4.1: "The RequestVote RPC … includes information about the
/// candidate's log" (its last index and term) and goes to every other
/// server. Also for the pre-vote request (thesis §9.6).
#[test]
fn vote_request() {
    let cases: [(&[Term], Term); 2] = [(&[1], 2), (&[1, 2], 3)];
    for pre_vote in [false, true] {
        for (i, (terms, want_term)) in cases.into_iter().enumerate() {
            let config = CoreConfig {
                pre_vote,
                ..paper_config()
            };
            let mut node = Node::new(1, &ids(3), config);
            let commands = node.receive(
                2,
                append(want_term - 1, LogId::new(0, 0), 0, log_batches(terms)),
            );
            node.settle(commands);
            let commands = node.fire_election();
            let requests = vote_requests(&commands);
            let last = LogId::new(*terms.last().expect("entries"), terms.len() as u64);
            let want = VoteRequest {
                term: want_term,
                last,
                pre_vote,
                transfer: false,
            };
            assert_eq!(
                requests,
                vec![(2, want.clone()), (3, want)],
                "case {i}, pre-vote {pre_vote}"
            );
        }
    }
}

/// Raft §5.4.1: "The voter denies its vote if its own log is more up-to-date
/// than that of the candidate": a later last term wins, and with equal last
/// terms the longer log.
#[test]
fn voter() {
    let cases: [(&[Term], LogId, bool); 10] = [
        // Same last term.
        (&[1], LogId::new(1, 1), true),
        (&[1], LogId::new(1, 2), true),
        (&[1, 1], LogId::new(1, 1), false),
        // Candidate with the higher last term.
        (&[1], LogId::new(2, 1), true),
        (&[1], LogId::new(2, 2), true),
        (&[1, 1], LogId::new(2, 1), true),
        // Voter with the higher last term.
        (&[2], LogId::new(1, 1), false),
        (&[2], LogId::new(1, 2), false),
        (&[2, 2], LogId::new(1, 1), false),
        (&[1, 1], LogId::new(1, 1), false),
    ];
    for (i, (terms, last, granted)) in cases.into_iter().enumerate() {
        let mut node = Node::restore(1, &[1, 2], paper_config(), HardState::default(), terms);
        let commands = node.receive(2, vote(3, last));
        let commands = node.settle(commands);
        let answers: Vec<_> = vote_responses(&commands)
            .into_iter()
            .map(|(to, r)| (to, r.granted))
            .collect();
        assert_eq!(answers, vec![(2, granted)], "case {i}");
    }
}
