//! Socket reads and writes on a connection's [`Stream`], shared by the
//! connection's reader and writer (one task, two futures: each borrows the
//! stream only inside a synchronous poll, never across an `.await`).

use std::cell::RefCell;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::pin::Pin;

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, SockaddrStorage, sendmsg};

use crate::transport::outbound::{OutQueue, WriteBatch};
use crate::wire::{FrameSplitter, ValidFrame, WireError};

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The socket failed.
    #[error("io: {0}")]
    Io(#[from] io::Error),
    /// The peer sent bytes that are not a valid frame.
    #[error("bad frame: {0}")]
    Wire(#[from] WireError),
    /// The peer closed the connection.
    #[error("closed by the other side")]
    Eof,
    /// The handshake failed.
    #[error("handshake: {0}")]
    Handshake(String),
    /// Authentication failed: this side refused the other's proof, or the
    /// other side refused this side's (see `docs/protocol.md`).
    #[error("not authenticated: {0}")]
    Unauthenticated(String),
    /// The transport is shutting down, or replaced or aborted the
    /// connection.
    #[error("closed locally")]
    Closed,
    /// A frame to send could not be encoded.
    #[error("encode: {0}")]
    Encode(#[from] crate::wire::EncodeError),
}

impl ConnectionError {
    /// A short, fixed name for metrics (`ordo_frame_errors{reason}`,
    /// `ordo_handshake_errors{reason}`).
    pub fn label(&self) -> &'static str {
        match self {
            ConnectionError::Io(_) => "io",
            ConnectionError::Wire(wire) => wire.label(),
            ConnectionError::Eof => "eof",
            ConnectionError::Handshake(_) => "handshake",
            ConnectionError::Closed => "closed",
            ConnectionError::Encode(_) => "encode",
            ConnectionError::Unauthenticated(_) => "unauthenticated",
        }
    }
}

/// A connection's socket, under [`read_frame`] and [`write_all`].
///
/// Only plain TCP for now; `docs/tls-plan.md` adds a `Tls` variant (rustls
/// driven over the same glommio socket) for client connections.
pub(crate) enum Stream {
    /// Plain TCP: frames are received straight into the splitter's slabs
    /// (zero-copy) and sent with `sendmsg` from the callers' buffers.
    Plain(RefCell<TcpStream>),
}

impl Stream {
    /// A plain TCP stream.
    pub(crate) fn plain(tcp: TcpStream) -> Self {
        Stream::Plain(RefCell::new(tcp))
    }

    /// Receives into `buf`; `Ok(0)`: the other side closed.
    async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => {
                poll_fn(|cx| Pin::new(&mut *tcp.borrow_mut()).poll_read(cx, buf)).await
            }
        }
    }
}

/// Most iovecs per `sendmsg` (Linux's `IOV_MAX` is 1024).
const IOVECS_MAX: usize = 512;

/// Reads until the next complete, validated frame. `Ok(None)`: the peer
/// closed cleanly between frames.
pub(crate) async fn read_frame(
    stream: &Stream,
    splitter: &mut FrameSplitter,
) -> Result<Option<ValidFrame>, ConnectionError> {
    loop {
        if let Some(frame) = splitter.next_frame()? {
            return Ok(Some(frame));
        }
        let space = splitter.unfilled()?;
        let received = stream.read(space).await?;
        if received == 0 {
            if splitter.buffered() == 0 {
                return Ok(None);
            }
            return Err(WireError::Truncated {
                have: splitter.buffered(),
                need: splitter.buffered() + 1,
            }
            .into());
        }
        splitter.advance(received);
    }
}

/// Writes every byte of `slices`, in order.
pub(crate) async fn write_all(stream: &Stream, slices: &[&[u8]]) -> io::Result<()> {
    match stream {
        Stream::Plain(tcp) => write_all_plain(tcp, slices).await,
    }
}

/// Writes every byte of `slices`, in order, with as few syscalls as the
/// socket buffer allows: `sendmsg` with all of them as iovecs, and on a full
/// socket buffer glommio's write (which waits on io_uring for room) for the
/// first pending slice.
async fn write_all_plain(stream: &RefCell<TcpStream>, slices: &[&[u8]]) -> io::Result<()> {
    let fd = stream.borrow().as_raw_fd();
    let mut index = 0;
    let mut offset = 0;
    let mut iovecs: Vec<IoSlice<'_>> = Vec::with_capacity(slices.len().min(IOVECS_MAX));
    while index < slices.len() {
        if offset == slices[index].len() {
            index += 1;
            offset = 0;
            continue;
        }
        iovecs.clear();
        iovecs.push(IoSlice::new(&slices[index][offset..]));
        iovecs.extend(
            slices[index + 1..]
                .iter()
                .take(IOVECS_MAX - 1)
                .map(|s| IoSlice::new(s)),
        );
        let written = match sendmsg::<SockaddrStorage>(
            fd,
            &iovecs,
            &[],
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(written) => written,
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => {
                let first = &slices[index][offset..];
                poll_fn(|cx| Pin::new(&mut *stream.borrow_mut()).poll_write(cx, first)).await?
            }
            Err(errno) => return Err(io::Error::from(errno)),
        };
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        // Advance over what was written.
        let mut left = written;
        while left > 0 {
            let rest = slices[index].len() - offset;
            if left >= rest {
                left -= rest;
                index += 1;
                offset = 0;
            } else {
                offset += left;
                left = 0;
            }
        }
    }
    Ok(())
}

/// Drains `queue` into the socket until the queue is closed and empty.
pub(crate) async fn write_loop(stream: &Stream, queue: &OutQueue) -> Result<(), ConnectionError> {
    loop {
        let batch: WriteBatch = loop {
            if let Some(batch) = queue.take() {
                break batch;
            }
            if queue.is_closed() {
                return Ok(());
            }
            queue.writer_wake.notified().await;
        };
        write_all(stream, &batch.slices()).await?;
        queue.complete(batch);
    }
}
