//! Poison and outages at order-writer: only a message that cannot be written reaches the dead-letter queue,
//! never a valid reservation that met a broker blip or a database outage; and the operator gets it back.

mod admin;
mod held;

use chrono::{Duration as ChronoDuration, Utc};
use diesel_async::RunQueryDsl;
use flashsale_broker::{Names, Publisher};
use flashsale_domain::{Money, OrderId, ReservationCreated, SaleId, UserId};
use flashsale_testkit::env::DRAIN;
use flashsale_testkit::{SaleSpec, TcpProxy, TestEnv, eventually};
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicGetOptions, BasicQosOptions};
use lapin::types::FieldTable;
use prometheus::Registry;
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;

/// A valid `reservation.created` of one unit for `user`, due in 60 s (also used by `group_commit.rs`).
pub(crate) fn message(sale: SaleId, user: &str) -> ReservationCreated {
    let now = Utc::now();
    ReservationCreated::new(
        OrderId::new_v7(),
        sale,
        UserId::parse(user).expect("valid user id"),
        1,
        Money::from_minor(299_000),
        now,
        now + ChronoDuration::seconds(60),
    )
}

/// A confirmed publisher on the test's own topology (payment window 60 s).
pub(crate) async fn publisher(env: &TestEnv) -> Publisher {
    Publisher::start(
        &env.settings.amqp,
        Names::new(&env.settings.amqp.prefix),
        "test",
        [60],
        &Registry::new(),
    )
    .await
    .expect("publisher")
}

async fn publish(p: &Publisher, m: &ReservationCreated) {
    let body = serde_json::to_vec(m).expect("json");
    p.publish(&m.routing_key(), &m.order_id.to_string(), &body)
        .await
        .expect("published");
}

/// A sale created through the gateway, which is stopped again (these tests feed order-writer directly).
async fn sale(env: &TestEnv, stock: i64) -> SaleId {
    let gw = env.spawn_gateway().await;
    let sale = gw.create_sale(env, &SaleSpec::stock(stock)).await;
    gw.stop().await;
    sale
}

async fn sql(env: &TestEnv, statement: &str) {
    diesel::sql_query(statement)
        .execute(&mut env.pg().await)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

/// The `message_id`s in the dead-letter queue, read without acknowledging (closing the channel puts them back).
async fn dead_letter_ids(env: &TestEnv) -> Vec<String> {
    let conn = flashsale_broker::connect(&env.settings.amqp, "test-dead-letters")
        .await
        .expect("amqp");
    let ch = conn.create_channel().await.expect("channel");
    let queue = Names::new(&env.settings.amqp.prefix).dead_queue();
    let mut ids = Vec::new();
    while let Some(m) = ch
        .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false })
        .await
        .expect("basic.get")
    {
        ids.push(
            m.delivery
                .properties
                .message_id()
                .as_ref()
                .map(|id| id.to_string())
                .unwrap_or_default(),
        );
    }
    let _ = ch.close(200, "put them back".into()).await;
    let _ = conn.close(200, "done".into()).await;
    ids.sort();
    ids
}

/// The sum of one metric's samples (over all label sets containing `labels`) on a service's `/metrics`.
pub async fn metric(base: &str, name: &str, labels: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter(|l| l[name.len()..].starts_with([' ', '{']) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
#[tokio::test(flavor = "multi_thread")]
async fn channel_closures_beyond_the_old_delivery_limit_never_dead_letter_a_reservation() {
    let env = TestEnv::new().await;
    let sale = sale(&env, 5).await;
    let publisher = publisher(&env).await;
    let m = message(sale, "closer");
    publish(&publisher, &m).await;

    // A consumer that takes the message and loses its channel before acknowledging, again and again (broker
    // blips, reconnects): RabbitMQ 3.10-3.13 counts each as a delivery of the quorum queue.
    const CLOSURES: u32 = 30;
    let conn = flashsale_broker::connect(&env.settings.amqp, "test-closer")
        .await
        .expect("amqp");
    let queue = Names::new(&env.settings.amqp.prefix).order_writer_queue();
    let mut delivered = 0;
    for _ in 0..CLOSURES {
        let ch = conn.create_channel().await.expect("channel");
        ch.basic_qos(1, BasicQosOptions::default())
            .await
            .expect("qos");
        let mut consumer = ch
            .basic_consume(
                queue.as_str().into(),
                "closer".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consume");
        let got = tokio::time::timeout(Duration::from_secs(5), consumer.next()).await;
        let _ = ch.close(200, "blip".into()).await;
        match got {
            Ok(Some(Ok(_))) => delivered += 1,
            _ => break,
        }
    }
    let _ = conn.close(200, "done".into()).await;
    assert_eq!(
        (delivered, env.dead_letters().await),
        (CLOSURES, 0),
        "the reservation must survive {CLOSURES} channel closures (deliveries seen, dead letters)"
    );

    let _writer = env.spawn_order_writer().await;
    eventually(DRAIN, || env.order_count(sale), 1).await;
    assert_eq!(env.dead_letters().await, 0);
    publisher.close().await;
    env.cleanup().await;
}
#[tokio::test(flavor = "multi_thread")]
async fn one_database_poison_is_isolated_and_its_neighbours_written() {
    let env = TestEnv::new().await;
    let sale = sale(&env, 100).await;
    // A deterministic database error for one buyer only, in this test's schema.
    sql(
        &env,
        "CREATE FUNCTION refuse_mallory() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF NEW.user_id = 'mallory' THEN RAISE EXCEPTION 'mallory is refused'; END IF; RETURN NEW; END $$",
    )
    .await;
    sql(
        &env,
        "CREATE TRIGGER refuse_mallory BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION refuse_mallory()",
    )
    .await;
    let publisher = publisher(&env).await;
    // Published before order-writer starts, so they arrive as one batch with the poison in the middle.
    let mut poison = None;
    for i in 0..40 {
        if i == 17 {
            let m = message(sale, "mallory");
            publish(&publisher, &m).await;
            poison = Some(m.order_id.to_string());
        }
        publish(&publisher, &message(sale, &format!("buyer-{i}"))).await;
    }
    let writer = env.spawn_order_writer().await;
    eventually(DRAIN, || env.order_count(sale), 40).await;
    eventually(
        DRAIN,
        || dead_letter_ids(&env),
        vec![poison.unwrap_or_default()],
    )
    .await;
    assert_eq!(env.held(sale).await, 40);
    assert!(
        env.orders(sale).await.iter().all(|o| o.1 != "mallory"),
        "the poison is not written"
    );
    writer.stop().await;
    publisher.close().await;
    env.cleanup().await;
}
#[tokio::test(flavor = "multi_thread")]
async fn a_database_outage_dead_letters_nothing() {
    let proxy = TcpProxy::start("127.0.0.1:5432").await.expect("proxy");
    let env = TestEnv::with(|s| s.postgres.acquire_timeout_ms = 300).await;
    let sale = sale(&env, 100).await;
    let mut settings = env.settings.clone();
    let url = settings
        .postgres
        .url
        .expose_secret()
        .replace("127.0.0.1:5432", &proxy.addr().to_string());
    settings.postgres.url = SecretString::from(url);
    let writer = flashsale_testkit::services::spawn_order_writer_with(settings).await;
    let publisher = publisher(&env).await;

    proxy.cut();
    let messages: Vec<_> = (0..30)
        .map(|i| message(sale, &format!("buyer-{i}")))
        .collect();
    futures_util::future::join_all(messages.iter().map(|m| publish(&publisher, m))).await;
    // Several failed attempts while PostgreSQL is unreachable, every one of them recognised as an outage.
    eventually(
        Duration::from_secs(60),
        || async { failed_attempts(&writer.base, "outage").await >= 6.0 },
        true,
    )
    .await;
    assert_eq!(
        failed_attempts(&writer.base, "failed").await,
        0.0,
        "an outage is not a failure"
    );
    assert_eq!(env.order_count(sale).await, 0);
    proxy.pass();

    eventually(DRAIN, || env.order_count(sale), 30).await;
    assert_eq!(
        env.dead_letters().await,
        0,
        "an outage dead-letters nothing"
    );
    assert_eq!(env.held(sale).await, 30);
    writer.stop().await;
    publisher.close().await;
    env.cleanup().await;
}

/// Failed attempts of order-writer's batches so far, by cause (`outage` or `failed`).
async fn failed_attempts(base: &str, cause: &str) -> f64 {
    metric(
        base,
        "flashsale_consumer_batch_failures_total",
        &format!("cause=\"{cause}\""),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_that_refuses_writes_dead_letters_nothing() {
    let env = TestEnv::new().await;
    let sale = sale(&env, 100).await;
    // Every insert refused as by a read-only server (a replica after a failover), in this test's schema only.
    sql(
        &env,
        "CREATE FUNCTION read_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           RAISE EXCEPTION 'read-only' USING ERRCODE = 'read_only_sql_transaction'; END $$",
    )
    .await;
    sql(
        &env,
        "CREATE TRIGGER read_only BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION read_only()",
    )
    .await;
    let publisher = publisher(&env).await;
    for i in 0..10 {
        publish(&publisher, &message(sale, &format!("buyer-{i}"))).await;
    }
    let writer = env.spawn_order_writer().await;
    eventually(
        Duration::from_secs(60),
        || async { failed_attempts(&writer.base, "outage").await >= 6.0 },
        true,
    )
    .await;
    assert_eq!(failed_attempts(&writer.base, "failed").await, 0.0);
    assert_eq!(env.dead_letters().await, 0);

    sql(&env, "DROP TRIGGER read_only ON orders").await;
    eventually(DRAIN, || env.order_count(sale), 10).await;
    assert_eq!(
        env.dead_letters().await,
        0,
        "refused writes dead-letter nothing"
    );
    writer.stop().await;
    publisher.close().await;
    env.cleanup().await;
}
