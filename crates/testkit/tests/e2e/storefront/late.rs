//! The storefront in headless Chromium when the buyer pays too late: the checkout was opened in time, the
//! payment window ran out, then the buyer pressed Pay at the provider. The order stays `expired`, its units go
//! back, and the page tells the buyer the money is owed back (`refund_required`) without a reload.

use super::SEEN;
use super::chromium::{Chromium, click, wait_text};
use flashsale_testkit::SaleSpec;
use flashsale_testkit::services::spawn_gateway_with;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn a_payment_after_the_deadline_shows_refund_required_and_the_order_stays_expired() {
    let (env, origin) =
        super::env_with_origin(|s, origin| s.payment.cors_allowed_origins = vec![origin.into()])
            .await;
    let pay = env.spawn_payment().await;
    let mut settings = env.settings.clone();
    settings.gateway.storefront.payment_url = pay.base.clone();
    let gw = spawn_gateway_with(settings).await;
    let _writer = env.spawn_order_writer().await;
    let _expiry = env.spawn_expiry().await;
    let spec = SaleSpec {
        stock: 1,
        payment_window_secs: 3,
        ..SaleSpec::default()
    };
    let sale = gw.create_sale(&env, &spec).await;
    let buy = format!(r#"[data-test="sale"][data-sale-id="{sale}"] [data-test="buy"]"#);
    let status = r#"[data-test="order-status"]"#;

    let chrome = Chromium::launch(&env.name).await;
    let token = env.token("frank");
    let page = chrome
        .open(&format!("{origin}/?sale={sale}#token={token}"))
        .await;
    wait_text(&page, "#who", SEEN, |t| t.contains("frank")).await;
    super::wait_true(
        &page,
        &format!("!document.querySelector('{buy}').disabled"),
        "Buy never turned on",
    )
    .await;
    click(&page, &buy).await;
    wait_text(&page, status, SEEN, |t| t == "pending_payment").await;
    // The checkout opens in time; the buyer leaves it until the window has run out.
    click(&page, r#"[data-test="pay"]"#).await;
    let psp = chrome
        .wait_page(&format!("{}/psp/checkout/", pay.base), SEEN)
        .await;
    wait_text(&psp, r#"[data-test="psp-pay"]"#, SEEN, |t| t == "Pay").await;
    wait_text(&page, status, SEEN, |t| t == "expired").await;
    assert_eq!(
        gw.sale(sale).await.body["remaining"],
        1,
        "the unit came back"
    );

    click(&psp, r#"[data-test="psp-pay"]"#).await;
    wait_text(&psp, r#"[data-test="psp-result"]"#, SEEN, |t| {
        t.contains("refund_required")
    })
    .await;
    wait_text(&page, status, SEEN, |t| t == "refund_required").await;
    let words = wait_text(&page, "#order-words", Duration::from_secs(1), |t| {
        !t.is_empty()
    })
    .await;
    assert!(words.contains("refund"), "{words}");

    // The API says the same: the order stays expired, the refund is owed.
    let mine = gw.get("/api/v1/me/orders", Some(&token)).await;
    let order = &mine.body["orders"][0];
    assert_eq!(
        (order["status"].as_str(), order["refund_required"].as_bool()),
        (Some("expired"), Some(true)),
        "{mine:?}"
    );
    assert_eq!(gw.sale(sale).await.body["remaining"], 1);
    chrome.close_without_errors().await;
    gw.stop().await;
    pay.stop().await;
    env.cleanup().await;
}
