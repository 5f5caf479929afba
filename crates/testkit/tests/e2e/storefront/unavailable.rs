//! The storefront in headless Chromium while the broker is unreachable: Buy is answered 503 UNAVAILABLE, and
//! the page says so in words with the Retry-After counted down, keeps Buy off meanwhile, and buys once the
//! broker is back, without a reload.

use super::SEEN;
use super::chromium::{Chromium, click, shown_code, value, wait_text};
use flashsale_testkit::services::spawn_gateway_with;
use flashsale_testkit::{SaleSpec, TcpProxy, eventually};
use secrecy::SecretString;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn a_503_says_unavailable_counts_down_and_buy_works_again_when_the_broker_is_back() {
    let (env, origin) = super::env_with_origin(|_, _| {}).await;
    let proxy = TcpProxy::start("127.0.0.1:5672").await.expect("proxy");
    let mut settings = env.settings.clone();
    settings.amqp.url = SecretString::from(format!("amqp://guest:guest@{}/%2f", proxy.addr()));
    let gw = spawn_gateway_with(settings).await;
    let _writer = env.spawn_order_writer().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(3)).await;
    let buy = format!(r#"[data-test="sale"][data-sale-id="{sale}"] [data-test="buy"]"#);
    let enabled = format!("!document.querySelector('{buy}').disabled");

    let chrome = Chromium::launch(&env.name).await;
    let token = env.token("gina");
    let page = chrome
        .open(&format!("{origin}/?sale={sale}#token={token}"))
        .await;
    wait_text(&page, "#who", SEEN, |t| t.contains("gina")).await;
    super::wait_true(&page, &enabled, "Buy never turned on").await;

    proxy.cut();
    let amqp = || async {
        gw.get("/readyz", None).await.body["checks"]["amqp"]
            .as_str()
            .unwrap_or_default()
            == "ok"
    };
    eventually(Duration::from_secs(10), amqp, false).await;
    click(&page, &buy).await;
    let said = wait_text(&page, r#"[data-test="message"]"#, SEEN, |t| {
        t.starts_with("The shop is busy")
    })
    .await;
    assert!(said.contains("Try again"), "{said}");
    assert_eq!(shown_code(&page).await.as_deref(), Some("UNAVAILABLE"));
    assert_eq!(
        value(&page, &enabled).await.as_deref(),
        Some("false"),
        "Buy stays off until Retry-After has passed"
    );
    assert_eq!(env.remaining(sale).await, Some(3), "the 503 holds no stock");

    // The broker is back: once Retry-After has passed, Buy is on again and the next press is a 202.
    proxy.pass();
    eventually(Duration::from_secs(10), amqp, true).await;
    super::wait_true(&page, &enabled, "Buy never turned back on").await;
    click(&page, &buy).await;
    wait_text(&page, r#"[data-test="order-status"]"#, SEEN, |t| {
        t == "pending_payment"
    })
    .await;
    wait_text(&page, "#message", SEEN, |t| t.starts_with("Reserved")).await;
    chrome.close_without_errors().await;
    gw.stop().await;
    env.cleanup().await;
}
