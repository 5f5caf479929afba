//! A reservation the database refused (Redis had lost writes) is cleared from Redis: it blocks nobody, and
//! `remaining + units of active orders = total_stock` again once the queues drain.

use flashsale_testkit::env::DRAIN;
use flashsale_testkit::{SaleSpec, TestEnv, eventually};
use reqwest::StatusCode;

async fn redis_cmd(env: &TestEnv, args: &[&str]) {
    let mut conn = env
        .redis()
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("redis: {e}"));
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    let _: redis::Value = cmd
        .query_async(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("redis {args:?}: {e}"));
}

fn statuses(rows: &[(String, String, String)]) -> Vec<&str> {
    let mut s: Vec<&str> = rows.iter().map(|(_, _, st)| st.as_str()).collect();
    s.sort_unstable();
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn a_buyer_rejection_gives_the_units_back_and_names_the_active_order() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let _writer = env.spawn_order_writer().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(5)).await;
    let token = env.token("ada");
    let first = gw.reserve(sale, &token).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{first:?}");
    eventually(DRAIN, || env.held(sale), 1).await;

    // Redis loses the buyer's entry (not the stock): the buyer gets a second 202 the database refuses.
    let buyers = env.stock.keys().buyers(sale);
    redis_cmd(&env, &["HDEL", &buyers, "ada"]).await;
    let second = gw.reserve(sale, &token).await;
    assert_eq!(second.status, StatusCode::ACCEPTED, "{second:?}");
    eventually(DRAIN, || env.order_count(sale), 2).await;
    assert_eq!(
        statuses(&env.orders(sale).await),
        ["pending_payment", "rejected"]
    );

    eventually(DRAIN, || env.remaining(sale), Some(4)).await;
    assert_eq!(
        env.remaining(sale).await.unwrap_or(0) + env.held(sale).await,
        5
    );
    let again = gw.reserve(sale, &token).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{again:?}");
    assert_eq!(again.code(), "LIMIT_EXCEEDED");
    assert_eq!(again.body["error"]["order_id"], first.body["order_id"]);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stock_rejection_unblocks_the_buyer_and_returns_nothing() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let _writer = env.spawn_order_writer().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(2)).await;
    for user in ["bo", "cy"] {
        let r = gw.reserve(sale, &env.token(user)).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    }
    eventually(DRAIN, || env.held(sale), 2).await;

    // Redis loses a decrement: it believes one unit is left, and sells it to a third buyer.
    let stock = env.stock.keys().stock(sale);
    redis_cmd(&env, &["SET", &stock, "1", "KEEPTTL"]).await;
    let token = env.token("dee");
    let surplus = gw.reserve(sale, &token).await;
    assert_eq!(surplus.status, StatusCode::ACCEPTED, "{surplus:?}");
    eventually(DRAIN, || env.order_count(sale), 3).await;
    assert_eq!(
        statuses(&env.orders(sale).await),
        ["pending_payment", "pending_payment", "rejected"]
    );

    // The buyer is not blocked by the refused order: the sale is simply sold out.
    eventually(
        DRAIN,
        || async { gw.reserve(sale, &token).await.code().to_owned() },
        "SOLD_OUT".to_owned(),
    )
    .await;
    assert_eq!(env.remaining(sale).await, Some(0));
    assert_eq!(env.held(sale).await, 2);
    env.cleanup().await;
}
