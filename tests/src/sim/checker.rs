//! The named invariants, checked after every step.
//!
//! - **election safety**: at most one leader per term (Raft §5.2);
//! - **log matching**: two logs holding an entry with the same index and
//!   term are identical up to it (§5.3), checked in full after every step
//!   as two cheap parts: the terms of every pair of logs
//!   ([`Checker::log_matching_terms`]), and one entry per index and term
//!   over everything any log ever held ([`Checker::entries_held`]);
//! - **leader completeness**: a new leader holds every committed entry (§5.4);
//! - **state machine safety**: no two nodes apply different entries at one
//!   index (§5.4.3);
//! - **client oracle**: every acknowledged message is in the committed log
//!   exactly once, at the id and index it was acknowledged with; a retried
//!   proposal never becomes a second entry;
//! - **at most once**: no payload appears twice in the committed log,
//!   acknowledged or not (every proposal's payload is unique to the run,
//!   and clients retry only what was refused as safe to retry);
//! - **dense ids, increasing timestamps**: user ids along the committed log
//!   are 1, 2, 3, ... and timestamps strictly increase;
//! - **linearizable reads**: a read index covers every write acknowledged
//!   before the read was issued.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};

use ordo_engine::testkit::{AppliedEntry, Host};
use ordo_net::Committed;
use ordo_storage::{Batch, BatchKind, ClientId, Index, NodeId, Seq, Term};

/// One node's log for the log-matching check: index → (term, id, payload).
type NodeLog = BTreeMap<Index, (Term, u64, Vec<u8>)>;

/// The checker's memory of the run.
#[derive(Default)]
pub struct Checker {
    /// Who led each term.
    leaders: BTreeMap<Term, NodeId>,
    /// The committed log as the state machines applied it, from index 1.
    ledger: Vec<AppliedEntry>,
    /// Per node: how much of its applied list was checked, and the index of
    /// the last entry checked (a snapshot install replaces the list).
    checked: HashMap<NodeId, (usize, Index)>,
    /// Acknowledged session proposals.
    acked: HashMap<(ClientId, Seq), (Vec<u8>, Committed)>,
    /// Acknowledged sessionless proposals, by payload.
    acked_plain: HashMap<Vec<u8>, Committed>,
    /// Leaders elected (one per term seen).
    pub elections: u64,
    /// Index of every user payload in the committed log.
    payloads: HashMap<Vec<u8>, Index>,
    /// Every entry a node's log held, by index and term (the first seen).
    held: HashMap<(Index, Term), AppliedEntry>,
}

impl Checker {
    /// The committed log as applied so far.
    pub fn ledger(&self) -> &[AppliedEntry] {
        &self.ledger
    }

    /// Election safety.
    pub fn leader_seen(&mut self, node: NodeId, term: Term) -> Result<(), String> {
        match self.leaders.get(&term) {
            Some(&leader) if leader != node => Err(format!(
                "election safety: nodes {leader} and {node} both lead term {term}"
            )),
            Some(_) => Ok(()),
            None => {
                self.leaders.insert(term, node);
                self.elections += 1;
                Ok(())
            }
        }
    }

    /// The host restarted or installed a snapshot: its applied list was
    /// replaced; check it again from the start.
    pub fn reset_node(&mut self, node: NodeId) {
        self.checked.insert(node, (0, 0));
    }

    /// State machine safety, dense ids and increasing timestamps, for what
    /// `host` applied since the last check.
    pub fn applied(&mut self, host: &Host) -> Result<(), String> {
        let entries = host.state_machine();
        let (count, last) = self.checked.get(&host.id).copied().unwrap_or((0, 0));
        let unchanged = count <= entries.len() && (count == 0 || entries[count - 1].index == last);
        let from = if unchanged { count } else { 0 };
        for entry in &entries[from..] {
            let at = entry.index as usize;
            if at == 0 {
                return Err(format!("node {} applied index 0", host.id));
            }
            if at <= self.ledger.len() {
                let known = &self.ledger[at - 1];
                if known != entry {
                    return Err(format!(
                        "state machine safety: node {} applied {:?} at index {at}, another node applied {:?}",
                        host.id, entry, known
                    ));
                }
            } else if at == self.ledger.len() + 1 {
                self.extend_ledger(entry.clone())?;
            } else {
                return Err(format!(
                    "node {} applied index {at} but the committed log ends at {}",
                    host.id,
                    self.ledger.len()
                ));
            }
        }
        self.checked.insert(
            host.id,
            (entries.len(), entries.last().map_or(0, |e| e.index)),
        );
        Ok(())
    }

    fn extend_ledger(&mut self, entry: AppliedEntry) -> Result<(), String> {
        if let Some(previous) = self.ledger.last() {
            if entry.ts <= previous.ts {
                return Err(format!(
                    "timestamps: index {} has ts {} after ts {} at index {}",
                    entry.index, entry.ts, previous.ts, previous.index
                ));
            }
            if entry.term < previous.term {
                return Err(format!("terms decrease at index {}", entry.index));
            }
        }
        let last_id = self
            .ledger
            .iter()
            .rev()
            .find(|e| e.kind == BatchKind::Entries)
            .map_or(0, |e| e.id);
        match entry.kind {
            BatchKind::Entries if entry.id != last_id + 1 => {
                return Err(format!(
                    "dense ids: index {} has id {} after id {last_id}",
                    entry.index, entry.id
                ));
            }
            BatchKind::Noop | BatchKind::Config if entry.id != 0 => {
                return Err(format!(
                    "internal entry at {} took id {}",
                    entry.index, entry.id
                ));
            }
            _ => {}
        }
        if entry.kind == BatchKind::Entries
            && let Some(first) = self.payloads.insert(entry.payload.to_vec(), entry.index)
        {
            return Err(format!(
                "at most once: payload {:?} committed at index {first} and again at {}",
                String::from_utf8_lossy(&entry.payload),
                entry.index
            ));
        }
        // Acknowledgements may have arrived before any state machine applied
        // the entry: check them now.
        if let Some(committed) = self.expected_at(entry.index) {
            check_matches(&entry, &committed)?;
        }
        self.ledger.push(entry);
        Ok(())
    }

    fn expected_at(&self, index: Index) -> Option<Committed> {
        self.acked
            .values()
            .map(|(_, c)| *c)
            .chain(self.acked_plain.values().copied())
            .find(|c| c.index == index)
    }

    /// Leader completeness: a node that just became leader holds every
    /// committed entry (those its log still holds; compacted ones are in its
    /// snapshot, checked by state machine safety).
    pub fn new_leader(&mut self, host: &Host) -> Result<(), String> {
        let state = host.log.state_now();
        let first = state.prev.index + 1;
        let committed = self.ledger.len() as u64;
        if committed > state.last.index {
            return Err(format!(
                "leader completeness: node {} leads term {} with log ending at {} but {committed} entries are committed",
                host.id,
                host.raft.term(),
                state.last.index
            ));
        }
        if first <= committed {
            let batches = host
                .log
                .read_now(first, usize::MAX)
                .map_err(|e| e.to_string())?;
            for batch in &batches {
                for entry in batch.entries() {
                    if entry.index < first || entry.index > committed {
                        continue;
                    }
                    let known = &self.ledger[entry.index as usize - 1];
                    if known.term != entry.term
                        || known.id != entry.id
                        || &known.payload[..] != entry.payload
                    {
                        return Err(format!(
                            "leader completeness: node {} leads term {} but holds a different entry at committed index {}",
                            host.id,
                            host.raft.term(),
                            entry.index
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Log matching on terms across every pair of nodes, from the term
    /// runs each log keeps in memory: cheap enough for every step. Two
    /// logs whose entries at some index share a term hold the same term at
    /// every index below it. ([`Checker::log_matching`] compares contents.)
    pub fn log_matching_terms(&self, hosts: &[&Host]) -> Result<(), String> {
        let logs: Vec<(NodeId, Index, Index, Vec<ordo_storage::TermRun>)> = hosts
            .iter()
            .map(|host| {
                let state = host.log.state_now();
                (
                    host.id,
                    state.prev.index,
                    state.last.index,
                    host.log.term_runs_now(),
                )
            })
            .collect();
        let term_at = |runs: &[ordo_storage::TermRun], index: Index| {
            let at = runs.partition_point(|run| run.first_index <= index);
            (at > 0).then(|| runs[at - 1].term)
        };
        for (i, (a, prev_a, last_a, runs_a)) in logs.iter().enumerate() {
            for (b, prev_b, last_b, runs_b) in &logs[i + 1..] {
                let low = prev_a.max(prev_b) + 1;
                let high = *last_a.min(last_b);
                if low > high {
                    continue;
                }
                let mut points: Vec<Index> = runs_a
                    .iter()
                    .chain(runs_b.iter())
                    .map(|run| run.first_index)
                    .filter(|&index| index > low && index <= high)
                    .chain(std::iter::once(low))
                    .collect();
                points.sort_unstable();
                points.dedup();
                let same = |at: Index| term_at(runs_a, at) == term_at(runs_b, at);
                let Some(top) = points.iter().rposition(|&at| same(at)) else {
                    continue;
                };
                if let Some(&differs) = points[..top].iter().find(|&&at| !same(at)) {
                    return Err(format!(
                        "log matching: nodes {a} and {b} hold the same term at index {} but terms {:?} and {:?} at {differs}",
                        points[top],
                        term_at(runs_a, differs),
                        term_at(runs_b, differs)
                    ));
                }
            }
        }
        Ok(())
    }

    /// One entry per index and term: `batches` are what `node`'s log now
    /// holds from some index on (what a turn wrote, or the whole log after
    /// a restart), each entry compared with the first entry any log held
    /// at its index and term. A leader creates one entry per index of its
    /// term and leads a term once, so two differ only through a bug (a
    /// term led twice, simulator seed 11750) or a log that changed what it
    /// held. With [`Checker::log_matching_terms`] after every step this is
    /// log matching on contents (§5.3): two logs that agree on the term at
    /// an index agree on every term below it, hence on every entry.
    pub fn entries_held(&mut self, node: NodeId, batches: &[Batch]) -> Result<(), String> {
        for batch in batches {
            for entry in batch.entries() {
                let held = AppliedEntry::from(&entry);
                match self.held.entry((entry.index, entry.term)) {
                    Entry::Vacant(vacant) => {
                        vacant.insert(held);
                    }
                    Entry::Occupied(first) if *first.get() != held => {
                        return Err(format!(
                            "log matching: node {node} holds {held:?}, but a log held {:?} at the same index and term",
                            first.get()
                        ));
                    }
                    Entry::Occupied(_) => {}
                }
            }
        }
        Ok(())
    }

    /// Log matching across every pair of nodes, reading every log whole (at
    /// the end of a run; [`Checker::entries_held`] checks as logs change).
    pub fn log_matching(&self, hosts: &[&Host]) -> Result<(), String> {
        let logs: Vec<(NodeId, NodeLog)> = hosts
            .iter()
            .map(|host| {
                let state = host.log.state_now();
                let mut entries = BTreeMap::new();
                if state.last.index > state.prev.index {
                    for batch in host
                        .log
                        .read_now(state.prev.index + 1, usize::MAX)
                        .unwrap_or_default()
                    {
                        for entry in batch.entries() {
                            entries.insert(
                                entry.index,
                                (entry.term, entry.id, entry.payload.to_vec()),
                            );
                        }
                    }
                }
                (host.id, entries)
            })
            .collect();
        for (i, (a, log_a)) in logs.iter().enumerate() {
            for (b, log_b) in &logs[i + 1..] {
                let Some(highest) = log_a
                    .iter()
                    .rev()
                    .find(|(index, (term, _, _))| {
                        log_b.get(index).is_some_and(|(t, _, _)| t == term)
                    })
                    .map(|(index, _)| *index)
                else {
                    continue;
                };
                for (index, entry) in log_a.range(..=highest) {
                    if let Some(other) = log_b.get(index)
                        && other != entry
                    {
                        return Err(format!(
                            "log matching: nodes {a} and {b} agree at index {highest} but differ at {index}"
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// A client was told its proposal committed.
    pub fn acknowledged(
        &mut self,
        client: ClientId,
        seq: Seq,
        payload: &[u8],
        committed: Committed,
    ) -> Result<(), String> {
        if client != 0 {
            if let Some((_, earlier)) = self.acked.get(&(client, seq))
                && *earlier != committed
            {
                return Err(format!(
                    "client oracle: session {client} seq {seq} acknowledged twice differently: {earlier:?} then {committed:?}"
                ));
            }
            self.acked
                .insert((client, seq), (payload.to_vec(), committed));
        } else {
            self.acked_plain.insert(payload.to_vec(), committed);
        }
        if let Some(entry) = self.ledger.get(committed.index as usize - 1) {
            check_matches(entry, &committed)?;
            if &entry.payload[..] != payload {
                return Err(format!(
                    "client oracle: acknowledged at index {} but that index holds another payload",
                    committed.index
                ));
            }
        }
        Ok(())
    }

    /// A linearizable read returned `index`; writes acknowledged before it
    /// was issued reach up to `floor`.
    pub fn read(&self, node: NodeId, index: Index, floor: Index) -> Result<(), String> {
        if index < floor {
            return Err(format!(
                "linearizable read: node {node} returned read index {index} below {floor}, acknowledged before the read"
            ));
        }
        Ok(())
    }

    /// The end of the run: every acknowledged proposal is in the committed
    /// log exactly once, and no session proposal appears twice.
    pub fn finish(&self) -> Result<(), String> {
        let mut seen: HashMap<(ClientId, Seq), Index> = HashMap::new();
        let mut payloads: HashMap<&[u8], u32> = HashMap::new();
        for entry in &self.ledger {
            if entry.kind != BatchKind::Entries {
                continue;
            }
            if entry.client_id != 0
                && let Some(first) = seen.insert((entry.client_id, entry.seq), entry.index)
            {
                return Err(format!(
                    "client oracle: session {} seq {} committed twice, at {first} and {}",
                    entry.client_id, entry.seq, entry.index
                ));
            }
            *payloads.entry(&entry.payload[..]).or_default() += 1;
        }
        for ((client, seq), (payload, committed)) in &self.acked {
            let Some(entry) = self.ledger.get(committed.index as usize - 1) else {
                return Err(format!(
                    "client oracle: acknowledged {committed:?} (session {client} seq {seq}) is not committed"
                ));
            };
            check_matches(entry, committed)?;
            if &entry.payload[..] != payload.as_slice()
                || entry.client_id != *client
                || entry.seq != *seq
            {
                return Err(format!(
                    "client oracle: index {} does not hold session {client} seq {seq}",
                    committed.index
                ));
            }
        }
        for (payload, committed) in &self.acked_plain {
            let Some(entry) = self.ledger.get(committed.index as usize - 1) else {
                return Err(format!(
                    "client oracle: acknowledged {committed:?} is not committed"
                ));
            };
            check_matches(entry, committed)?;
            if payloads.get(payload.as_slice()).copied() != Some(1) {
                return Err(format!(
                    "client oracle: sessionless payload acknowledged at {} is committed {:?} times",
                    committed.index,
                    payloads.get(payload.as_slice())
                ));
            }
        }
        Ok(())
    }
}

fn check_matches(entry: &AppliedEntry, committed: &Committed) -> Result<(), String> {
    if entry.index != committed.index
        || entry.term != committed.term
        || entry.id != committed.id
        || entry.ts != committed.ts
    {
        return Err(format!(
            "client oracle: acknowledged {committed:?} but the committed entry is index {} term {} id {} ts {}",
            entry.index, entry.term, entry.id, entry.ts
        ));
    }
    Ok(())
}
