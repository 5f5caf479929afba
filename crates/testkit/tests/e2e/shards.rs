//! Stock shards on one Redis: a sale split over 4 key groups sells exactly its stock, keeps the per-buyer limit
//! across shards, sums its counters, lends units to a buyer whose home shard ran out, gets expired units back on
//! the shard they came from, and the relay finishes a transfer a gateway lent but never took in.

use crate::expiry::sale_with_window;
use flashsale_domain::{SaleId, UserId};
use flashsale_stock::Tag;
use flashsale_stock::shards::home_shard;
use flashsale_testkit::env::DRAIN;
use flashsale_testkit::{SaleSpec, TestEnv, eventually};
use futures_util::stream::{self, StreamExt};
use redis::AsyncCommands;
use reqwest::StatusCode;
use std::collections::HashSet;

const SHARDS: u16 = 4;

fn sharded(stock: i64) -> SaleSpec {
    SaleSpec {
        stock_shards: SHARDS.into(),
        ..SaleSpec::stock(stock)
    }
}

/// Each shard's remaining units, shard 0 first.
async fn shard_stock(env: &TestEnv, sale: SaleId) -> Vec<Option<i64>> {
    let mut conn = env
        .redis()
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let mut all = Vec::new();
    for k in 0..SHARDS {
        let key = env.stock.keys().stock(Tag::new(sale, k));
        all.push(conn.get(key).await.expect("GET stock"));
    }
    all
}

/// Transfers still recorded at their donors, over all shards.
async fn lent(env: &TestEnv, sale: SaleId) -> usize {
    let mut conn = env
        .redis()
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let mut n = 0;
    for k in 0..SHARDS {
        let key = env.stock.keys().lent(Tag::new(sale, k));
        n += conn.zcard::<_, usize>(key).await.expect("ZCARD lent");
    }
    n
}

/// `n` buyer names whose home shard is `shard`.
fn homed_on(shard: u16, n: usize, tag: &str) -> Vec<String> {
    (0..)
        .map(|i| format!("{tag}-{i}"))
        .filter(|u| home_shard(&UserId::parse(u.clone()).expect("user"), SHARDS) == shard)
        .take(n)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_race_on_a_four_shard_sale_sells_exactly_the_stock_once_per_buyer() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let _writer = env.spawn_order_writer().await;
    let sale = gw.create_sale(&env, &sharded(40)).await;
    assert_eq!(
        shard_stock(&env, sale).await,
        vec![Some(10); 4],
        "split evenly"
    );
    assert_eq!(gw.sale(sale).await.body["stock_shards"], 4);

    let tokens: Vec<String> = (0..400).map(|i| env.token(&format!("sb-{i}"))).collect();
    // In token order (`buffered`), so a reply's index names its buyer.
    let replies: Vec<_> = stream::iter(tokens.iter().map(|t| gw.reserve(sale, t)))
        .buffered(100)
        .collect()
        .await;
    let accepted: HashSet<String> = replies
        .iter()
        .filter(|r| r.status == StatusCode::ACCEPTED)
        .filter_map(|r| r.body["order_id"].as_str().map(str::to_owned))
        .collect();
    let sold_out = replies.iter().filter(|r| r.code() == "SOLD_OUT").count();
    assert_eq!(accepted.len(), 40, "exactly the stock, over all shards");
    assert_eq!(sold_out, 360, "SOLD_OUT once every shard is empty");
    assert_eq!(shard_stock(&env, sale).await, vec![Some(0); 4]);
    assert_eq!(lent(&env, sale).await, 0, "every transfer was taken in");

    // The per-buyer limit holds across shards: a winner asking again hears of their order.
    let (i, winner) = replies
        .iter()
        .enumerate()
        .find(|(_, r)| r.status == StatusCode::ACCEPTED)
        .expect("a winner");
    let again = gw.reserve(sale, &tokens[i]).await;
    assert_eq!(again.code(), "LIMIT_EXCEEDED", "{again:?}");
    assert_eq!(again.body["error"]["order_id"], winner.body["order_id"]);

    let view = gw.sale(sale).await;
    assert_eq!(
        (
            &view.body["remaining"],
            &view.body["reserved"],
            &view.body["status"]
        ),
        (
            &serde_json::json!(0),
            &serde_json::json!(40),
            &serde_json::json!("sold_out")
        ),
        "{view:?}"
    );
    eventually(DRAIN, || env.order_count(sale), 40).await;
    let rows: HashSet<String> = env.orders(sale).await.into_iter().map(|r| r.0).collect();
    assert_eq!(rows, accepted, "one row per 202");
    assert_eq!(env.held(sale).await, 40);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn buyers_of_one_shard_borrow_the_others_units_and_expired_units_come_back_once() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let _writer = env.spawn_order_writer().await;
    let _expiry = env.spawn_expiry().await;
    let spec = SaleSpec {
        stock_shards: SHARDS.into(),
        ..sale_with_window(8, 2)
    };
    let sale = gw.create_sale(&env, &spec).await;

    // Eight buyers who all live on shard 0 buy all eight units: six of them came from the other shards.
    let homed = homed_on(0, 9, "h0");
    let mut orders = HashSet::new();
    for user in &homed[..8] {
        let reply = gw.reserve(sale, &env.token(user)).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{user}: {reply:?}");
        orders.insert(
            reply.body["order_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    let last = gw.reserve(sale, &env.token(&homed[8])).await;
    assert_eq!(last.code(), "SOLD_OUT", "{last:?}");
    assert_eq!(shard_stock(&env, sale).await, vec![Some(0); 4]);
    assert_eq!(lent(&env, sale).await, 0);

    // Unpaid, they expire: all eight units return once, to shard 0 where the reservations lived.
    eventually(DRAIN, || env.remaining(sale), Some(8)).await;
    assert_eq!(
        shard_stock(&env, sale).await,
        vec![Some(8), Some(0), Some(0), Some(0)]
    );
    eventually(DRAIN, || env.held(sale), 0).await;
    let rows: HashSet<String> = env.orders(sale).await.into_iter().map(|r| r.0).collect();
    assert_eq!(rows, orders);

    // A buyer of another shard borrows from shard 0 now.
    let other = homed_on(3, 1, "h3");
    let reply = gw.reserve(sale, &env.token(&other[0])).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
    assert_eq!(env.remaining(sale).await, Some(7));
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_relay_takes_in_units_a_gateway_lent_and_never_delivered() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let sale = gw.create_sale(&env, &sharded(8)).await;

    // What a gateway that died right after `lend.lua` leaves: units gone from shard 2, recorded as lent to 1
    // (scored at the epoch, so the relay finds it stale at once).
    let mut conn = env
        .redis()
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let donor = Tag::new(sale, 2);
    let _: i64 = conn
        .decr(env.stock.keys().stock(donor), 2)
        .await
        .expect("DECRBY");
    let _: i64 = conn
        .zadd(env.stock.keys().lent(donor), "1|2|lost-transfer", 1)
        .await
        .expect("ZADD");
    assert_eq!(env.remaining(sale).await, Some(6));

    eventually(
        DRAIN,
        || shard_stock(&env, sale),
        vec![Some(2), Some(4), Some(0), Some(2)],
    )
    .await;
    assert_eq!(lent(&env, sale).await, 0, "forgotten at the donor");
    assert_eq!(
        env.remaining(sale).await,
        Some(8),
        "no unit lost, none twice"
    );
    // Taken in once: the same transfer again changes nothing.
    let _: i64 = conn
        .zadd(env.stock.keys().lent(donor), "1|2|lost-transfer", 1)
        .await
        .expect("ZADD");
    eventually(DRAIN, || lent(&env, sale), 0).await;
    assert_eq!(env.remaining(sale).await, Some(8));
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_lost_shard_is_restored_with_its_buyers_and_no_unit_counted_twice() {
    let env = TestEnv::with(|s| s.gateway.restore_quiet_ms = 300).await;
    let gw = env.spawn_gateway().await;
    let _writer = env.spawn_order_writer().await;
    let sale = gw.create_sale(&env, &sharded(8)).await;
    let homed = homed_on(2, 3, "h2");
    let mut first = Vec::new();
    for user in &homed[..2] {
        let reply = gw.reserve(sale, &env.token(user)).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
        first.push(reply.body["order_id"].clone());
    }
    eventually(DRAIN, || env.held(sale), 2).await;
    assert_eq!(
        shard_stock(&env, sale).await,
        vec![Some(2), Some(2), Some(0), Some(2)]
    );

    // Shard 2 alone loses its keys (its primary failed over without them): its stock, buyers, reservations.
    let mut conn = env
        .redis()
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let pattern = format!("{}{{sale:{}:2}}:*", env.stock.keys().prefix(), sale.get());
    let lost: Vec<String> = {
        let iter = conn.scan_match::<_, String>(&pattern).await.expect("SCAN");
        iter.filter_map(|k| async move { k.ok() }).collect().await
    };
    assert!(lost.len() >= 4, "shard 2 had state: {lost:?}");
    let _: () = conn.del(&lost).await.expect("DEL");

    // The warmer restores it from PostgreSQL: both orders on their home shard, and none of the 6 units the
    // other shards still hold counted again.
    eventually(
        DRAIN,
        || shard_stock(&env, sale),
        vec![Some(2), Some(2), Some(0), Some(2)],
    )
    .await;
    for (user, order) in homed[..2].iter().zip(&first) {
        let again = gw.reserve(sale, &env.token(user)).await;
        assert_eq!(again.code(), "LIMIT_EXCEEDED", "{again:?}");
        assert_eq!(&again.body["error"]["order_id"], order);
    }
    let third = gw.reserve(sale, &env.token(&homed[2])).await;
    assert_eq!(
        third.status,
        StatusCode::ACCEPTED,
        "lent from a live shard: {third:?}"
    );
    assert_eq!(env.remaining(sale).await, Some(5));
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quantity_no_single_shard_holds_is_gathered_from_several() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let spec = SaleSpec {
        per_user_limit: 3,
        ..sharded(4)
    };
    let sale = gw.create_sale(&env, &spec).await;
    assert_eq!(shard_stock(&env, sale).await, vec![Some(1); 4]);

    // One unit on each shard; a buyer of shard 0 asks for three: each donor lends its one, the last covers.
    let buyer = &homed_on(0, 1, "q0")[0];
    let reply = gw.reserve_quantity(sale, &env.token(buyer), 3).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
    assert_eq!(reply.body["quantity"], 3);
    assert_eq!(env.remaining(sale).await, Some(1));
    assert_eq!(lent(&env, sale).await, 0);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_buyer_of_another_shard_pays_and_the_sale_counts_it_sold() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let _writer = env.spawn_order_writer().await;
    let pay = env.spawn_payment().await;
    let sale = gw.create_sale(&env, &sharded(8)).await;

    // Checkout, the webhook and Redis's `sold` all find the reservation on the buyer's home shard, 2.
    let buyer = &homed_on(2, 1, "p2")[0];
    let token = env.token(buyer);
    let reply = gw.reserve(sale, &token).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
    let order = reply.body["order_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let shown = gw
        .get(&format!("/api/v1/orders/{order}"), Some(&token))
        .await;
    assert_eq!(shown.body["status"], "pending_payment", "{shown:?}");
    eventually(DRAIN, || env.order_count(sale), 1).await;
    let checkout = pay.checkout(&order, &token).await;
    assert_eq!(checkout.status, StatusCode::OK, "{checkout:?}");
    let payment = checkout.body["payment_id"].as_str().unwrap_or_default();
    let done = pay.complete(payment, "succeeded").await;
    assert_eq!(done.body["status"], "paid", "{done:?}");

    let view = gw.sale(sale).await;
    assert_eq!(
        (
            &view.body["remaining"],
            &view.body["reserved"],
            &view.body["sold"]
        ),
        (
            &serde_json::json!(7),
            &serde_json::json!(0),
            &serde_json::json!(1)
        ),
        "{view:?}"
    );
    env.cleanup().await;
}
