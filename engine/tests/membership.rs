//! Membership changes one server at a time (thesis §4.1–§4.3), learners and
//! leadership transfer, on the in-memory cluster (`testkit::cluster`). Each
//! test names the rule it checks; faults and races are the simulator's.

use bytes::Bytes;
use ordo_engine::core::{
    ChangeError, CoreConfig, MemberRole, MembershipChange, Role, TransferError,
};
use ordo_engine::testkit::Cluster;
use ordo_net::ProposeResult;
use ordo_storage::NodeId;

fn add(id: NodeId, role: MemberRole) -> MembershipChange {
    MembershipChange::Add {
        id,
        role,
        info: Bytes::new(),
    }
}

/// Three voters, 1 leading, with `entries` committed.
fn cluster(entries: usize) -> Cluster {
    let mut cluster = Cluster::new(3, CoreConfig::default(), 7);
    cluster.elect(1);
    for i in 0..entries {
        cluster.propose(1, format!("m{i}").as_bytes());
    }
    cluster.deliver_all();
    cluster
}

fn change(
    cluster: &mut Cluster,
    node: NodeId,
    change: MembershipChange,
) -> Result<u64, ChangeError> {
    let request = cluster.change_membership(node, change);
    cluster.deliver_all();
    cluster
        .membership_result(node, request)
        .expect("a membership change is always answered")
}

fn committed(cluster: &mut Cluster, node: NodeId, payload: &[u8]) -> bool {
    let request = cluster.propose(node, payload);
    cluster.deliver_all();
    matches!(cluster.response(node, request), Some(ProposeResult::Ok(_)))
}

#[test]
fn a_learner_receives_the_log_does_not_count_and_does_not_disrupt() {
    let mut cluster = cluster(5);
    cluster.add_node(4, CoreConfig::default(), 7);
    let index = change(&mut cluster, 1, add(4, MemberRole::Learner)).unwrap();
    let last = cluster.host(1).raft.log().last_index();
    let learner = &cluster.hosts[&4];
    assert_eq!(
        learner.raft.log().last_index(),
        last,
        "the learner caught up"
    );
    assert_eq!(learner.raft.learners(), &[4]);
    assert_eq!(learner.raft.voters(), &[1, 2, 3]);
    assert!(learner.raft.membership().0 == index);
    // Cut off, it stands (it may have been promoted by a configuration it
    // has not received: thesis §4.2.1), but only by pre-vote: it never
    // raises its term, so the cluster is not disrupted when it returns.
    let term = cluster.hosts[&1].raft.term();
    cluster.isolate(4);
    cluster.advance(10_000);
    assert_ne!(cluster.hosts[&4].role(), Role::Leader);
    assert_eq!(cluster.hosts[&4].raft.term(), term);
    cluster.heal();
    cluster.advance(1_000);
    assert_eq!(cluster.hosts[&1].role(), Role::Leader);
    assert_eq!(cluster.hosts[&1].raft.term(), term);
    // It does not count towards commit: with 2 and 3 cut off, the leader
    // and the learner are not a quorum.
    cluster.isolate(2);
    cluster.cut.insert((1, 3));
    cluster.cut.insert((3, 1));
    assert!(!committed(&mut cluster, 1, b"needs a voter"));
}

#[test]
fn a_promoted_learner_counts_towards_commit() {
    let mut cluster = cluster(5);
    cluster.add_node(4, CoreConfig::default(), 7);
    change(&mut cluster, 1, add(4, MemberRole::Learner)).unwrap();
    change(&mut cluster, 1, MembershipChange::Promote { id: 4 }).unwrap();
    for id in 1..=4 {
        assert_eq!(cluster.hosts[&id].raft.voters(), &[1, 2, 3, 4], "node {id}");
    }
    // Four voters: a quorum is three. 1 and 4 with 2 make one; 1 and 4
    // alone do not.
    cluster.isolate(3);
    assert!(committed(&mut cluster, 1, b"1, 2 and 4"));
    cluster.isolate(2);
    assert!(!committed(&mut cluster, 1, b"1 and 4"));
}

#[test]
fn a_learner_that_is_behind_is_not_promoted_and_the_error_says_how_far() {
    let config = CoreConfig {
        learner_promote_lag_max: 10,
        ..CoreConfig::default()
    };
    let mut cluster = Cluster::new(3, config.clone(), 7);
    cluster.elect(1);
    cluster.add_node(4, config, 7);
    change(&mut cluster, 1, add(4, MemberRole::Learner)).unwrap();
    cluster.isolate(4);
    for i in 0..50 {
        cluster.propose(1, format!("m{i}").as_bytes());
        cluster.deliver_all();
    }
    let error = change(&mut cluster, 1, MembershipChange::Promote { id: 4 }).unwrap_err();
    let ChangeError::LearnerBehind {
        id: 4,
        behind,
        allowed: 10,
    } = error
    else {
        panic!("unexpected {error:?}");
    };
    assert!(behind >= 50, "behind {behind}");
    assert!(
        error
            .to_string()
            .contains(&format!("{behind} entries behind"))
    );
    cluster.heal();
    for _ in 0..10 {
        cluster.advance(100);
    }
    change(&mut cluster, 1, MembershipChange::Promote { id: 4 }).unwrap();
}

#[test]
fn changes_are_checked_and_one_is_in_flight_at_a_time() {
    let mut cluster = cluster(1);
    assert_eq!(
        change(&mut cluster, 2, MembershipChange::Remove { id: 3 }),
        Err(ChangeError::NotLeader { leader: 1 })
    );
    assert_eq!(
        change(&mut cluster, 1, MembershipChange::Remove { id: 9 }),
        Err(ChangeError::UnknownMember(9))
    );
    assert_eq!(
        change(&mut cluster, 1, MembershipChange::Promote { id: 2 }),
        Err(ChangeError::NotALearner(2))
    );
    // Cut off from the others, the leader cannot commit its change; a
    // second one is refused while the first is in flight.
    cluster.isolate(1);
    let first = cluster.change_membership(1, MembershipChange::Remove { id: 3 });
    cluster.deliver_all();
    assert_eq!(cluster.membership_result(1, first), None);
    let index = cluster.hosts[&1].raft.membership().0;
    assert_eq!(
        change(&mut cluster, 1, MembershipChange::Remove { id: 2 }),
        Err(ChangeError::InFlight { index })
    );
    // Deposed before it commits, the leader says the outcome is unknown
    // (check-quorum: it steps down an election timeout after losing touch).
    for _ in 0..10 {
        cluster.advance(200);
    }
    assert_eq!(
        cluster.membership_result(1, first),
        Some(Err(ChangeError::Unknown))
    );
}

#[test]
fn the_last_voter_cannot_be_removed() {
    let mut cluster = Cluster::new(1, CoreConfig::default(), 7);
    cluster.elect(1);
    assert_eq!(
        change(&mut cluster, 1, MembershipChange::Remove { id: 1 }),
        Err(ChangeError::LastVoter(1))
    );
}

/// The erratum to single-server changes (raft-dev, 2015): a new leader
/// changes the configuration only after an entry of its own term commits.
#[test]
fn a_new_leader_changes_nothing_before_its_first_entry_commits() {
    let mut cluster = cluster(1);
    cluster.isolate(1);
    let deadline = cluster.hosts[&2].raft.next_deadline_us();
    cluster.now.mono_us = deadline;
    cluster.inject(2, ordo_engine::core::Event::Tick);
    while cluster.hosts[&2].role() != Role::Leader {
        assert!(cluster.deliver_one(), "node 2 did not win");
    }
    // Node 2 leads; its no-op is not acknowledged by 3 yet.
    let request = cluster.change_membership(2, MembershipChange::Remove { id: 1 });
    cluster.deliver_one();
    let start = cluster.hosts[&2].raft.log().commit() + 1;
    assert!(matches!(
        cluster.membership_result(2, request),
        Some(Err(ChangeError::LeaderNotReady { index })) if index >= start - 1
    ));
    cluster.deliver_all();
    change(&mut cluster, 2, MembershipChange::Remove { id: 1 }).unwrap();
    assert_eq!(cluster.hosts[&3].raft.voters(), &[2, 3]);
}

/// Thesis §4.2.2: a leader removed by the configuration it commits steps
/// down, and hands over so the cluster waits for no election timeout.
#[test]
fn a_removed_leader_steps_down_and_hands_over() {
    let mut cluster = cluster(3);
    change(&mut cluster, 1, MembershipChange::Remove { id: 1 }).unwrap();
    let leader = cluster.leader().expect("a successor leads at once");
    assert_ne!(leader, 1);
    assert!(committed(&mut cluster, leader, b"after the removal"));
    assert_eq!(cluster.hosts[&leader].raft.voters(), &[2, 3]);
    // The removed node never campaigns again.
    cluster.isolate(1);
    cluster.advance(10_000);
    assert_eq!(cluster.hosts[&1].role(), Role::Follower);
}

/// Thesis §4.2.3: a removed voter that does not know it was removed
/// cannot disrupt: its log lacks its removal, and the members in touch
/// with the leader ignore it.
#[test]
fn a_removed_voter_cut_off_before_it_learns_does_not_disrupt() {
    let mut cluster = cluster(3);
    cluster.isolate(3);
    change(&mut cluster, 1, MembershipChange::Remove { id: 3 }).unwrap();
    assert_eq!(cluster.hosts[&3].raft.voters(), &[1, 2, 3]);
    let term = cluster.hosts[&1].raft.term();
    // It campaigns in its isolation (pre-vote: its term does not grow).
    cluster.advance(5_000);
    cluster.heal();
    for _ in 0..20 {
        cluster.advance(200);
    }
    assert_eq!(cluster.leader(), Some(1));
    assert_eq!(cluster.hosts[&1].raft.term(), term, "no term inflation");
    assert!(committed(&mut cluster, 1, b"undisturbed"));
}

#[test]
fn a_truncated_configuration_entry_restores_the_previous_configuration() {
    let mut cluster = cluster(1);
    // 1 appends a change only it holds, then loses leadership.
    cluster.add_node(4, CoreConfig::default(), 7);
    cluster.isolate(1);
    let request = cluster.change_membership(1, add(4, MemberRole::Voter));
    cluster.deliver_all();
    assert_eq!(cluster.hosts[&1].raft.voters(), &[1, 2, 3, 4]);
    for _ in 0..40 {
        cluster.advance(50);
    }
    assert_eq!(
        cluster.membership_result(1, request),
        Some(Err(ChangeError::Unknown))
    );
    let new_leader = cluster.leader().expect("2 or 3 leads");
    assert!(committed(&mut cluster, new_leader, b"overwrites"));
    cluster.heal();
    cluster.advance(200);
    cluster.advance(200);
    assert_eq!(cluster.hosts[&1].raft.voters(), &[1, 2, 3]);
    assert_eq!(cluster.hosts[&1].raft.membership().0, 0);
}

#[test]
fn a_transfer_answers_with_the_new_leader() {
    let mut cluster = cluster(3);
    let request = cluster.transfer(1, 3);
    cluster.deliver_all();
    assert_eq!(cluster.transfer_result(1, request), Some(Ok(3)));
    assert_eq!(cluster.leader(), Some(3));
    // Refusals come at once.
    let request = cluster.transfer(1, 2);
    cluster.deliver_all();
    assert_eq!(
        cluster.transfer_result(1, request),
        Some(Err(TransferError::NotLeader { leader: 3 }))
    );
    let request = cluster.transfer(3, 9);
    cluster.deliver_all();
    assert_eq!(
        cluster.transfer_result(3, request),
        Some(Err(TransferError::NotAVoter(9)))
    );
}

/// A transfer to a node that cannot take over times out after an election
/// timeout, and the cluster still has its leader (openraft users saw
/// transfers leave a cluster leaderless for seconds).
#[test]
fn a_failed_transfer_times_out_and_leaves_the_leader_in_place() {
    let mut cluster = cluster(3);
    cluster.isolate(3);
    let request = cluster.transfer(1, 3);
    cluster.deliver_all();
    assert_eq!(cluster.transfer_result(1, request), None);
    // While it waits, proposals wait too; then the leader takes them again.
    let max = CoreConfig::default().election_timeout_ms_max;
    cluster.advance(max + 10);
    assert!(matches!(
        cluster.transfer_result(1, request),
        Some(Err(TransferError::TimedOut {
            to: 3,
            leader: 1,
            ..
        }))
    ));
    assert_eq!(cluster.leader(), Some(1));
    assert!(committed(&mut cluster, 1, b"after the failed transfer"));
}
