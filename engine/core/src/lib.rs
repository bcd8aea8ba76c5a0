//! The Raft core: a pure, deterministic state machine.
//!
//! ```text
//!            events                                   commands
//!   ┌──────────────────────────┐            ┌───────────────────────────────┐
//!   │ Tick                     │            │ Send { to, message }          │
//!   │ Message { from, message }│   ┌────┐   │ PersistHardState, Truncate,   │
//!   │ Propose, Read            ├──►│Raft├──►│ Append, Sync, ReadLog         │
//!   │ LogSynced, LogRead,      │   └────┘   │ Apply, Respond, ReadReady     │
//!   │ HardStatePersisted,      │  no clock, │ CreateSnapshot, CompactLog,   │
//!   │ Snapshot{Created,Sent,   │  no IO, no │ SendSnapshot, RestoreSnapshot │
//!   │ Restored}, Unreachable   │  OS random │ RoleChanged                   │
//!   └────────────▲─────────────┘            └───────────────┬───────────────┘
//!                │        runtime (or simulator) executes    │
//!                └────────── and feeds completions back ◄────┘
//! ```
//!
//! The runtime calls [`Raft::step`] for each event of a turn, then
//! [`Raft::end_turn`], which batches the turn's proposals and coalesces its
//! replies, and executes the commands in order. Messages that promise
//! durability (a granted vote, an append acknowledgement) leave only after
//! the completion event that makes them true.

mod config;
mod election;
mod io;
mod leader;
mod log;
mod membership;
mod outstanding;
mod progress;
mod proposals;
mod raft;
mod reads;
mod reconfig;
mod repair;
mod replication;
pub mod rng;
mod sessions;
mod snapshot;

pub use config::{ConfigError, CoreConfig};
pub use election::{TransferError, TransferWaiter};
pub use io::{ApplyBatch, Command, Event, Now, Proposal, ReadPurpose, Role};
pub use log::{LogTail, RaftLog, RestoredLog};
pub use membership::{
    ChangeError, Configurations, MEMBER_INFO_MAX, MEMBERS_MAX, Member, MemberRole, Membership,
    MembershipChange, MembershipDecodeError, decode_core_state, encode_core_state,
};
pub use progress::{Progress, ReplicationState};
pub use proposals::Origin;
pub use raft::{Raft, RaftState, Status};
pub use repair::Loss;
pub use rng::Rng;
pub use sessions::{SessionDecodeError, SessionLimits, SessionLookup, Sessions};
