//! The storefront framed by a shop's page on another origin, in headless Chromium: the shop answers the
//! storefront's `flashsale:ready` with the buyer's token by `postMessage`, the storefront signs in with it and
//! tells the shop whom it took the token for. A page on an origin that is not allowed cannot frame it.

use super::chromium::{Chromium, value};
use flashsale_testkit::SaleSpec;
use flashsale_testkit::services::spawn_gateway_with;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A one-page web server on a port of its own: every request is answered with `html`.
async fn serve(html: String) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let origin = format!("http://{}", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let html = html.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    html.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(html.as_bytes()).await;
            });
        }
    });
    (origin, task)
}

/// The shop's page: frames `src`, answers `flashsale:ready` with `token`, records what the frame says.
fn shop_page(src: &str, gateway_origin: &str, token: &str) -> String {
    format!(
        r#"<!doctype html><html><body><iframe id="shop" src="{src}" width="400" height="800"></iframe>
<script>
window.seen = [];
addEventListener("message", (e) => {{
  if (e.origin !== "{gateway_origin}") return;
  window.seen.push(e.data);
  if (e.data && e.data.type === "flashsale:ready") {{
    document.getElementById("shop").contentWindow.postMessage(
      {{ type: "flashsale:token", token: "{token}" }}, "{gateway_origin}");
  }}
}});
</script></body></html>"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shop_framing_the_storefront_hands_the_token_over_by_post_message() {
    let (env, gateway_origin) = super::env_with_origin(|_, _| {}).await;
    let token = env.token("hana");
    let src = |sale| format!("{gateway_origin}/?sale={sale}");
    // The sale is the schema's first (1); the gateway allows the shop's origin to frame the page.
    let mut settings = env.settings.clone();
    let (allowed, allowed_task) = serve(shop_page(&src(1), &gateway_origin, &token)).await;
    settings.gateway.cors_allowed_origins = vec![allowed.clone()];
    let gw = spawn_gateway_with(settings).await;
    let sale = gw.create_sale(&env, &SaleSpec::default()).await;
    assert_eq!(sale.get(), 1, "the shop page frames sale 1");

    let chrome = Chromium::launch(&env.name).await;
    let page = chrome.open(&format!("{allowed}/")).await;
    let said = r#"JSON.stringify(window.seen.filter((m) => m.type === "flashsale:identity").map((m) => m.user))"#;
    super::wait_true(
        &page,
        &format!("{said}.includes('\"hana\"')"),
        "the framed storefront never said it signed in as hana",
    )
    .await;
    assert!(
        value(&page, said)
            .await
            .is_some_and(|s| s.ends_with("\"hana\"]")),
        "the last identity the storefront reported is hana"
    );

    // An origin the gateway does not allow: the browser refuses to show the storefront in its frame, so
    // it never says ready and never takes a token.
    let (other, other_task) = serve(shop_page(&src(sale.get()), &gateway_origin, &token)).await;
    assert_ne!(other, allowed);
    let refused = chrome.open(&format!("{other}/")).await;
    let ready = r#"window.seen.some((m) => m.type === "flashsale:ready")"#;
    // Proving that something does not happen takes a wait: the allowed frame said ready within ~1 s.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(value(&refused, ready).await.as_deref(), Some("false"));
    chrome.close().await;
    allowed_task.abort();
    other_task.abort();
    gw.stop().await;
    env.cleanup().await;
}
