//! A 4-shard sale on a Redis Cluster of 3 primaries: its shards sit on different primaries, and the race
//! through two gateways still sells exactly the stock, once per buyer, with every 202 an order; buyers whose
//! home shard ran out get units lent by shards on other primaries.

use crate::burst::race;
use crate::redis_race::env_on;
use flashsale_domain::UserId;
use flashsale_stock::Tag;
use flashsale_stock::shards::home_shard;
use flashsale_testkit::env::DRAIN;
use flashsale_testkit::{RedisCluster, SaleSpec, eventually};
use reqwest::StatusCode;
use std::collections::HashSet;

#[tokio::test(flavor = "multi_thread")]
async fn a_race_on_a_four_shard_sale_spreads_over_primaries_and_sells_exactly_the_stock() {
    let cluster = RedisCluster::start().await;
    let env = env_on(&cluster).await;
    let gateways = [env.spawn_gateway().await, env.spawn_gateway().await];
    let _writer = env.spawn_order_writer().await;
    let spec = SaleSpec {
        stock_shards: 4,
        ..SaleSpec::stock(100)
    };
    let sale = gateways[0].create_sale(&env, &spec).await;

    let mut owners = HashSet::new();
    for k in 0..4 {
        let key = env.stock.keys().stock(Tag::new(sale, k));
        owners.insert(cluster.primary_of_key(&key).await);
    }
    assert!(
        owners.len() >= 2,
        "the shards' slots spread over primaries: {owners:?}"
    );

    let replies = race(&env, &gateways, sale, "shard-buyer", 0..2000, 200).await;
    let accepted: HashSet<String> = replies
        .iter()
        .filter(|r| r.status == StatusCode::ACCEPTED)
        .filter_map(|r| r.body["order_id"].as_str().map(str::to_owned))
        .collect();
    let sold_out = replies.iter().filter(|r| r.code() == "SOLD_OUT").count();
    assert_eq!(accepted.len(), 100, "exactly the stock over all shards");
    assert_eq!(sold_out, 1900, "everyone else hears SOLD_OUT");

    eventually(DRAIN, || env.order_count(sale), 100).await;
    let rows = env.orders(sale).await;
    let ids: HashSet<String> = rows.iter().map(|(id, _, _)| id.clone()).collect();
    assert_eq!(ids, accepted, "one row per 202");
    let buyers: HashSet<&String> = rows.iter().map(|(_, user, _)| user).collect();
    assert_eq!(buyers.len(), 100, "one order per buyer");
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

    // Eight buyers of shard 0 buy a second sale's eight units: six are lent by shards on other primaries.
    let small = gateways[0]
        .create_sale(
            &env,
            &SaleSpec {
                stock_shards: 4,
                ..SaleSpec::stock(8)
            },
        )
        .await;
    let homed: Vec<String> = (0..)
        .map(|i| format!("home0-{i}"))
        .filter(|u| home_shard(&UserId::parse(u.clone()).expect("user"), 4) == 0)
        .take(9)
        .collect();
    for (i, user) in homed.iter().enumerate() {
        let reply = gateways[i % 2].reserve(small, &env.token(user)).await;
        let want = if i < 8 { "202" } else { "SOLD_OUT" };
        let got = if reply.status == StatusCode::ACCEPTED {
            "202".to_owned()
        } else {
            reply.code().to_owned()
        };
        assert_eq!(got, want, "{user}: {reply:?}");
    }
    eventually(DRAIN, || env.order_count(small), 8).await;
    env.cleanup().await;
}
