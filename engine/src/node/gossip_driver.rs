//! What both gossip runtimes (a gossip node, a voter's gossip endpoint)
//! share: the gossip core, its transport, its clock, and the execution of
//! its sends. Each runtime adds its own inputs and executes the other
//! commands (a gossip node stores deliveries; a voter reads its log).

use std::time::{Duration, Instant};

use ordo_net::transport::{GossipEvent, GossipInbox, GossipTransport, SendError};

use crate::gossip::{Command, Event, GossipNode, PeerAddr, Verify};

/// Most events one turn takes before the core ends the turn: bounds the
/// latency of the turn's sends and deliveries under a flood.
pub const TURN_EVENTS_MAX: usize = 1024;

/// The core and its transport. Lives on one shard.
pub struct Driver<V: Verify> {
    core: GossipNode<V>,
    transport: GossipTransport,
    inbox: GossipInbox,
    epoch: Instant,
    commands: Vec<Command>,
    /// Peers a send failed to this turn, stepped as `Unreachable` at the
    /// start of the next (once each).
    failed: Vec<PeerAddr>,
}

impl<V: Verify> Driver<V> {
    /// Drives `core` over `transport`.
    pub fn new(core: GossipNode<V>, transport: GossipTransport, inbox: GossipInbox) -> Self {
        Self {
            core,
            transport,
            inbox,
            epoch: Instant::now(),
            commands: Vec::new(),
            failed: Vec::new(),
        }
    }

    /// The core (for its status and counters).
    pub fn core(&self) -> &GossipNode<V> {
        &self.core
    }

    /// The transport.
    pub fn transport(&self) -> &GossipTransport {
        &self.transport
    }

    /// Microseconds since this driver started (the core's monotonic clock).
    pub fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Steps one event now.
    pub fn step(&mut self, event: Event) {
        let now = self.now_us();
        self.core.step(now, event);
    }

    /// Steps one transport event.
    pub fn transport_event(&mut self, event: GossipEvent) {
        match event {
            GossipEvent::Message { from, message } => self.step(Event::Message { from, message }),
            GossipEvent::Unreachable { peer } => self.step(Event::Unreachable { peer }),
        }
    }

    /// Takes the transport events that are ready, at most `max`; returns
    /// how many.
    pub fn drain_transport(&mut self, max: usize) -> usize {
        let mut taken = 0;
        while taken < max {
            let Some(event) = self.inbox.try_recv() else {
                break;
            };
            self.transport_event(event);
            taken += 1;
        }
        taken
    }

    /// Waits for the next transport event, or until the core's next
    /// deadline (capped at `cap`). Cancel-safe.
    pub async fn wait(&self, cap: Duration) -> Option<GossipEvent> {
        if !self.inbox.is_empty() {
            return self.inbox.try_recv();
        }
        let now = self.now_us();
        let deadline = self.core.next_deadline_us();
        if deadline <= now {
            return None;
        }
        let sleep = Duration::from_micros(deadline - now).min(cap);
        futures_lite::future::or(self.inbox.recv(), async {
            glommio::timer::sleep(sleep).await;
            None
        })
        .await
    }

    /// Ends the turn: ticks the core, executes its sends, and returns every
    /// other command, in order, for the runtime to execute.
    pub fn end_turn(&mut self) -> Vec<Command> {
        for peer in std::mem::take(&mut self.failed) {
            self.step(Event::Unreachable { peer });
        }
        self.step(Event::Tick);
        let now = self.now_us();
        self.core.end_turn(now, &mut self.commands);
        let mut rest = Vec::new();
        for command in std::mem::take(&mut self.commands) {
            match command {
                Command::Send { to, message } => match self.transport.try_send(to, message) {
                    Ok(()) => {}
                    Err(SendError::Full { .. }) | Err(SendError::Closed) => {
                        if !self.failed.contains(&to) {
                            self.failed.push(to);
                        }
                    }
                    Err(error) => tracing::debug!(%to, %error, "gossip send failed"),
                },
                other => rest.push(other),
            }
        }
        rest
    }

    /// Stops the transport (flushes queued frames for a while).
    pub async fn shutdown(self) {
        self.transport.shutdown().await;
    }
}

/// Microseconds since the Unix epoch (for the timing records of the
/// measurements; the core itself never reads a wall clock).
pub fn wall_clock_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
