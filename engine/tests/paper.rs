//! One test per claim of the Raft paper (Ongaro and Ousterhout, "In Search
//! of an Understandable Consensus Algorithm", 2014), named after the
//! behaviour etcd's `raft_paper_test.go` checks and citing the section.
//!
//! Each test drives one core by hand (see `common`): it sets up a state,
//! feeds exact messages, and checks the state and the commands that come
//! out. Where ordo differs from the paper (pre-vote, heartbeats as their own
//! message, acknowledgements and votes that wait for durability) the test
//! says so; the paper's behaviour is tested with `paper_config()` (pre-vote
//! and check-quorum off), and the thesis additions get tests of their own.
//!
//! | etcd `raft_paper_test.go` | here |
//! |---|---|
//! | `Test{Follower,Candidate,Leader}UpdateTermFromMessage`, `TestRejectStaleTermMessage` (§5.1) | `election` |
//! | `TestStartAsFollower` … `TestCandidatesElectionTimeoutNonconflict` (§5.2) | `election` |
//! | `TestVoteRequest`, `TestVoter` (§5.4.1) | `election` |
//! | `TestLeaderStartReplication` … `TestLeaderSyncFollowerLog` (§5.3) | `replication` |
//! | `TestLeaderOnlyCommitsLogFromCurrentTerm` (§5.4.2) | `replication` |

mod common;

#[path = "paper/election.rs"]
mod election;
#[path = "paper/replication.rs"]
mod replication;
