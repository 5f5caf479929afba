//! The storefront: served by the gateway with its policy and caching headers; the development sign-in only
//! in development mode; payment's CORS for the storefront's origin; and, in headless Chromium, the page a
//! buyer uses: sign in, wait for the start, buy (a double click makes one order), pay in the simulator, see
//! `paid` with the shipping priority, while a second buyer sees the stock fall live and then "sold out".

mod chromium;
mod ended;
mod framed;
mod late;
mod refusals;
mod unavailable;

use chromium::{Chromium, click, double_click, shown_code, text, value, wait_text};
use chrono::{Duration as ChronoDuration, Utc};
use flashsale_testkit::services::spawn_gateway_with;
use flashsale_testkit::{SaleSpec, TestEnv};
use reqwest::{Method, StatusCode};
use std::time::Duration;

const SEEN: Duration = Duration::from_secs(10);

/// Waits until the JavaScript `expression` is true in `page`, at most `SEEN`.
async fn wait_true(page: &chromiumoxide::Page, expression: &str, what: &str) {
    let deadline = tokio::time::Instant::now() + SEEN;
    while value(page, expression).await.as_deref() != Some("true") {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A test environment whose gateway will listen on a port chosen now, so that the page's origin
/// (`http://127.0.0.1:<port>`) is known to the settings; `adjust` gets the settings and that origin.
async fn env_with_origin(
    adjust: impl FnOnce(&mut flashsale_platform::Settings, &str),
) -> (TestEnv, String) {
    let port = flashsale_testkit::process::free_port();
    let origin = format!("http://127.0.0.1:{port}");
    let env = TestEnv::with(|s| {
        s.gateway.listen = format!("127.0.0.1:{port}");
        adjust(s, &origin);
    })
    .await;
    (env, origin)
}

fn header(reply: &flashsale_testkit::Reply, name: &str) -> String {
    reply
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_is_served_with_its_policy_and_the_dev_sign_in_exists_only_in_dev_mode() {
    let env =
        TestEnv::with(|s| s.gateway.storefront.payment_url = "https://pay.example".into()).await;
    let gw = env.spawn_gateway().await;
    let page = gw.send(gw.http.get(format!("{}/", gw.base))).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(header(&page, "content-type").starts_with("text/html"));
    let csp = header(&page, "content-security-policy");
    assert!(
        csp.contains("script-src 'self';")
            && csp.contains("connect-src 'self' https://pay.example;"),
        "{csp}"
    );
    assert_eq!(header(&page, "cache-control"), "no-cache");
    let etag = header(&page, "etag");
    let again = gw
        .send(
            gw.http
                .get(format!("{}/", gw.base))
                .header("If-None-Match", &etag),
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    let script = gw
        .send(gw.http.get(format!("{}/storefront/app.js", gw.base)))
        .await;
    assert_eq!(script.status, StatusCode::OK);
    assert!(header(&script, "content-type").starts_with("text/javascript"));
    let css = gw
        .send(gw.http.get(format!("{}/storefront/style.css", gw.base)))
        .await;
    assert!(header(&css, "content-type").starts_with("text/css"));
    let missing = gw
        .send(gw.http.get(format!("{}/storefront/nope.js", gw.base)))
        .await;
    assert_eq!(
        (missing.status, missing.code()),
        (StatusCode::NOT_FOUND, "NOT_FOUND")
    );

    // Development mode (the tests' default): a token for any name, which the API accepts.
    let token = |name: serde_json::Value| {
        gw.http
            .post(format!("{}/api/v1/dev/token", gw.base))
            .json(&name)
    };
    let minted = gw.send(token(serde_json::json!({"user_id": "dora"}))).await;
    assert_eq!(minted.status, StatusCode::OK, "{minted:?}");
    let jwt = minted.body["token"].as_str().unwrap_or_default().to_owned();
    let mine = gw.get("/api/v1/me/orders", Some(&jwt)).await;
    assert_eq!(mine.status, StatusCode::OK, "{mine:?}");
    for bad in [
        serde_json::json!({"user_id": ""}),
        serde_json::json!({"user": "x"}),
        serde_json::json!(["x"]),
    ] {
        let refused = gw.send(token(bad.clone())).await;
        assert_eq!(
            (refused.status, refused.code()),
            (StatusCode::BAD_REQUEST, "INVALID_REQUEST"),
            "{bad}"
        );
    }
    gw.stop().await;

    // Production: no such route.
    let mut prod = env.settings.clone();
    prod.dev = false;
    let gw = spawn_gateway_with(prod).await;
    let absent = gw.send(token_request(&gw.http, &gw.base)).await;
    assert_eq!(
        (absent.status, absent.code()),
        (StatusCode::NOT_FOUND, "NOT_FOUND")
    );
    let doc = gw.get("/api/openapi.json", None).await;
    assert!(doc.body["paths"].get("/api/v1/dev/token").is_none());
    gw.stop().await;
    env.cleanup().await;
}

fn token_request(http: &reqwest::Client, base: &str) -> reqwest::RequestBuilder {
    http.post(format!("{base}/api/v1/dev/token"))
        .json(&serde_json::json!({"user_id": "eve"}))
}

#[tokio::test(flavor = "multi_thread")]
async fn payment_answers_cors_preflights_for_the_storefront_origin_only() {
    const SHOP: &str = "http://127.0.0.1:8080";
    let env = TestEnv::new().await;
    let pay = env
        .spawn_payment_with(|s| s.payment.cors_allowed_origins = vec![SHOP.into()])
        .await;
    let preflight = |base: &str, origin: &str| {
        reqwest::Client::new()
            .request(
                Method::OPTIONS,
                format!("{base}/api/v1/orders/{}/checkout", uuid::Uuid::now_v7()),
            )
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "authorization")
    };
    let allowed = pay.send(preflight(&pay.base, SHOP)).await;
    assert_eq!(allowed.status, StatusCode::OK, "{allowed:?}");
    assert_eq!(header(&allowed, "access-control-allow-origin"), SHOP);
    let refused = pay.send(preflight(&pay.base, "https://evil.example")).await;
    assert!(
        refused.headers.get("access-control-allow-origin").is_none(),
        "{refused:?}"
    );
    assert_eq!(refused.code(), "INVALID_REQUEST");
    pay.stop().await;
    // Off by default: no CORS header at all.
    let pay = env.spawn_payment().await;
    let off = pay.send(preflight(&pay.base, SHOP)).await;
    assert!(
        off.headers.get("access-control-allow-origin").is_none(),
        "{off:?}"
    );
    pay.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_buyer_signs_in_waits_buys_once_on_a_double_click_and_pays_while_another_sees_it_sell_out()
 {
    let (env, origin) =
        env_with_origin(|s, origin| s.payment.cors_allowed_origins = vec![origin.into()]).await;
    let pay = env.spawn_payment().await;
    let mut settings = env.settings.clone();
    settings.gateway.storefront.payment_url = pay.base.clone();
    let gw = spawn_gateway_with(settings).await;
    let _writer = env.spawn_order_writer().await;
    let starts = Utc::now() + ChronoDuration::seconds(4);
    let spec = SaleSpec {
        stock: 2,
        starts_at: starts,
        ..SaleSpec::default()
    };
    let sale = gw.create_sale(&env, &spec).await;
    let url = format!("{origin}/?sale={sale}");
    let card = format!(r#"[data-test="sale"][data-sale-id="{sale}"]"#);

    let chrome = Chromium::launch(&env.name).await;
    let alice = chrome.open(&url).await;
    click(&alice, r#"[data-test="sign-in-name"]"#).await;
    alice
        .find_element(r#"[data-test="sign-in-name"]"#)
        .await
        .expect("name")
        .type_str("alice")
        .await
        .expect("type");
    click(&alice, r#"[data-test="sign-in"]"#).await;
    wait_text(&alice, "#who", SEEN, |t| t.contains("alice")).await;
    // Upcoming: a countdown, and Buy is off.
    let countdown = wait_text(
        &alice,
        &format!(r#"{card} [data-test="countdown"]"#),
        SEEN,
        |t| t.contains(':'),
    )
    .await;
    assert!(countdown.starts_with("0:0"), "{countdown}");
    assert_eq!(
        value(
            &alice,
            &format!(r#"document.querySelector('{card} [data-test="buy"]').disabled"#)
        )
        .await
        .as_deref(),
        Some("true")
    );

    let bob = chrome.open(&url).await;
    wait_text(
        &bob,
        &format!(r#"{card} [data-test="remaining"]"#),
        SEEN,
        |t| t == "2",
    )
    .await;

    // The start: Buy turns on by itself; a double click makes one order.
    let buy = format!(r#"{card} [data-test="buy"]"#);
    let enabled = format!("!document.querySelector('{card} [data-test=\"buy\"]').disabled");
    wait_true(&alice, &enabled, "Buy never turned on").await;
    assert!(
        Utc::now() >= starts - ChronoDuration::milliseconds(300),
        "Buy on before the start"
    );
    double_click(&alice, &buy).await;
    wait_text(&alice, r#"[data-test="order-status"]"#, SEEN, |t| {
        t == "pending_payment"
    })
    .await;
    // Bob sees the stock fall without reloading.
    wait_text(
        &bob,
        &format!(r#"{card} [data-test="remaining"]"#),
        SEEN,
        |t| t == "1",
    )
    .await;
    assert_eq!(
        gw.sale(sale).await.body["reserved"],
        1,
        "one order from a double click"
    );
    // The 202 itself says the deadline: the time left shows at once, not after the order is read.
    let left = text(&alice, "#order-left").await.unwrap_or_default();
    assert!(left.contains(':'), "time left to pay: {left}");
    wait_text(&alice, "#message", SEEN, |t| t.starts_with("Reserved")).await;

    // Buying again is refused in words, with the code. Until then the page sent one reservation: the
    // second click of the double click sent none.
    wait_true(&alice, &enabled, "Buy never turned back on").await;
    let sent = r#"performance.getEntriesByType("resource").filter((e) => e.name.endsWith("/reservations")).length"#;
    assert_eq!(
        value(&alice, sent).await.as_deref(),
        Some("1"),
        "reservation requests sent"
    );
    click(&alice, &buy).await;
    wait_text(&alice, r#"[data-test="message"]"#, SEEN, |t| {
        t.contains("already hold")
    })
    .await;
    assert_eq!(shown_code(&alice).await.as_deref(), Some("LIMIT_EXCEEDED"));

    // Another buyer takes the last unit: Bob's page says sold out, without a reload.
    assert_eq!(
        gw.reserve(sale, &env.token("carol")).await.status,
        StatusCode::ACCEPTED
    );
    wait_text(
        &bob,
        &format!(r#"{card} [data-test="remaining"]"#),
        SEEN,
        |t| t == "0",
    )
    .await;
    wait_text(
        &bob,
        &format!(r#"{card} [data-test="sale-status"]"#),
        SEEN,
        |t| t == "Sold out",
    )
    .await;

    // Pay: the provider's checkout opens in a new tab.
    click(&alice, r#"[data-test="pay"]"#).await;
    let psp = chrome
        .wait_page(&format!("{}/psp/checkout/", pay.base), SEEN)
        .await;
    wait_text(&psp, r#"[data-test="psp-pay"]"#, SEEN, |t| t == "Pay").await;
    click(&psp, r#"[data-test="psp-pay"]"#).await;
    wait_text(&psp, r#"[data-test="psp-result"]"#, SEEN, |t| {
        t.contains("paid")
    })
    .await;
    wait_text(&alice, r#"[data-test="order-status"]"#, SEEN, |t| {
        t == "paid"
    })
    .await;
    wait_text(&alice, r#"[data-test="shipping-priority"]"#, SEEN, |t| {
        t == "#1"
    })
    .await;

    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("storefront.png");
    alice
        .save_screenshot(
            chromiumoxide::page::ScreenshotParams::builder()
                .full_page(true)
                .build(),
            &shot,
        )
        .await
        .expect("screenshot");
    assert!(std::fs::metadata(&shot).expect("saved").len() > 1000);
    chrome.close_without_errors().await;
    gw.stop().await;
    pay.stop().await;
    env.cleanup().await;
}
