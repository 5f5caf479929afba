//! What browsers rely on: CORS for the configured origins (preflights answered without Redis) and security
//! headers on every answer, error answers included.

use flashsale_testkit::services::spawn_gateway_with;
use flashsale_testkit::{GatewayHandle, Reply, SaleSpec, TcpProxy, TestEnv};
use reqwest::{Method, StatusCode};
use secrecy::SecretString;

const SHOP: &str = "https://shop.example";

fn header<'a>(reply: &'a Reply, name: &str) -> &'a str {
    reply
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn preflight(gw: &GatewayHandle, origin: &str) -> Reply {
    gw.send(
        gw.http
            .request(
                Method::OPTIONS,
                format!("{}/api/v1/sales/1/reservations", gw.base),
            )
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "authorization, content-type, idempotency-key, last-event-id",
            ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_preflights_are_answered_without_redis_for_allowed_origins_only() {
    let env = TestEnv::with(|s| s.gateway.cors_allowed_origins = vec![SHOP.into()]).await;
    let redis = TcpProxy::start("127.0.0.1:6379").await.expect("proxy");
    let mut settings = env.settings.clone();
    settings.redis.url = SecretString::from(format!("redis://{}", redis.addr()));
    let gw = spawn_gateway_with(settings).await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(5)).await;
    redis.cut();

    let allowed = preflight(&gw, SHOP).await;
    assert_eq!(allowed.status, StatusCode::OK, "{allowed:?}");
    assert_eq!(header(&allowed, "access-control-allow-origin"), SHOP);
    let headers = header(&allowed, "access-control-allow-headers").to_ascii_lowercase();
    for needed in [
        "authorization",
        "content-type",
        "idempotency-key",
        "last-event-id",
    ] {
        assert!(headers.contains(needed), "{needed} in {headers}");
    }
    assert!(header(&allowed, "access-control-allow-methods").contains("POST"));
    assert_eq!(header(&allowed, "x-content-type-options"), "nosniff");

    let refused = preflight(&gw, "https://evil.example").await;
    assert!(
        refused.headers.get("access-control-allow-origin").is_none(),
        "{refused:?}"
    );
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{refused:?}");
    assert_eq!(refused.code(), "INVALID_REQUEST", "JSON like every error");

    // Redis really is cut: the actual request is a 503, which a browser on the shop's origin can read,
    // Retry-After included.
    let actual = gw
        .send(
            gw.reservation(sale, &env.token("browser"))
                .header("Origin", SHOP),
        )
        .await;
    assert_eq!(actual.status, StatusCode::SERVICE_UNAVAILABLE, "{actual:?}");
    assert_eq!(header(&actual, "access-control-allow-origin"), SHOP);
    assert!(
        header(&actual, "access-control-expose-headers")
            .to_ascii_lowercase()
            .contains("retry-after"),
        "{actual:?}"
    );
    let attempts: u64 = ["RESERVED", "UNAVAILABLE"]
        .iter()
        .map(|o| gw.state.metrics.reservations.with_label_values(&[o]).get())
        .sum();
    assert_eq!(attempts, 1, "only the actual request reached the handler");
    redis.pass();
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn security_headers_are_on_every_answer() {
    let env = TestEnv::with(|s| s.gateway.hsts_max_age_secs = 31_536_000).await;
    let gw = env.spawn_gateway().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(5)).await;
    let token = env.token("careful");

    let reserved = gw
        .send(gw.reservation(sale, &token).header("Origin", SHOP))
        .await;
    let again = gw.reserve(sale, &token).await;
    let unknown = gw.get("/api/v1/nothing-here", None).await;
    let too_large = gw
        .send(
            gw.reservation(sale, &env.token("big"))
                .header("Content-Type", "application/json")
                .body(vec![b' '; env.settings.gateway.max_body_bytes + 1]),
        )
        .await;
    let health = gw.get("/healthz", None).await;
    assert_eq!(reserved.status, StatusCode::ACCEPTED, "{reserved:?}");
    assert_eq!(again.status, StatusCode::CONFLICT, "{again:?}");
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{unknown:?}");
    assert_eq!(
        too_large.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{too_large:?}"
    );
    for reply in [&reserved, &again, &unknown, &too_large, &health] {
        assert_eq!(
            header(reply, "x-content-type-options"),
            "nosniff",
            "{reply:?}"
        );
        assert_eq!(header(reply, "cache-control"), "no-store", "{reply:?}");
        assert_eq!(
            header(reply, "strict-transport-security"),
            "max-age=31536000",
            "{reply:?}"
        );
    }
    // CORS is off by default: an Origin gets no CORS header back.
    assert!(
        reserved
            .headers
            .get("access-control-allow-origin")
            .is_none()
    );

    // The admission middleware's own 503 carries them too (it answers before any handler).
    let mut full = env.settings.clone();
    full.gateway.max_in_flight = 0;
    let full = spawn_gateway_with(full).await;
    let shed = full.reserve(sale, &token).await;
    assert_eq!(shed.status, StatusCode::SERVICE_UNAVAILABLE, "{shed:?}");
    assert_eq!(header(&shed, "x-content-type-options"), "nosniff");
    assert_eq!(header(&shed, "cache-control"), "no-store");
    env.cleanup().await;
}
