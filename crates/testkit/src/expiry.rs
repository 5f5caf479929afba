//! The expiry service for tests: in-process (`TestEnv::spawn_expiry`) or as a real process to SIGKILL
//! (`TestEnv::start_expiry_process`), plus what tests read back from it (`/metrics`, Redis reservation states)
//! and the broker tricks they need (purging a wait queue).

use crate::env::TestEnv;
use crate::process::ServiceProcess;
use crate::services::spawn_registered;
use flashsale_broker::Names;
use flashsale_domain::{OrderId, SaleId};
use flashsale_platform::Settings;
use flashsale_stock::ReservationState;
use reqwest::StatusCode;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The settings an expiry instance of a test runs with: a port of its own, a grace period well inside the
/// teardown's wait.
fn test_settings(mut s: Settings) -> Settings {
    s.expiry.listen = "127.0.0.1:0".into();
    s.expiry.shutdown_grace_ms = s.expiry.shutdown_grace_ms.min(5000);
    s
}

/// An in-process expiry service.
pub struct ExpiryHandle {
    pub base: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestEnv {
    pub async fn spawn_expiry(&self) -> ExpiryHandle {
        let settings = test_settings(self.settings.clone());
        let prefix = settings.amqp.prefix.clone();
        let app = flashsale_expiry::App::build(settings)
            .await
            .unwrap_or_else(|e| panic!("expiry failed to start: {e:#}"));
        let base = format!("http://127.0.0.1:{}", app.port());
        let (shutdown, task) = spawn_registered(&prefix, |stop| app.run_until(stop));
        ExpiryHandle {
            base,
            http: reqwest::Client::new(),
            shutdown,
            task: Some(task),
        }
    }

    /// expiry as a separate OS process (built by `cargo build`), ready when this returns.
    pub async fn start_expiry_process(&self) -> ExpiryProcess {
        ExpiryProcess::start(&self.settings).await
    }

    /// Empties the wait queue of one payment window: its reservations' due messages are gone, as if the broker
    /// had lost them, so only the sweeper can end them.
    pub async fn purge_expiry_wait_queue(&self, payment_window_secs: u32) -> u32 {
        let conn = flashsale_broker::connect(&self.settings.amqp, "test-purge")
            .await
            .unwrap_or_else(|e| panic!("amqp: {e:#}"));
        let ch = conn
            .create_channel()
            .await
            .unwrap_or_else(|e| panic!("channel: {e}"));
        let queue = Names::new(&self.settings.amqp.prefix).expiry_wait_queue(payment_window_secs);
        let purged = ch
            .queue_purge(
                queue.as_str().into(),
                lapin::options::QueuePurgeOptions::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("purging {queue}: {e}"));
        let _ = conn.close(200, "done".into()).await;
        purged
    }

    /// The state of a reservation's Redis record (`None` when it is gone).
    pub async fn reservation_state(
        &self,
        sale: SaleId,
        order: OrderId,
    ) -> Option<ReservationState> {
        self.stock
            .reservations(sale, &[order])
            .await
            .unwrap_or_else(|e| panic!("redis: {e}"))
            .pop()
            .flatten()
            .map(|r| r.state)
    }
}

impl ExpiryHandle {
    /// The value of one series of `/metrics`, e.g. `flashsale_expirations_total{source="message"}`; 0 when
    /// the series has not been written yet.
    pub async fn metric(&self, series: &str) -> f64 {
        metric_of(&self.http, &self.base, series).await
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ExpiryHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn metric_of(http: &reqwest::Client, base: &str, series: &str) -> f64 {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET /metrics: {e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("GET /metrics body: {e}"));
    text.lines()
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

/// A real `expiry` process listening on a free port of 127.0.0.1.
pub struct ExpiryProcess {
    process: ServiceProcess,
    pub base: String,
    http: reqwest::Client,
}

impl ExpiryProcess {
    /// Starts it with the test's settings (including `[expiry]`) and waits until `/readyz` answers 200.
    pub async fn start(s: &Settings) -> Self {
        let port = crate::process::free_port();
        let e = &s.expiry;
        let extra = [
            ("FLASHSALE__EXPIRY__LISTEN", format!("127.0.0.1:{port}")),
            ("FLASHSALE__EXPIRY__BATCH_SIZE", e.batch_size.to_string()),
            (
                "FLASHSALE__EXPIRY__BATCH_LINGER_MS",
                e.batch_linger_ms.to_string(),
            ),
            (
                "FLASHSALE__EXPIRY__SWEEP_INTERVAL_MS",
                e.sweep_interval_ms.to_string(),
            ),
            (
                "FLASHSALE__EXPIRY__SWEEP_GRACE_MS",
                e.sweep_grace_ms.to_string(),
            ),
            ("FLASHSALE__EXPIRY__SWEEP_BATCH", e.sweep_batch.to_string()),
            (
                "FLASHSALE__EXPIRY__EARLY_WAIT_MAX_MS",
                e.early_wait_max_ms.to_string(),
            ),
            (
                "FLASHSALE__EXPIRY__SHUTDOWN_DELAY_MS",
                e.shutdown_delay_ms.to_string(),
            ),
            (
                "FLASHSALE__EXPIRY__SHUTDOWN_GRACE_MS",
                e.shutdown_grace_ms.min(5000).to_string(),
            ),
        ];
        let process = ServiceProcess::start("expiry", s, &extra);
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = process.try_status() {
                panic!("expiry exited during start-up: {status}");
            }
            let ready = http
                .get(format!("{base}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK);
            if ready {
                return Self {
                    process,
                    base,
                    http,
                };
            }
            assert!(Instant::now() < deadline, "expiry not ready within 30 s");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn metric(&self, series: &str) -> f64 {
        metric_of(&self.http, &self.base, series).await
    }

    pub fn process(&self) -> &ServiceProcess {
        &self.process
    }

    /// SIGKILL, and wait until it is gone.
    pub async fn kill(self) {
        self.process.kill().await;
    }
}
