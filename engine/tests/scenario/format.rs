//! How scenario traces print messages, answers and entries: one line each,
//! stable across runs. A log position prints as `t<term>@<index>`; a
//! request as `r<id>`; a timestamp as microseconds after the cluster's
//! first wall-clock instant (`+<µs>`).

use ordo_engine::testkit::{AppliedEntry, WALL_START_US};
use ordo_net::{AppendResult, Committed, Message, ProposeError, ProposeResult, ReadError};
use ordo_storage::{Batch, BatchKind, EntryView, LogId};

/// `t<term>@<index>`.
pub fn log_id(id: LogId) -> String {
    format!("t{}@{}", id.term, id.index)
}

/// A timestamp relative to the cluster's start.
pub fn ts(ts: u64) -> String {
    match ts.checked_sub(WALL_START_US) {
        Some(after) => format!("+{after}"),
        None => format!("-{}", WALL_START_US - ts),
    }
}

fn entries(batches: &[Batch]) -> String {
    match (batches.first(), batches.last()) {
        (Some(first), Some(last)) => {
            let range = format!("{}..{}", first.first_index(), last.last_index());
            if batches.len() == 1 {
                range
            } else {
                format!("{range} in {} batches", batches.len())
            }
        }
        _ => "none".to_string(),
    }
}

/// One message, without sender and receiver.
pub fn message(message: &Message) -> String {
    match message {
        Message::Vote(r) => {
            let kind = if r.pre_vote { "PreVote" } else { "Vote" };
            let transfer = if r.transfer { " transfer" } else { "" };
            format!("{kind} t{} last={}{transfer}", r.term, log_id(r.last))
        }
        Message::VoteResponse(r) => {
            let kind = if r.pre_vote {
                "PreVoteResponse"
            } else {
                "VoteResponse"
            };
            let verdict = if r.granted { "granted" } else { "rejected" };
            format!("{kind} t{} {verdict}", r.term)
        }
        Message::Append(r) => format!(
            "Append t{} prev={} commit={} entries={}",
            r.term,
            log_id(r.prev),
            r.commit,
            entries(&r.batches)
        ),
        Message::AppendResponse(r) => match r.result {
            AppendResult::Success { match_index } => {
                format!("AppendResponse t{} ok match={match_index}", r.term)
            }
            AppendResult::Conflict { rejected, hint } => {
                format!(
                    "AppendResponse t{} reject rejected={rejected} hint={}",
                    r.term,
                    log_id(hint)
                )
            }
        },
        Message::Heartbeat(h) => format!(
            "Heartbeat t{} commit={} round={}",
            h.term, h.commit, h.read_round
        ),
        Message::HeartbeatResponse(h) => {
            format!(
                "HeartbeatResponse t{} round={} last={}",
                h.term, h.read_round, h.last_index
            )
        }
        Message::Forward(f) => {
            let proposals: Vec<String> = f
                .proposals
                .iter()
                .map(|p| {
                    let session = if p.client_id == 0 {
                        String::new()
                    } else {
                        format!(" c{}/s{}", p.client_id, p.seq)
                    };
                    format!(
                        "r{}{session} {:?}",
                        p.request_id,
                        String::from_utf8_lossy(&p.payload)
                    )
                })
                .collect();
            format!("Forward t{} [{}]", f.term, proposals.join(", "))
        }
        Message::ForwardResults(f) => {
            let results: Vec<String> = f
                .results
                .iter()
                .map(|(request_id, result)| format!("r{request_id} {}", propose_result(result)))
                .collect();
            format!("ForwardResults t{} [{}]", f.term, results.join(", "))
        }
        Message::ReadIndex(r) => format!("ReadIndex t{} [{}]", r.term, requests(&r.request_ids)),
        Message::ReadIndexResponse(r) => {
            format!(
                "ReadIndexResponse t{} [{}] {}",
                r.term,
                requests(&r.request_ids),
                read_result(&r.result)
            )
        }
        Message::InstallSnapshot(s) => {
            format!("InstallSnapshot t{} last={}", s.term, log_id(s.meta.last))
        }
        Message::TimeoutNow(t) => format!("TimeoutNow t{}", t.term),
    }
}

fn requests(ids: &[u64]) -> String {
    ids.iter()
        .map(|id| format!("r{id}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A proposal's outcome.
pub fn propose_result(result: &ProposeResult) -> String {
    match result {
        Ok(c) => format!(
            "committed id={} index={} term={} ts={}",
            c.id,
            c.index,
            c.term,
            ts(c.ts)
        ),
        Err(error) => propose_error(error),
    }
}

fn propose_error(error: &ProposeError) -> String {
    match error {
        ProposeError::NotLeader { leader } => format!("not-leader hint={leader}"),
        ProposeError::Unknown { leader } => format!("unknown-outcome hint={leader}"),
        ProposeError::Busy { leader } => format!("busy hint={leader}"),
        ProposeError::TooLarge { bytes, max } => format!("too-large bytes={bytes} max={max}"),
        ProposeError::SessionExpired { client_id, seq } => {
            format!("session-expired c{client_id}/s{seq}")
        }
        ProposeError::Stopped => "stopped".to_string(),
    }
}

/// Answers given by node `at` in one turn, one line each, except that a
/// run of consecutive requests with the same error, or committed at
/// consecutive ids, indexes and timestamps in one term, prints as one line.
pub fn group_answers(at: u64, answers: &[(u64, String, Option<Committed>)]) -> Vec<String> {
    let mut lines = Vec::new();
    let mut i = 0;
    while i < answers.len() {
        let (first, text, committed) = &answers[i];
        let mut j = i + 1;
        while j < answers.len() {
            let (request, next_text, next_committed) = &answers[j];
            let step = (j - i) as u64;
            let follows = *request == first + step
                && match (committed, next_committed) {
                    (Some(a), Some(b)) => {
                        b.id == a.id + step
                            && b.index == a.index + step
                            && b.ts == a.ts + step
                            && b.term == a.term
                    }
                    (None, None) => next_text == text,
                    _ => false,
                };
            if !follows {
                break;
            }
            j += 1;
        }
        let last = answers[j - 1].0;
        if j - i == 1 {
            lines.push(format!("r{first} (at {at}): {text}"));
        } else if let (Some(a), Some(b)) = (committed, &answers[j - 1].2) {
            lines.push(format!(
                "r{first}..r{last} (at {at}): committed id={}..{} index={}..{} term={} ts={}..{}",
                a.id,
                b.id,
                a.index,
                b.index,
                a.term,
                ts(a.ts),
                ts(b.ts)
            ));
        } else {
            lines.push(format!("r{first}..r{last} (at {at}): {text}"));
        }
        i = j;
    }
    lines
}

/// A read's outcome.
pub fn read_result(result: &Result<u64, ReadError>) -> String {
    match result {
        Ok(index) => format!("read-index={index}"),
        Err(ReadError::NotLeader { leader }) => format!("not-leader hint={leader}"),
        Err(ReadError::Busy { leader }) => format!("busy hint={leader}"),
        Err(ReadError::Stopped) => "stopped".to_string(),
    }
}

/// One entry of a log or state machine.
pub fn entry(e: &EntryView<'_>) -> String {
    describe(
        e.kind,
        e.index,
        e.term,
        e.id,
        e.ts,
        (e.client_id, e.seq),
        e.payload,
    )
}

/// An entry the state machine applied.
pub fn applied(e: &AppliedEntry) -> String {
    describe(
        e.kind,
        e.index,
        e.term,
        e.id,
        e.ts,
        (e.client_id, e.seq),
        &e.payload,
    )
}

fn describe(
    kind: BatchKind,
    index: u64,
    term: u64,
    id: u64,
    timestamp: u64,
    (client_id, seq): (u64, u64),
    payload: &[u8],
) -> String {
    match kind {
        BatchKind::Entries => {
            let session = if client_id == 0 {
                String::new()
            } else {
                format!(" c{client_id}/s{seq}")
            };
            format!(
                "{index} t{term} id={id} ts={}{session} {:?}",
                ts(timestamp),
                String::from_utf8_lossy(payload)
            )
        }
        BatchKind::Noop => format!("{index} t{term} noop ts={}", ts(timestamp)),
        BatchKind::Config => format!("{index} t{term} config ts={}", ts(timestamp)),
    }
}
