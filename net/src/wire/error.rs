//! Why bytes are not a valid frame, and why a value could not be framed.

use ordo_storage::FrameError;

/// Why received bytes are not a valid frame. Every variant names what was
/// wrong; a connection that produces one is closed with this reason logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The length prefix exceeds the receiver's `frame_bytes_max`.
    #[error("frame of {frame_len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// The announced length.
        frame_len: u64,
        /// The receiver's limit.
        max: usize,
    },
    /// The length prefix is smaller than the fixed header.
    #[error("frame length {frame_len} is below the {header} byte header")]
    TooShort {
        /// The announced length.
        frame_len: u64,
        /// The header's size.
        header: usize,
    },
    /// Fewer bytes than the header or its length prefix requires.
    #[error("truncated frame: have {have} bytes, need {need}")]
    Truncated {
        /// Bytes available.
        have: usize,
        /// Bytes required.
        need: usize,
    },
    /// The body length does not fit in the frame.
    #[error("body of {body_len} bytes does not fit a frame of {frame_len}")]
    BadBodyLen {
        /// The announced body length.
        body_len: u64,
        /// The announced frame length.
        frame_len: u64,
    },
    /// A kind byte this build does not know.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// A reserved header byte is not zero.
    #[error("reserved header byte {at} is {value:#04x}, not zero")]
    Reserved {
        /// Offset within the header.
        at: usize,
        /// What was found.
        value: u8,
    },
    /// The CRC32 does not match.
    #[error("frame crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    BadCrc {
        /// CRC in the header.
        stored: u32,
        /// CRC of the bytes.
        computed: u32,
    },
    /// The rkyv body failed validation.
    #[error("invalid {kind} body: {reason}")]
    BadBody {
        /// The frame kind's name.
        kind: &'static str,
        /// What bytecheck reported.
        reason: String,
    },
    /// The attachments the body lists do not add up to the bytes after it.
    #[error("{kind} attachments: body lists {listed} bytes, frame carries {carried}")]
    AttachmentMismatch {
        /// The frame kind's name.
        kind: &'static str,
        /// Sum of the lengths the body lists.
        listed: u64,
        /// Bytes between the body's end and the frame's end.
        carried: u64,
    },
    /// An attached storage batch frame is invalid.
    #[error("invalid batch in append: {0}")]
    BadBatch(#[from] FrameError),
    /// A well-formed body whose fields contradict each other.
    #[error("invalid {kind}: {reason}")]
    Invalid {
        /// The frame kind's name.
        kind: &'static str,
        /// Which rule was broken.
        reason: &'static str,
    },
    /// A valid frame of a kind this connection does not carry.
    #[error("{kind} frame on a connection that carries {expected} frames")]
    UnexpectedKind {
        /// The frame kind's name.
        kind: &'static str,
        /// What the connection carries.
        expected: &'static str,
    },
}

impl WireError {
    /// A short, fixed name for metrics (`ordo_frame_errors{reason}`).
    pub fn label(&self) -> &'static str {
        match self {
            WireError::TooLarge { .. } => "too_large",
            WireError::TooShort { .. } => "too_short",
            WireError::Truncated { .. } => "truncated",
            WireError::BadBodyLen { .. } => "bad_body_len",
            WireError::UnknownKind(_) => "unknown_kind",
            WireError::Reserved { .. } => "reserved",
            WireError::BadCrc { .. } => "bad_crc",
            WireError::BadBody { .. } => "bad_body",
            WireError::AttachmentMismatch { .. } => "attachment_mismatch",
            WireError::BadBatch(_) => "bad_batch",
            WireError::Invalid { .. } => "invalid",
            WireError::UnexpectedKind { .. } => "unexpected_kind",
        }
    }
}

/// Why a value could not be framed. These are the sender's mistakes (a
/// message larger than the limits it was configured with), never the
/// network's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The frame would exceed `frame_bytes_max`.
    #[error("{kind} frame of {frame_len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// The frame kind's name.
        kind: &'static str,
        /// The frame's size.
        frame_len: u64,
        /// The limit.
        max: usize,
    },
    /// rkyv failed to serialize the body (it does not for the types here;
    /// kept typed rather than unwrapped).
    #[error("cannot serialize {kind} body: {reason}")]
    Serialize {
        /// The frame kind's name.
        kind: &'static str,
        /// rkyv's message.
        reason: String,
    },
}
