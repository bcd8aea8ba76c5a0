//! Replication details beyond the paper's claims, driven on one core by
//! hand (see `common`).

mod common;

use common::*;
use ordo_engine::core::{Command, Event};
use ordo_net::AppendResult;
use ordo_storage::{HardState, LogId};

/// A follower acknowledges the durable, matching prefix of an append at once
/// and the rest after its sync (`send_ack`): a probe that carries entries
/// can be answered `Success { match_index: prev }` first. The entries of
/// the probe are then on their way to storage; the leader should treat them
/// as in flight, not send them a second time.
///
/// Seen in `testdata/fast_backtracking.txt`: after every successful probe,
/// `Append … entries=3..24` goes out twice.
#[test]
fn leader_does_not_resend_a_probe_after_a_partial_ack() {
    let hard_state = HardState {
        term: 1,
        vote: 0,
        commit: 2,
    };
    let mut leader = Node::restore(1, &ids(3), paper_config(), hard_state, &[1, 1]);
    let commands = leader.elect();
    assert_eq!((leader.raft.term(), leader.raft.log().last_index()), (2, 3));
    let probe = appends(&commands)
        .into_iter()
        .find(|(to, _)| *to == 2)
        .map(|(_, request)| request)
        .expect("a probe to node 2");
    assert_eq!(
        (probe.prev, probe.last_index()),
        (LogId::new(1, 2), 3),
        "the no-op rides the probe"
    );

    // What node 2 answers to that probe, before and after its sync.
    let mut follower = Node::restore(2, &ids(3), paper_config(), HardState::default(), &[1, 1]);
    let received = follower.receive(1, ordo_net::Message::Append(probe.clone()));
    let early: Vec<_> = append_responses(&received)
        .into_iter()
        .map(|(_, r)| r.result)
        .collect();
    assert_eq!(
        early,
        vec![AppendResult::Success { match_index: 2 }],
        "the durable prefix, before the sync"
    );

    let commands = leader.receive(2, append_ok(2, 2));
    let resent: Vec<_> = appends(&commands)
        .into_iter()
        .filter(|(to, request)| {
            *to == 2
                && request
                    .batches
                    .first()
                    .is_some_and(|b| b.first_index() <= 3)
        })
        .collect();
    assert!(
        resent.is_empty(),
        "entries 3..=3 are already on their way: {resent:?}"
    );
}

/// While streaming, a duplicated (or delayed) success that acknowledges
/// nothing new changes nothing and sends nothing.
#[test]
fn leader_ignores_a_success_that_acknowledges_nothing_new() {
    let mut leader = Node::new(1, &ids(3), paper_config());
    leader.elect_and_commit_noop();
    let proposed = leader.propose(1, b"x");
    assert_eq!(
        appends(&proposed).len(),
        2,
        "the entry streams to both followers"
    );
    let before = leader.raft.progress(2).expect("follower").clone();
    let again = leader.receive(2, append_ok(1, before.match_index));
    assert!(
        appends(&again).is_empty(),
        "nothing new was acknowledged: {:?}",
        sends(&again)
    );
    let after = leader.raft.progress(2).expect("follower");
    assert_eq!(
        (after.state, after.next_index),
        (before.state, before.next_index)
    );
    assert_eq!(after.inflight_messages(), 1, "the entry is still in flight");
}

/// A follower whose `RestoreSnapshot` could not run (the snapshot was not
/// durable yet when a duplicated `InstallSnapshot` arrived) takes the
/// leader's next `InstallSnapshot` again instead of waiting for a restore
/// that never comes (runtime simulator, seed 2318).
#[test]
fn a_restore_that_could_not_run_is_asked_for_again() {
    let mut follower = Node::new(2, &ids(3), paper_config());
    let meta = ordo_net::SnapshotMeta {
        last: LogId::new(1, 50),
        last_id: 50,
        last_ts: 500,
        voters: ids(3),
        core_state: Default::default(),
    };
    let install = || {
        ordo_net::Message::InstallSnapshot(ordo_net::InstallSnapshot {
            term: 1,
            meta: meta.clone(),
        })
    };
    let restores = |commands: &[Command]| {
        commands
            .iter()
            .filter(|c| matches!(c, Command::RestoreSnapshot(m) if m.last == meta.last))
            .count()
    };
    assert_eq!(restores(&follower.receive(1, install())), 1);
    assert_eq!(
        restores(&follower.receive(1, install())),
        0,
        "one restore at a time"
    );
    follower.turn([Event::SnapshotNotRestored(meta.clone())]);
    assert_eq!(
        restores(&follower.receive(1, install())),
        1,
        "the next InstallSnapshot restores again"
    );
}

/// A leader whose latest snapshot is found damaged (a stream to a
/// follower could not read it back) takes a new one at once, whatever the
/// threshold (runtime simulator, seed 176: it streamed the damaged one
/// forever).
#[test]
fn an_unreadable_snapshot_is_taken_again_at_once() {
    let mut config = paper_config();
    config.snapshot_entries_threshold = 1;
    let mut leader = Node::new(1, &ids(1), config);
    let commands = leader.elect();
    let created = |commands: &[Command]| {
        commands
            .iter()
            .filter_map(|c| match c {
                Command::CreateSnapshot(meta) => Some(meta.clone()),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let first = created(&commands);
    assert_eq!(first.len(), 1, "the no-op's apply asks for a snapshot");
    let meta = first[0].clone();
    leader.turn([Event::SnapshotCreated(meta.clone())]);
    // Nothing new applied: below the threshold, no snapshot is asked for.
    assert!(created(&leader.advance(1)).is_empty());
    let again = created(&leader.turn([Event::SnapshotUnreadable]));
    assert_eq!(again.len(), 1, "a new snapshot at once");
    assert_eq!(again[0].last, meta.last, "at the applied index");
}
