//! Protocol-aware recovery in the core (`core/repair.rs`): a node that lost
//! state it may have acknowledged takes no part in elections until a
//! leader has repaired it, and a leader resends at once to a follower whose
//! log went backwards.

mod common;

use common::*;
use ordo_engine::core::{Command, Loss, Role};
use ordo_net::{Heartbeat, Message};
use ordo_storage::{HardState, LogId};

fn wiped() -> Option<Loss> {
    Some(Loss {
        held_through: 0,
        hard_state_lost: true,
        reason: "test: the data directory was wiped".into(),
    })
}

/// Node 2 of 3 restarted on a wiped disk holding `terms`.
fn wiped_node(terms: &[u64]) -> Node {
    Node::restore_after_loss(
        2,
        &ids(3),
        paper_config(),
        HardState::default(),
        terms,
        wiped(),
    )
}

/// Node 1, leader of term 2 over five entries of term 1 and its no-op,
/// which every follower matched; returns it and its last index.
fn caught_up_leader() -> (Node, u64) {
    let hard_state = HardState {
        term: 1,
        vote: 0,
        commit: 5,
    };
    let mut leader = Node::restore(1, &ids(3), paper_config(), hard_state, &[1, 1, 1, 1, 1]);
    leader.elect_and_commit_noop();
    let last = leader.raft.log().last_index();
    assert_eq!(leader.raft.progress(2).unwrap().match_index, last);
    (leader, last)
}

fn heartbeat_with_last(term: u64, commit: u64, last_index: u64) -> Message {
    Message::Heartbeat(Heartbeat {
        term,
        commit,
        read_round: 0,
        last_index,
    })
}

fn repaired(commands: &[Command]) -> bool {
    commands.iter().any(|c| matches!(c, Command::Repaired))
}

#[test]
fn a_repairing_node_grants_no_vote_or_pre_vote_and_never_campaigns() {
    let mut node = wiped_node(&[1, 1]);
    assert!(node.raft.repairing());
    assert!(node.raft.status().repairing);
    for pre_vote in [true, false] {
        let mut request = vote(2, LogId::new(1, 2));
        if let Message::Vote(v) = &mut request {
            v.pre_vote = pre_vote;
        }
        let commands = node.receive(3, request);
        let commands = node.settle(commands);
        let answers = vote_responses(&commands);
        assert_eq!(answers.len(), 1, "{commands:?}");
        assert!(
            !answers[0].1.granted,
            "pre_vote={pre_vote}: a repairing node voted"
        );
        assert!(
            answers[0].1.repairing,
            "pre_vote={pre_vote}: the rejection says why"
        );
    }
    // Its election timer fires again and again: it never campaigns.
    for _ in 0..5 {
        let commands = node.fire_election();
        assert!(vote_requests(&commands).is_empty(), "{commands:?}");
        assert_eq!(node.raft.role(), Role::Follower);
    }
}

#[test]
fn a_wiped_node_is_repaired_once_the_leader_commits_past_its_last_index_without_it() {
    let mut node = wiped_node(&[]);
    // The leader of term 3 holds 3 entries (all committed); its heartbeat
    // says so. The target is one past them: an entry the leader commits
    // after this node's loss.
    let commands = node.receive(1, heartbeat_with_last(3, 3, 3));
    assert!(!repaired(&commands));
    assert!(node.raft.repairing());
    let batches = log_batches(&[1, 1, 3, 3]);
    let commands = node.receive(1, append(3, LogId::new(0, 0), 3, batches[..2].to_vec()));
    let commands = node.settle(commands);
    assert!(
        !repaired(&commands) && node.raft.repairing(),
        "holding the leader's committed log is not enough"
    );
    // The leader's barrier (index 4), committed by the other follower.
    let barrier = ordo_storage::conformance::batch(3, 4, 1);
    let commands = node.receive(1, append(3, LogId::new(3, 3), 3, vec![barrier.clone()]));
    let commands = node.settle(commands);
    assert!(!repaired(&commands), "not before it is committed");
    let commands = node.receive(1, append(3, LogId::new(3, 4), 4, Vec::new()));
    let commands = node.settle(commands);
    assert!(repaired(&commands), "{commands:?}");
    assert!(!node.raft.repairing());
    // Repaired, it votes again (for an up-to-date candidate of a new term).
    let commands = node.receive(3, vote(4, LogId::new(3, 4)));
    let commands = node.settle(commands);
    assert!(vote_responses(&commands).iter().any(|(_, r)| r.granted));
}

#[test]
fn a_target_set_by_one_leader_does_not_count_for_the_next() {
    let mut node = Node::restore_after_loss(
        2,
        &ids(3),
        paper_config(),
        HardState::default(),
        &[1],
        Some(Loss {
            held_through: 4,
            hard_state_lost: false,
            reason: "test: damaged entries 2..=4".into(),
        }),
    );
    node.receive(1, heartbeat_with_last(2, 1, 2));
    // Leader 1 of term 2 loses its leadership before it commits past 2.
    let commands = node.receive(
        1,
        append(2, LogId::new(1, 1), 1, log_batches(&[1, 2])[1..].to_vec()),
    );
    let commands = node.settle(commands);
    assert!(!repaired(&commands) && node.raft.repairing());
    // A new leader in term 3: its own target (one past its last index, 5).
    node.receive(3, heartbeat_with_last(3, 2, 5));
    let batches = log_batches(&[1, 2, 3, 3, 3, 3]);
    let commands = node.receive(3, append(3, LogId::new(2, 2), 5, batches[2..].to_vec()));
    let commands = node.settle(commands);
    assert!(!repaired(&commands), "index 6 is not committed yet");
    let commands = node.receive(3, append(3, LogId::new(3, 6), 6, Vec::new()));
    let commands = node.settle(commands);
    assert!(repaired(&commands), "{commands:?}");
}

#[test]
fn a_leader_resends_at_once_to_a_follower_whose_log_went_backwards() {
    let (mut leader, last) = caught_up_leader();
    // An answer to a heartbeat sent before node 2's last acknowledgement
    // (delayed or reordered) does not count: it predates what it seems to
    // contradict (runtime simulator, seed 84710).
    leader.receive(2, heartbeat_response(2, 2));
    assert_eq!(leader.raft.progress(2).unwrap().match_index, last);
    // Node 2 restarts with a log cut at index 2 and answers the next
    // heartbeat.
    let interval = paper_config().heartbeat_interval_ms;
    let sent = leader.advance(interval);
    let round = sent
        .iter()
        .find_map(|c| match c {
            Command::Send {
                to: 2,
                message: Message::Heartbeat(h),
            } => Some(h.read_round),
            _ => None,
        })
        .expect("a heartbeat to node 2");
    let answer = Message::HeartbeatResponse(ordo_net::HeartbeatResponse {
        term: 2,
        read_round: round,
        last_index: 2,
        repairing: false,
    });
    let commands = leader.receive(2, answer);
    let progress = leader.raft.progress(2).unwrap();
    assert_eq!(
        progress.match_index, 0,
        "nothing it holds is known to match"
    );
    assert_eq!(progress.next_index, 3);
    let resent = appends(&commands);
    assert_eq!(resent.len(), 1, "{commands:?}");
    assert_eq!(resent[0].0, 2);
    assert_eq!(resent[0].1.prev.index, 2, "resent from what it still holds");
}

#[test]
fn a_repairing_followers_acknowledgement_does_not_count_towards_commit() {
    let mut leader = Node::new(1, &ids(3), paper_config());
    leader.elect_and_commit_noop();
    let commit = leader.raft.log().commit();
    let commands = leader.propose(7, b"x");
    let commands = leader.settle(commands);
    let (_, request) = appends(&commands)
        .into_iter()
        .find(|(to, _)| *to == 2)
        .expect("an append to node 2");
    // Node 2 holds it, but says it is repairing: not a quorum.
    let mut ack = accept(&request);
    if let Message::AppendResponse(response) = &mut ack {
        response.repairing = true;
    }
    let commands = leader.receive(2, ack);
    assert_eq!(
        leader.raft.log().commit(),
        commit,
        "committed with a repairing follower"
    );
    assert!(
        appended(&commands)
            .iter()
            .any(|b| b.kind() == ordo_storage::BatchKind::Noop),
        "the leader appends a barrier for the repairing follower"
    );
    // Node 3's acknowledgement makes the quorum.
    leader.receive(3, accept(&request));
    assert!(leader.raft.log().commit() >= request.last_index());
}

#[test]
fn a_leader_that_cannot_commit_without_the_repairing_node_does_not_repair_it() {
    // A deposed leader (term 3) reaches the wiped node first: it replicates,
    // but its commit index never covers its last index (no quorum without
    // the repairing node), so the node stays repairing.
    let mut node = wiped_node(&[]);
    node.receive(3, heartbeat_with_last(3, 0, 3));
    let commands = node.receive(3, append(3, LogId::new(0, 0), 1, log_batches(&[1, 1, 3])));
    let commands = node.settle(commands);
    assert!(!repaired(&commands) && node.raft.repairing());
    assert!(
        append_responses(&commands).iter().all(|(_, r)| r.repairing),
        "its acknowledgements say they do not count"
    );
}

#[test]
fn a_follower_that_reports_repairing_is_probed_again_from_its_last_index() {
    // The leader believes node 2 caught up; node 2 lost its disk and
    // refilled it from a deposed leader: same length, other entries.
    let (mut leader, last) = caught_up_leader();
    let mut answer = heartbeat_response(leader.raft.term(), last);
    if let Message::HeartbeatResponse(response) = &mut answer {
        response.repairing = true;
    }
    let commands = leader.receive(2, answer);
    let progress = leader.raft.progress(2).unwrap();
    assert!(progress.repairing);
    assert_eq!(
        progress.match_index, 0,
        "nothing it holds is known to match"
    );
    let probes = appends(&commands);
    assert!(
        probes
            .iter()
            .any(|(to, r)| *to == 2 && r.prev.index == last),
        "probed from its last index: {commands:?}"
    );
}

#[test]
fn a_candidate_names_the_voters_that_answered_they_are_repairing() {
    // Node 1 (term 1) pre-votes; node 2, wiped, answers from term 0.
    let hard_state = HardState {
        term: 1,
        vote: 0,
        commit: 0,
    };
    let mut candidate = Node::restore(1, &ids(3), paper_config(), hard_state, &[1]);
    let mut wiped = wiped_node(&[]);
    let commands = candidate.fire_election();
    let requests = vote_requests(&commands);
    let (_, request) = requests
        .iter()
        .find(|(to, _)| *to == 2)
        .expect("a pre-vote request to node 2");
    let received = wiped.receive(1, Message::Vote(request.clone()));
    let answers = wiped.settle(received);
    let answers = vote_responses(&answers);
    assert_eq!(answers.len(), 1);
    assert!(answers[0].1.repairing && !answers[0].1.granted);
    candidate.receive(2, Message::VoteResponse(answers[0].1.clone()));
    assert_eq!(candidate.raft.peers_repairing(), vec![2]);
    // Once it answers as repaired, it is no longer listed.
    let mut healed = answers[0].1.clone();
    healed.repairing = false;
    candidate.receive(2, Message::VoteResponse(healed.clone()));
    assert!(candidate.raft.peers_repairing().is_empty());
    // A wiped voter answers a pre-vote from term 0: stale, but what it
    // says of itself is taken before stale messages are dropped.
    let stale = ordo_net::VoteResponse {
        term: 0,
        granted: false,
        pre_vote: true,
        repairing: true,
    };
    candidate.receive(3, Message::VoteResponse(stale));
    assert_eq!(candidate.raft.peers_repairing(), vec![3]);
}
