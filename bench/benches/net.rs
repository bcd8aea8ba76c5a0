//! Criterion benchmarks for ordo-net (results in docs/benchmarks.md, "Net").
//!
//! - `net_codec/*`: a 1,000-entry AppendEntries of 64 B entries: encode
//!   (batch frame + wire frame), validate (frame CRC, bytecheck, batch CRC
//!   and bytecheck) and access (every entry read in place). Throughput is in
//!   entries, so criterion's time per iteration / 1,000 is ns per entry.
//! - `net_loopback/*`: frames from one executor to another, pinned to
//!   different cores, over loopback TCP: the transport (64 B and 64 KiB
//!   frames) against a raw socket copy loop moving the same bytes with one
//!   write per frame, in the same run. Throughput is in frames.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::{LocalExecutorBuilder, Placement};
use ordo_net::transport::{LinkState, PeerEvent, PeerTransport, TransportConfig};
use ordo_net::wire::{Decode, ValidFrame, encode_to_vec};
use ordo_net::{AppendRequest, ForwardRequest, ForwardedProposal, Message, PeerMessage};
use ordo_storage::{Batch, BatchKind, BatchMeta, EntryOut, LogId};

/// io_uring registered memory per executor: the transport does no DMA file
/// IO, and the node may run under an 8 MiB `RLIMIT_MEMLOCK`.
const IO_MEMORY_BYTES: usize = 512 << 10;
const CLUSTER: u64 = 7;

fn batch_of(entries: usize, payload_bytes: usize, first_index: u64) -> Batch {
    let payload = vec![0xa5u8; payload_bytes];
    let entries = (0..entries)
        .map(|i| EntryOut {
            client_id: 1,
            seq: i as u64,
            payload: &payload,
        })
        .collect();
    Batch::encode(
        BatchMeta {
            kind: BatchKind::Entries,
            term: 2,
            first_index,
            first_id: first_index,
            first_ts: 1_000,
        },
        entries,
    )
}

fn append_of(batch: Batch) -> PeerMessage {
    PeerMessage::Raft(Message::Append(AppendRequest {
        term: 2,
        prev: LogId::new(2, batch.first_index() - 1),
        commit: 1,
        batches: vec![batch],
    }))
}

fn codec(c: &mut Criterion) {
    const ENTRIES: usize = 1000;
    let mut group = c.benchmark_group("net_codec");
    group.throughput(Throughput::Elements(ENTRIES as u64));
    let payloads: Vec<Vec<u8>> = (0..ENTRIES).map(|i| vec![i as u8; 64]).collect();
    group.bench_function("encode_1000x64B", |b| {
        b.iter(|| {
            let entries = payloads
                .iter()
                .enumerate()
                .map(|(i, p)| EntryOut {
                    client_id: 1,
                    seq: i as u64,
                    payload: p,
                })
                .collect();
            let batch = Batch::encode(
                BatchMeta {
                    kind: BatchKind::Entries,
                    term: 2,
                    first_index: 10,
                    first_id: 10,
                    first_ts: 1_000,
                },
                entries,
            );
            encode_to_vec(&append_of(batch), 1 << 24).unwrap()
        })
    });
    let frame = Bytes::from(encode_to_vec(&append_of(batch_of(ENTRIES, 64, 10)), 1 << 24).unwrap());
    group.bench_function("validate_1000x64B", |b| {
        b.iter(|| {
            let valid = ValidFrame::validate(frame.clone(), 1 << 24).unwrap();
            PeerMessage::decode(&valid).unwrap()
        })
    });
    let PeerMessage::Raft(Message::Append(decoded)) =
        PeerMessage::decode(&ValidFrame::validate(frame.clone(), 1 << 24).unwrap()).unwrap()
    else {
        unreachable!()
    };
    group.bench_function("access_1000x64B", |b| {
        b.iter(|| {
            let mut sum = 0u64;
            for entry in decoded.batches[0].entries() {
                sum = sum.wrapping_add(
                    entry.id ^ entry.ts ^ u64::from(entry.payload[0]) ^ entry.payload.len() as u64,
                );
            }
            sum
        })
    });
    group.finish();
}

fn executor(core: usize, name: &str) -> LocalExecutorBuilder {
    LocalExecutorBuilder::new(Placement::Fixed(core))
        .name(name)
        .io_memory(IO_MEMORY_BYTES)
}

/// Sends `count` copies of `message` from core 0 to core 1 through the
/// transport; returns the time from the first send to the last delivery.
fn transport_run(message: PeerMessage, count: u64) -> Duration {
    let (addr_tx, addr_rx) = mpsc::channel::<SocketAddr>();
    let receiver = executor(1, "bench-rx")
        .spawn(move || async move {
            let (transport, inbox) = PeerTransport::start(TransportConfig::new(
                CLUSTER,
                2,
                "127.0.0.1:0".parse().unwrap(),
            ))
            .unwrap();
            addr_tx.send(transport.local_addr()).unwrap();
            let mut received = 0;
            while received < count {
                match inbox.recv().await {
                    Some(PeerEvent::Message { message, .. }) => {
                        std::hint::black_box(&message);
                        received += 1;
                    }
                    Some(PeerEvent::Unreachable { .. }) => panic!("link lost during the benchmark"),
                    None => panic!("inbox ended"),
                }
            }
            let end = Instant::now();
            transport.shutdown().await;
            end
        })
        .unwrap();
    let addr = addr_rx.recv().unwrap();
    let sender = executor(0, "bench-tx")
        .spawn(move || async move {
            let (transport, _inbox) = PeerTransport::start(TransportConfig::new(
                CLUSTER,
                1,
                "127.0.0.1:0".parse().unwrap(),
            ))
            .unwrap();
            transport.add_peer(2, addr).unwrap();
            while transport.peer_stats(2).unwrap().state != LinkState::Connected {
                glommio::timer::sleep(Duration::from_micros(100)).await;
            }
            let start = Instant::now();
            for _ in 0..count {
                transport.send(2, &message).await.unwrap();
            }
            while transport.peer_stats(2).unwrap().queue.frames_sent < count {
                glommio::timer::sleep(Duration::from_micros(100)).await;
            }
            transport.shutdown().await;
            start
        })
        .unwrap();
    let start = sender.join().unwrap();
    let end = receiver.join().unwrap();
    end - start
}

/// The baseline: one `write` per frame-sized buffer from core 0, reads of
/// up to 256 KiB on core 1, no framing, no checks.
fn raw_run(frame_bytes: usize, count: u64) -> Duration {
    let (addr_tx, addr_rx) = mpsc::channel::<SocketAddr>();
    let total = frame_bytes as u64 * count;
    let receiver = executor(1, "raw-rx")
        .spawn(move || async move {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            let mut stream = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 256 << 10];
            let mut got = 0u64;
            while got < total {
                let n = stream.read(&mut buf).await.unwrap();
                assert!(n > 0, "sender closed early");
                got += n as u64;
            }
            Instant::now()
        })
        .unwrap();
    let addr = addr_rx.recv().unwrap();
    let sender = executor(0, "raw-tx")
        .spawn(move || async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let frame = vec![0x5au8; frame_bytes];
            let start = Instant::now();
            for _ in 0..count {
                stream.write_all(&frame).await.unwrap();
            }
            start
        })
        .unwrap();
    let start = sender.join().unwrap();
    let end = receiver.join().unwrap();
    end - start
}

/// A Forward of one proposal whose frame is exactly `frame_bytes`.
fn small_frame(frame_bytes: usize) -> PeerMessage {
    let make = |payload: usize| {
        PeerMessage::Raft(Message::Forward(ForwardRequest {
            term: 2,
            proposals: vec![ForwardedProposal {
                request_id: 1,
                client_id: 2,
                seq: 3,
                payload: Bytes::from(vec![1u8; payload]),
            }],
        }))
    };
    let overhead = encode_to_vec(&make(0), 1 << 20).unwrap().len();
    let message = make(frame_bytes - overhead);
    assert_eq!(encode_to_vec(&message, 1 << 20).unwrap().len(), frame_bytes);
    message
}

/// An AppendEntries of one batch whose frame is exactly `frame_bytes`.
fn large_frame(frame_bytes: usize) -> PeerMessage {
    let overhead = encode_to_vec(&append_of(batch_of(1, 0, 10)), 1 << 24)
        .unwrap()
        .len();
    // rkyv stores the payload length in the entry: a few bytes may shift.
    let mut payload = frame_bytes - overhead;
    loop {
        let message = append_of(batch_of(1, payload, 10));
        let len = encode_to_vec(&message, 1 << 24).unwrap().len();
        if len == frame_bytes {
            return message;
        }
        payload = payload + frame_bytes - len;
    }
}

fn loopback(c: &mut Criterion) {
    let mut group = c.benchmark_group("net_loopback");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for (name, frame_bytes, frames_per_iter, message) in [
        ("64B", 64usize, 20_000u64, small_frame(64)),
        ("64KiB", 64 << 10, 200, large_frame(64 << 10)),
    ] {
        group.throughput(Throughput::Elements(frames_per_iter));
        group.bench_function(format!("transport_{name}"), |b| {
            b.iter_custom(|iters| transport_run(message.clone(), iters * frames_per_iter))
        });
        group.bench_function(format!("raw_{name}"), |b| {
            b.iter_custom(|iters| raw_run(frame_bytes, iters * frames_per_iter))
        });
    }
    group.finish();
}

criterion_group!(benches, codec, loopback);
criterion_main!(benches);
