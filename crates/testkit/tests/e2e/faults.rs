//! Faults between the promise and the record: the broker unreachable, a confirm that never comes, a gateway
//! that died between script and confirm, an order-writer killed mid-burst, the in-flight bound, Redis unreachable.

use flashsale_domain::{OrderId, UserId};
use flashsale_stock::{RateLimits, ReserveOutcome, ReserveRequest};
use flashsale_testkit::env::DRAIN;
use flashsale_testkit::services::spawn_gateway_with;
use flashsale_testkit::{GatewayHandle, SaleSpec, TcpProxy, TestEnv, eventually};
use futures_util::stream::{self, StreamExt};
use reqwest::StatusCode;
use secrecy::SecretString;
use std::collections::HashSet;
use std::time::Duration;

async fn amqp_readiness(gw: &GatewayHandle) -> String {
    gw.get("/readyz", None).await.body["checks"]["amqp"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// The test's settings with RabbitMQ reached through `proxy`.
fn amqp_through(env: &TestEnv, proxy: &TcpProxy) -> flashsale_platform::Settings {
    let mut settings = env.settings.clone();
    settings.amqp.url = SecretString::from(format!("amqp://guest:guest@{}/%2f", proxy.addr()));
    settings
}

async fn gateway_through(env: &TestEnv, proxy: &TcpProxy) -> GatewayHandle {
    spawn_gateway_with(amqp_through(env, proxy)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_broker_answers_503_and_takes_nothing_then_recovers() {
    let env = TestEnv::new().await;
    let proxy = TcpProxy::start("127.0.0.1:5672").await.expect("proxy");
    let gw = gateway_through(&env, &proxy).await;
    let _writer = env.spawn_order_writer().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(5)).await;
    let token = env.token("nina");

    proxy.cut();
    eventually(
        Duration::from_secs(10),
        || async { amqp_readiness(&gw).await == "ok" },
        false,
    )
    .await;
    let refused = gw.reserve(sale, &token).await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{refused:?}"
    );
    assert_eq!(refused.code(), "UNAVAILABLE");
    assert!(refused.retry_after().is_some_and(|s| s >= 1));
    assert_eq!(
        env.remaining(sale).await,
        Some(5),
        "a 503 the broker never saw holds no stock"
    );
    assert_eq!(env.outbox_len(sale).await, 0);
    assert_eq!(
        gw.get("/readyz", None).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    // Back without restarting the gateway: its own reconnect loop finds the broker again.
    proxy.pass();
    eventually(
        Duration::from_secs(10),
        || amqp_readiness(&gw),
        "ok".to_owned(),
    )
    .await;
    let accepted = gw.reserve(sale, &token).await;
    assert_eq!(
        accepted.status,
        StatusCode::ACCEPTED,
        "the same buyer may now reserve: {accepted:?}"
    );
    eventually(DRAIN, || env.order_count(sale), 1).await;
    assert_eq!(env.remaining(sale).await, Some(4));
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_confirm_that_never_comes_is_finished_by_the_relay() {
    let env = TestEnv::new().await;
    let proxy = TcpProxy::start("127.0.0.1:5672").await.expect("proxy");
    let gw = gateway_through(&env, &proxy).await;
    let _writer = env.spawn_order_writer().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(5)).await;
    let token = env.token("omar");

    proxy.blackhole();
    let unknown = gw.reserve_with_key(sale, &token, "buy-once").await;
    assert_eq!(
        unknown.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{unknown:?}"
    );
    assert!(unknown.retry_after().is_some());
    assert_eq!(
        env.remaining(sale).await,
        Some(4),
        "the unit stays held: a message may exist"
    );
    assert_eq!(env.outbox_len(sale).await, 1);

    proxy.pass();
    proxy.drop_connections();
    eventually(DRAIN, || env.order_count(sale), 1).await;
    let rows = env.orders(sale).await;
    assert_eq!(rows[0].1, "omar");

    let retry = gw.reserve_with_key(sale, &token, "buy-once").await;
    assert_eq!(retry.status, StatusCode::ACCEPTED, "{retry:?}");
    assert_eq!(retry.body["order_id"], rows[0].0.as_str());
    eventually(DRAIN, || env.outbox_len(sale), 0).await;
    assert_eq!(env.order_count(sale).await, 1, "exactly one row");
    assert_eq!(env.remaining(sale).await, Some(4));
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reservation_left_by_a_dead_gateway_becomes_one_order() {
    let env = TestEnv::new().await;
    let first = env.spawn_gateway().await;
    let sale = first.create_sale(&env, &SaleSpec::stock(5)).await;
    first.stop().await;

    // What a gateway SIGKILLed right after its script leaves behind: units taken, an outbox entry, no message.
    let user = UserId::parse("pia").expect("valid");
    let order_id = OrderId::new_v7();
    let limits = RateLimits {
        buyer_per_sec: 5,
        buyer_burst: 5,
        idempotency_ttl_secs: 60,
        announce_every_ms: 200,
    };
    let req = ReserveRequest {
        sale,
        order_id,
        user: &user,
        quantity: 1,
        idempotency_key: None,
    };
    let outcome = env.stock.reserve(&req, &limits).await.expect("script ran");
    assert!(
        matches!(outcome, ReserveOutcome::Reserved(_)),
        "{outcome:?}"
    );
    assert_eq!(env.outbox_len(sale).await, 1);

    let second = env.spawn_gateway().await;
    let _writer = env.spawn_order_writer().await;
    eventually(DRAIN, || env.order_count(sale), 1).await;
    let rows = env.orders(sale).await;
    assert_eq!(rows[0].0, order_id.to_string());
    eventually(DRAIN, || env.outbox_len(sale), 0).await;
    assert_eq!(
        env.remaining(sale).await,
        Some(4),
        "nothing stranded, nothing released twice"
    );
    let seen = second
        .get(
            &format!("/api/v1/orders/{order_id}"),
            Some(&env.token("pia")),
        )
        .await;
    assert_eq!(seen.body["status"], "pending_payment");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_order_writer_killed_mid_burst_loses_nothing() {
    let env = TestEnv::with(|s| {
        s.order_writer.batch_size = 50;
        s.gateway.group_commit_linger_us = 5_000;
    })
    .await;
    let gw = env.spawn_gateway().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(600)).await;
    let writer = env.start_order_writer_process();

    let tokens: Vec<String> = (0..600).map(|i| env.token(&format!("kill-{i}"))).collect();
    let burst = async {
        stream::iter(tokens.iter().map(|t| gw.reserve(sale, t)))
            .buffer_unordered(8)
            .collect::<Vec<_>>()
            .await
    };
    let kill = async {
        // Kill once the writer is demonstrably writing, while the burst still runs.
        let deadline = tokio::time::Instant::now() + DRAIN;
        while env.order_count(sale).await < 30 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "order-writer never wrote"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        writer.kill().await;
    };
    let (replies, ()) = tokio::join!(burst, kill);
    let accepted: HashSet<String> = replies
        .iter()
        .filter(|r| r.status == StatusCode::ACCEPTED)
        .filter_map(|r| r.body["order_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(accepted.len(), 600);
    let (messages, _) = gw.group_commit();
    assert!(
        (1..600).contains(&messages),
        "the burst went out in group-committed messages: {messages} for 600 reservations"
    );
    assert!(
        env.order_count(sale).await < 600,
        "the kill came before everything was written"
    );

    let _restarted = env.start_order_writer_process();
    eventually(DRAIN, || env.order_count(sale), 600).await;
    let rows = env.order_ids(sale).await;
    assert_eq!(rows, accepted, "every 202 has exactly one row");
    assert_eq!(env.held(sale).await, 600);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn past_max_in_flight_the_api_answers_503_at_once_and_probes_still_answer() {
    let env = TestEnv::new().await;
    let proxy = TcpProxy::start("127.0.0.1:5672").await.expect("proxy");
    let mut settings = amqp_through(&env, &proxy);
    settings.gateway.max_in_flight = 1;
    // Long enough that the held request is surely still waiting while the checks below run on a busy machine.
    settings.amqp.confirm_timeout_ms = 3000;
    settings.outbox.relay_age_ms = 4000;
    let gw = spawn_gateway_with(settings).await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(5)).await;

    // One reservation held in flight: its confirm never comes until the proxy passes again.
    proxy.blackhole();
    let held = tokio::spawn({
        let req = gw.reservation(sale, &env.token("ada"));
        async move { req.send().await.expect("answer").status() }
    });
    eventually(DRAIN, || env.outbox_len(sale), 1).await;

    let refused = gw.reserve(sale, &env.token("bob")).await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{refused:?}"
    );
    assert_eq!(refused.code(), "UNAVAILABLE");
    assert!(refused.retry_after().is_some(), "{refused:?}");
    assert_eq!(
        env.remaining(sale).await,
        Some(4),
        "the refused request took nothing"
    );
    assert_eq!(
        gw.get("/healthz", None).await.status,
        StatusCode::OK,
        "liveness is not bounded"
    );
    assert_eq!(gw.get("/metrics", None).await.status, StatusCode::OK);

    // The held request ends (unknown outcome, 503) and frees its slot; then the API answers again.
    assert_eq!(held.await.expect("task"), StatusCode::SERVICE_UNAVAILABLE);
    proxy.pass();
    proxy.drop_connections();
    eventually(DRAIN, || amqp_readiness(&gw), "ok".to_owned()).await;
    // Readiness may still show the connection the proxy just dropped: retry as a client would on 503, with an
    // Idempotency-Key so a retry after an unknown outcome answers that reservation's 202.
    let bob = env.token("bob");
    let again = || async {
        gw.reserve_with_key(sale, &bob, "bob-after-recovery")
            .await
            .status
    };
    eventually(DRAIN, again, StatusCode::ACCEPTED).await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_names_redis_when_it_is_unreachable_and_recovers() {
    let env = TestEnv::new().await;
    let proxy = TcpProxy::start("127.0.0.1:6379").await.expect("proxy");
    let mut settings = env.settings.clone();
    settings.redis.url = SecretString::from(format!("redis://{}", proxy.addr()));
    let gw = spawn_gateway_with(settings).await;
    let ready = gw.get("/readyz", None).await;
    assert_eq!(ready.status, StatusCode::OK, "{ready:?}");

    proxy.cut();
    let unavailable = || async { gw.get("/readyz", None).await.status };
    eventually(DRAIN, unavailable, StatusCode::SERVICE_UNAVAILABLE).await;
    let down = gw.get("/readyz", None).await;
    assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE, "{down:?}");
    assert_eq!(down.body["status"], "unavailable");
    assert_ne!(down.body["checks"]["redis"], "ok", "{down:?}");
    assert_eq!(
        down.body["checks"]["amqp"], "ok",
        "only the failing dependency is named: {down:?}"
    );
    assert_eq!(down.body["checks"]["postgres"], "ok", "{down:?}");

    proxy.pass();
    eventually(
        DRAIN,
        || async { gw.get("/readyz", None).await.status },
        StatusCode::OK,
    )
    .await;
    env.cleanup().await;
}
