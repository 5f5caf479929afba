//! Faults between the promise and the record: the broker unreachable, a confirm that never comes, a gateway
//! that died between script and confirm, an order-writer killed mid-burst.

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
    let rows: HashSet<String> = env
        .orders(sale)
        .await
        .into_iter()
        .map(|(id, _, _)| id)
        .collect();
    assert_eq!(rows, accepted, "every 202 has exactly one row");
    assert_eq!(env.held(sale).await, 600);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sale_lost_by_redis_answers_503_until_it_is_warmed_from_postgres() {
    // The live feed's periodic re-read far away: only warm.lua's announcement can bring the restored counters
    // to an open stream in time.
    let env = TestEnv::with(|s| s.sse.recheck_ms = 60_000).await;
    let gw = env.spawn_gateway().await;
    let _writer = env.spawn_order_writer().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(5)).await;
    assert_eq!(
        gw.reserve(sale, &env.token("uma")).await.status,
        StatusCode::ACCEPTED
    );
    eventually(DRAIN, || env.order_count(sale), 1).await;
    let mut stream = flashsale_testkit::SseStream::open(
        &gw.http,
        &format!("{}/api/v1/sales/{sale}/events", gw.base),
        None,
    )
    .await;
    let first = stream.until(DRAIN, |d| d["remaining"] == 4).await;
    assert!(first.is_some(), "the stream opens with the counters");

    // Redis restarts empty (only this test's keys, never FLUSHDB).
    let mut redis = env
        .redis()
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let keys = env.stock.keys();
    let _: () = redis::cmd("DEL")
        .arg(keys.sale(sale))
        .arg(keys.stock(sale))
        .arg(keys.buyers(sale))
        .query_async(&mut redis)
        .await
        .expect("del");
    let lost = gw.reserve(sale, &env.token("vic")).await;
    assert_eq!(
        lost.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "never SOLD_OUT, never unlimited: {lost:?}"
    );
    assert_eq!(lost.code(), "UNAVAILABLE");

    // The warmer restores it from PostgreSQL: remaining = total - held, and the buyer's limit still holds.
    eventually(DRAIN, || env.remaining(sale), Some(4)).await;
    // The restore is announced: the open stream shows the restored counters at once, not a minute later.
    let restored = stream
        .until(Duration::from_secs(2), |d| d["remaining"] == 4)
        .await;
    assert!(
        restored.is_some(),
        "the open stream saw the restored sale within 2 s"
    );
    let again = gw.reserve(sale, &env.token("uma")).await;
    assert_eq!(again.code(), "LIMIT_EXCEEDED", "{again:?}");
    let fresh = gw.reserve(sale, &env.token("vic")).await;
    assert_eq!(fresh.status, StatusCode::ACCEPTED, "{fresh:?}");
    eventually(DRAIN, || env.order_count(sale), 2).await;
    assert_eq!(env.held(sale).await, 2);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_ended_sale_lost_by_redis_is_answered_from_postgres() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let now = chrono::Utc::now();
    let spec = SaleSpec {
        starts_at: now - chrono::Duration::hours(3),
        ends_at: now - chrono::Duration::hours(2),
        ..SaleSpec::stock(5)
    };
    let sale = gw.create_sale(&env, &spec).await;
    let mut redis = env
        .redis()
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let keys = env.stock.keys();
    let _: () = redis::cmd("DEL")
        .arg(keys.sale(sale))
        .arg(keys.stock(sale))
        .query_async(&mut redis)
        .await
        .expect("del");

    let status = gw.sale(sale).await;
    assert_eq!(status.status, StatusCode::OK, "{status:?}");
    assert_eq!(status.body["status"], "ended");
    assert_eq!(status.body["remaining"], 5);
    let late = gw.reserve(sale, &env.token("wes")).await;
    assert_eq!(late.status, StatusCode::CONFLICT, "{late:?}");
    assert_eq!(late.code(), "SALE_ENDED");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_sale_replaces_redis_state_left_under_its_id_by_an_earlier_database() {
    #[derive(diesel::QueryableByName)]
    struct Next {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        id: i64,
    }
    use diesel_async::RunQueryDsl;
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    // The id PostgreSQL will issue next; Redis still holds a sale under it (PostgreSQL was reset, Redis was not):
    // a million units and a buyer who "holds" an order.
    let next: Next = diesel::sql_query(
        "SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END AS id FROM sales_id_seq",
    )
    .get_result(&mut env.pg().await)
    .await
    .expect("next sale id");
    let stale = flashsale_domain::SaleId::new(next.id).expect("positive");
    let keys = env.stock.keys();
    let mut redis = env
        .redis()
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let _: () = redis::pipe()
        .cmd("HSET")
        .arg(keys.sale(stale))
        .arg(&[
            "starts_ms",
            "0",
            "ends_ms",
            "9999999999999",
            "per_user_limit",
            "1",
        ])
        .arg(&["window_secs", "60", "price_minor", "1"])
        .cmd("SET")
        .arg(keys.stock(stale))
        .arg(1_000_000)
        .cmd("HSET")
        .arg(keys.buyers(stale))
        .arg("xena")
        .arg(OrderId::new_v7().to_string())
        .query_async(&mut redis)
        .await
        .expect("seed stale state");

    let sale = gw.create_sale(&env, &SaleSpec::stock(2)).await;
    assert_eq!(sale, stale, "the test seeded the id PostgreSQL issued");
    assert_eq!(
        env.remaining(sale).await,
        Some(2),
        "the new sale's stock, not the stale one"
    );
    let xena = gw.reserve(sale, &env.token("xena")).await;
    assert_eq!(
        xena.status,
        StatusCode::ACCEPTED,
        "no stale buyer record: {xena:?}"
    );
    assert_eq!(
        gw.reserve(sale, &env.token("yves")).await.status,
        StatusCode::ACCEPTED
    );
    let third = gw.reserve(sale, &env.token("zoe")).await;
    assert_eq!(third.code(), "SOLD_OUT", "{third:?}");
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
