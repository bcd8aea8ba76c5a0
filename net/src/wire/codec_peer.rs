//! Peer messages to frames and back (see [`super::codec`]).

use ordo_storage::Batch;

use crate::message::{
    AppendRequest, ForwardRequest, ForwardedProposal, InstallSnapshot, Message, SnapshotMeta,
};
use crate::peer::{PeerMessage, SnapshotChunk};
use crate::wire::body::{
    AppendBody, ArchivedAppendBody, ArchivedForwardBody, ArchivedInstallSnapshotBody,
    ArchivedSnapshotChunkBody, ForwardBody, ForwardedBody, InstallSnapshotBody, SnapshotChunkBody,
};
use crate::wire::codec::{
    Attachments, Decode, Encode, Lane, access, decode_plain, encode_plain, len_u32, log_id,
    unexpected,
};
use crate::wire::{EncodeError, FrameKind, FrameSink, ValidFrame, WireError};

impl Encode for PeerMessage {
    fn frame_kind(&self) -> FrameKind {
        match self {
            PeerMessage::Raft(message) => match message {
                Message::Vote(_) => FrameKind::Vote,
                Message::VoteResponse(_) => FrameKind::VoteResponse,
                Message::Append(_) => FrameKind::Append,
                Message::AppendResponse(_) => FrameKind::AppendResponse,
                Message::Heartbeat(_) => FrameKind::Heartbeat,
                Message::HeartbeatResponse(_) => FrameKind::HeartbeatResponse,
                Message::Forward(_) => FrameKind::Forward,
                Message::ForwardResults(_) => FrameKind::ForwardResults,
                Message::ReadIndex(_) => FrameKind::ReadIndex,
                Message::ReadIndexResponse(_) => FrameKind::ReadIndexResponse,
                Message::InstallSnapshot(_) => FrameKind::InstallSnapshot,
                Message::TimeoutNow(_) => FrameKind::TimeoutNow,
            },
            PeerMessage::SnapshotChunk(_) => FrameKind::SnapshotChunk,
            PeerMessage::SnapshotAck(_) => FrameKind::SnapshotAck,
            PeerMessage::Certificate(_) => FrameKind::Certificate,
            PeerMessage::CertificateRequest(_) => FrameKind::CertificateRequest,
            PeerMessage::ForwardTokens(_) => FrameKind::ForwardTokens,
        }
    }

    fn lane(&self) -> Lane {
        match self.frame_kind() {
            FrameKind::Append
            | FrameKind::Forward
            | FrameKind::InstallSnapshot
            | FrameKind::SnapshotChunk => Lane::Bulk,
            _ => Lane::Priority,
        }
    }

    fn encode(&self, sink: &mut FrameSink<'_>) -> Result<usize, EncodeError> {
        let kind = self.frame_kind();
        match self {
            PeerMessage::Raft(message) => match message {
                Message::Vote(m) => encode_plain(sink, kind, m),
                Message::VoteResponse(m) => encode_plain(sink, kind, m),
                Message::Append(m) => encode_append(sink, m),
                Message::AppendResponse(m) => encode_plain(sink, kind, m),
                Message::Heartbeat(m) => encode_plain(sink, kind, m),
                Message::HeartbeatResponse(m) => encode_plain(sink, kind, m),
                Message::Forward(m) => encode_forward(sink, m),
                Message::ForwardResults(m) => encode_plain(sink, kind, m),
                Message::ReadIndex(m) => encode_plain(sink, kind, m),
                Message::ReadIndexResponse(m) => encode_plain(sink, kind, m),
                Message::InstallSnapshot(m) => encode_install_snapshot(sink, m),
                Message::TimeoutNow(m) => encode_plain(sink, kind, m),
            },
            PeerMessage::SnapshotChunk(chunk) => {
                let body = SnapshotChunkBody {
                    term: chunk.term,
                    last: chunk.last,
                    offset: chunk.offset,
                    data_len: len_u32(&chunk.data),
                    done: chunk.done,
                };
                sink.frame(kind, &body, std::iter::once(&chunk.data))
            }
            PeerMessage::SnapshotAck(ack) => encode_plain(sink, kind, ack),
            PeerMessage::Certificate(certificate) => encode_plain(sink, kind, certificate),
            PeerMessage::CertificateRequest(request) => encode_plain(sink, kind, request),
            PeerMessage::ForwardTokens(tokens) => encode_plain(sink, kind, tokens),
        }
    }
}

fn encode_append(sink: &mut FrameSink<'_>, m: &AppendRequest) -> Result<usize, EncodeError> {
    let body = AppendBody {
        term: m.term,
        prev: m.prev,
        commit: m.commit,
        batch_lens: m.batches.iter().map(|b| len_u32(b.bytes())).collect(),
    };
    sink.frame(FrameKind::Append, &body, m.batches.iter().map(Batch::bytes))
}

fn encode_forward(sink: &mut FrameSink<'_>, m: &ForwardRequest) -> Result<usize, EncodeError> {
    let body = ForwardBody {
        term: m.term,
        proposals: m
            .proposals
            .iter()
            .map(|p| ForwardedBody {
                request_id: p.request_id,
                client_id: p.client_id,
                seq: p.seq,
                payload_len: len_u32(&p.payload),
            })
            .collect(),
    };
    sink.frame(
        FrameKind::Forward,
        &body,
        m.proposals.iter().map(|p| &p.payload),
    )
}

fn encode_install_snapshot(
    sink: &mut FrameSink<'_>,
    m: &InstallSnapshot,
) -> Result<usize, EncodeError> {
    let body = InstallSnapshotBody {
        term: m.term,
        last: m.meta.last,
        last_id: m.meta.last_id,
        last_ts: m.meta.last_ts,
        voters: m.meta.voters.clone(),
        core_state_len: len_u32(&m.meta.core_state),
    };
    sink.frame(
        FrameKind::InstallSnapshot,
        &body,
        std::iter::once(&m.meta.core_state),
    )
}

impl Decode for PeerMessage {
    const EXPECTED: &'static str = "peer";

    fn decode(frame: &ValidFrame) -> Result<Self, WireError> {
        let raft = match frame.kind() {
            FrameKind::Vote => Message::Vote(decode_plain(frame)?),
            FrameKind::VoteResponse => Message::VoteResponse(decode_plain(frame)?),
            FrameKind::Append => Message::Append(decode_append(frame)?),
            FrameKind::AppendResponse => Message::AppendResponse(decode_plain(frame)?),
            FrameKind::Heartbeat => Message::Heartbeat(decode_plain(frame)?),
            FrameKind::HeartbeatResponse => Message::HeartbeatResponse(decode_plain(frame)?),
            FrameKind::Forward => Message::Forward(decode_forward(frame)?),
            FrameKind::ForwardResults => Message::ForwardResults(decode_plain(frame)?),
            FrameKind::ReadIndex => Message::ReadIndex(decode_plain(frame)?),
            FrameKind::ReadIndexResponse => Message::ReadIndexResponse(decode_plain(frame)?),
            FrameKind::InstallSnapshot => Message::InstallSnapshot(decode_install_snapshot(frame)?),
            FrameKind::TimeoutNow => Message::TimeoutNow(decode_plain(frame)?),
            FrameKind::SnapshotChunk => {
                return decode_snapshot_chunk(frame).map(PeerMessage::SnapshotChunk);
            }
            FrameKind::SnapshotAck => return decode_plain(frame).map(PeerMessage::SnapshotAck),
            FrameKind::Certificate => return decode_plain(frame).map(PeerMessage::Certificate),
            FrameKind::ForwardTokens => return decode_plain(frame).map(PeerMessage::ForwardTokens),
            FrameKind::CertificateRequest => {
                return decode_plain(frame).map(PeerMessage::CertificateRequest);
            }
            _ => return Err(unexpected(frame, Self::EXPECTED)),
        };
        Ok(PeerMessage::Raft(raft))
    }
}

fn decode_append(frame: &ValidFrame) -> Result<AppendRequest, WireError> {
    const KIND: &str = "append";
    let body = access::<ArchivedAppendBody>(frame)?;
    let listed = body
        .batch_lens
        .iter()
        .map(|len| u64::from(len.to_native()))
        .sum();
    let mut attachments = Attachments::new(frame, listed)?;
    let term = body.term.to_native();
    let prev = log_id(&body.prev);
    let invalid = |reason| WireError::Invalid { kind: KIND, reason };
    // The message promises "consecutive batches starting at prev.index + 1"
    // in non-decreasing terms no later than the leader's; the core relies on
    // it, so a frame that breaks it is refused here, before the core sees it.
    let mut next_index = prev
        .index
        .checked_add(1)
        .ok_or(invalid("prev.index overflows"))?;
    let mut last_term = prev.term;
    let mut batches = Vec::with_capacity(body.batch_lens.len());
    for len in body.batch_lens.iter() {
        let batch = Batch::decode(attachments.take(len.to_native()))?;
        if batch.first_index() != next_index {
            return Err(invalid("batches are not consecutive from prev.index + 1"));
        }
        if batch.term() < last_term || batch.term() > term {
            return Err(invalid(
                "batch terms must not decrease nor exceed the leader's term",
            ));
        }
        next_index = batch.last_index() + 1;
        last_term = batch.term();
        batches.push(batch);
    }
    attachments.finish()?;
    Ok(AppendRequest {
        term,
        prev,
        commit: body.commit.to_native(),
        batches,
    })
}

fn decode_forward(frame: &ValidFrame) -> Result<ForwardRequest, WireError> {
    let body = access::<ArchivedForwardBody>(frame)?;
    let listed = body
        .proposals
        .iter()
        .map(|p| u64::from(p.payload_len.to_native()))
        .sum();
    let mut attachments = Attachments::new(frame, listed)?;
    let proposals = body
        .proposals
        .iter()
        .map(|p| ForwardedProposal {
            request_id: p.request_id.to_native(),
            client_id: p.client_id.to_native(),
            seq: p.seq.to_native(),
            payload: attachments.take(p.payload_len.to_native()),
        })
        .collect();
    attachments.finish()?;
    Ok(ForwardRequest {
        term: body.term.to_native(),
        proposals,
    })
}

fn decode_install_snapshot(frame: &ValidFrame) -> Result<InstallSnapshot, WireError> {
    let body = access::<ArchivedInstallSnapshotBody>(frame)?;
    let mut attachments = Attachments::new(frame, u64::from(body.core_state_len.to_native()))?;
    let core_state = attachments.take(body.core_state_len.to_native());
    attachments.finish()?;
    Ok(InstallSnapshot {
        term: body.term.to_native(),
        meta: SnapshotMeta {
            last: log_id(&body.last),
            last_id: body.last_id.to_native(),
            last_ts: body.last_ts.to_native(),
            voters: body.voters.iter().map(|v| v.to_native()).collect(),
            core_state,
        },
    })
}

fn decode_snapshot_chunk(frame: &ValidFrame) -> Result<SnapshotChunk, WireError> {
    let body = access::<ArchivedSnapshotChunkBody>(frame)?;
    let mut attachments = Attachments::new(frame, u64::from(body.data_len.to_native()))?;
    let data = attachments.take(body.data_len.to_native());
    attachments.finish()?;
    Ok(SnapshotChunk {
        term: body.term.to_native(),
        last: log_id(&body.last),
        offset: body.offset.to_native(),
        data,
        done: body.done,
    })
}
