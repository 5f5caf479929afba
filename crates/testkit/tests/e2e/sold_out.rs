//! Sold-out and ended answers from memory: after a sale sells out, a plain reservation from a buyer who holds
//! nothing costs no Redis command, while holders keep LIMIT_EXCEEDED with their order id and Idempotency-Key
//! retries their 202; units that come back are on sale again on every gateway within a second.

use crate::expiry::{order_id, sale_with_window};
use crate::poison::metric;
use chrono::{Duration as ChronoDuration, Utc};
use flashsale_testkit::{GatewayHandle, LocalRedis, SaleSpec, TestEnv, eventually};
use reqwest::StatusCode;
use secrecy::SecretString;
use std::time::{Duration, Instant};

/// The contract's second, plus slack for polling on a loaded 2-core machine.
const WITHIN: Duration = Duration::from_millis(1500);

fn calls(stats: &str, command: &str) -> u64 {
    stats
        .lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A connection to the test's Redis and the sale's stock key, to watch or move its units behind the services.
async fn stock_of(
    env: &TestEnv,
    sale: flashsale_domain::SaleId,
) -> (redis::aio::MultiplexedConnection, String) {
    let conn = env
        .redis()
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let key = flashsale_stock::Keys::new(env.settings.redis.key_prefix.clone()).stock(sale);
    (conn, key)
}

/// Sends plain reservations from fresh buyers, each answered `code`, until the gateway answers one from memory.
async fn until_answered_from_memory_with(
    env: &TestEnv,
    gw: &GatewayHandle,
    sale: flashsale_domain::SaleId,
    code: &str,
) {
    let mut n = 0;
    eventually(
        WITHIN,
        || {
            n += 1;
            let token = env.token(&format!("learner{n}"));
            async move {
                let r = gw.reserve(sale, &token).await;
                assert_eq!(r.code(), code, "{r:?}");
                metric(&gw.base, "flashsale_reservations_from_memory_total", code).await > 0.0
            }
        },
        true,
    )
    .await;
}

async fn until_answered_from_memory(
    env: &TestEnv,
    gw: &GatewayHandle,
    sale: flashsale_domain::SaleId,
) {
    until_answered_from_memory_with(env, gw, sale, "SOLD_OUT").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn after_sell_out_a_plain_reservation_costs_no_redis_command_but_holders_and_retries_keep_their_answers()
 {
    let redis = LocalRedis::start().await;
    let env = TestEnv::with(|s| {
        s.redis.url = SecretString::from(redis.url());
        // Nothing else of the gateway talks to this Redis during the counted window.
        s.outbox.relay_interval_ms = 60_000;
        s.gateway.warm_interval_ms = 60_000;
        s.gateway.sold_out_check_ms = 1000;
    })
    .await;
    let gw = env.spawn_gateway().await;
    let _writer = env.spawn_order_writer().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(2)).await;
    let held = gw
        .reserve_with_key(sale, &env.token("holder"), "first-try")
        .await;
    assert_eq!(held.status, StatusCode::ACCEPTED, "{held:?}");
    let other = gw.reserve(sale, &env.token("other")).await;
    assert_eq!(other.status, StatusCode::ACCEPTED, "{other:?}");
    until_answered_from_memory(&env, &gw, sale).await;

    redis.cmd(&["CONFIG", "RESETSTAT"]).await;
    for i in 0..50 {
        let r = gw.reserve(sale, &env.token(&format!("late{i}"))).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::CONFLICT, "SOLD_OUT"),
            "{r:?}"
        );
    }
    let stats = redis.info("commandstats").await;
    assert_eq!(
        calls(&stats, "evalsha"),
        0,
        "a plain sold-out answer ran the script: {stats}"
    );
    assert_eq!(calls(&stats, "get"), 0, "{stats}");

    // A holder goes to the script: LIMIT_EXCEEDED with the order they hold.
    let again = gw.reserve(sale, &env.token("holder")).await;
    assert_eq!(
        (again.status, again.code()),
        (StatusCode::CONFLICT, "LIMIT_EXCEEDED"),
        "{again:?}"
    );
    assert_eq!(
        again.body["error"]["order_id"], held.body["order_id"],
        "{again:?}"
    );
    // A retry with the same Idempotency-Key answers its first 202.
    let retry = gw
        .reserve_with_key(sale, &env.token("holder"), "first-try")
        .await;
    assert_eq!(retry.status, StatusCode::ACCEPTED, "{retry:?}");
    assert_eq!(retry.body, held.body);
    let stats = redis.info("commandstats").await;
    assert_eq!(
        calls(&stats, "evalsha"),
        2,
        "the holder and the retry ran the script: {stats}"
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_unit_returned_by_expiry_is_sold_again_within_a_second_through_a_second_gateway() {
    let env = TestEnv::new().await;
    let first = env.spawn_gateway().await;
    let second = env.spawn_gateway().await;
    let _writer = env.spawn_order_writer().await;
    let _expiry = env.spawn_expiry().await;
    let sale = first.create_sale(&env, &sale_with_window(1, 2)).await;
    let held = first.reserve(sale, &env.token("first-buyer")).await;
    assert_eq!(held.status, StatusCode::ACCEPTED, "{held:?}");
    until_answered_from_memory(&env, &second, sale).await;

    // The moment the unit is back in Redis, then the moment the second gateway sells it.
    let (conn, stock_key) = stock_of(&env, sale).await;
    eventually(
        Duration::from_secs(10),
        || {
            let mut conn = conn.clone();
            let key = stock_key.clone();
            async move {
                redis::AsyncCommands::get::<_, i64>(&mut conn, key)
                    .await
                    .unwrap_or(0)
            }
        },
        1,
    )
    .await;
    let back = Instant::now();
    let mut n = 0;
    let sold = loop {
        n += 1;
        let r = second.reserve(sale, &env.token(&format!("next{n}"))).await;
        if r.status == StatusCode::ACCEPTED {
            break back.elapsed();
        }
        assert_eq!(r.code(), "SOLD_OUT", "{r:?}");
        assert!(
            back.elapsed() < WITHIN,
            "the returned unit was not on sale again on the second gateway"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(sold < WITHIN, "sold again after {sold:?}");
    let announced = metric(
        &second.base,
        "flashsale_sold_out_forgotten_total",
        "announcement",
    )
    .await;
    assert_eq!(
        announced, 1.0,
        "the second gateway heard the expiry's announcement"
    );
    assert_ne!(order_id(&held).to_string(), "", "{held:?}");
    env.cleanup().await;
}

/// The safety net alone: units that come back without an announcement (written straight into Redis here)
/// are on sale again within the periodic check.
#[tokio::test(flavor = "multi_thread")]
async fn units_returned_without_an_announcement_are_found_by_the_periodic_check() {
    let env = TestEnv::with(|s| s.gateway.sold_out_check_ms = 250).await;
    let gw = env.spawn_gateway().await;
    let _writer = env.spawn_order_writer().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(1)).await;
    let held = gw.reserve(sale, &env.token("a")).await;
    assert_eq!(held.status, StatusCode::ACCEPTED, "{held:?}");
    until_answered_from_memory(&env, &gw, sale).await;

    let (mut conn, stock_key) = stock_of(&env, sale).await;
    let _: i64 = redis::AsyncCommands::incr(&mut conn, &stock_key, 1)
        .await
        .expect("incr");
    let back = Instant::now();
    let mut n = 0;
    loop {
        n += 1;
        let r = gw.reserve(sale, &env.token(&format!("b{n}"))).await;
        if r.status == StatusCode::ACCEPTED {
            break;
        }
        assert!(
            back.elapsed() < WITHIN,
            "still answered {r:?} after {:?}",
            back.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        metric(&gw.base, "flashsale_sold_out_forgotten_total", "check").await,
        1.0
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ended_sale_answers_sale_ended_from_memory() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let now = Utc::now();
    let spec = SaleSpec {
        starts_at: now - ChronoDuration::minutes(5),
        ends_at: now + ChronoDuration::milliseconds(1500),
        ..SaleSpec::stock(5)
    };
    let sale = gw.create_sale(&env, &spec).await;
    // Waiting for the clock, not for a condition: the sale's window has to pass.
    let left = (spec.ends_at - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(left + Duration::from_millis(50)).await;
    until_answered_from_memory_with(&env, &gw, sale, "SALE_ENDED").await;
    env.cleanup().await;
}

/// The restock subscription is lost (its connection dropped): announcements made meanwhile would be lost with it,
/// so on subscribing again the gateway forgets every sold-out sale and the script answers until it learns again.
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_restock_subscription_forgets_every_sold_out_sale_when_it_resubscribes() {
    let proxy = flashsale_testkit::TcpProxy::start("127.0.0.1:6379")
        .await
        .expect("proxy");
    let env = TestEnv::with(|s| {
        s.redis.url = SecretString::from(format!("redis://{}", proxy.addr()));
        // Only the subscription may put the sale back on sale here.
        s.gateway.sold_out_check_ms = 1000;
    })
    .await;
    let gw = env.spawn_gateway().await;
    let _writer = env.spawn_order_writer().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(1)).await;
    let held = gw.reserve(sale, &env.token("only")).await;
    assert_eq!(held.status, StatusCode::ACCEPTED, "{held:?}");
    until_answered_from_memory(&env, &gw, sale).await;

    proxy.drop_connections();
    eventually(
        WITHIN * 4,
        || {
            metric(
                &gw.base,
                "flashsale_sold_out_forgotten_total",
                "resubscribed",
            )
        },
        1.0,
    )
    .await;
    // Forgotten, so the script answers again (a 503 while the dropped connection is replaced is fine) and
    // the memory learns the sale again: answers from memory rise once more.
    let before = metric(
        &gw.base,
        "flashsale_reservations_from_memory_total",
        "SOLD_OUT",
    )
    .await;
    let mut n = 0;
    eventually(
        WITHIN * 4,
        || {
            n += 1;
            let token = env.token(&format!("again{n}"));
            let gw = &gw;
            async move {
                let r = gw.reserve(sale, &token).await;
                assert!(["SOLD_OUT", "UNAVAILABLE"].contains(&r.code()), "{r:?}");
                metric(
                    &gw.base,
                    "flashsale_reservations_from_memory_total",
                    "SOLD_OUT",
                )
                .await
                    > before
            }
        },
        true,
    )
    .await;
    env.cleanup().await;
}
