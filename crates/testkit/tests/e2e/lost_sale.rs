//! Redis losing a sale's state: the sale answers 503 until it is warmed from PostgreSQL (and an open live stream
//! sees it restored at once), a long-ended sale is answered from PostgreSQL, and state left under the id by an
//! earlier database is replaced whole.

use flashsale_domain::OrderId;
use flashsale_testkit::env::DRAIN;
use flashsale_testkit::{SaleSpec, TestEnv, eventually};
use reqwest::StatusCode;
use std::time::Duration;

/// Deletes these keys of the test's own sale, as a Redis that lost them would (never FLUSHDB).
async fn delete(env: &TestEnv, keys: impl IntoIterator<Item = String>) {
    let mut redis = env
        .redis()
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let _: () = redis::cmd("DEL")
        .arg(keys.into_iter().collect::<Vec<_>>())
        .query_async(&mut redis)
        .await
        .expect("del");
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
    let keys = env.stock.keys();
    delete(&env, [keys.sale(sale), keys.stock(sale), keys.buyers(sale)]).await;
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
    let keys = env.stock.keys();
    delete(&env, [keys.sale(sale), keys.stock(sale)]).await;

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
