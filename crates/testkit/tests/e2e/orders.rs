//! Order look-ups: a fresh order is never 404, another buyer's order is, and the list is newest first.

use flashsale_testkit::env::DRAIN;
use flashsale_testkit::{SaleSpec, TestEnv, eventually};
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread")]
async fn a_fresh_order_answers_pending_payment_before_its_row_exists() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    // No order-writer yet: the row cannot exist.
    let first = gw.create_sale(&env, &SaleSpec::stock(5)).await;
    let second = gw.create_sale(&env, &SaleSpec::stock(5)).await;
    let token = env.token("kim");
    let a = gw.reserve(first, &token).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    let order = a.body["order_id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(env.order_count(first).await, 0);

    let fresh = gw
        .get(&format!("/api/v1/orders/{order}"), Some(&token))
        .await;
    assert_eq!(fresh.status, StatusCode::OK, "{fresh:?}");
    assert_eq!(fresh.body["status"], "pending_payment");
    assert_eq!(fresh.body["order_id"], order.as_str());
    assert_eq!(fresh.body["amount"], "2990.00");
    assert_eq!(fresh.body["expires_at"], a.body["expires_at"]);

    let stranger = gw
        .get(&format!("/api/v1/orders/{order}"), Some(&env.token("lee")))
        .await;
    assert_eq!(stranger.status, StatusCode::NOT_FOUND);
    assert_eq!(stranger.code(), "ORDER_NOT_FOUND");
    let unknown = gw
        .get(
            &format!("/api/v1/orders/{}", uuid::Uuid::now_v7()),
            Some(&token),
        )
        .await;
    assert_eq!(unknown.code(), "ORDER_NOT_FOUND");
    let malformed = gw.get("/api/v1/orders/not-a-uuid", Some(&token)).await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    let anonymous = gw.get(&format!("/api/v1/orders/{order}"), None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);

    let b = gw.reserve(second, &token).await;
    assert_eq!(b.status, StatusCode::ACCEPTED);
    let mine = gw.get("/api/v1/me/orders", Some(&token)).await;
    let listed: Vec<_> = mine.body["orders"].as_array().cloned().unwrap_or_default();
    assert_eq!(listed.len(), 2, "{mine:?}");
    assert_eq!(listed[0]["order_id"], b.body["order_id"], "newest first");

    // Once written, the same answers come from PostgreSQL.
    let _writer = env.spawn_order_writer().await;
    eventually(DRAIN, || env.order_count(first), 1).await;
    eventually(DRAIN, || env.order_count(second), 1).await;
    let stored = gw
        .get(&format!("/api/v1/orders/{order}"), Some(&token))
        .await;
    assert_eq!(stored.body["status"], "pending_payment");
    assert_eq!(stored.body["created_at"], fresh.body["created_at"]);
    let mine = gw.get("/api/v1/me/orders", Some(&token)).await;
    assert_eq!(
        mine.body["orders"].as_array().map(Vec::len),
        Some(2),
        "no duplicates once written"
    );
    assert_eq!(
        gw.get("/api/v1/me/orders", Some(&env.token("lee")))
            .await
            .body["orders"]
            .as_array()
            .map(Vec::len),
        Some(0)
    );
    env.cleanup().await;
}
