//! Socket reads and writes on a connection's [`Stream`], shared by the
//! connection's reader and writer (one task, two futures: each borrows the
//! stream only inside a synchronous poll, never across an `.await`).

use std::cell::RefCell;
use std::future::poll_fn;
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::AsRawFd;
use std::pin::Pin;

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, SockaddrStorage, sendmsg};

use crate::tls::{TlsClientConfig, TlsServerConfig};
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
    /// TLS failed: the handshake (an untrusted certificate, a plain-TCP
    /// peer on a TLS port) or a record that does not decrypt.
    #[error("tls: {0}")]
    Tls(String),
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
            ConnectionError::Tls(_) => "tls",
        }
    }
}

/// A connection's socket, under [`read_frame`] and [`write_all`].
pub(crate) enum Stream {
    /// Plain TCP: frames are received straight into the splitter's slabs
    /// (zero-copy) and sent with `sendmsg` from the callers' buffers.
    Plain(RefCell<TcpStream>),
    /// TLS over TCP (client connections with `[tls] clients = true`);
    /// boxed, as rustls's state is large beside a socket.
    Tls(Box<TlsStream>),
}

/// TLS driven over a glommio socket with rustls's buffered state machine.
///
/// Like the socket, the rustls state is borrowed only inside synchronous
/// sections: the connection's reader and writer futures share it. Received
/// plaintext is copied once out of rustls into the splitter's slab; sent
/// plaintext is copied once into rustls, which encrypts it into records
/// that go out with one `sendmsg` per batch.
pub(crate) struct TlsStream {
    tcp: RefCell<TcpStream>,
    tls: RefCell<rustls::Connection>,
    /// Ciphertext read from the socket and not yet given to rustls.
    incoming: RefCell<Incoming>,
}

struct Incoming {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

/// Ciphertext read per socket read: two full records.
const TLS_INCOMING_BYTES: usize = 2 * (16 * 1024 + 256);

/// Encrypted bytes gathered before a write to the socket.
const TLS_FLUSH_BYTES: usize = 256 * 1024;

fn tls_error(error: rustls::Error) -> ConnectionError {
    ConnectionError::Tls(error.to_string())
}

impl Stream {
    /// A plain TCP stream.
    pub(crate) fn plain(tcp: TcpStream) -> Self {
        Stream::Plain(RefCell::new(tcp))
    }

    /// Whether the connection is encrypted.
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// The node's side: runs the TLS handshake on an accepted socket.
    pub(crate) async fn accept_tls(
        tcp: TcpStream,
        config: &TlsServerConfig,
    ) -> Result<Self, ConnectionError> {
        let connection = rustls::ServerConnection::new(config.config.clone()).map_err(tls_error)?;
        Self::handshake_tls(tcp, connection.into()).await
    }

    /// The client's side: runs the TLS handshake on a connected socket.
    pub(crate) async fn connect_tls(
        tcp: TcpStream,
        config: &TlsClientConfig,
    ) -> Result<Self, ConnectionError> {
        let connection =
            rustls::ClientConnection::new(config.config.clone(), config.server_name.clone())
                .map_err(tls_error)?;
        Self::handshake_tls(tcp, connection.into()).await
    }

    async fn handshake_tls(
        tcp: TcpStream,
        connection: rustls::Connection,
    ) -> Result<Self, ConnectionError> {
        let stream = TlsStream {
            tcp: RefCell::new(tcp),
            tls: RefCell::new(connection),
            incoming: RefCell::new(Incoming {
                buf: vec![0; TLS_INCOMING_BYTES].into_boxed_slice(),
                start: 0,
                end: 0,
            }),
        };
        loop {
            stream.flush().await?;
            if !stream.tls.borrow().is_handshaking() {
                return Ok(Stream::Tls(Box::new(stream)));
            }
            if !stream.receive().await? {
                return Err(ConnectionError::Tls(
                    "the other side closed the connection during the TLS handshake \
                     (is TLS on at both ends?)"
                        .into(),
                ));
            }
        }
    }

    /// Receives into `buf`; `Ok(0)`: the other side closed.
    async fn read(&self, buf: &mut [u8]) -> Result<usize, ConnectionError> {
        match self {
            Stream::Plain(tcp) => {
                Ok(poll_fn(|cx| Pin::new(&mut *tcp.borrow_mut()).poll_read(cx, buf)).await?)
            }
            Stream::Tls(stream) => stream.read(buf).await,
        }
    }

    /// Asks the TLS layer for new traffic keys (a KeyUpdate); sent with the
    /// next write. Plain streams have none.
    pub(crate) fn refresh_traffic_keys(&self) -> Result<(), ConnectionError> {
        match self {
            Stream::Plain(_) => Ok(()),
            Stream::Tls(stream) => stream
                .tls
                .borrow_mut()
                .refresh_traffic_keys()
                .map_err(tls_error),
        }
    }
}

impl TlsStream {
    /// Plaintext into `buf`; `Ok(0)` once the other side closed (with
    /// `close_notify`, or a TCP end: a frame cut short is still caught by
    /// the splitter).
    async fn read(&self, buf: &mut [u8]) -> Result<usize, ConnectionError> {
        loop {
            match self.tls.borrow_mut().reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e.into()),
            }
            if !self.receive().await? {
                // rustls knows of the end now; its reader says how it ended.
                continue;
            }
        }
    }

    /// Gives rustls more ciphertext: what is left from the last socket
    /// read, else a new read. `Ok(false)`: the socket reached its end (told
    /// to rustls).
    async fn receive(&self) -> Result<bool, ConnectionError> {
        {
            let mut incoming = self.incoming.borrow_mut();
            if incoming.start < incoming.end {
                let mut tls = self.tls.borrow_mut();
                let mut pending = &incoming.buf[incoming.start..incoming.end];
                let used = tls.read_tls(&mut pending)?;
                incoming.start += used;
                tls.process_new_packets().map_err(tls_error)?;
                if used == 0 && !tls.wants_read() {
                    // close_notify came: nothing more is read.
                    incoming.start = incoming.end;
                }
                return Ok(true);
            }
        }
        let received = poll_fn(|cx| {
            let mut incoming = self.incoming.borrow_mut();
            Pin::new(&mut *self.tcp.borrow_mut()).poll_read(cx, &mut incoming.buf)
        })
        .await?;
        let mut incoming = self.incoming.borrow_mut();
        incoming.start = 0;
        incoming.end = received;
        if received == 0 {
            let mut tls = self.tls.borrow_mut();
            tls.read_tls(&mut io::empty())?;
            tls.process_new_packets().map_err(tls_error)?;
            return Ok(false);
        }
        Ok(true)
    }

    /// Writes what rustls has to send (handshake messages, KeyUpdates).
    async fn flush(&self) -> Result<(), ConnectionError> {
        let mut out = Vec::new();
        {
            let mut tls = self.tls.borrow_mut();
            while tls.wants_write() {
                tls.write_tls(&mut out)?;
            }
        }
        if !out.is_empty() {
            write_all_plain(&self.tcp, &[&out]).await?;
        }
        Ok(())
    }

    /// Encrypts every byte of `slices`, in order, and writes the records:
    /// one `sendmsg` per [`TLS_FLUSH_BYTES`] of ciphertext.
    async fn write_all(&self, slices: &[&[u8]]) -> Result<(), ConnectionError> {
        let mut out = Vec::new();
        let mut cursor = Cursor::default();
        let mut iovecs: Vec<IoSlice<'_>> = Vec::with_capacity(slices.len().min(IOVECS_MAX));
        loop {
            {
                let mut tls = self.tls.borrow_mut();
                cursor.skip_empty(slices);
                if cursor.index < slices.len() {
                    cursor.fill(slices, &mut iovecs);
                    let accepted = tls.writer().write_vectored(&iovecs)?;
                    cursor.advance(slices, accepted);
                }
                while tls.wants_write() {
                    tls.write_tls(&mut out)?;
                }
            }
            cursor.skip_empty(slices);
            let done = cursor.index >= slices.len();
            if out.is_empty() && !done {
                return Err(ConnectionError::Io(io::ErrorKind::WriteZero.into()));
            }
            if done || out.len() >= TLS_FLUSH_BYTES {
                if !out.is_empty() {
                    write_all_plain(&self.tcp, &[&out]).await?;
                    out.clear();
                }
                if done {
                    return Ok(());
                }
            }
        }
    }
}

/// A position in a list of slices being written.
#[derive(Default)]
struct Cursor {
    index: usize,
    offset: usize,
}

impl Cursor {
    /// Steps past finished (or empty) slices.
    fn skip_empty(&mut self, slices: &[&[u8]]) {
        while self.index < slices.len() && self.offset == slices[self.index].len() {
            self.index += 1;
            self.offset = 0;
        }
    }

    /// The rest, as at most [`IOVECS_MAX`] iovecs.
    fn fill<'a>(&self, slices: &[&'a [u8]], iovecs: &mut Vec<IoSlice<'a>>) {
        iovecs.clear();
        iovecs.push(IoSlice::new(&slices[self.index][self.offset..]));
        iovecs.extend(
            slices[self.index + 1..]
                .iter()
                .take(IOVECS_MAX - 1)
                .map(|s| IoSlice::new(s)),
        );
    }

    /// Moves over `written` bytes.
    fn advance(&mut self, slices: &[&[u8]], written: usize) {
        let mut left = written;
        while left > 0 {
            let rest = slices[self.index].len() - self.offset;
            if left >= rest {
                left -= rest;
                self.index += 1;
                self.offset = 0;
            } else {
                self.offset += left;
                left = 0;
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
pub(crate) async fn write_all(stream: &Stream, slices: &[&[u8]]) -> Result<(), ConnectionError> {
    match stream {
        Stream::Plain(tcp) => Ok(write_all_plain(tcp, slices).await?),
        Stream::Tls(tls) => tls.write_all(slices).await,
    }
}

/// Writes every byte of `slices`, in order, with as few syscalls as the
/// socket buffer allows: `sendmsg` with all of them as iovecs, and on a full
/// socket buffer glommio's write (which waits on io_uring for room) for the
/// first pending slice.
async fn write_all_plain(stream: &RefCell<TcpStream>, slices: &[&[u8]]) -> io::Result<()> {
    let fd = stream.borrow().as_raw_fd();
    let mut cursor = Cursor::default();
    let mut iovecs: Vec<IoSlice<'_>> = Vec::with_capacity(slices.len().min(IOVECS_MAX));
    loop {
        cursor.skip_empty(slices);
        if cursor.index >= slices.len() {
            return Ok(());
        }
        cursor.fill(slices, &mut iovecs);
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
                let first = &slices[cursor.index][cursor.offset..];
                poll_fn(|cx| Pin::new(&mut *stream.borrow_mut()).poll_write(cx, first)).await?
            }
            Err(errno) => return Err(io::Error::from(errno)),
        };
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        cursor.advance(slices, written);
    }
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
