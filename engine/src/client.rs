//! The Rust client: connects to any node, caches the leader and follows
//! hints, keeps many proposals in flight on one connection, and retries
//! with its session `(client_id, seq)` so a retry never commits twice.
//!
//! It runs on a glommio executor (the connection is glommio's); the `ordo`
//! commands start one.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::future;
use ordo_net::transport::{ClientConfig, ClientConnection, ConnectionError};
pub use ordo_net::{AdminAnswer, AdminCommand};
use ordo_net::{
    AdminRequest, ClientRequest, ClientResponse, CommittedMessage, LeaderHint, LogRequest,
    NodeStatus, ProposeError, ProposeRequest, ReadRequest, StatusRequest,
};
use ordo_storage::{ClientId, Index, MessageId, NodeId, Seq, Term, TimestampUs};

/// How the client behaves.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// The cluster to expect; `0` accepts whichever the node is in.
    pub cluster_id: u64,
    /// How long one operation may take, retries included.
    pub timeout: Duration,
    /// Most proposals in flight on the connection. Keep it at or below the
    /// cluster's `session_results_max` so that every retry finds its answer.
    pub window: usize,
    /// Ask followers to redirect rather than forward.
    pub redirect: bool,
    /// Proves this client holds the cluster's client secret
    /// ([`crate::auth::client_credential`]); none by default, which nodes
    /// that require the secret refuse.
    pub credential: ordo_net::auth::Credential,
    /// Speaks TLS to nodes that require it, trusting the cluster's CA
    /// ([`crate::auth::client_tls`]); none (plain TCP) by default.
    pub tls: Option<ordo_net::tls::TlsClientConfig>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            cluster_id: 0,
            timeout: Duration::from_secs(10),
            window: 64,
            redirect: false,
            credential: ordo_net::auth::Credential::none(),
            tls: None,
        }
    }
}

/// What the client could not do.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No node answered, or none led, within the timeout.
    #[error("no leader reachable within {timeout:?} (tried {tried}): {last}")]
    Unavailable {
        /// The operation's timeout.
        timeout: Duration,
        /// The addresses tried.
        tried: String,
        /// The last failure seen.
        last: String,
    },
    /// The cluster refused the proposal for good (too large, or its answer
    /// expired from the session).
    #[error("proposal refused: {0}")]
    Refused(ProposeError),
    /// The node answered with an error.
    #[error("node error: {0}")]
    Node(String),
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
    /// A node refused this client's credential (or its lack of one).
    #[error(
        "not authenticated: {0} (the node requires the client secret: pass --client-secret FILE or set {env}; `ordo init` writes DIR/client.secret)",
        env = crate::auth::CLIENT_SECRET_ENV
    )]
    Unauthenticated(String),
    /// TLS failed: the node's certificate is not signed by the CA the
    /// client trusts, or the node does not speak TLS.
    #[error(
        "TLS: {0} (clients trust the cluster CA `ordo init` writes as DIR/cluster-ca.crt: pass --tls-ca FILE or set {env}; --no-tls for nodes with [tls] clients = false)",
        env = crate::auth::TLS_CA_ENV
    )]
    Tls(String),
}

/// A node this client could not connect to, and why.
#[derive(Debug, thiserror::Error)]
#[error("{addr}: {source}")]
pub struct ConnectError {
    /// The node's address.
    pub addr: SocketAddr,
    /// Why.
    pub source: ConnectionError,
}

impl ClientError {
    /// A copy of this error (`ProposeError` is the only field that is not
    /// a string), for each payload a timeout fails.
    fn same(&self) -> Self {
        match self {
            Self::Unavailable {
                timeout,
                tried,
                last,
            } => Self::Unavailable {
                timeout: *timeout,
                tried: tried.clone(),
                last: last.clone(),
            },
            Self::Refused(error) => Self::Refused(*error),
            Self::Node(text) => Self::Node(text.clone()),
            Self::Usage(text) => Self::Usage(text.clone()),
            Self::Unauthenticated(text) => Self::Unauthenticated(text.clone()),
            Self::Tls(text) => Self::Tls(text.clone()),
        }
    }
}

/// A committed proposal as the client sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientReceipt {
    /// The dense message id.
    pub id: MessageId,
    /// The log index.
    pub index: Index,
    /// The term.
    pub term: Term,
    /// The timestamp.
    pub ts: TimestampUs,
    /// The encoded token.
    pub token: Vec<u8>,
    /// The node that answered.
    pub node: NodeId,
    /// The leader as that node knew it.
    pub leader: NodeId,
}

struct Connection {
    /// Shared with a receive in progress (`propose_stream`).
    conn: std::rc::Rc<ClientConnection>,
    addr: SocketAddr,
}

/// A client session against one cluster.
pub struct Client {
    nodes: Vec<SocketAddr>,
    options: ClientOptions,
    connection: Option<Connection>,
    /// Where the leader was last said to be.
    leader_addr: Option<SocketAddr>,
    next_node: usize,
    client_id: ClientId,
    next_seq: Seq,
    next_request_id: u64,
    /// A node refused this client's credential, or TLS failed: operations
    /// fail at once with this ([`ClientError::Unauthenticated`] or
    /// [`ClientError::Tls`]).
    refused: Option<ClientError>,
}

struct Item {
    seq: Seq,
    payload: Bytes,
}

fn random_client_id() -> ClientId {
    crate::node::env::random_u64() | 1
}

impl Client {
    /// A client of the cluster reachable at `nodes` (any of them will do).
    pub fn new(nodes: Vec<SocketAddr>, options: ClientOptions) -> Result<Self, ClientError> {
        if nodes.is_empty() {
            return Err(ClientError::Usage(
                "at least one node address is needed".into(),
            ));
        }
        if options.window == 0 {
            return Err(ClientError::Usage("the window must be at least 1".into()));
        }
        Ok(Self {
            nodes,
            options,
            connection: None,
            refused: None,
            leader_addr: None,
            next_node: 0,
            client_id: random_client_id(),
            next_seq: 1,
            next_request_id: 1,
        })
    }

    /// This client's session id.
    pub fn client_id(&self) -> ClientId {
        self.client_id
    }

    fn request_id(&mut self) -> u64 {
        self.next_request_id += 1;
        self.next_request_id
    }

    fn unavailable(&self, last: impl Into<String>) -> ClientError {
        if let Some(refusal) = &self.refused {
            return refusal.same();
        }
        ClientError::Unavailable {
            timeout: self.options.timeout,
            tried: self
                .nodes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            last: last.into(),
        }
    }

    /// Connects to the leader if one is known, otherwise to the next node.
    async fn connect(&mut self, deadline: Instant) -> Result<(), ConnectError> {
        if self.connection.is_some() {
            return Ok(());
        }
        let addr = match self.leader_addr.take() {
            Some(addr) => addr,
            None => {
                let addr = self.nodes[self.next_node % self.nodes.len()];
                self.next_node += 1;
                addr
            }
        };
        let mut config = ClientConfig::new(self.options.cluster_id);
        config.auth = self.options.credential.clone();
        config.tls = self.options.tls.clone();
        let remaining = deadline.saturating_duration_since(Instant::now());
        config.connect_timeout = config
            .connect_timeout
            .min(remaining.max(Duration::from_millis(10)));
        match ClientConnection::connect(addr, &config).await {
            Ok(conn) => {
                self.connection = Some(Connection {
                    conn: std::rc::Rc::new(conn),
                    addr,
                });
                Ok(())
            }
            Err(source) => {
                match &source {
                    // Every node of a cluster requires the same secret: no
                    // point trying the others until the timeout.
                    ConnectionError::Unauthenticated(reason) => {
                        self.refused =
                            Some(ClientError::Unauthenticated(format!("{addr}: {reason}")));
                    }
                    // Every node of a cluster has a certificate from the
                    // same CA, and TLS on or off alike.
                    ConnectionError::Tls(reason) => {
                        self.refused = Some(ClientError::Tls(format!("{addr}: {reason}")));
                    }
                    _ => {}
                }
                Err(ConnectError { addr, source })
            }
        }
    }

    fn follow_hint(&mut self, hint: &LeaderHint) -> bool {
        let Ok(addr) = hint.client_addr.parse::<SocketAddr>() else {
            return false;
        };
        let current = self.connection.as_ref().map(|c| c.addr);
        if hint.id != 0 && current != Some(addr) {
            self.leader_addr = Some(addr);
            self.connection = None;
            return true;
        }
        false
    }

    /// Proposes one message.
    pub async fn propose(&mut self, payload: Bytes) -> Result<ClientReceipt, ClientError> {
        let mut results = self.propose_all(vec![payload], |_, _| {}).await?;
        results.pop().expect("one result per payload")
    }

    /// Proposes every payload, keeping up to `window` in flight; calls
    /// `on_result(i, result)` as each completes and returns all results in
    /// input order. A payload whose answer was lost is retried with the same
    /// sequence number, so it commits once.
    pub async fn propose_all(
        &mut self,
        payloads: Vec<Bytes>,
        mut on_result: impl FnMut(usize, &Result<ClientReceipt, ClientError>),
    ) -> Result<Vec<Result<ClientReceipt, ClientError>>, ClientError> {
        let count = payloads.len();
        let mut results: Vec<Option<Result<ClientReceipt, ClientError>>> =
            (0..count).map(|_| None).collect();
        // Results other than the timeout's: none means nothing was done.
        let mut answered = 0usize;
        let outcome = self
            .propose_stream(futures_lite::stream::iter(payloads), |i, _, result| {
                if !matches!(result, Err(ClientError::Unavailable { .. })) {
                    answered += 1;
                }
                on_result(i, &result);
                results[i] = Some(result);
            })
            .await;
        match outcome {
            Ok(()) => {}
            Err(error @ ClientError::Unavailable { .. }) => {
                // Payloads never read from the input fail like the ones in
                // flight, so that every payload has a result.
                for (i, slot) in results.iter_mut().enumerate() {
                    if slot.is_none() {
                        let failed = Err(error.same());
                        on_result(i, &failed);
                        *slot = Some(failed);
                    }
                }
                if answered == 0 {
                    return Err(error);
                }
            }
            Err(error) => return Err(error),
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(ClientError::Node("no result".into()))))
            .collect())
    }

    /// Proposes each payload as `payloads` yields it (numbered from 0 in
    /// the order it yields them), keeping up to `window` in flight: no
    /// payload is read while `window` are unanswered, so memory stays
    /// bounded for an endless input (`ordo send --stdin` behind `tail -f`).
    /// Calls `on_result(i, payload, result)` as each completes, out of
    /// order. A payload whose answer was lost is retried with the same
    /// sequence number, so it commits once.
    ///
    /// Returns when the input ends and every payload read has its result.
    /// The timeout runs while payloads are outstanding and restarts with
    /// each commit (an idle input waits without limit); when it expires,
    /// every outstanding payload gets [`ClientError::Unavailable`] and so
    /// does the call, and the rest of the input is left unread.
    pub async fn propose_stream(
        &mut self,
        payloads: impl futures_lite::Stream<Item = Bytes>,
        mut on_result: impl FnMut(usize, &Bytes, Result<ClientReceipt, ClientError>),
    ) -> Result<(), ClientError> {
        use futures_lite::StreamExt;
        use std::collections::VecDeque;
        use std::rc::Rc;

        type Receiving = std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<ClientResponse, ConnectionError>>>,
        >;
        enum Event {
            Answer(Result<ClientResponse, ConnectionError>),
            Input(Option<Bytes>),
            Timeout,
        }
        struct Pending {
            item: Item,
            answered: bool,
        }

        let mut payloads = std::pin::pin!(payloads);
        let window = self.options.window;
        // Payloads read and not yet released: `pending[k]` is payload
        // `first + k`. Invariant: `pending.len() <= window`, and the front
        // is unanswered (answered ones are released from the front), so
        // nothing more than `window` payloads past the oldest unanswered
        // one is sent, and a retry of it always finds its answer in the
        // session window (`session_results_max >= window`).
        let mut pending: VecDeque<Pending> = VecDeque::with_capacity(window);
        let mut first = 0usize;
        let mut input_ended = false;
        // Waiting to be (re)sent, in input order: a retry keeps its place.
        let mut queue: BTreeSet<usize> = BTreeSet::new();
        let mut in_flight: HashMap<u64, usize> = HashMap::new();
        // The receive of the current connection's next response. A receive
        // dropped mid-frame would leave the connection unusable, so it is
        // kept across turns while the loop also waits for input.
        let mut receiving: Option<(Rc<ClientConnection>, Receiving)> = None;
        let mut deadline = Instant::now() + self.options.timeout;
        let mut last_error = String::from("no attempt yet");
        loop {
            while pending.front().is_some_and(|p| p.answered) {
                pending.pop_front();
                first += 1;
            }
            if input_ended && pending.is_empty() {
                return Ok(());
            }
            if !pending.is_empty() && Instant::now() >= deadline {
                for (k, p) in pending.iter().enumerate() {
                    if !p.answered {
                        let failed = Err(self.unavailable(last_error.clone()));
                        on_result(first + k, &p.item.payload, failed);
                    }
                }
                return Err(self.unavailable(last_error));
            }
            // An idle input needs no connection (nor a node that answers).
            if !pending.is_empty()
                && let Err(error) = self.connect(deadline).await
            {
                last_error = error.to_string();
                if self.refused.is_some() {
                    // Refused credentials fail at once, not at the timeout.
                    deadline = Instant::now();
                    continue;
                }
                glommio::timer::sleep(Duration::from_millis(50)).await;
                continue;
            }
            let current = self.connection.as_ref().map(|c| Rc::clone(&c.conn));
            match &current {
                Some(conn) if receiving.as_ref().is_some_and(|(r, _)| Rc::ptr_eq(r, conn)) => {}
                Some(conn) => {
                    let conn = Rc::clone(conn);
                    let receive = Rc::clone(&conn);
                    receiving = Some((conn, Box::pin(async move { receive.recv().await })));
                }
                None => receiving = None,
            }
            // Send what waits (all of it is within the window).
            let mut broken = None;
            if let Some(connection) = self.connection.as_ref() {
                while let Some(i) = queue.pop_first() {
                    self.next_request_id += 1;
                    let request_id = self.next_request_id;
                    let item = &pending[i - first].item;
                    let request = ClientRequest::Propose(ProposeRequest {
                        request_id,
                        client_id: self.client_id,
                        seq: item.seq,
                        payload: item.payload.clone(),
                        redirect: self.options.redirect,
                    });
                    if let Err(error) = connection.conn.send(&request).await {
                        queue.insert(i);
                        broken = Some(format!("{}: {error}", connection.addr));
                        break;
                    }
                    in_flight.insert(request_id, i);
                }
            }
            if broken.is_none() {
                let read_more = !input_ended && pending.len() < window;
                let outstanding = !pending.is_empty();
                let remaining = deadline.saturating_duration_since(Instant::now());
                let answer = async {
                    match receiving.as_mut() {
                        Some((_, receive)) => Event::Answer(receive.await),
                        None => future::pending().await,
                    }
                };
                let input = async {
                    if read_more {
                        Event::Input(payloads.next().await)
                    } else {
                        future::pending().await
                    }
                };
                let timer = async {
                    if outstanding {
                        glommio::timer::sleep(remaining).await;
                        Event::Timeout
                    } else {
                        future::pending().await
                    }
                };
                let event = future::or(answer, future::or(input, timer)).await;
                let addr = self.connection.as_ref().map(|c| c.addr);
                let addr = addr.map_or_else(|| "the connection".to_string(), |a| a.to_string());
                match event {
                    Event::Input(Some(payload)) => {
                        if pending.is_empty() {
                            // The timeout counts from the first payload
                            // outstanding, not from an idle input's last.
                            deadline = Instant::now() + self.options.timeout;
                        }
                        let seq = self.next_seq;
                        self.next_seq += 1;
                        queue.insert(first + pending.len());
                        pending.push_back(Pending {
                            item: Item { seq, payload },
                            answered: false,
                        });
                    }
                    Event::Input(None) => input_ended = true,
                    Event::Timeout => broken = Some(format!("{addr}: no answer")),
                    Event::Answer(answer) => {
                        // The receive finished: the next turn starts another.
                        receiving = None;
                        match answer {
                            Err(error) => broken = Some(format!("{addr}: {error}")),
                            Ok(ClientResponse::Propose(response)) => {
                                let node = current.as_ref().map_or(0, |c| c.node_id());
                                let Some(i) = in_flight.remove(&response.request_id) else {
                                    continue;
                                };
                                let result = match response.result {
                                    Ok(committed) => {
                                        // Progress: a later slow stretch gets a full timeout again.
                                        deadline = Instant::now() + self.options.timeout;
                                        Some(Ok(ClientReceipt {
                                            id: committed.id,
                                            index: committed.index,
                                            term: committed.term,
                                            ts: committed.ts,
                                            token: response.token,
                                            node,
                                            leader: response.leader.id,
                                        }))
                                    }
                                    Err(
                                        error @ (ProposeError::TooLarge { .. }
                                        | ProposeError::SessionExpired { .. }),
                                    ) => Some(Err(ClientError::Refused(error))),
                                    Err(error) => {
                                        last_error = format!("node {node}: {error}");
                                        queue.insert(i);
                                        if self.follow_hint(&response.leader) {
                                            queue.extend(in_flight.drain().map(|(_, i)| i));
                                        } else if matches!(
                                            error,
                                            ProposeError::Busy { .. }
                                                | ProposeError::NotLeader { leader: 0 }
                                                | ProposeError::Unknown { leader: 0 }
                                        ) {
                                            glommio::timer::sleep(Duration::from_millis(20)).await;
                                        }
                                        if matches!(error, ProposeError::Stopped) {
                                            broken = Some(format!("node {node} is stopping"));
                                        }
                                        None
                                    }
                                };
                                if let Some(result) = result {
                                    let p = &mut pending[i - first];
                                    p.answered = true;
                                    on_result(i, &p.item.payload, result);
                                }
                            }
                            Ok(ClientResponse::Error(error)) => {
                                return Err(ClientError::Node(error.error.to_string()));
                            }
                            Ok(_) => {}
                        }
                    }
                }
            }
            if let Some(error) = broken {
                last_error = error;
                self.connection = None;
                receiving = None;
                queue.extend(in_flight.drain().map(|(_, i)| i));
            }
        }
    }

    /// One request/answer exchange with retries across nodes.
    async fn call(
        &mut self,
        make: impl Fn(u64) -> ClientRequest,
    ) -> Result<(ClientResponse, NodeId), ClientError> {
        let deadline = Instant::now() + self.options.timeout;
        let mut last_error = String::from("no attempt yet");
        while Instant::now() < deadline {
            if let Err(error) = self.connect(deadline).await {
                last_error = error.to_string();
                if self.refused.is_some() {
                    break;
                }
                glommio::timer::sleep(Duration::from_millis(50)).await;
                continue;
            }
            let request = make(self.request_id());
            let connection = self.connection.as_ref().expect("connected");
            let remaining = deadline.saturating_duration_since(Instant::now());
            let answer = future::or(
                async { Some(connection.conn.call(&request).await) },
                async {
                    glommio::timer::sleep(remaining).await;
                    None
                },
            )
            .await;
            match answer {
                Some(Ok(response)) => return Ok((response, connection.conn.node_id())),
                Some(Err(error)) => last_error = format!("{}: {error}", connection.addr),
                None => last_error = format!("{}: no answer", connection.addr),
            }
            self.connection = None;
        }
        Err(self.unavailable(last_error))
    }

    /// The status of the node the client is connected to (the first it
    /// reaches), with its leader hint.
    pub async fn status(&mut self) -> Result<(NodeStatus, LeaderHint), ClientError> {
        match self
            .call(|request_id| ClientRequest::Status(StatusRequest { request_id }))
            .await?
        {
            (ClientResponse::Status(status), _) => Ok((status.status, status.leader)),
            (ClientResponse::Error(error), _) => Err(ClientError::Node(error.error.to_string())),
            (other, _) => Err(ClientError::Node(format!("unexpected answer {other:?}"))),
        }
    }

    /// An administrative request (`ordo member`, `ordo transfer`). Changes
    /// and transfers follow the leader hint until the leader takes them
    /// (or retry while no leader is known or the new leader is not ready),
    /// within the timeout; a refusal comes back as [`ClientError::Node`].
    /// A listing is answered by the first node reached.
    pub async fn admin(&mut self, command: AdminCommand) -> Result<AdminAnswer, ClientError> {
        let deadline = Instant::now() + self.options.timeout;
        loop {
            let command = command.clone();
            let (response, _) = self
                .call(move |request_id| {
                    ClientRequest::Admin(AdminRequest {
                        request_id,
                        command: command.clone(),
                    })
                })
                .await?;
            let response = match response {
                ClientResponse::Admin(response) => response,
                ClientResponse::Error(error) => {
                    return Err(ClientError::Node(error.error.to_string()));
                }
                other => return Err(ClientError::Node(format!("unexpected answer {other:?}"))),
            };
            match response.result {
                Ok(answer) => return Ok(answer),
                Err(failure) if failure.not_leader && Instant::now() < deadline => {
                    if !self.follow_hint(&response.leader) {
                        glommio::timer::sleep(Duration::from_millis(50)).await;
                    }
                }
                Err(failure) if failure.not_leader => {
                    return Err(self.unavailable(failure.message));
                }
                Err(failure) => return Err(ClientError::Node(failure.message)),
            }
        }
    }

    /// The configuration links the connected node holds, from
    /// `cluster.keys` on (`token::ConfigLink`): what a verifier learns to
    /// check tokens signed after membership changes. Each link is checked
    /// by the verifier that learns it, not here.
    pub async fn chain(&mut self) -> Result<Vec<crate::token::ConfigLink>, ClientError> {
        let mut links = Vec::new();
        let mut after = 0;
        loop {
            let answer = self.admin(AdminCommand::Chain { after }).await?;
            let AdminAnswer::Chain { links: page, more } = answer else {
                return Err(ClientError::Node(format!(
                    "unexpected answer to a chain request: {answer:?}"
                )));
            };
            for bytes in page {
                let link = crate::token::ConfigLink::from_bytes(&bytes)
                    .map_err(|e| ClientError::Node(e.to_string()))?;
                if link.index <= after {
                    return Err(ClientError::Node(format!(
                        "chain answer out of order: link {} after {after}",
                        link.index
                    )));
                }
                after = link.index;
                links.push(link);
            }
            if !more {
                return Ok(links);
            }
        }
    }

    /// A linearizable read barrier at the connected node: its read index.
    pub async fn read(&mut self) -> Result<Index, ClientError> {
        let deadline = Instant::now() + self.options.timeout;
        loop {
            match self
                .call(|request_id| ClientRequest::Read(ReadRequest { request_id }))
                .await?
            {
                (ClientResponse::Read(read), _) => match read.result {
                    Ok(index) => return Ok(index),
                    Err(error) if Instant::now() < deadline => {
                        self.follow_hint(&read.leader);
                        tracing::debug!(%error, "read retried");
                        glommio::timer::sleep(Duration::from_millis(20)).await;
                    }
                    Err(error) => return Err(self.unavailable(error.to_string())),
                },
                (ClientResponse::Error(error), _) => {
                    return Err(ClientError::Node(error.error.to_string()));
                }
                (other, _) => {
                    return Err(ClientError::Node(format!("unexpected answer {other:?}")));
                }
            }
        }
    }

    /// Streams committed messages from `from_id` (in id order) to
    /// `on_message`; with `follow`, keeps streaming new ones until
    /// `on_message` returns false or the connection ends.
    pub async fn log(
        &mut self,
        from_id: MessageId,
        follow: bool,
        mut on_message: impl FnMut(&CommittedMessage) -> bool,
    ) -> Result<(), ClientError> {
        let deadline = Instant::now() + self.options.timeout;
        let mut next_id = from_id.max(1);
        loop {
            if let Err(error) = self.connect(deadline).await {
                if Instant::now() >= deadline || self.refused.is_some() {
                    return Err(self.unavailable(error.to_string()));
                }
                glommio::timer::sleep(Duration::from_millis(50)).await;
                continue;
            }
            let request_id = self.request_id();
            let request = ClientRequest::Log(LogRequest {
                request_id,
                from_id: next_id,
                follow,
            });
            let connection = self.connection.as_ref().expect("connected");
            if let Err(error) = connection.conn.send(&request).await {
                self.connection = None;
                if Instant::now() >= deadline {
                    return Err(self.unavailable(error.to_string()));
                }
                continue;
            }
            loop {
                // A stream that reads what is already committed hears from
                // the node within the timeout (the node reports a stall
                // itself after `node::TOKEN_WAIT_MAX`); one that follows
                // may wait for new commits without limit.
                let received = if follow {
                    connection.conn.recv().await
                } else {
                    let silence = self.options.timeout;
                    match futures_lite::future::or(
                        async { Some(connection.conn.recv().await) },
                        async {
                            glommio::timer::sleep(silence).await;
                            None
                        },
                    )
                    .await
                    {
                        Some(received) => received,
                        None => {
                            self.connection = None;
                            return Err(ClientError::Node(format!(
                                "the log stream sent nothing for {silence:?}; next id {next_id}"
                            )));
                        }
                    }
                };
                match received {
                    Ok(ClientResponse::Log(chunk)) if chunk.request_id == request_id => {
                        for message in &chunk.messages {
                            if message.id < next_id {
                                continue;
                            }
                            next_id = message.id + 1;
                            if !on_message(message) {
                                return Ok(());
                            }
                        }
                        if chunk.done {
                            return Ok(());
                        }
                    }
                    Ok(ClientResponse::Error(error)) => {
                        return Err(ClientError::Node(error.error.to_string()));
                    }
                    Ok(_) => {}
                    Err(error) => {
                        if !follow {
                            return Err(ClientError::Node(format!("stream ended: {error}")));
                        }
                        // Resume elsewhere from the next id.
                        self.connection = None;
                        break;
                    }
                }
            }
        }
    }
}
