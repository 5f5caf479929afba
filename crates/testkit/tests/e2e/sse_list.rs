//! `GET /api/v1/sales`: upcoming and active sales, soonest first, in pages, with live counters; ended sales
//! are left out and bad parameters are 400.

use chrono::{Duration as ChronoDuration, Utc};
use flashsale_testkit::{SaleSpec, TestEnv};
use reqwest::StatusCode;
use serde_json::Value;

fn spec(starts_in_min: i64, ends_in_min: i64) -> SaleSpec {
    let now = Utc::now();
    SaleSpec {
        stock: 10,
        starts_at: now + ChronoDuration::minutes(starts_in_min),
        ends_at: now + ChronoDuration::minutes(ends_in_min),
        ..SaleSpec::default()
    }
}

fn ids(page: &Value) -> Vec<i64> {
    page["sales"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["id"].as_i64()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn sales_are_listed_soonest_first_in_pages_with_live_counters() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let _writer = env.spawn_order_writer().await;
    // Created out of order; one has ended and is never listed.
    let later = gw.create_sale(&env, &spec(120, 180)).await;
    let ended = gw.create_sale(&env, &spec(-120, -60)).await;
    let active = gw.create_sale(&env, &spec(-10, 60)).await;
    let soon = gw.create_sale(&env, &spec(60, 120)).await;
    let older = gw.create_sale(&env, &spec(-20, 60)).await;
    assert_eq!(
        gw.reserve(active, &env.token("lia")).await.status,
        StatusCode::ACCEPTED
    );

    let all = gw.get("/api/v1/sales", None).await;
    assert_eq!(all.status, StatusCode::OK, "{all:?}");
    let order: Vec<i64> = [older, active, soon, later]
        .iter()
        .map(|s| s.get())
        .collect();
    assert_eq!(ids(&all.body), order, "{all:?}");
    assert!(!ids(&all.body).contains(&ended.get()));
    assert_eq!(all.body["next_cursor"], Value::Null);
    let shown = &all.body["sales"][1];
    assert_eq!(
        (&shown["remaining"], &shown["reserved"], &shown["status"]),
        (&Value::from(9), &Value::from(1), &Value::from("active")),
        "{shown}"
    );
    assert_eq!(all.body["sales"][2]["status"], "upcoming");
    // Each entry has the fields of GET /api/v1/sales/{id}.
    let one = gw.sale(active).await;
    assert_eq!(shown, &one.body);

    // Pages of two.
    let first = gw.get("/api/v1/sales?limit=2", None).await;
    assert_eq!(ids(&first.body), order[..2]);
    let cursor = first.body["next_cursor"].as_str().expect("a next page");
    let second = gw
        .get(&format!("/api/v1/sales?limit=2&cursor={cursor}"), None)
        .await;
    assert_eq!(ids(&second.body), order[2..], "{second:?}");
    assert_eq!(second.body["next_cursor"], Value::Null);

    for bad in [
        "limit=0",
        "limit=101",
        "limit=two",
        "cursor=nonsense",
        "page=2",
    ] {
        let refused = gw.get(&format!("/api/v1/sales?{bad}"), None).await;
        assert_eq!(
            (refused.status, refused.code()),
            (StatusCode::BAD_REQUEST, "INVALID_REQUEST"),
            "{bad}: {refused:?}"
        );
    }
    env.cleanup().await;
}
