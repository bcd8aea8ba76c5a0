//! The wire: frames, their kinds, rkyv bodies, and messages to frames and
//! back. Pure functions over bytes; the transport drives them.
//!
//! - [`frame`]: the header, CRC and attachment layout;
//! - [`kind`]: the kind byte;
//! - [`codec`]: [`Encode`] and [`Decode`], implemented for every message
//!   family (peer, client and gossip ones in `codec_peer.rs`,
//!   `codec_client.rs`, `codec_gossip.rs`);
//! - [`stream`]: splitting a byte stream into frames (the receive side, and
//!   the fuzz entry point).

mod body;
pub mod codec;
mod codec_client;
mod codec_gossip;
mod codec_peer;
mod error;
pub mod frame;
pub mod kind;
pub mod stream;

pub use body::{ArchivedLogId, LogIdDef};
pub use codec::{AnyMessage, Decode, Encode, Lane, decode_frame, encode_to_vec};
pub use error::{EncodeError, WireError};
pub use frame::{
    FRAME_BYTES_CEILING, FRAME_BYTES_MAX_DEFAULT, FRAME_HEADER_BYTES, FrameHeader, FrameSink,
    HANDSHAKE_FRAME_BYTES_MAX, ValidFrame,
};
pub use kind::{FrameKind, KindClass};
pub use stream::{FrameSplitter, decode_stream};
