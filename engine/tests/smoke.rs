//! First end-to-end checks of the core on the in-memory cluster.

use ordo_engine::core::{CoreConfig, Role};
use ordo_engine::testkit::Cluster;

#[test]
fn three_nodes_elect_replicate_and_answer_a_forwarded_proposal() {
    let mut cluster = Cluster::new(3, CoreConfig::default(), 1);
    cluster.elect(1);
    let request = cluster.propose(2, b"hello");
    cluster.advance(1);
    let committed = cluster
        .response(2, request)
        .expect("answered")
        .expect("committed");
    assert_eq!(committed.id, 1);
    assert_eq!(committed.index, 2, "index 1 is the leader's no-op");
    cluster.advance(60);
    for id in 1..=3 {
        let host = cluster.host(id);
        let users: Vec<_> = host.state_machine().iter().filter(|e| e.id > 0).collect();
        assert_eq!(users.len(), 1, "node {id}");
        assert_eq!(&users[0].payload[..], b"hello");
    }
    assert_eq!(cluster.host(2).role(), Role::Follower);
}
