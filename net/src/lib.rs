//! ordo-net: the wire and the transport.
//!
//! - [`message`]: the Raft protocol's messages as plain values, which the
//!   core consumes and produces;
//! - [`peer`], [`client`], [`handshake`], [`gossip`]: the other messages a
//!   connection carries (snapshot streaming, the client protocol, the
//!   handshake, gossip between gossip nodes and voters);
//! - [`wire`]: frames (length, CRC32, kind, rkyv body, zero-copy
//!   attachments), encoding and validated decoding;
//! - [`transport`]: TCP on glommio: peer connections with priority and bulk
//!   lanes, write coalescing, backpressure and reconnects; the client server
//!   and the client connection; the gossip transport;
//! - [`auth`]: what the handshake's challenge and proof are signed with
//!   (the engine supplies the keys);
//! - [`tls`]: TLS configurations for encrypted client connections;
//! - [`fuzzing`]: the decoder checks the fuzz target and proptests share.
//!
//! The frame format, connection rules and limits are in `docs/protocol.md`.
//!
//! Without the default `io` feature the crate is the messages and their
//! encoding alone, with no glommio, libc, nix or TLS: that is what the Raft
//! core (`ordo-core`) links.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod auth;
pub mod client;
pub mod fuzzing;
pub mod gossip;
pub mod handshake;
pub mod message;
pub mod peer;
#[cfg(feature = "io")]
pub mod tls;
#[cfg(feature = "io")]
pub mod transport;
pub mod wire;

pub use client::*;
pub use gossip::*;
pub use handshake::*;
pub use message::*;
pub use peer::*;
