//! The reservation spine end to end: exact stock, the per-buyer limit, idempotency, quantities.

use flashsale_testkit::env::DRAIN;
use flashsale_testkit::{SaleSpec, TestEnv, eventually};
use futures_util::stream::{self, StreamExt};
use reqwest::StatusCode;
use std::collections::HashSet;

#[tokio::test(flavor = "multi_thread")]
async fn a_race_sells_exactly_the_stock() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let _writer = env.spawn_order_writer().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(100)).await;

    let tokens: Vec<String> = (0..2000)
        .map(|i| env.token(&format!("buyer-{i}")))
        .collect();
    let replies: Vec<_> = stream::iter(tokens.iter().map(|t| gw.reserve(sale, t)))
        .buffer_unordered(200)
        .collect()
        .await;

    let accepted: Vec<_> = replies
        .iter()
        .filter(|r| r.status == StatusCode::ACCEPTED)
        .collect();
    let sold_out = replies
        .iter()
        .filter(|r| r.status == StatusCode::CONFLICT && r.code() == "SOLD_OUT")
        .count();
    assert_eq!(accepted.len(), 100, "exactly the stock is reserved");
    assert_eq!(sold_out, 1900, "everyone else hears SOLD_OUT");

    eventually(DRAIN, || env.order_count(sale), 100).await;
    let rows = env.orders(sale).await;
    let buyers: HashSet<_> = rows.iter().map(|(_, user, _)| user.clone()).collect();
    assert_eq!(buyers.len(), 100, "no buyer twice");
    let ids: HashSet<_> = rows.iter().map(|(id, _, _)| id.clone()).collect();
    for r in &accepted {
        let id = r.body["order_id"].as_str().unwrap_or_default();
        assert!(ids.contains(id), "202 {id} has its row");
    }
    assert!(rows.iter().all(|(_, _, s)| s == "pending_payment"));
    assert_eq!(env.remaining(sale).await, Some(0));
    assert_eq!(env.held(sale).await, 100);
    let status = gw.sale(sale).await;
    assert_eq!(status.body["status"], "sold_out");
    assert_eq!(status.body["reserved"], 100);
    eventually(DRAIN, || env.outbox_len(sale), 0).await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_buyer_gets_one_order_however_often_they_press() {
    // The burst must admit all twenty attempts, so the per-buyer limit (not the rate limit) is what answers.
    let env = TestEnv::with(|s| s.gateway.buyer_rate_burst = 100).await;
    let gw = env.spawn_gateway().await;
    let _writer = env.spawn_order_writer().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(10)).await;
    let token = env.token("alice");

    let replies = futures_util::future::join_all((0..20).map(|_| gw.reserve(sale, &token))).await;
    let accepted: Vec<_> = replies
        .iter()
        .filter(|r| r.status == StatusCode::ACCEPTED)
        .collect();
    assert_eq!(accepted.len(), 1);
    let order_id = accepted[0].body["order_id"].clone();
    let limited: Vec<_> = replies
        .iter()
        .filter(|r| r.status == StatusCode::CONFLICT && r.code() == "LIMIT_EXCEEDED")
        .collect();
    assert_eq!(limited.len(), 19);
    assert!(
        limited
            .iter()
            .all(|r| r.body["error"]["order_id"] == order_id),
        "LIMIT_EXCEEDED names the held order"
    );

    eventually(DRAIN, || env.order_count(sale), 1).await;
    assert_eq!(env.remaining(sale).await, Some(9));
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idempotency_key_answers_the_same_202_and_costs_nothing_more() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let _writer = env.spawn_order_writer().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(10)).await;
    let token = env.token("bob");

    let replies = futures_util::future::join_all(
        (0..20).map(|_| gw.reserve_with_key(sale, &token, "press-1")),
    )
    .await;
    assert!(
        replies.iter().all(|r| r.status == StatusCode::ACCEPTED),
        "{replies:?}"
    );
    let first = &replies[0].body;
    assert!(replies.iter().all(|r| &r.body == first), "identical bodies");

    eventually(DRAIN, || env.order_count(sale), 1).await;
    assert_eq!(env.remaining(sale).await, Some(9));

    // The same key with another quantity can never be the same request.
    let other = gw
        .send(
            gw.reservation(sale, &token)
                .header("Idempotency-Key", "press-1")
                .json(&serde_json::json!({ "quantity": 2 })),
        )
        .await;
    assert_eq!(other.status, StatusCode::BAD_REQUEST);
    assert_eq!(other.code(), "INVALID_REQUEST");

    // A malformed key is refused before anything is taken.
    let bad = gw
        .reserve_with_key(sale, &env.token("carol"), "spaces are not allowed")
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(env.remaining(sale).await, Some(9));
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn quantities_within_the_per_user_limit() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let _writer = env.spawn_order_writer().await;
    let spec = SaleSpec {
        per_user_limit: 2,
        ..SaleSpec::stock(10)
    };
    let sale = gw.create_sale(&env, &spec).await;

    let two = gw.reserve_quantity(sale, &env.token("dan"), 2).await;
    assert_eq!(two.status, StatusCode::ACCEPTED, "{two:?}");
    assert_eq!(two.body["quantity"], 2);
    assert_eq!(two.body["amount"], "5980.00");

    let three = gw.reserve_quantity(sale, &env.token("erin"), 3).await;
    assert_eq!(three.status, StatusCode::BAD_REQUEST, "{three:?}");
    assert_eq!(three.code(), "INVALID_REQUEST");

    eventually(DRAIN, || env.order_count(sale), 1).await;
    assert_eq!(env.remaining(sale).await, Some(8));
    assert_eq!(env.held(sale).await, 2);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_buyer_rate_limit_answers_429_with_retry_after() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(10)).await;
    let token = env.token("frank");
    let mut replies = Vec::new();
    for _ in 0..6 {
        replies.push(gw.reserve(sale, &token).await);
    }
    assert_eq!(replies[0].status, StatusCode::ACCEPTED);
    assert!(replies[1..5].iter().all(|r| r.code() == "LIMIT_EXCEEDED"));
    assert_eq!(replies[5].status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(replies[5].code(), "RATE_LIMITED");
    assert!(
        replies[5].retry_after().is_some_and(|s| s >= 1),
        "integer Retry-After"
    );
    assert_eq!(env.remaining(sale).await, Some(9));
    env.cleanup().await;
}
