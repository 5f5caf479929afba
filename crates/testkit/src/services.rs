//! Services for tests: in-process on port 0, or as real processes (to be killed with SIGKILL).

use crate::env::{SaleSpec, TestEnv};
use flashsale_domain::SaleId;
use flashsale_platform::Settings;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use secrecy::ExposeSecret;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Stdio;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// An HTTP answer, read whole.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    pub fn retry_after(&self) -> Option<u64> {
        self.headers.get("retry-after")?.to_str().ok()?.parse().ok()
    }

    async fn read(res: reqwest::Response) -> Self {
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.bytes().await.unwrap_or_default();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Self {
            status,
            headers,
            body,
        }
    }
}

pub struct GatewayHandle {
    pub base: String,
    pub http: reqwest::Client,
    pub state: flashsale_gateway::state::AppState,
    shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestEnv {
    pub async fn spawn_gateway(&self) -> GatewayHandle {
        spawn_gateway_with(self.settings.clone()).await
    }

    pub async fn spawn_order_writer(&self) -> OrderWriterHandle {
        spawn_order_writer_with(self.settings.clone()).await
    }

    /// order-writer as a separate OS process (built by `cargo build`), so a test can SIGKILL it.
    pub fn start_order_writer_process(&self) -> OrderWriterProcess {
        OrderWriterProcess::start(&self.settings)
    }
}

pub async fn spawn_gateway_with(settings: Settings) -> GatewayHandle {
    let app = flashsale_gateway::App::build(settings)
        .await
        .unwrap_or_else(|e| panic!("gateway failed to start: {e:#}"));
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state().clone();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.run_until(shutdown.clone()));
    GatewayHandle {
        base,
        http: client(),
        state,
        shutdown,
        task: Some(task),
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(512)
        .build()
        .unwrap_or_else(|e| panic!("http client: {e}"))
}

impl GatewayHandle {
    pub async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        Reply::read(
            req.send()
                .await
                .unwrap_or_else(|e| panic!("request to the gateway failed: {e}")),
        )
        .await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        self.send(req).await
    }

    /// Creates a sale through the admin API and returns its id.
    pub async fn create_sale(&self, env: &TestEnv, spec: &SaleSpec) -> SaleId {
        let reply = self
            .send(
                self.http
                    .post(format!("{}/api/v1/admin/sales", self.base))
                    .bearer_auth(env.admin_token())
                    .json(&spec.body()),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "create sale: {reply:?}");
        let id = reply.body["id"].as_i64().unwrap_or(0);
        SaleId::new(id).unwrap_or_else(|e| panic!("sale id {id}: {e}"))
    }

    /// `POST /sales/{id}/reservations` with no body (quantity 1).
    pub async fn reserve(&self, sale: SaleId, token: &str) -> Reply {
        self.send(self.reservation(sale, token)).await
    }

    pub async fn reserve_with_key(&self, sale: SaleId, token: &str, key: &str) -> Reply {
        self.send(self.reservation(sale, token).header("Idempotency-Key", key))
            .await
    }

    pub async fn reserve_quantity(&self, sale: SaleId, token: &str, quantity: u32) -> Reply {
        self.send(
            self.reservation(sale, token)
                .json(&serde_json::json!({ "quantity": quantity })),
        )
        .await
    }

    pub fn reservation(&self, sale: SaleId, token: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}/api/v1/sales/{sale}/reservations", self.base))
            .bearer_auth(token)
    }

    pub async fn sale(&self, sale: SaleId) -> Reply {
        self.get(&format!("/api/v1/sales/{sale}"), None).await
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for GatewayHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub struct OrderWriterHandle {
    pub base: String,
    shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

pub async fn spawn_order_writer_with(settings: Settings) -> OrderWriterHandle {
    let app = flashsale_order_writer::App::build(settings)
        .await
        .unwrap_or_else(|e| panic!("order-writer failed to start: {e:#}"));
    let base = format!("http://127.0.0.1:{}", app.port());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.run_until(shutdown.clone()));
    OrderWriterHandle {
        base,
        shutdown,
        task: Some(task),
    }
}

impl OrderWriterHandle {
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for OrderWriterHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A real `order-writer` process configured through `FLASHSALE__*` variables.
pub struct OrderWriterProcess {
    child: tokio::process::Child,
}

/// `target/<profile>/<name>`, next to the test binary's `deps/` folder.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap_or_else(|| panic!("unexpected test binary location {exe:?}"));
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{path:?} is missing: build it first (`cargo build --workspace`, which `make test` does)"
    );
    path
}

impl OrderWriterProcess {
    pub fn start(s: &Settings) -> Self {
        let child = tokio::process::Command::new(binary("order-writer"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .env("FLASHSALE__DEV", s.dev.to_string())
            .env("FLASHSALE__POSTGRES__URL", s.postgres.url.expose_secret())
            .env("FLASHSALE__REDIS__URL", s.redis.url.expose_secret())
            .env("FLASHSALE__REDIS__KEY_PREFIX", &s.redis.key_prefix)
            .env("FLASHSALE__AMQP__URL", s.amqp.url.expose_secret())
            .env("FLASHSALE__AMQP__PREFIX", &s.amqp.prefix)
            .env(
                "FLASHSALE__AMQP__QUEUE_EXPIRES_MS",
                s.amqp.queue_expires_ms.to_string(),
            )
            .env("FLASHSALE__ORDER_WRITER__LISTEN", "127.0.0.1:0")
            .env(
                "FLASHSALE__ORDER_WRITER__BATCH_SIZE",
                s.order_writer.batch_size.to_string(),
            )
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start order-writer: {e}"));
        Self { child }
    }

    /// SIGKILL: no shutdown, no flush, whatever was in hand is lost to the process.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}
