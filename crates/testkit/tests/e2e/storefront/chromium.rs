//! Debian's headless Chromium (`scripts/ensure-browser.sh` installs it; never a downloaded browser), driven over
//! the DevTools protocol with chromiumoxide, with every console error, uncaught exception and non-network log
//! error of every page collected.

use chromiumoxide::cdp::browser_protocol::input::{
    DispatchMouseEventParams, DispatchMouseEventType, MouseButton,
};
use chromiumoxide::cdp::browser_protocol::log::{EventEntryAdded, LogEntryLevel, LogEntrySource};
use chromiumoxide::cdp::browser_protocol::network::{self, BlockPattern, SetBlockedUrLsParams};
use chromiumoxide::cdp::js_protocol::runtime::{
    ConsoleApiCalledType, EventConsoleApiCalled, EventExceptionThrown,
};
use chromiumoxide::{Browser, BrowserConfig, Page};
use futures_util::StreamExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Chromium {
    pub browser: Browser,
    handler: tokio::task::JoinHandle<()>,
    profile: PathBuf,
    /// Everything a page reported as an error, with the page's URL.
    pub errors: Arc<Mutex<Vec<String>>>,
}

fn executable() -> PathBuf {
    let path = PathBuf::from(
        std::env::var("FLASHSALE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
    );
    assert!(
        path.exists(),
        "{} is missing: run scripts/ensure-browser.sh (apt-get install chromium)",
        path.display()
    );
    path
}

impl Chromium {
    pub async fn launch(name: &str) -> Self {
        let profile = std::env::temp_dir().join(format!("flashsale-chromium-{name}"));
        let _ = std::fs::remove_dir_all(&profile);
        let config = BrowserConfig::builder()
            .chrome_executable(executable())
            .no_sandbox()
            .user_data_dir(&profile)
            // A phone-sized screen.
            .window_size(412, 915)
            .viewport(None)
            .args([
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-quic",
                "--no-first-run",
                // Several tabs act at once: none may be slowed down for being in the background.
                "--disable-background-timer-throttling",
                "--disable-renderer-backgrounding",
                "--disable-backgrounding-occluded-windows",
            ])
            .launch_timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_else(|e| panic!("chromium config: {e}"));
        let (browser, mut events) = Browser::launch(config)
            .await
            .unwrap_or_else(|e| panic!("chromium did not start: {e}"));
        let handler = tokio::spawn(async move { while events.next().await.is_some() {} });
        Self {
            browser,
            handler,
            profile,
            errors: Arc::default(),
        }
    }

    /// A new tab at `url`, its errors collected.
    pub async fn open(&self, url: &str) -> Page {
        self.open_with(url, None).await
    }

    /// A new tab at `url` that runs `script` before any script of each document (a host page's
    /// `window.flashsaleToken`, a clock set wrong), its errors collected.
    pub async fn open_with(&self, url: &str, script: Option<&str>) -> Page {
        let page = self
            .browser
            .new_page("about:blank")
            .await
            .expect("new page");
        self.watch(&page).await;
        if let Some(script) = script {
            page.evaluate_on_new_document(script)
                .await
                .expect("Page.addScriptToEvaluateOnNewDocument");
        }
        page.goto(url).await.expect("navigate");
        page
    }

    /// Collects the console errors, uncaught exceptions and log errors of `page`. Network log entries (a 409
    /// for a refused reservation is one) are the API answering, not the page failing, and are left out.
    pub async fn watch(&self, page: &Page) {
        page.enable_log().await.expect("Log.enable");
        page.enable_runtime().await.expect("Runtime.enable");
        let mut console = page
            .event_listener::<EventConsoleApiCalled>()
            .await
            .expect("console");
        let mut thrown = page
            .event_listener::<EventExceptionThrown>()
            .await
            .expect("exceptions");
        let mut log = page.event_listener::<EventEntryAdded>().await.expect("log");
        let errors = self.errors.clone();
        tokio::spawn(async move {
            loop {
                let seen = tokio::select! {
                    Some(e) = console.next() => matches!(e.r#type, ConsoleApiCalledType::Error | ConsoleApiCalledType::Assert)
                        .then(|| format!("console: {:?}", e.args.iter().map(|a| a.value.clone()).collect::<Vec<_>>())),
                    Some(e) = thrown.next() => Some(format!("exception: {:?}", e.exception_details)),
                    Some(e) = log.next() => (e.entry.level == LogEntryLevel::Error && e.entry.source != LogEntrySource::Network)
                        .then(|| format!("log: {} {:?}", e.entry.text, e.entry.url)),
                    else => break,
                };
                if let Some(text) = seen {
                    errors.lock().expect("errors").push(text);
                }
            }
        });
    }

    /// The tab whose address starts with `prefix` (one the page opened), waited for at most `within`.
    pub async fn wait_page(&self, prefix: &str, within: Duration) -> Page {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            for page in self.browser.pages().await.expect("pages") {
                let url = page.url().await.ok().flatten();
                if url.is_some_and(|u| u.starts_with(prefix)) {
                    return page;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no tab at {prefix}* within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Fails if any tab reported an error, then closes the browser.
    pub async fn close_without_errors(self) {
        assert_eq!(
            self.errors(),
            Vec::<String>::new(),
            "the pages reported errors"
        );
        self.close().await;
    }

    pub fn errors(&self) -> Vec<String> {
        self.errors.lock().expect("errors").clone()
    }

    pub async fn close(mut self) {
        let _ = self.browser.close().await;
        let _ = self.browser.wait().await;
        self.handler.abort();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// The text of the first element matching `selector`, or `None` while there is none.
pub async fn text(page: &Page, selector: &str) -> Option<String> {
    let js = format!("document.querySelector({selector:?})?.textContent ?? null");
    page.evaluate(js)
        .await
        .ok()?
        .into_value::<Option<String>>()
        .ok()
        .flatten()
}

/// A JavaScript expression's value as a string (`String(...)`), `None` when it throws.
pub async fn value(page: &Page, expression: &str) -> Option<String> {
    let js = format!("String({expression})");
    page.evaluate(js).await.ok()?.into_value::<String>().ok()
}

/// The code of the refusal the page shows (`data-code` of the `message` hook).
pub async fn shown_code(page: &Page) -> Option<String> {
    value(
        page,
        r#"document.querySelector('[data-test="message"]').dataset.code"#,
    )
    .await
}

/// Waits until the text at `selector` satisfies `want` (polling, as `eventually` does), and answers it.
pub async fn wait_text(
    page: &Page,
    selector: &str,
    within: Duration,
    want: impl Fn(&str) -> bool,
) -> String {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let seen = text(page, selector).await;
        if let Some(t) = seen.as_deref().filter(|t| want(t)) {
            return t.to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{selector}: condition not met within {within:?}; last saw {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Makes every request of `page` whose URL matches one of `patterns` (URLPattern syntax, e.g.
/// `*://*:*/api/v1/sales/7/events`) fail, as a network that drops them would.
pub async fn block(page: &Page, patterns: &[String]) {
    page.execute(network::EnableParams::default())
        .await
        .expect("Network.enable");
    let blocked = SetBlockedUrLsParams::builder()
        .url_patterns(patterns.iter().map(|p| BlockPattern::new(p.clone(), true)))
        .build();
    page.execute(blocked).await.expect("Network.setBlockedURLs");
}

/// A real double click on the first element matching `selector`: press, release, press, release (the second
/// pair with click count 2), sent together so that they reach the page as one gesture, as a mouse sends them.
pub async fn double_click(page: &Page, selector: &str) {
    page.bring_to_front().await.expect("bring to front");
    let element = page.find_element(selector).await.expect("element");
    element.scroll_into_view().await.expect("scroll into view");
    let point = element.clickable_point().await.expect("clickable point");
    page.move_mouse(point).await.expect("mouse move");
    let event = |kind, count| {
        DispatchMouseEventParams::builder()
            .x(point.x)
            .y(point.y)
            .button(MouseButton::Left)
            .click_count(count)
            .r#type(kind)
            .build()
            .expect("mouse event")
    };
    let (a, b, c, d) = futures_util::join!(
        page.execute(event(DispatchMouseEventType::MousePressed, 1)),
        page.execute(event(DispatchMouseEventType::MouseReleased, 1)),
        page.execute(event(DispatchMouseEventType::MousePressed, 2)),
        page.execute(event(DispatchMouseEventType::MouseReleased, 2)),
    );
    for sent in [a, b, c, d] {
        sent.expect("Input.dispatchMouseEvent");
    }
}

/// A real mouse click on the first element matching `selector`. The page repaints a sale's card whenever its
/// live counters change, so the node found may be gone before the click reaches it ("Could not find node"):
/// then it is found again, as a buyer's next look would, for a few tries.
pub async fn click(page: &Page, selector: &str) {
    // Input goes to the tab in front.
    page.bring_to_front().await.expect("bring to front");
    let mut tries = 0;
    loop {
        let clicked = match page.find_element(selector).await {
            Ok(element) => element.click().await.map(|_| ()),
            Err(e) => Err(e),
        };
        match clicked {
            Ok(()) => return,
            Err(e) if tries < 10 && e.to_string().contains("Could not find node") => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("click {selector}: {e}"),
        }
    }
}
