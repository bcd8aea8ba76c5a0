//! Client requests and responses to frames and back (see
//! [`super::codec`]).

use crate::client::{ClientRequest, ClientResponse, CommittedMessage, LogResponse, ProposeRequest};
use crate::wire::body::{
    ArchivedLogResponseBody, ArchivedProposeBody, CommittedBody, LogResponseBody, ProposeBody,
};
use crate::wire::codec::{
    Attachments, Decode, Encode, Lane, access, decode_plain, encode_plain, len_u32, unexpected,
};
use crate::wire::{EncodeError, FrameKind, FrameSink, ValidFrame, WireError};

impl Encode for ClientRequest {
    fn frame_kind(&self) -> FrameKind {
        match self {
            ClientRequest::Propose(_) => FrameKind::ProposeRequest,
            ClientRequest::Read(_) => FrameKind::ReadRequest,
            ClientRequest::Status(_) => FrameKind::StatusRequest,
            ClientRequest::Log(_) => FrameKind::LogRequest,
            ClientRequest::Admin(_) => FrameKind::AdminRequest,
        }
    }

    fn lane(&self) -> Lane {
        match self {
            ClientRequest::Propose(_) => Lane::Bulk,
            _ => Lane::Priority,
        }
    }

    fn encode(&self, sink: &mut FrameSink<'_>) -> Result<usize, EncodeError> {
        let kind = self.frame_kind();
        match self {
            ClientRequest::Propose(p) => {
                let body = ProposeBody {
                    request_id: p.request_id,
                    client_id: p.client_id,
                    seq: p.seq,
                    redirect: p.redirect,
                    payload_len: len_u32(&p.payload),
                };
                sink.frame(kind, &body, std::iter::once(&p.payload))
            }
            ClientRequest::Read(r) => encode_plain(sink, kind, r),
            ClientRequest::Status(r) => encode_plain(sink, kind, r),
            ClientRequest::Log(r) => encode_plain(sink, kind, r),
            ClientRequest::Admin(r) => encode_plain(sink, kind, r),
        }
    }
}

impl Decode for ClientRequest {
    const EXPECTED: &'static str = "client request";

    fn decode(frame: &ValidFrame) -> Result<Self, WireError> {
        Ok(match frame.kind() {
            FrameKind::ProposeRequest => {
                let body = access::<ArchivedProposeBody>(frame)?;
                let mut attachments =
                    Attachments::new(frame, u64::from(body.payload_len.to_native()))?;
                let payload = attachments.take(body.payload_len.to_native());
                attachments.finish()?;
                ClientRequest::Propose(ProposeRequest {
                    request_id: body.request_id.to_native(),
                    client_id: body.client_id.to_native(),
                    seq: body.seq.to_native(),
                    payload,
                    redirect: body.redirect,
                })
            }
            FrameKind::ReadRequest => ClientRequest::Read(decode_plain(frame)?),
            FrameKind::StatusRequest => ClientRequest::Status(decode_plain(frame)?),
            FrameKind::LogRequest => ClientRequest::Log(decode_plain(frame)?),
            FrameKind::AdminRequest => ClientRequest::Admin(decode_plain(frame)?),
            _ => return Err(unexpected(frame, Self::EXPECTED)),
        })
    }
}

impl Encode for ClientResponse {
    fn frame_kind(&self) -> FrameKind {
        match self {
            ClientResponse::Propose(_) => FrameKind::ProposeResponse,
            ClientResponse::Read(_) => FrameKind::ReadResponse,
            ClientResponse::Status(_) => FrameKind::StatusResponse,
            ClientResponse::Log(_) => FrameKind::LogResponse,
            ClientResponse::Error(_) => FrameKind::ErrorResponse,
            ClientResponse::Admin(_) => FrameKind::AdminResponse,
        }
    }

    fn lane(&self) -> Lane {
        match self {
            ClientResponse::Log(_) => Lane::Bulk,
            _ => Lane::Priority,
        }
    }

    fn encode(&self, sink: &mut FrameSink<'_>) -> Result<usize, EncodeError> {
        let kind = self.frame_kind();
        match self {
            ClientResponse::Propose(r) => encode_plain(sink, kind, r),
            ClientResponse::Read(r) => encode_plain(sink, kind, r),
            ClientResponse::Status(r) => encode_plain(sink, kind, r),
            ClientResponse::Error(r) => encode_plain(sink, kind, r),
            ClientResponse::Admin(r) => encode_plain(sink, kind, r),
            ClientResponse::Log(r) => encode_log_response(sink, r),
        }
    }
}

fn encode_log_response(sink: &mut FrameSink<'_>, r: &LogResponse) -> Result<usize, EncodeError> {
    let body = LogResponseBody {
        request_id: r.request_id,
        messages: r
            .messages
            .iter()
            .map(|m| CommittedBody {
                id: m.id,
                index: m.index,
                term: m.term,
                ts: m.ts,
                payload_len: len_u32(&m.payload),
                token_len: len_u32(&m.token),
            })
            .collect(),
        done: r.done,
    };
    let attachments = r.messages.iter().flat_map(|m| [&m.payload, &m.token]);
    sink.frame(FrameKind::LogResponse, &body, attachments)
}

fn decode_log_response(frame: &ValidFrame) -> Result<LogResponse, WireError> {
    let body = access::<ArchivedLogResponseBody>(frame)?;
    let listed = body
        .messages
        .iter()
        .map(|m| u64::from(m.payload_len.to_native()) + u64::from(m.token_len.to_native()))
        .sum();
    let mut attachments = Attachments::new(frame, listed)?;
    let messages = body
        .messages
        .iter()
        .map(|m| CommittedMessage {
            id: m.id.to_native(),
            index: m.index.to_native(),
            term: m.term.to_native(),
            ts: m.ts.to_native(),
            payload: attachments.take(m.payload_len.to_native()),
            token: attachments.take(m.token_len.to_native()),
        })
        .collect();
    attachments.finish()?;
    Ok(LogResponse {
        request_id: body.request_id.to_native(),
        messages,
        done: body.done,
    })
}

impl Decode for ClientResponse {
    const EXPECTED: &'static str = "client response";

    fn decode(frame: &ValidFrame) -> Result<Self, WireError> {
        Ok(match frame.kind() {
            FrameKind::ProposeResponse => ClientResponse::Propose(decode_plain(frame)?),
            FrameKind::ReadResponse => ClientResponse::Read(decode_plain(frame)?),
            FrameKind::StatusResponse => ClientResponse::Status(decode_plain(frame)?),
            FrameKind::LogResponse => ClientResponse::Log(decode_log_response(frame)?),
            FrameKind::ErrorResponse => ClientResponse::Error(decode_plain(frame)?),
            FrameKind::AdminResponse => ClientResponse::Admin(decode_plain(frame)?),
            _ => return Err(unexpected(frame, Self::EXPECTED)),
        })
    }
}
