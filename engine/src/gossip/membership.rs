//! Membership and failure detection: SWIM (with suspicion and
//! infection-style dissemination) by the sans-IO `foca` crate, driven from
//! the pure gossip core: foca's packets become [`Wire::Membership`]
//! messages, its timers live in a queue here and fire on ticks, and its
//! randomness comes from the core's seeded generator.
//!
//! Why foca rather than our own SWIM: it is a complete, tested SWIM with
//! the Lifeguard-style suspicion refutation we would otherwise rewrite, it
//! never panics on input, and it does nothing on its own (no clock, no
//! socket, no thread), which is exactly the shape the core needs.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::num::{NonZeroU8, NonZeroUsize};
use std::time::Duration;

use bytes::Bytes;
use foca::{
    AccumulatingRuntime, Foca, NoCustomBroadcast, OwnedNotification, PeriodicParams, Timer,
};

use super::swim_codec::{SwimCodec, SwimIdentity};
use super::{Command, GossipConfig, PeerAddr, PeerKind, Wire};
use crate::core::Rng;

/// The core's generator as foca's source of randomness.
#[derive(Debug)]
pub struct SwimRng(pub Rng);

impl rand_core::TryRng for SwimRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok((self.0.next_u64() >> 32) as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.0.next_u64())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dst.chunks_mut(8) {
            let word = self.0.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        Ok(())
    }
}

/// A change in who is alive, as the gossip layers need to hear it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberChange {
    /// A member joined or came back.
    Up(PeerAddr, PeerKind),
    /// A member was declared down (or restarted: its earlier self is gone,
    /// with every link it had).
    Down(PeerAddr),
}

type SwimFoca = Foca<SwimIdentity, SwimCodec, SwimRng, NoCustomBroadcast>;

/// One member's SWIM state and the timers foca asked for.
pub struct Membership {
    foca: SwimFoca,
    runtime: AccumulatingRuntime<SwimIdentity>,
    /// foca's timers by `(due_us, sequence)`: fired in order on ticks.
    timers: BTreeMap<(u64, u64), Timer<SwimIdentity>>,
    timer_seq: u64,
    /// Active members other than this one, from foca's notifications.
    members: BTreeMap<PeerAddr, SwimIdentity>,
    seeds: Vec<PeerAddr>,
    announce_interval_us: u64,
    next_announce_us: u64,
    /// foca calls that failed (bad packets, mostly); counted, not fatal.
    pub errors: u64,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("identity", self.foca.identity())
            .field("members", &self.members.len())
            .field("timers", &self.timers.len())
            .finish()
    }
}

fn foca_config(config: &GossipConfig) -> foca::Config {
    let ms = Duration::from_millis;
    foca::Config {
        probe_period: ms(config.probe_period_ms),
        probe_rtt: ms(config.probe_rtt_ms),
        num_indirect_probes: NonZeroUsize::new(3).expect("3 is not zero"),
        // memberlist's rule of thumb, 4 * log10(n + 1), is 8 at 100 members
        // and 12 at 1,000; 10 covers that range.
        max_transmissions: NonZeroU8::new(10).expect("10 is not zero"),
        suspect_to_down_after: ms(config.suspect_to_down_ms),
        remove_down_after: Some(ms(30 * config.suspect_to_down_ms.max(1_000))),
        max_packet_size: NonZeroUsize::new(config.membership_packet_bytes_max)
            .unwrap_or(NonZeroUsize::MIN),
        notify_down_members: true,
        // Heals partitions: members keep introducing themselves to random
        // members, down ones included.
        periodic_announce: Some(PeriodicParams {
            frequency: ms(30 * config.probe_period_ms),
            num_members: NonZeroUsize::MIN,
        }),
        periodic_announce_to_down_members: Some(PeriodicParams {
            frequency: ms(15 * config.probe_period_ms),
            num_members: NonZeroUsize::new(2).expect("2 is not zero"),
        }),
        periodic_gossip: Some(PeriodicParams {
            frequency: ms(config.membership_gossip_interval_ms),
            num_members: NonZeroUsize::new(3).expect("3 is not zero"),
        }),
    }
}

impl Membership {
    /// SWIM for `identity`, which will announce itself to `seeds`.
    pub fn new(
        identity: SwimIdentity,
        config: &GossipConfig,
        seed: u64,
        seeds: Vec<PeerAddr>,
    ) -> Self {
        let seeds = seeds.into_iter().filter(|&s| s != identity.addr).collect();
        Self {
            foca: Foca::new(
                identity,
                foca_config(config),
                SwimRng(Rng::new(seed)),
                SwimCodec,
            ),
            runtime: AccumulatingRuntime::new(),
            timers: BTreeMap::new(),
            timer_seq: 0,
            members: BTreeMap::new(),
            seeds,
            announce_interval_us: config.announce_interval_ms * 1_000,
            next_announce_us: 0,
            errors: 0,
        }
    }

    /// This member's current identity (its generation may have grown if it
    /// was declared down and rejoined).
    pub fn identity(&self) -> SwimIdentity {
        *self.foca.identity()
    }

    /// The active members other than this one.
    pub fn members(&self) -> impl Iterator<Item = &SwimIdentity> {
        self.members.values()
    }

    /// The kind of an active member.
    pub fn kind_of(&self, addr: PeerAddr) -> Option<PeerKind> {
        self.members.get(&addr).map(|m| m.kind)
    }

    /// Active members of `kind`, in address order.
    pub fn members_of(&self, kind: PeerKind) -> Vec<PeerAddr> {
        self.members
            .values()
            .filter(|m| m.kind == kind)
            .map(|m| m.addr)
            .collect()
    }

    /// When [`Self::tick`] next has work.
    pub fn next_deadline_us(&self) -> u64 {
        let timer = self.timers.keys().next().map_or(u64::MAX, |&(at, _)| at);
        if self.members.is_empty() && !self.seeds.is_empty() {
            timer.min(self.next_announce_us)
        } else {
            timer
        }
    }

    /// A membership packet from `from`.
    pub fn receive(
        &mut self,
        now_us: u64,
        from: PeerAddr,
        packet: &Bytes,
        out: &mut Vec<Command>,
        changes: &mut Vec<MemberChange>,
    ) {
        if let Err(error) = self.foca.handle_data(packet, &mut self.runtime) {
            self.errors += 1;
            tracing::debug!(%from, %error, "membership packet rejected");
        }
        self.drain(now_us, out, changes);
    }

    /// Fires due timers; announces to the seeds while alone.
    pub fn tick(&mut self, now_us: u64, out: &mut Vec<Command>, changes: &mut Vec<MemberChange>) {
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now_us {
                break;
            }
            let timer = entry.remove();
            if let Err(error) = self.foca.handle_timer(timer, &mut self.runtime) {
                self.errors += 1;
                tracing::debug!(%error, "membership timer failed");
            }
            self.drain(now_us, out, changes);
        }
        if self.members.is_empty() && now_us >= self.next_announce_us {
            self.next_announce_us = now_us + self.announce_interval_us;
            for &seed in &self.seeds {
                // Announce is accepted by whichever identity lives at the
                // seed's address, so kind and generation do not matter.
                let target = SwimIdentity {
                    addr: seed,
                    kind: PeerKind::Voter,
                    generation: 0,
                };
                if let Err(error) = self.foca.announce(target, &mut self.runtime) {
                    self.errors += 1;
                    tracing::debug!(%seed, %error, "announce failed");
                }
            }
            self.drain(now_us, out, changes);
        }
    }

    /// Moves foca's output into commands, timers and member changes.
    fn drain(&mut self, now_us: u64, out: &mut Vec<Command>, changes: &mut Vec<MemberChange>) {
        while let Some((to, packet)) = self.runtime.to_send() {
            out.push(Command::Send {
                to: to.addr,
                message: Wire::Membership(packet),
            });
        }
        while let Some((after, timer)) = self.runtime.to_schedule() {
            let due = now_us.saturating_add(after.as_micros().min(u128::from(u64::MAX)) as u64);
            self.timer_seq += 1;
            self.timers.insert((due, self.timer_seq), timer);
        }
        while let Some(notification) = self.runtime.to_notify() {
            match notification {
                OwnedNotification::MemberUp(id) => {
                    self.members.insert(id.addr, id);
                    changes.push(MemberChange::Up(id.addr, id.kind));
                }
                OwnedNotification::MemberDown(id) => {
                    if self.members.get(&id.addr) == Some(&id) {
                        self.members.remove(&id.addr);
                        changes.push(MemberChange::Down(id.addr));
                    }
                }
                OwnedNotification::Rename(old, new) => {
                    // A restart: the old process's links are gone.
                    // When the liveness changes too, foca follows up with
                    // MemberUp or MemberDown for `new`.
                    if self.members.remove(&old.addr).is_some() {
                        changes.push(MemberChange::Down(old.addr));
                        self.members.insert(new.addr, new);
                        changes.push(MemberChange::Up(new.addr, new.kind));
                    }
                }
                OwnedNotification::Active
                | OwnedNotification::Idle
                | OwnedNotification::Defunct
                | OwnedNotification::Rejoin(_) => {}
            }
        }
    }
}
