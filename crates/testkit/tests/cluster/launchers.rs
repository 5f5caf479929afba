//! A Redis Cluster serves every slot and fails over; a RabbitMQ cluster replicates a quorum queue on three
//! nodes, keeps serving with one down, and takes it back.

use flashsale_testkit::clusters::Role;
use flashsale_testkit::{RabbitCluster, RedisCluster};
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use std::collections::BTreeSet;
use std::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_serves_every_slot_and_fails_over() {
    let t0 = Instant::now();
    let cluster = RedisCluster::start().await;
    eprintln!(
        "redis cluster up in {:?}: {}",
        t0.elapsed(),
        cluster.seeds()
    );
    assert_eq!(cluster.seeds().split(',').count(), 6);
    let nodes = cluster.nodes().await;
    assert_eq!(
        nodes.iter().filter(|n| n.role == Role::Primary).count(),
        3,
        "{nodes:?}"
    );
    assert_eq!(
        nodes.iter().filter(|n| n.role == Role::Replica).count(),
        3,
        "{nodes:?}"
    );

    // Hash tags a, b and c land in the three default slot ranges: every primary takes a write.
    let keys = ["{a}:stock", "{b}:stock", "{c}:stock", "{sale-42}:stock"];
    let mut owners = BTreeSet::new();
    for key in keys {
        let port = cluster.primary_of_key(key).await;
        owners.insert(port);
        let mut conn = cluster.connect(port).await;
        let () = redis::cmd("SET")
            .arg(key)
            .arg(format!("v-{key}"))
            .query_async(&mut conn)
            .await
            .expect("SET");
        // On the replica before the primary dies: a failover keeps what was acknowledged by it.
        let acked: i64 = redis::cmd("WAIT")
            .arg(1)
            .arg(1000)
            .query_async(&mut conn)
            .await
            .expect("WAIT");
        assert_eq!(acked, 1, "{key}: replicated to its replica");
        let got: String = redis::cmd("GET")
            .arg(key)
            .query_async(&mut conn)
            .await
            .expect("GET");
        assert_eq!(got, format!("v-{key}"));
    }
    assert_eq!(
        owners.len(),
        3,
        "the keys span all three primaries: {owners:?}"
    );

    let key = keys[0];
    let old = cluster.primary_of_key(key).await;
    let t1 = Instant::now();
    let replica = cluster.kill_primary(old).await;
    let new = cluster.wait_failover(old).await;
    eprintln!("failover {old} -> {new} in {:?}", t1.elapsed());
    assert_eq!(new, replica, "the killed primary's own replica took over");
    assert_eq!(cluster.primary_of_key(key).await, new);
    let mut conn = cluster.connect(new).await;
    let got: String = redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn)
        .await
        .expect("GET after failover");
    assert_eq!(got, format!("v-{key}"));
    let () = redis::cmd("SET")
        .arg(key)
        .arg("after")
        .query_async(&mut conn)
        .await
        .expect("the new primary takes writes");
    let promoted = cluster
        .nodes()
        .await
        .into_iter()
        .find(|n| n.port == new)
        .expect("new primary listed");
    assert_eq!(promoted.role, Role::Primary);
    eprintln!("redis test body took {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rabbitmq_cluster_of_three_runs_quorum_queues_and_a_node_rejoins() {
    let t0 = Instant::now();
    let cluster = RabbitCluster::start().await;
    eprintln!(
        "rabbitmq cluster up in {:?}: {}",
        t0.elapsed(),
        cluster.amqp_urls()
    );
    let mut names = cluster.node_names();
    names.sort();
    assert_eq!(cluster.running_nodes().await, names);
    assert!(
        !names.iter().any(|n| n == "rabbit@localhost"),
        "never the shared node: {names:?}"
    );

    let conn = Connection::connect(&cluster.amqp_url(0), ConnectionProperties::default())
        .await
        .expect("guest logs in to node a from 127.0.0.1");
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    let queue = "cluster-smoke";
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(queue.into(), durable, args)
        .await
        .expect("declare a quorum queue");
    publish(&ch, queue, b"one").await;
    assert_eq!(
        cluster.quorum_members(queue).await,
        names,
        "a replica on every node"
    );

    let t1 = Instant::now();
    cluster.stop_node(1).await;
    eprintln!("node b stopped in {:?}", t1.elapsed());
    assert_eq!(cluster.running_nodes().await.len(), 2);
    // Two of three replicas: still a majority, so publishes are confirmed and both messages come out.
    publish(&ch, queue, b"two").await;
    for want in [&b"one"[..], b"two"] {
        let got = ch
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .expect("basic.get")
            .expect("a message");
        assert_eq!(got.delivery.data, want);
    }

    let t2 = Instant::now();
    cluster.start_node(1).await;
    eprintln!("node b back in {:?}", t2.elapsed());
    assert_eq!(cluster.running_nodes().await, names);
    let b = Connection::connect(&cluster.amqp_url(1), ConnectionProperties::default())
        .await
        .expect("node b takes connections again");
    drop(b);
    eprintln!("rabbitmq test body took {:?}", t0.elapsed());
}

/// Publishes `body` to `queue` through the default exchange and waits for the broker's ack.
async fn publish(ch: &Channel, queue: &str, body: &[u8]) {
    let options = BasicPublishOptions {
        mandatory: true,
        ..Default::default()
    };
    let confirm = ch
        .basic_publish(
            "".into(),
            queue.into(),
            options,
            body,
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .expect("basic.publish");
    let confirmation = tokio::time::timeout(std::time::Duration::from_secs(10), confirm)
        .await
        .expect("a confirm within 10 s")
        .expect("confirm");
    assert!(
        matches!(confirmation, Confirmation::Ack(None)),
        "{confirmation:?}"
    );
}
