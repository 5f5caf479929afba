//! Every refusal answers its documented status and code, and holds no stock.

use chrono::{Duration, Utc};
use flashsale_domain::SaleId;
use flashsale_testkit::{GatewayHandle, SaleSpec, TestEnv};
use reqwest::StatusCode;
use serde_json::json;

async fn expect(reply: flashsale_testkit::Reply, status: StatusCode, code: &str) {
    assert_eq!(reply.status, status, "{reply:?}");
    assert_eq!(reply.code(), code, "{reply:?}");
    assert!(reply.body["error"]["message"].is_string(), "{reply:?}");
}

async fn unchanged(env: &TestEnv, gw: &GatewayHandle, sale: SaleId, stock: i64) {
    assert_eq!(env.remaining(sale).await, Some(stock), "stock unchanged");
    assert_eq!(gw.sale(sale).await.body["reserved"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn sale_window_and_unknown_sales() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let now = Utc::now();
    let upcoming = gw
        .create_sale(
            &env,
            &SaleSpec {
                starts_at: now + Duration::hours(1),
                ends_at: now + Duration::hours(2),
                ..SaleSpec::stock(5)
            },
        )
        .await;
    let ended = gw
        .create_sale(
            &env,
            &SaleSpec {
                starts_at: now - Duration::hours(2),
                ends_at: now - Duration::hours(1),
                ..SaleSpec::stock(5)
            },
        )
        .await;
    let token = env.token("gina");

    expect(
        gw.reserve(upcoming, &token).await,
        StatusCode::CONFLICT,
        "SALE_NOT_STARTED",
    )
    .await;
    expect(
        gw.reserve(ended, &token).await,
        StatusCode::CONFLICT,
        "SALE_ENDED",
    )
    .await;
    assert_eq!(gw.sale(upcoming).await.body["status"], "upcoming");
    assert_eq!(gw.sale(ended).await.body["status"], "ended");
    unchanged(&env, &gw, upcoming, 5).await;
    unchanged(&env, &gw, ended, 5).await;

    let unknown = SaleId::new(987_654_321).expect("positive");
    expect(
        gw.reserve(unknown, &token).await,
        StatusCode::NOT_FOUND,
        "SALE_NOT_FOUND",
    )
    .await;
    expect(
        gw.sale(unknown).await,
        StatusCode::NOT_FOUND,
        "SALE_NOT_FOUND",
    )
    .await;
    for bad in ["abc", "0", "-3", "1.5"] {
        expect(
            gw.get(&format!("/api/v1/sales/{bad}"), None).await,
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        )
        .await;
        let r = gw
            .send(
                gw.http
                    .post(format!("{}/api/v1/sales/{bad}/reservations", gw.base))
                    .bearer_auth(&token),
            )
            .await;
        expect(r, StatusCode::BAD_REQUEST, "INVALID_REQUEST").await;
    }
    expect(
        gw.get("/no/such/route", None).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )
    .await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_bodies_are_400_or_413_and_take_nothing() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let sale = gw
        .create_sale(
            &env,
            &SaleSpec {
                per_user_limit: 3,
                ..SaleSpec::stock(5)
            },
        )
        .await;
    let url = format!("{}/api/v1/sales/{sale}/reservations", gw.base);
    let bodies = [
        "{not json",
        "[]",
        "null",
        r#"{"quantity": null}"#,
        r#"{"quantity": 0}"#,
        r#"{"quantity": -1}"#,
        r#"{"quantity": 1.5}"#,
        r#"{"quantity": "1"}"#,
        r#"{"quantity": 1, "extra": true}"#,
    ];
    for (i, body) in bodies.iter().enumerate() {
        let token = env.token(&format!("body-{i}"));
        let r = gw
            .send(
                gw.http
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(*body),
            )
            .await;
        expect(r, StatusCode::BAD_REQUEST, "INVALID_REQUEST").await;
    }
    let wrong_type = gw
        .send(
            gw.http
                .post(&url)
                .bearer_auth(env.token("typed"))
                .header("content-type", "text/plain")
                .body(r#"{"quantity":1}"#),
        )
        .await;
    expect(wrong_type, StatusCode::BAD_REQUEST, "INVALID_REQUEST").await;
    let huge = format!(r#"{{"quantity": 1, "pad": "{}"}}"#, "x".repeat(17 * 1024));
    let too_large = gw
        .send(
            gw.http
                .post(&url)
                .bearer_auth(env.token("huge"))
                .header("content-type", "application/json")
                .body(huge),
        )
        .await;
    expect(
        too_large,
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
    )
    .await;
    unchanged(&env, &gw, sale, 5).await;

    // `{}` and an empty body both mean one unit.
    let empty_object = gw
        .send(
            gw.http
                .post(&url)
                .bearer_auth(env.token("empty-object"))
                .json(&json!({})),
        )
        .await;
    assert_eq!(
        empty_object.status,
        StatusCode::ACCEPTED,
        "{empty_object:?}"
    );
    assert_eq!(empty_object.body["quantity"], 1);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_checked_before_anything_is_taken() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(5)).await;
    let url = format!("{}/api/v1/sales/{sale}/reservations", gw.base);

    let missing = gw.send(gw.http.post(&url)).await;
    expect(missing, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let expired = env.token_expiring("hal", Utc::now() - Duration::minutes(2));
    expect(
        gw.reserve(sale, &expired).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    )
    .await;
    let forged = env.token_signed("hal", Utc::now() + Duration::hours(1), "not-the-secret");
    expect(
        gw.reserve(sale, &forged).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    )
    .await;
    // alg "none": header {"alg":"none","typ":"JWT"}, no signature.
    let none = format!(
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
        base64_url(&format!(
            r#"{{"sub":"hal","exp":{}}}"#,
            (Utc::now() + Duration::hours(1)).timestamp()
        ))
    );
    expect(
        gw.reserve(sale, &none).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    )
    .await;
    let not_bearer = gw
        .send(gw.http.post(&url).header("authorization", "Basic abc"))
        .await;
    expect(not_bearer, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    // Within the 30 s leeway the token still works.
    let just_expired = env.token_expiring("ivy", Utc::now() - Duration::seconds(5));
    assert_eq!(
        gw.reserve(sale, &just_expired).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(env.remaining(sale).await, Some(4));
    env.cleanup().await;
}

fn base64_url(s: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = s.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_creation_is_guarded_and_validated() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let url = format!("{}/api/v1/admin/sales", gw.base);
    let good = SaleSpec::stock(5).body();

    let wrong = gw
        .send(gw.http.post(&url).bearer_auth("wrong-token").json(&good))
        .await;
    expect(wrong, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let buyer = gw
        .send(gw.http.post(&url).bearer_auth(env.token("jay")).json(&good))
        .await;
    expect(buyer, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;

    let mut invalid = Vec::new();
    for (field, value) in [
        ("product_name", json!("")),
        ("product_name", json!("x".repeat(201))),
        ("price", json!("0")),
        ("price", json!("1.001")),
        ("price", json!("1000000000.01")),
        ("price", json!(12.5)),
        ("stock", json!(0)),
        ("stock", json!(10_000_001)),
        ("per_user_limit", json!(0)),
        ("per_user_limit", json!(101)),
        ("payment_window_secs", json!(0)),
        ("payment_window_secs", json!(86_401)),
        ("ends_at", good["starts_at"].clone()),
        ("surprise", json!(1)),
    ] {
        let mut body = good.clone();
        body[field] = value;
        invalid.push(body);
    }
    // A struct written as an array (serde would take it positionally): the API speaks objects only.
    let fields = [
        "product_name",
        "price",
        "stock",
        "per_user_limit",
        "starts_at",
        "ends_at",
        "payment_window_secs",
    ];
    invalid.push(json!(
        fields.iter().map(|f| good[*f].clone()).collect::<Vec<_>>()
    ));
    for body in invalid {
        let r = gw
            .send(
                gw.http
                    .post(&url)
                    .bearer_auth(env.admin_token())
                    .json(&body),
            )
            .await;
        expect(r, StatusCode::BAD_REQUEST, "INVALID_REQUEST").await;
    }
    let not_json = gw
        .send(
            gw.http
                .post(&url)
                .bearer_auth(env.admin_token())
                .header("content-type", "application/json")
                .body("{"),
        )
        .await;
    expect(not_json, StatusCode::BAD_REQUEST, "INVALID_REQUEST").await;
    assert_eq!(env.sale_rows().await, 0, "no sale written");

    let created = gw
        .send(
            gw.http
                .post(&url)
                .bearer_auth(env.admin_token())
                .json(&good),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    for field in [
        "id",
        "product_name",
        "price",
        "total_stock",
        "remaining",
        "reserved",
        "sold",
        "status",
        "starts_at",
        "ends_at",
        "per_user_limit",
        "payment_window_secs",
    ] {
        assert!(!created.body[field].is_null(), "{field} in {created:?}");
    }
    assert_eq!(created.body["price"], "2990.00");
    assert_eq!(created.body["status"], "active");
    assert_eq!(env.sale_rows().await, 1);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_per_address_limit_is_enforced_when_configured() {
    let env = TestEnv::with(|s| {
        s.gateway.address_rate_per_sec = 1;
        s.gateway.address_rate_burst = 2;
    })
    .await;
    let gw = env.spawn_gateway().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(5)).await;
    // Three different buyers from one address (127.0.0.1): the third is over the address's burst.
    let mut replies = Vec::new();
    for user in ["addr-1", "addr-2", "addr-3"] {
        replies.push(gw.reserve(sale, &env.token(user)).await);
    }
    assert_eq!(replies[0].status, StatusCode::ACCEPTED);
    assert_eq!(replies[1].status, StatusCode::ACCEPTED);
    expect(
        replies[2].clone(),
        StatusCode::TOO_MANY_REQUESTS,
        "RATE_LIMITED",
    )
    .await;
    assert!(replies[2].retry_after().is_some_and(|s| s >= 1));
    assert_eq!(env.remaining(sale).await, Some(3));
    env.cleanup().await;
}
