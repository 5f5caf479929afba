//! Redis as a ledger that can lose writes: nothing about a sale is ever half there, a loss never re-sells
//! units still in flight, and every key ends.

use chrono::{Duration as ChronoDuration, Utc};
use flashsale_domain::SaleId;
use flashsale_testkit::env::DRAIN;
use flashsale_testkit::services::spawn_gateway_with;
use flashsale_testkit::{GatewayHandle, SaleSpec, TcpProxy, TestEnv, eventually};
use reqwest::StatusCode;
use secrecy::SecretString;
use std::time::Duration;

async fn redis(env: &TestEnv) -> redis::aio::MultiplexedConnection {
    env.redis()
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("redis: {e}"))
}

/// Redis loses everything it held about the sale (a restart without persistence, a failover).
async fn lose_sale(env: &TestEnv, sale: SaleId) {
    let keys = env.keys_of_sale(sale).await;
    assert!(!keys.is_empty(), "the sale had state to lose");
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut redis(env).await)
        .await
        .unwrap_or_else(|e| panic!("del: {e}"));
}

async fn del(env: &TestEnv, key: String) {
    let _: () = redis::cmd("DEL")
        .arg(key)
        .query_async(&mut redis(env).await)
        .await
        .unwrap_or_else(|e| panic!("del: {e}"));
}

async fn status_of_sale(gw: &GatewayHandle, sale: SaleId) -> StatusCode {
    gw.sale(sale).await.status
}

#[tokio::test(flavor = "multi_thread")]
async fn a_loss_never_resells_units_still_in_flight() {
    let env = TestEnv::with(|s| s.gateway.restore_quiet_ms = 500).await;
    let gw = env.spawn_gateway().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(5)).await;
    // No order-writer yet: these three promises wait in its queue, not yet in PostgreSQL's `held`.
    for i in 0..3 {
        let r = gw.reserve(sale, &env.token(&format!("early-{i}"))).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    }
    lose_sale(&env, sale).await;

    let meanwhile = gw.reserve(sale, &env.token("impatient")).await;
    assert_eq!(
        meanwhile.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "nothing is sold while promises are in flight: {meanwhile:?}"
    );
    let _writer = env.spawn_order_writer().await;
    eventually(DRAIN, || env.order_count(sale), 3).await;
    eventually(DRAIN, || status_of_sale(&gw, sale), StatusCode::OK).await;

    let mut outcomes = Vec::new();
    for i in 0..5 {
        let r = gw.reserve(sale, &env.token(&format!("late-{i}"))).await;
        outcomes.push((r.status, r.code().to_owned()));
    }
    let accepted = outcomes
        .iter()
        .filter(|(s, _)| *s == StatusCode::ACCEPTED)
        .count();
    assert_eq!(
        accepted, 2,
        "only the two units never promised: {outcomes:?}"
    );
    eventually(DRAIN, || env.order_count(sale), 5).await;
    let rows = env.orders(sale).await;
    assert!(
        rows.iter()
            .all(|(_, _, status)| status == "pending_payment"),
        "no 202 ends rejected: {rows:?}"
    );
    assert_eq!(env.held(sale).await, 5);
    assert_eq!(env.remaining(sale).await, Some(0));
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn warming_never_overwrites_live_stock_when_only_the_sale_hash_is_missing() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(10)).await;
    // No order-writer: PostgreSQL's `held` stays 0 while Redis has promised three units.
    for i in 0..3 {
        let r = gw.reserve(sale, &env.token(&format!("b{i}"))).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    }
    del(&env, env.stock.keys().sale(sale)).await;
    eventually(DRAIN, || status_of_sale(&gw, sale), StatusCode::OK).await;
    assert_eq!(
        env.remaining(sale).await,
        Some(7),
        "the live counter was kept, not reset from PostgreSQL"
    );
    assert_eq!(gw.sale(sale).await.body["remaining"], 7);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sale_missing_from_the_index_is_indexed_again_and_its_outbox_relayed() {
    let env = TestEnv::new().await;
    let proxy = TcpProxy::start("127.0.0.1:5672").await.expect("proxy");
    let mut settings = env.settings.clone();
    settings.amqp.url = SecretString::from(format!("amqp://guest:guest@{}/%2f", proxy.addr()));
    let gw = spawn_gateway_with(settings).await;
    let _writer = env.spawn_order_writer().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(5)).await;
    // The index write failed (or the index was lost) while the sale itself is live.
    del(&env, env.stock.keys().sales_index()).await;

    proxy.blackhole();
    let unknown = gw.reserve_with_key(sale, &env.token("ivy"), "k1").await;
    assert_eq!(
        unknown.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{unknown:?}"
    );
    proxy.pass();
    proxy.drop_connections();
    eventually(DRAIN, || env.order_count(sale), 1).await;
    eventually(DRAIN, || env.outbox_len(sale), 0).await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sale_lost_inside_its_payment_window_answers_503_not_sale_ended() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let now = Utc::now();
    let spec = SaleSpec {
        ends_at: now + ChronoDuration::seconds(1),
        payment_window_secs: 600,
        ..SaleSpec::stock(5)
    };
    let sale = gw.create_sale(&env, &spec).await;
    let held = gw.reserve(sale, &env.token("holder")).await;
    assert_eq!(held.status, StatusCode::ACCEPTED, "{held:?}");
    eventually(
        Duration::from_secs(5),
        || async { Utc::now() > spec.ends_at },
        true,
    )
    .await;
    lose_sale(&env, sale).await;
    let r = gw.reserve(sale, &env.token("holder")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{r:?}");
    assert!(r.retry_after().is_some());
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_key_of_a_settled_sale_has_an_end_and_the_index_drops_it() {
    let env = TestEnv::with(|s| s.redis.retention_secs = 300).await;
    let gw = env.spawn_gateway().await;
    let _writer = env.spawn_order_writer().await;
    let now = Utc::now();
    let spec = SaleSpec {
        ends_at: now + ChronoDuration::seconds(2),
        payment_window_secs: 1,
        per_user_limit: 2,
        ..SaleSpec::stock(5)
    };
    let sale = gw.create_sale(&env, &spec).await;
    for (i, key) in ["k1", "k2"].iter().enumerate() {
        let r = gw
            .reserve_with_key(sale, &env.token(&format!("u{i}")), key)
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    }
    let limited = gw.reserve(sale, &env.token("u0")).await;
    assert_eq!(limited.status, StatusCode::CONFLICT, "{limited:?}");
    eventually(DRAIN, || env.order_count(sale), 2).await;
    eventually(DRAIN, || env.outbox_len(sale), 0).await;
    // Settled: past ends_at + payment window.
    eventually(
        Duration::from_secs(10),
        || async { Utc::now() > spec.ends_at + ChronoDuration::seconds(1) },
        true,
    )
    .await;

    let keys = env.keys_of_sale(sale).await;
    assert!(
        keys.len() >= 5,
        "sale, stock, buyers, reservations, ...: {keys:?}"
    );
    let mut conn = redis(&env).await;
    for key in &keys {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("pttl: {e}"));
        assert!(ttl > 0, "{key} never ends (PTTL {ttl})");
        // Idempotency records keep their own 24 h; everything else ends with the sale's retention.
        if !key.contains(":idem:") {
            assert!(
                ttl <= 300_000 + 5_000,
                "{key} outlives the retention: {ttl} ms"
            );
        }
    }
    let index = env.stock.keys().sales_index();
    eventually(
        DRAIN,
        || async {
            let members: Vec<i64> = redis::cmd("ZRANGE")
                .arg(&index)
                .arg(0)
                .arg(-1)
                .query_async(&mut redis(&env).await)
                .await
                .unwrap_or_default();
            members.contains(&sale.get())
        },
        false,
    )
    .await;
    env.cleanup().await;
}

/// Restoring a lost sale rebuilds its active orders, not only its buyers: a pending one can still expire
/// (its units come back once) and a paid one still counts as sold.
#[tokio::test(flavor = "multi_thread")]
async fn a_restored_sale_keeps_each_order_payable_or_expirable_once() {
    let env = TestEnv::with(|s| s.gateway.restore_quiet_ms = 300).await;
    let gw = env.spawn_gateway().await;
    let _writer = env.spawn_order_writer().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(5)).await;
    let pending = gw.reserve(sale, &env.token("pending")).await;
    let paid = gw.reserve(sale, &env.token("paid")).await;
    assert_eq!(pending.status, StatusCode::ACCEPTED, "{pending:?}");
    assert_eq!(paid.status, StatusCode::ACCEPTED, "{paid:?}");
    eventually(DRAIN, || env.order_count(sale), 2).await;
    let order = |r: &flashsale_testkit::services::Reply| {
        r.body["order_id"]
            .as_str()
            .and_then(|id| id.parse::<flashsale_domain::OrderId>().ok())
            .unwrap_or_else(|| panic!("order id in {r:?}"))
    };
    {
        use diesel_async::RunQueryDsl;
        let mut pg = env.pg().await;
        diesel::sql_query(
            "UPDATE orders SET status = 'paid', paid_at = now(), shipping_priority = 1 WHERE id = $1",
        )
        .bind::<diesel::sql_types::Uuid, _>(order(&paid).as_uuid())
        .execute(&mut pg)
        .await
        .unwrap_or_else(|e| panic!("pay in PostgreSQL: {e}"));
    }

    lose_sale(&env, sale).await;
    eventually(DRAIN, || status_of_sale(&gw, sale), StatusCode::OK).await;
    let view = gw.sale(sale).await;
    assert_eq!(
        (
            &view.body["remaining"],
            &view.body["reserved"],
            &view.body["sold"]
        ),
        (&3.into(), &1.into(), &1.into()),
        "restored counters: {view:?}"
    );

    let stock = flashsale_stock::Stock::connect(&env.settings.redis)
        .await
        .unwrap_or_else(|e| panic!("stock: {e}"));
    let overdue = stock
        .overdue(sale, i64::MAX, 10)
        .await
        .unwrap_or_else(|e| panic!("overdue: {e}"));
    assert_eq!(
        overdue,
        vec![order(&pending)],
        "only the pending order has a deadline"
    );
    let released = stock
        .release_expired(sale, &user("pending"), order(&pending))
        .await;
    assert_eq!(
        released.ok(),
        Some(flashsale_stock::ReleaseOutcome::Released)
    );
    let again = stock
        .release_expired(sale, &user("pending"), order(&pending))
        .await;
    assert_eq!(
        again.ok(),
        Some(flashsale_stock::ReleaseOutcome::AlreadyReleased)
    );
    assert_eq!(
        env.remaining(sale).await,
        Some(4),
        "the expired units came back once"
    );
    let marked = stock.mark_paid(sale, &user("paid"), order(&paid)).await;
    assert_eq!(marked.ok(), Some(flashsale_stock::PaidOutcome::AlreadyPaid));

    let retry = gw.reserve(sale, &env.token("pending")).await;
    assert_eq!(
        retry.status,
        StatusCode::ACCEPTED,
        "expired buyer may buy again: {retry:?}"
    );
    let holder = gw.reserve(sale, &env.token("paid")).await;
    assert_eq!(holder.code(), "LIMIT_EXCEEDED", "{holder:?}");
}

fn user(id: &str) -> flashsale_domain::UserId {
    flashsale_domain::UserId::parse(id).expect("valid user id")
}
