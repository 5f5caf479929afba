//! The storefront in headless Chromium when the tab's clock is wrong and its live feed is cut: the gateway's
//! SALE_ENDED is the last word. The page says it in words and keeps Buy off, instead of showing the sale on
//! sale again. The buyer's identity comes from the host page (`window.flashsaleToken`), with no sign-in form.

use super::SEEN;
use super::chromium::{Chromium, block, click, shown_code, value, wait_text};
use chrono::{Duration as ChronoDuration, Utc};
use flashsale_testkit::SaleSpec;
use flashsale_testkit::services::spawn_gateway_with;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn a_sale_ended_answer_turns_buy_off_even_when_the_tabs_clock_says_the_sale_is_on() {
    let (env, origin) = super::env_with_origin(|_, _| {}).await;
    let gw = spawn_gateway_with(env.settings.clone()).await;
    let ends = Utc::now() + ChronoDuration::seconds(3);
    let spec = SaleSpec {
        starts_at: Utc::now() - ChronoDuration::hours(1),
        ends_at: ends,
        ..SaleSpec::default()
    };
    let sale = gw.create_sale(&env, &spec).await;
    let card = format!(r#"[data-test="sale"][data-sale-id="{sale}"]"#);
    let buy = format!(r#"{card} [data-test="buy"]"#);
    let status = format!(r#"{card} [data-test="sale-status"]"#);

    // The tab's clock runs ten minutes slow; the host page hands the buyer's token over.
    let script = format!(
        "{{ const real = Date.now; Date.now = () => real() - 600000; }} window.flashsaleToken = {:?};",
        env.token("erin")
    );
    let chrome = Chromium::launch(&env.name).await;
    let feed = format!("*://*:*/api/v1/sales/{sale}/events");
    let page = chrome.open_with("about:blank", Some(&script)).await;
    // No live feed: the page learns nothing of the end but from its clock and the answers it gets.
    block(&page, std::slice::from_ref(&feed)).await;
    page.goto(format!("{origin}/?sale={sale}"))
        .await
        .expect("navigate");
    wait_text(&page, "#who", SEEN, |t| t.contains("erin")).await;
    wait_text(&page, &status, SEEN, |t| t == "On sale now").await;
    // Nor from re-reading the sale, once the card is shown.
    block(&page, &[feed, format!("*://*:*/api/v1/sales/{sale}")]).await;

    let left = (ends - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(left + Duration::from_millis(200)).await;
    let enabled = format!("!document.querySelector('{buy}').disabled");
    assert_eq!(
        value(&page, &enabled).await.as_deref(),
        Some("true"),
        "the slow clock still says the sale is on"
    );
    click(&page, &buy).await;
    wait_text(&page, r#"[data-test="message"]"#, SEEN, |t| {
        t == "This sale is over."
    })
    .await;
    assert_eq!(shown_code(&page).await.as_deref(), Some("SALE_ENDED"));
    wait_text(&page, &status, SEEN, |t| t == "Sale ended").await;
    // Past the press's hold (600 ms) and several repaints (every 250 ms), Buy is still off.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(value(&page, &enabled).await.as_deref(), Some("false"));
    assert_eq!(
        value(
            &page,
            &format!("document.querySelector('{status}').textContent")
        )
        .await
        .as_deref(),
        Some("Sale ended")
    );
    chrome.close_without_errors().await;
    gw.stop().await;
    env.cleanup().await;
}
