//! `ordo-bench timeline`: where one commit's time goes. Runs the cluster in
//! this process with one closed-loop proposer (C = 1), records every hop's
//! [`ordo_engine::node::timeline`] event with its `CLOCK_MONOTONIC` time,
//! cuts the events into commits by the proposer's own send and answer
//! marks, and prints, for each hop seen in most commits, its median offset
//! from the send and the median gap from the hop before it, beside the
//! run's floor.

use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

use ordo_engine::node::timeline::TARGET;

/// One recorded hop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mark {
    /// The node (0: the proposer).
    pub node: u64,
    /// The hop's name.
    pub hop: String,
    /// The peer it concerns (0: none).
    pub peer: u64,
    /// The highest log index it carries (0: none).
    pub index: u64,
    /// `CLOCK_MONOTONIC`, ns.
    pub t_ns: u64,
}

/// Marks recorded so far, bounded so that a long run cannot exhaust
/// memory.
#[derive(Clone, Default)]
pub struct Recorder {
    marks: Arc<Mutex<Vec<Mark>>>,
}

/// Marks kept (a C = 1 run makes ~20 per commit).
const MARKS_MAX: usize = 4 << 20;

impl Recorder {
    /// The marks, in time order.
    pub fn take(&self) -> Vec<Mark> {
        let mut marks = std::mem::take(&mut *self.marks.lock().unwrap_or_else(|e| e.into_inner()));
        marks.sort_by_key(|m| m.t_ns);
        marks
    }
}

#[derive(Default)]
struct Fields {
    node: u64,
    hop: String,
    peer: u64,
    index: u64,
    t_ns: u64,
}

impl Visit for Fields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "node" => self.node = value,
            "peer" => self.peer = value,
            "index" => self.index = value,
            "t_ns" => self.t_ns = value,
            _ => {}
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "hop" {
            self.hop = value.to_string();
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "hop" {
            self.hop = format!("{value:?}").trim_matches('"').to_string();
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for Recorder {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != TARGET {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut marks = self.marks.lock().unwrap_or_else(|e| e.into_inner());
        if marks.len() < MARKS_MAX {
            marks.push(Mark {
                node: fields.node,
                hop: fields.hop,
                peer: fields.peer,
                index: fields.index,
                t_ns: fields.t_ns,
            });
        }
    }
}

/// One hop's place in a commit, over every commit that had it.
#[derive(Clone, Debug, PartialEq)]
pub struct HopTime {
    /// `node 2 recv.append from 1`.
    pub what: String,
    /// Median offset from the proposer's send, µs.
    pub offset_us: f64,
    /// Commits that had the hop, of all commits.
    pub seen: f64,
}

/// The hops of the commits in `marks` (sorted by time): each commit runs
/// from a proposer `client.send` to the next `client.answer`; in it, each
/// `(node, hop, peer)` counts at its first occurrence. Hops seen in at
/// least half the commits, by median offset; and the median commit, µs.
pub fn analyse(marks: &[Mark]) -> (Vec<HopTime>, f64, usize) {
    let mut offsets: std::collections::BTreeMap<(u64, String, u64), Vec<f64>> = Default::default();
    let mut commits = Vec::new();
    let mut start: Option<u64> = None;
    let mut seen: std::collections::BTreeSet<(u64, String, u64)> = Default::default();
    for mark in marks {
        match (mark.node, mark.hop.as_str()) {
            (0, "client.send") => {
                start = Some(mark.t_ns);
                seen.clear();
            }
            (0, "client.answer") => {
                if let Some(s) = start.take() {
                    commits.push((mark.t_ns - s) as f64 / 1e3);
                    offsets
                        .entry((0, "client.answer".into(), 0))
                        .or_default()
                        .push((mark.t_ns - s) as f64 / 1e3);
                }
            }
            _ => {
                if let Some(s) = start {
                    let key = (mark.node, mark.hop.clone(), mark.peer);
                    if seen.insert(key.clone()) {
                        offsets
                            .entry(key)
                            .or_default()
                            .push(mark.t_ns.saturating_sub(s) as f64 / 1e3);
                    }
                }
            }
        }
    }
    let n = commits.len();
    let mut hops: Vec<HopTime> = offsets
        .into_iter()
        .filter(|(_, values)| n > 0 && values.len() * 2 >= n)
        .map(|((node, hop, peer), mut values)| {
            let seen = values.len() as f64 / n as f64;
            HopTime {
                what: match (node, peer) {
                    (0, _) => format!("proposer {hop}"),
                    (node, 0) => format!("node {node} {hop}"),
                    (node, peer) if hop.starts_with("send") => {
                        format!("node {node} {hop} to {peer}")
                    }
                    (node, peer) => format!("node {node} {hop} from {peer}"),
                },
                offset_us: median(&mut values),
                seen,
            }
        })
        .collect();
    hops.sort_by(|a, b| a.offset_us.total_cmp(&b.offset_us));
    (hops, median(&mut commits), n)
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The timeline as text: each hop's median offset and the gap from the
/// hop before it.
pub fn render(hops: &[HopTime], commit_us: f64, commits: usize) -> String {
    let mut text = format!(
        "median of {commits} commits at C = 1: {commit_us:.1} µs from the proposer's send to its answer\n\n\
         {:>10}  {:>9}  {:>6}  hop\n",
        "offset µs", "gap µs", "seen"
    );
    let mut previous = 0.0;
    text += &format!(
        "{:>10.1}  {:>9}  {:>6}  proposer client.send\n",
        0.0, "", "100%"
    );
    for hop in hops {
        text += &format!(
            "{:>10.1}  {:>9.1}  {:>5.0}%  {}\n",
            hop.offset_us,
            hop.offset_us - previous,
            hop.seen * 100.0,
            hop.what
        );
        previous = hop.offset_us;
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(node: u64, hop: &str, peer: u64, t_us: u64) -> Mark {
        Mark {
            node,
            hop: hop.into(),
            peer,
            index: 0,
            t_ns: t_us * 1_000,
        }
    }

    #[test]
    fn commits_are_cut_by_the_proposer_and_hops_take_their_median() {
        let mut marks = Vec::new();
        for (k, extra) in [(0u64, 0u64), (1, 10), (2, 20)] {
            let s = k * 1_000;
            marks.push(mark(0, "client.send", 0, s));
            marks.push(mark(1, "client.call", 0, s + 20 + extra));
            marks.push(mark(1, "send.append", 2, s + 30 + extra));
            marks.push(mark(2, "recv.append", 1, s + 50 + extra));
            // A second send in the same commit counts once.
            marks.push(mark(1, "send.append", 2, s + 90 + extra));
            marks.push(mark(0, "client.answer", 0, s + 200 + extra));
        }
        // A hop seen in one commit of three is left out.
        marks.push(mark(3, "recv.append", 1, 1_060));
        marks.sort_by_key(|m| m.t_ns);
        let (hops, commit, n) = analyse(&marks);
        assert_eq!(n, 3);
        assert_eq!(commit, 210.0);
        let names: Vec<&str> = hops.iter().map(|h| h.what.as_str()).collect();
        assert_eq!(
            names,
            [
                "node 1 client.call",
                "node 1 send.append to 2",
                "node 2 recv.append from 1",
                "proposer client.answer"
            ]
        );
        assert_eq!(hops[0].offset_us, 30.0);
        let text = render(&hops, commit, n);
        assert!(text.contains("node 2 recv.append from 1"), "{text}");
    }
}
