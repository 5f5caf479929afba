//! Group commit against the real services: reservations accepted together share one confirmed message, every
//! consumer takes it apart, one bad member is dead-lettered alone, and expiry of a partly paid batch returns
//! only the unpaid units. (A nacked batch is in `broker.rs`; a SIGKILLed order-writer under batches in
//! `faults.rs`.)

use crate::expiry::{count_status, sale_with_window};
use crate::poison::{message as member, publisher};
use flashsale_broker::Names;
use flashsale_domain::{RESERVATION_BATCH_TYPE, ReservationBatch, SaleId};
use flashsale_testkit::env::DRAIN;
use flashsale_testkit::{SaleSpec, TestEnv, eventually};
use futures_util::future::join_all;
use lapin::options::BasicGetOptions;
use lapin::types::AMQPValue;
use reqwest::StatusCode;
use std::collections::HashSet;
use std::time::Duration;

/// A linger long enough that requests sent together on a loaded 2-core machine share their message.
const LINGER_US: u64 = 50_000;

async fn payments_of_sale(env: &TestEnv, sale: SaleId) -> i64 {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = env.pg().await;
    diesel::sql_query("SELECT count(*) AS n FROM payments WHERE sale_id = $1")
        .bind::<diesel::sql_types::BigInt, _>(sale.get())
        .get_result::<N>(&mut conn)
        .await
        .expect("count payments")
        .n
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_shares_messages_and_every_202_becomes_one_order_and_one_payment() {
    let env = TestEnv::with(|s| s.gateway.group_commit_linger_us = LINGER_US).await;
    let gw = env.spawn_gateway().await;
    let _writer = env.spawn_order_writer().await;
    let _pay = env.spawn_payment().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(40)).await;

    let tokens: Vec<String> = (0..40).map(|i| env.token(&format!("gc-{i}"))).collect();
    let replies = join_all(tokens.iter().map(|t| gw.reserve(sale, t))).await;
    let accepted: HashSet<String> = replies
        .iter()
        .filter(|r| r.status == StatusCode::ACCEPTED)
        .filter_map(|r| r.body["order_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(accepted.len(), 40, "{replies:?}");
    let (messages, carried) = gw.group_commit();
    assert_eq!(carried, 40, "every reservation went through group commit");
    assert!(
        messages < 20,
        "40 reservations sent together shared messages: {messages} messages"
    );

    eventually(DRAIN, || env.order_count(sale), 40).await;
    let rows: HashSet<String> = env.orders(sale).await.into_iter().map(|r| r.0).collect();
    assert_eq!(rows, accepted, "exactly one row per 202");
    eventually(DRAIN, || payments_of_sale(&env, sale), 40).await;
    eventually(DRAIN, || env.outbox_len(sale), 0).await;
    assert_eq!(env.held(sale).await, 40);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_undecodable_member_is_dead_lettered_alone_while_its_neighbours_become_orders() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(5)).await;
    gw.stop().await;
    let _writer = env.spawn_order_writer().await;
    let publisher = publisher(&env).await;

    let (a, b) = (member(sale, "ada"), member(sale, "bea"));
    let bad = br#"{"v":1,"order_id":"not-an-order"}"#.to_vec();
    let bodies = [
        serde_json::to_vec(&a).expect("json"),
        bad.clone(),
        serde_json::to_vec(&b).expect("json"),
    ];
    let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
    let batch_id = uuid::Uuid::now_v7();
    publisher
        .publish_typed(
            &a.routing_key(),
            &batch_id.to_string(),
            &ReservationBatch::encode(batch_id, &refs),
            RESERVATION_BATCH_TYPE,
        )
        .await
        .expect("published");

    eventually(DRAIN, || env.order_count(sale), 2).await;
    eventually(DRAIN, || env.dead_letters(), 1).await;
    let rows: HashSet<String> = env.orders(sale).await.into_iter().map(|r| r.0).collect();
    let expected: HashSet<String> = [a.order_id.to_string(), b.order_id.to_string()].into();
    assert_eq!(rows, expected);

    // The dead-letter queue holds the bad member alone, marked as the order-writer queue's refusal.
    let names = Names::new(&env.settings.amqp.prefix);
    let conn = flashsale_broker::connect(&env.settings.amqp, "test-dlq")
        .await
        .expect("amqp");
    let ch = conn.create_channel().await.expect("channel");
    let get = ch.basic_get(
        names.dead_queue().as_str().into(),
        BasicGetOptions { no_ack: true },
    );
    let got = tokio::time::timeout(Duration::from_secs(5), get)
        .await
        .expect("basic.get answered")
        .expect("basic.get")
        .expect("a dead letter");
    assert_eq!(got.delivery.data, bad, "only the bad member, not its batch");
    let headers = got
        .delivery
        .properties
        .headers()
        .clone()
        .unwrap_or_default();
    let queue = match headers.inner().get("x-first-death-queue") {
        Some(AMQPValue::LongString(q)) => String::from_utf8_lossy(q.as_bytes()).into_owned(),
        other => panic!("no x-first-death-queue: {other:?}"),
    };
    assert_eq!(queue, names.order_writer_queue());
    // Bounded: a close the broker does not answer must not hold the test (dropping closes the socket).
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.close(200, "done".into())).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), publisher.close()).await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn expiry_of_a_partly_paid_batch_returns_only_the_unpaid_units() {
    let env = TestEnv::with(|s| s.gateway.group_commit_linger_us = LINGER_US).await;
    let gw = env.spawn_gateway().await;
    let _writer = env.spawn_order_writer().await;
    let pay = env.spawn_payment().await;
    let _expiry = env.spawn_expiry().await;
    let sale = gw.create_sale(&env, &sale_with_window(4, 3)).await;

    let users = ["pa", "pb", "ua", "ub"];
    let tokens: Vec<String> = users.iter().map(|u| env.token(u)).collect();
    let replies = join_all(tokens.iter().map(|t| gw.reserve(sale, t))).await;
    assert!(
        replies.iter().all(|r| r.status == StatusCode::ACCEPTED),
        "{replies:?}"
    );
    assert_eq!(
        gw.group_commit(),
        (1, 4),
        "the four reservations shared one message"
    );
    eventually(DRAIN, || env.order_count(sale), 4).await;

    // Two of the four pay before the deadline.
    for (reply, token) in replies.iter().zip(&tokens).take(2) {
        let order = reply.body["order_id"].as_str().unwrap_or_default();
        let checkout = pay.checkout(order, token).await;
        assert_eq!(checkout.status, StatusCode::OK, "{checkout:?}");
        let payment = checkout.body["payment_id"].as_str().unwrap_or_default();
        let done = pay.complete(payment, "succeeded").await;
        assert_eq!(done.body["status"], "paid", "{done:?}");
    }

    // The batch falls due once, after its latest deadline: the two unpaid expire, the paid stay paid.
    eventually(
        DRAIN + Duration::from_secs(3),
        || count_status(&env, sale, "expired"),
        2,
    )
    .await;
    assert_eq!(count_status(&env, sale, "paid").await, 2);
    eventually(DRAIN, || env.remaining(sale), Some(2)).await;
    let counters = gw.sale(sale).await;
    assert_eq!(
        (&counters.body["remaining"], &counters.body["sold"]),
        (&serde_json::json!(2), &serde_json::json!(2)),
        "{counters:?}"
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_propose_amqp_frame_max_and_a_batch_larger_than_one_frame_still_becomes_orders()
{
    // The default proposal, and a `frame_max` in the URL winning over it.
    let env = TestEnv::new().await;
    let conn = flashsale_broker::connect(&env.settings.amqp, "test-frame-max")
        .await
        .expect("connect");
    assert_eq!(conn.configuration().frame_max(), 32_768);
    let _ = conn.close(200, "done".into()).await;
    let mut own = env.settings.amqp.clone();
    own.url = format!(
        "{}?frame_max=8192",
        secrecy::ExposeSecret::expose_secret(&own.url)
    )
    .into();
    let conn = flashsale_broker::connect(&own, "test-frame-max-url")
        .await
        .expect("connect with the URL's frame_max");
    assert_eq!(conn.configuration().frame_max(), 8192);
    let _ = conn.close(200, "done".into()).await;
    env.cleanup().await;

    // The smallest frame AMQP allows, at both ends: one message of 60 reservations (over 8 KB) travels as
    // several frames and becomes 60 orders.
    let env = TestEnv::with(|s| s.amqp.frame_max = 4096).await;
    let gw = env.spawn_gateway().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(60)).await;
    gw.stop().await;
    let _writer = env.spawn_order_writer().await;
    let publisher = publisher(&env).await;
    let members: Vec<_> = (0..60).map(|i| member(sale, &format!("fm-{i}"))).collect();
    let bodies: Vec<Vec<u8>> = members
        .iter()
        .map(|m| serde_json::to_vec(m).expect("json"))
        .collect();
    let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
    let batch_id = uuid::Uuid::now_v7();
    let body = ReservationBatch::encode(batch_id, &refs);
    assert!(body.len() > 2 * 4096, "{} bytes", body.len());
    publisher
        .publish_typed(
            &members[0].routing_key(),
            &batch_id.to_string(),
            &body,
            RESERVATION_BATCH_TYPE,
        )
        .await
        .expect("published");
    eventually(DRAIN, || env.order_count(sale), 60).await;
    env.cleanup().await;
}
