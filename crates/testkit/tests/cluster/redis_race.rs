//! flashsale on a Redis Cluster of 3 primaries and 3 replicas (`redis.mode = "cluster"`), through two
//! gateways at once: the race sells exactly the stock, every 202 becomes one order, retries with an
//! Idempotency-Key replay, sales on different slots are served by different primaries, and scripts reload on
//! NOSCRIPT on each of them, and the live feed hears changes made on any primary.

use super::burst::race;
use flashsale_platform::settings::RedisMode;
use flashsale_testkit::env::DRAIN;
use flashsale_testkit::{RedisCluster, SaleSpec, SseStream, TestEnv, eventually};
use reqwest::StatusCode;
use secrecy::SecretString;
use std::collections::HashSet;
use std::time::Duration;

/// A test environment whose services use `cluster` (PostgreSQL and RabbitMQ are the machine's own).
pub async fn env_on(cluster: &RedisCluster) -> TestEnv {
    let seeds = cluster.seeds();
    TestEnv::with(move |s| {
        s.redis.mode = RedisMode::Cluster;
        s.redis.url = SecretString::from(seeds);
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_race_through_two_gateways_on_a_redis_cluster_sells_exactly_the_stock() {
    let cluster = RedisCluster::start().await;
    let env = env_on(&cluster).await;
    let gateways = [env.spawn_gateway().await, env.spawn_gateway().await];
    let _writer = env.spawn_order_writer().await;
    let sale = gateways[0].create_sale(&env, &SaleSpec::stock(100)).await;

    let replies = race(&env, &gateways, sale, "buyer", 0..2000, 200).await;
    let accepted: Vec<_> = replies
        .iter()
        .filter(|r| r.status == StatusCode::ACCEPTED)
        .collect();
    let sold_out = replies.iter().filter(|r| r.code() == "SOLD_OUT").count();
    assert_eq!(accepted.len(), 100, "exactly the stock is reserved");
    assert_eq!(sold_out, 1900, "everyone else hears SOLD_OUT");

    eventually(DRAIN, || env.order_count(sale), 100).await;
    let rows = env.orders(sale).await;
    let ids: HashSet<_> = rows.iter().map(|(id, _, _)| id.clone()).collect();
    for r in &accepted {
        let id = r.body["order_id"].as_str().unwrap_or_default();
        assert!(ids.contains(id), "202 {id} has its row");
    }
    assert_eq!(env.held(sale).await, 100);
    for gw in &gateways {
        let status = gw.sale(sale).await;
        assert_eq!(
            (
                status.body["remaining"].as_i64(),
                status.body["reserved"].as_i64()
            ),
            (Some(0), Some(100)),
            "{status:?}"
        );
    }
    // The sale's stock lives on the primary that owns its slot, and says 0 there.
    let stock_key = env.stock.keys().stock(sale);
    let owner = cluster.primary_of_key(&stock_key).await;
    let left: Option<i64> =
        redis::AsyncCommands::get(&mut cluster.connect(owner).await, &stock_key)
            .await
            .expect("GET on the owner");
    assert_eq!(left, Some(0));
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sales_on_different_primaries_and_idempotent_retries_work_on_a_cluster() {
    let cluster = RedisCluster::start().await;
    let env = env_on(&cluster).await;
    let gw = env.spawn_gateway().await;
    let other = env.spawn_gateway().await;
    let _writer = env.spawn_order_writer().await;

    // Sales until two of them live on different primaries.
    let mut owners = Vec::new();
    for _ in 0..8 {
        let sale = gw.create_sale(&env, &SaleSpec::stock(5)).await;
        let owner = cluster.primary_of_key(&env.stock.keys().stock(sale)).await;
        owners.push((sale, owner));
        if owners.iter().map(|(_, o)| *o).collect::<HashSet<_>>().len() > 1 {
            break;
        }
    }
    let primaries: HashSet<_> = owners.iter().map(|(_, o)| *o).collect();
    assert!(primaries.len() > 1, "sales on one primary only: {owners:?}");

    let token = env.token("dora");
    for (sale, _) in &owners {
        let first = gw.reserve_with_key(*sale, &token, "press-1").await;
        assert_eq!(first.status, StatusCode::ACCEPTED, "{first:?}");
        // The same press again, through the other gateway: the first 202 again.
        let again = other.reserve_with_key(*sale, &token, "press-1").await;
        assert_eq!(again.status, StatusCode::ACCEPTED, "{again:?}");
        assert_eq!(again.body["order_id"], first.body["order_id"]);
        // A new press: the buyer already holds an order.
        let second = other.reserve(*sale, &token).await;
        assert_eq!(second.code(), "LIMIT_EXCEEDED", "{second:?}");
        let order = first.body["order_id"].as_str().unwrap_or_default();
        let seen = gw
            .get(&format!("/api/v1/orders/{order}"), Some(&token))
            .await;
        assert_eq!(seen.status, StatusCode::OK, "{seen:?}");
    }
    // Every node forgets every script (as after a restart or a failover to a fresh node): the next calls
    // answer NOSCRIPT on whichever primary owns their sale, which loads the script there and runs it again.
    for port in cluster.ports() {
        let () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut cluster.connect(port).await)
            .await
            .expect("SCRIPT FLUSH");
    }
    for (sale, _) in &owners {
        let other_buyer = env.token("erin");
        let after = other.reserve(*sale, &other_buyer).await;
        assert_eq!(
            after.status,
            StatusCode::ACCEPTED,
            "after SCRIPT FLUSH: {after:?}"
        );
    }

    // The buyer's orders span the sales (one read per sale, each to its own primary).
    let wanted = i64::try_from(owners.len()).unwrap_or(i64::MAX);
    eventually(
        DRAIN,
        || async {
            let mine = other.get("/api/v1/me/orders", Some(&token)).await;
            mine.body["orders"]
                .as_array()
                .map_or(0, |a| i64::try_from(a.len()).unwrap_or(0))
        },
        wanted,
    )
    .await;
    let list = gw.get("/api/v1/sales", None).await;
    assert_eq!(
        list.body["sales"].as_array().map(Vec::len),
        Some(owners.len()),
        "{list:?}"
    );
    let ready = gw.get("/readyz", None).await;
    assert_eq!(ready.status, StatusCode::OK, "{ready:?}");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_live_feed_follows_a_sale_whose_primary_is_not_the_node_it_subscribed_on() {
    let cluster = RedisCluster::start().await;
    let seeds = cluster.seeds();
    // No periodic re-read: every change must arrive by Pub/Sub.
    let env = TestEnv::with(move |s| {
        s.redis.mode = RedisMode::Cluster;
        s.redis.url = SecretString::from(seeds);
        s.sse.recheck_ms = 60_000;
    })
    .await;
    let feed = env.spawn_gateway().await;
    let buyer_side = env.spawn_gateway().await;
    // The gateways subscribe through the first seed; the sale must live on another primary, so the
    // announcement crosses the cluster bus.
    let first_seed = cluster.ports()[0];
    let mut sale = feed.create_sale(&env, &SaleSpec::stock(5)).await;
    while cluster.primary_of_key(&env.stock.keys().stock(sale)).await == first_seed {
        sale = feed.create_sale(&env, &SaleSpec::stock(5)).await;
    }
    let mut stream = SseStream::open(
        &feed.http,
        &format!("{}/api/v1/sales/{sale}/events", feed.base),
        None,
    )
    .await;
    assert_eq!(stream.status, StatusCode::OK);
    stream
        .until(Duration::from_secs(2), |d| d["remaining"] == 5)
        .await
        .expect("counters on connect");
    let reply = buyer_side.reserve(sale, &env.token("ivy")).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
    stream
        .until(Duration::from_millis(1500), |d| d["remaining"] == 4)
        .await
        .expect("the reservation on the other gateway, within the second");
    env.cleanup().await;
}
