//! The storefront in headless Chromium, the paths the buyer's first visit does not take: identity handed over
//! in the `#token=` fragment (no sign-in form), a 429 shown in words with its Retry-After counted down and Buy
//! kept off meanwhile, and an order whose payment window runs out shown as `expired`.

use super::SEEN;
use super::chromium::{Chromium, click, shown_code, value, wait_text};
use flashsale_testkit::SaleSpec;
use flashsale_testkit::services::spawn_gateway_with;
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread")]
async fn a_token_in_the_fragment_signs_in_a_429_counts_down_and_an_unpaid_order_shows_expired() {
    let (env, origin) = super::env_with_origin(|s, _| {
        // One try per second: the test's own request takes the token, the page's next click is refused.
        s.gateway.buyer_rate_per_sec = 1;
        s.gateway.buyer_rate_burst = 1;
    })
    .await;
    let gw = spawn_gateway_with(env.settings.clone()).await;
    let _writer = env.spawn_order_writer().await;
    let _expiry = env.spawn_expiry().await;
    let spec = SaleSpec {
        stock: 3,
        payment_window_secs: 3,
        ..SaleSpec::default()
    };
    let sale = gw.create_sale(&env, &spec).await;
    let card = format!(r#"[data-test="sale"][data-sale-id="{sale}"]"#);
    let buy = format!(r#"{card} [data-test="buy"]"#);
    let enabled = format!("!document.querySelector('{buy}').disabled");
    let token = env.token("dora");

    let chrome = Chromium::launch(&env.name).await;
    let page = chrome
        .open(&format!("{origin}/?sale={sale}#token={token}"))
        .await;
    wait_text(&page, "#who", SEEN, |t| t.contains("dora")).await;
    assert_eq!(
        value(&page, "location.hash").await.as_deref(),
        Some(""),
        "the token is taken out of the address bar"
    );

    super::wait_true(&page, &enabled, "Buy never turned on").await;
    click(&page, &buy).await;
    wait_text(&page, r#"[data-test="order-status"]"#, SEEN, |t| {
        t == "pending_payment"
    })
    .await;
    super::wait_true(&page, &enabled, "Buy never turned back on").await;
    // Take this second's token (or find it taken by the page's own 202), then press Buy: RATE_LIMITED in
    // words, counted down, Buy off meanwhile.
    let taken = gw.reserve(sale, &token).await;
    assert!(
        ["LIMIT_EXCEEDED", "RATE_LIMITED"].contains(&taken.code()),
        "{taken:?}"
    );
    click(&page, &buy).await;
    let said = wait_text(&page, r#"[data-test="message"]"#, SEEN, |t| {
        t.starts_with("Too many tries")
    })
    .await;
    assert!(said.contains("Try again"), "{said}");
    assert_eq!(shown_code(&page).await.as_deref(), Some("RATE_LIMITED"));
    assert_eq!(
        value(&page, &enabled).await.as_deref(),
        Some("false"),
        "Buy stays off until Retry-After has passed"
    );
    super::wait_true(&page, &enabled, "Buy never came back after Retry-After").await;

    // Nobody pays: the 3 s window runs out and the page says so without a reload.
    wait_text(&page, r#"[data-test="order-status"]"#, SEEN, |t| {
        t == "expired"
    })
    .await;
    assert_eq!(gw.sale(sale).await.status, StatusCode::OK);
    chrome.close_without_errors().await;
    gw.stop().await;
    env.cleanup().await;
}
