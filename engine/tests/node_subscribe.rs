//! `NodeHandle::subscribe` end to end on in-process nodes: every message
//! in id order, each with a token that verifies; with tokens off, without
//! waiting for any.

use std::time::Duration;

use ordo_engine::node::{Node, NodeConfig, NullStateMachine};
use ordo_engine::token::{Token, Verifier};

/// Proposes `payload` through `handle`, retrying while the cluster has no
/// leader yet (its first election; `NotLeader` means nothing was
/// appended, so a retry cannot duplicate), for at most 20 s.
fn propose(handle: &ordo_engine::node::NodeHandle, payload: String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match handle.propose_blocking(payload.clone()) {
            Ok(_) => return,
            Err(error @ ordo_net::ProposeError::NotLeader { .. })
                if std::time::Instant::now() < deadline =>
            {
                eprintln!("retrying {payload}: {error}");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(error) => panic!("{payload} not committed within 20 s: {error}"),
        }
    }
}

fn start_all(configs: Vec<NodeConfig>) -> Vec<Node> {
    configs
        .into_iter()
        .map(|config| Node::start(config, || Box::new(NullStateMachine)).unwrap())
        .collect()
}

/// Reads `count` items from a subscription, failing on an error item or
/// after 20 s.
fn take(
    stream: &async_channel::Receiver<
        Result<ordo_net::CommittedMessage, ordo_engine::node::FeedError>,
    >,
    count: usize,
) -> Vec<ordo_net::CommittedMessage> {
    let mut out = Vec::new();
    while out.len() < count {
        let item = futures_lite::future::block_on(futures_lite::future::or(
            async { stream.recv().await.ok() },
            async {
                async_io_sleep(Duration::from_secs(20)).await;
                None
            },
        ))
        .expect("the subscription delivered within 20 s");
        out.push(item.expect("a message, not an error"));
    }
    out
}

async fn async_io_sleep(duration: Duration) {
    let (tx, rx) = async_channel::bounded::<()>(1);
    std::thread::spawn(move || {
        std::thread::sleep(duration);
        let _ = tx.send_blocking(());
    });
    let _ = rx.recv().await;
}

#[test]
fn a_subscription_delivers_every_message_with_a_token_that_verifies() {
    let dir = tempfile::tempdir().unwrap();
    ordo_engine::cli::init(3, dir.path(), 18_700).unwrap();
    let configs: Vec<NodeConfig> = (1..=3)
        .map(|id| NodeConfig::load(&dir.path().join(format!("node{id}/ordo.toml"))).unwrap())
        .collect();
    let nodes = start_all(configs);
    let handle = nodes[1].handle();
    for i in 0..50 {
        propose(&handle, format!("m{i}"));
    }
    let mut verifier = Verifier::load(&dir.path().join("cluster.keys")).unwrap();
    for node in &nodes {
        let stream = node.handle().subscribe(1, 16);
        let messages = take(&stream, 50);
        for (i, message) in messages.iter().enumerate() {
            assert_eq!(message.id, i as u64 + 1);
            assert_eq!(&message.payload[..], format!("m{i}").as_bytes());
            let token = Token::from_bytes(&message.token).expect("a token");
            verifier
                .verify(
                    &token,
                    &message.payload,
                    message.id,
                    message.index,
                    message.term,
                    message.ts,
                )
                .expect("the token verifies");
        }
    }
    for node in nodes {
        node.shutdown().unwrap();
    }
}

#[test]
fn without_tokens_a_subscription_does_not_wait_for_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let configs: Vec<NodeConfig> = NodeConfig::cluster(3, 18_800, 11)
        .unwrap()
        .into_iter()
        .map(|mut config| {
            config.data_dir = dir.path().join(format!("node{}", config.id));
            config.keys_file = None;
            config.gossip_addr = None;
            config.auth = ordo_engine::auth::AuthConfig::off();
            config
        })
        .collect();
    let nodes = start_all(configs);
    let handle = nodes[0].handle();
    for i in 0..10 {
        propose(&handle, format!("t{i}"));
    }
    for node in &nodes {
        let messages = take(&node.handle().subscribe(1, 4), 10);
        assert!(messages.iter().all(|m| m.token.is_empty()));
        assert_eq!(messages.last().unwrap().id, 10);
    }
    for node in nodes {
        node.shutdown().unwrap();
    }
}
