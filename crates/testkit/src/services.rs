//! In-process services for tests, on port 0, and an HTTP client for the gateway's API.
//!
//! Every service registers with the teardown under its AMQP prefix, so `TestEnv::cleanup` (or its guard)
//! stops and awaits it before deleting the topology. Real processes live in `process`.

use crate::env::{SaleSpec, TestEnv};
use crate::process::OrderWriterProcess;
use crate::teardown::{Started, register};
use flashsale_domain::SaleId;
use flashsale_platform::Settings;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;
use std::future::Future;
use std::ops::Deref;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use crate::process::binary;

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

    pub(crate) async fn read(res: reqwest::Response) -> Self {
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

/// The gateway's HTTP API at `base`, wherever the gateway runs (in-process or as a process).
pub struct GatewayClient {
    pub base: String,
    pub http: reqwest::Client,
}

pub struct GatewayHandle {
    client: GatewayClient,
    pub state: flashsale_gateway::state::AppState,
    shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Deref for GatewayHandle {
    type Target = GatewayClient;
    fn deref(&self) -> &GatewayClient {
        &self.client
    }
}

/// Runs a service's `run_until` as a task of the test's runtime, registered with the teardown under `prefix`.
pub(crate) fn spawn_registered<F>(
    prefix: &str,
    run_until: impl FnOnce(CancellationToken) -> F,
) -> (CancellationToken, JoinHandle<anyhow::Result<()>>)
where
    F: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let stop = CancellationToken::new();
    let done = CancellationToken::new();
    // Cancelled when the task ends or is dropped unpolled (the runtime shutting down), whichever comes first.
    let ended = done.clone().drop_guard();
    let service = run_until(stop.clone());
    let task = tokio::spawn(async move {
        let _ended = ended;
        service.await
    });
    register(
        prefix,
        Started::InProcess {
            stop: stop.clone(),
            done,
        },
    );
    (stop, task)
}

impl TestEnv {
    pub async fn spawn_gateway(&self) -> GatewayHandle {
        spawn_gateway_with(self.settings.clone()).await
    }

    pub async fn spawn_order_writer(&self) -> OrderWriterHandle {
        spawn_order_writer_with(self.settings.clone()).await
    }

    /// order-writer as a separate OS process (built by `cargo build`), so a test can signal it.
    pub fn start_order_writer_process(&self) -> OrderWriterProcess {
        OrderWriterProcess::start(&self.settings)
    }

    /// The gateway as a separate OS process, ready when this returns.
    pub async fn start_gateway_process(&self) -> crate::process::GatewayProcess {
        crate::process::GatewayProcess::start(&self.settings).await
    }
}

pub async fn spawn_gateway_with(settings: Settings) -> GatewayHandle {
    let settings_prefix = settings.amqp.prefix.clone();
    let app = flashsale_gateway::App::build(settings)
        .await
        .unwrap_or_else(|e| panic!("gateway failed to start: {e:#}"));
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state().clone();
    let (shutdown, task) = spawn_registered(&settings_prefix, |stop| app.run_until(stop));
    GatewayHandle {
        client: GatewayClient::new(base),
        state,
        shutdown,
        task: Some(task),
    }
}

impl GatewayClient {
    pub fn new(base: String) -> Self {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(512)
            .build()
            .unwrap_or_else(|e| panic!("http client: {e}"));
        Self { base, http }
    }

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
}

/// The Prometheus text a service at `base` serves on `/metrics`.
pub async fn metrics_text(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap_or_else(|e| panic!("GET {base}/metrics: {e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("reading {base}/metrics: {e}"))
}

impl GatewayHandle {
    /// Group commit so far: (messages published, reservations they carried); (0, 0) before the first.
    pub fn group_commit(&self) -> (u64, u64) {
        self.state
            .registry
            .gather()
            .iter()
            .find(|f| f.name() == "flashsale_publish_batch_reservations")
            .and_then(|f| f.get_metric().first().map(|m| m.get_histogram().clone()))
            .map(|h| (h.get_sample_count(), h.get_sample_sum() as u64))
            .unwrap_or_default()
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
    let prefix = settings.amqp.prefix.clone();
    let app = flashsale_order_writer::App::build(settings)
        .await
        .unwrap_or_else(|e| panic!("order-writer failed to start: {e:#}"));
    let base = format!("http://127.0.0.1:{}", app.port());
    let (shutdown, task) = spawn_registered(&prefix, |stop| app.run_until(stop));
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
