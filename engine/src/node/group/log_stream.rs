//! Log streaming: committed messages read from the log and sent in id
//! order, each with its token, to a client (`ClientRequest::Log`, on this
//! shard or relayed by a client shard) or to a subscriber of the embedding
//! API. Each stream runs in its own task, so a slow reader slows only its
//! stream.

use std::cell::Cell;
use std::rc::Rc;

use ordo_net::transport::{ClientConn, SendError};
use ordo_net::{ClientError, ClientResponse, ErrorResponse, LeaderHint, LogResponse};
use ordo_storage::{LogStore, MessageId};

use super::Group;
use crate::node::feed::{self, LogSource};
use crate::node::{CommittedMessage, FeedError};

impl<S: LogStore + 'static> Group<S> {
    /// What a stream started now reads.
    fn log_source(&self) -> LogSource<S> {
        LogSource {
            store: self.log.store().clone(),
            state: self.feed.clone(),
            certificates: self.certificates.clone(),
        }
    }

    /// Streams committed messages to a client of this shard.
    pub(super) fn serve_log(&self, conn: ClientConn, request_id: u64, from_id: u64, follow: bool) {
        let (sink, responses) = async_channel::bounded::<ClientResponse>(4);
        self.serve_log_into(request_id, from_id, follow, sink);
        crate::node::env::spawn(async move {
            while let Ok(response) = responses.recv().await {
                match conn.send(&response).await {
                    Ok(()) => {}
                    Err(SendError::Encode(error)) => {
                        // Chunks are cut by bytes to fit any frame limit of
                        // at least 16 MiB; a smaller limit still gets told.
                        tracing::warn!(%error, request_id, "log response does not fit a frame");
                        // The client may be gone already; nothing more to tell.
                        let _ = conn.try_send(&ClientResponse::Error(ErrorResponse {
                            request_id,
                            error: ClientError::Internal {
                                reason: error.to_string(),
                            },
                            leader: LeaderHint::default(),
                        }));
                        return;
                    }
                    Err(_) => return,
                }
            }
        });
    }

    /// Streams committed messages as client responses into `sink`, in its
    /// own task (a slow reader slows only its stream).
    pub(super) fn serve_log_into(
        &self,
        request_id: u64,
        from_id: u64,
        follow: bool,
        sink: async_channel::Sender<ClientResponse>,
    ) {
        let source = self.log_source();
        let leader = self.leader_hint();
        crate::node::env::spawn(async move {
            let fail = |error: ClientError| {
                let sink = sink.clone();
                let leader = leader.clone();
                async move {
                    // The client may be gone already; nothing more to tell.
                    let _ = sink
                        .send(ClientResponse::Error(ErrorResponse {
                            request_id,
                            error,
                            leader,
                        }))
                        .await;
                }
            };
            let cursor = match source.locate(from_id).await {
                Ok(cursor) => cursor,
                Err(error) => return fail(feed::client_error(&error, from_id)).await,
            };
            let next_id = Rc::new(Cell::new(cursor.next_id));
            let result = source
                .follow(cursor, follow, |messages, done| {
                    let sink = sink.clone();
                    if let Some(last) = messages.last() {
                        next_id.set(last.id + 1);
                    }
                    async move {
                        let response = ClientResponse::Log(LogResponse {
                            request_id,
                            messages,
                            done,
                        });
                        sink.send(response).await.is_ok()
                    }
                })
                .await;
            if let Err(error) = result {
                tracing::warn!(%error, from_id, at = next_id.get(), "log stream failed");
                fail(feed::client_error(&error, next_id.get())).await;
            }
        });
    }

    /// Streams committed messages from `from_id` on, then every new one,
    /// to a subscriber of the embedding API, in its own task; the
    /// subscription ends when `sink`'s receiver is dropped, or after an
    /// error.
    pub(super) fn subscribe(
        &self,
        from_id: MessageId,
        sink: async_channel::Sender<Result<CommittedMessage, FeedError>>,
    ) {
        let source = self.log_source();
        crate::node::env::spawn(async move {
            let cursor = match source.locate(from_id).await {
                Ok(cursor) => cursor,
                Err(error) => {
                    tracing::warn!(%error, from_id, "subscription cannot start");
                    // The subscriber may be gone; nothing more to tell.
                    let _ = sink.send(Err(error)).await;
                    return;
                }
            };
            let result = source
                .follow(cursor, true, |messages, _| {
                    let sink = sink.clone();
                    async move {
                        for message in messages {
                            if sink.send(Ok(message)).await.is_err() {
                                return false;
                            }
                        }
                        true
                    }
                })
                .await;
            if let Err(error) = result {
                tracing::warn!(%error, from_id, "subscription failed");
                // The subscriber may be gone; nothing more to tell.
                let _ = sink.send(Err(error)).await;
            }
        });
    }
}
