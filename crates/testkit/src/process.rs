//! Services as real OS processes (`target/<profile>/<name>`, built by `cargo build`), configured by
//! `FLASHSALE__*` variables from a test's settings, so a test can send them real signals: SIGTERM to see them
//! stop cleanly within their grace period, SIGKILL to see that nothing is lost when they cannot.
//!
//! Every process registers with the teardown under its AMQP prefix, so `TestEnv::cleanup` (or its guard)
//! kills and reaps what is still running before deleting the topology. Dropping a handle kills the process.

use crate::services::{GatewayClient, Reply};
use crate::teardown::{Started, reaped, register};
use flashsale_platform::Settings;
use reqwest::StatusCode;
use rustix::process::{Pid, Signal, kill_process};
use secrecy::ExposeSecret;
use std::ops::Deref;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

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

/// A free port of 127.0.0.1 for a process to listen on. The port must be known before the process starts; a
/// port the OS just handed out stays free long enough in practice, and a clash would fail loudly at bind.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// `GET <base>/readyz` on a connection of its own, as a load balancer's probe or a new client would open it
/// (a pooled keep-alive connection could outlive the listener). `None` when nothing answers.
pub async fn readyz_on_new_connection(base: &str) -> Option<Reply> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_else(|e| panic!("http client: {e}"));
    let res = http.get(format!("{base}/readyz")).send().await.ok()?;
    Some(Reply::read(res).await)
}

/// Asserts that `/readyz` at `base` answers, on a new connection, 503 with `"stopping": true`: what a stopping
/// service says during its readiness delay.
pub async fn assert_stopping(base: &str) {
    let reply = readyz_on_new_connection(base).await.unwrap_or_else(|| {
        panic!("{base}/readyz refused the connection during the readiness delay")
    });
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{reply:?}");
    assert_eq!(reply.body["stopping"], true, "{reply:?}");
}

/// The settings tests vary, as the `FLASHSALE__SECTION__KEY` variables a service process reads.
fn settings_env(s: &Settings) -> Vec<(&'static str, String)> {
    vec![
        ("FLASHSALE__DEV", s.dev.to_string()),
        (
            "FLASHSALE__GATEWAY__RESTORE_QUIET_MS",
            s.gateway.restore_quiet_ms.to_string(),
        ),
        (
            "FLASHSALE__REDIS__RETENTION_SECS",
            s.redis.retention_secs.to_string(),
        ),
        (
            "FLASHSALE__POSTGRES__URL",
            s.postgres.url.expose_secret().to_owned(),
        ),
        (
            "FLASHSALE__POSTGRES__POOL_SIZE",
            s.postgres.pool_size.to_string(),
        ),
        (
            "FLASHSALE__POSTGRES__ACQUIRE_TIMEOUT_MS",
            s.postgres.acquire_timeout_ms.to_string(),
        ),
        (
            "FLASHSALE__REDIS__URL",
            s.redis.url.expose_secret().to_owned(),
        ),
        ("FLASHSALE__REDIS__KEY_PREFIX", s.redis.key_prefix.clone()),
        (
            "FLASHSALE__AMQP__URL",
            s.amqp.url.expose_secret().to_owned(),
        ),
        ("FLASHSALE__AMQP__PREFIX", s.amqp.prefix.clone()),
        (
            "FLASHSALE__AMQP__QUEUE_EXPIRES_MS",
            s.amqp.queue_expires_ms.to_string(),
        ),
        (
            "FLASHSALE__AMQP__CONFIRM_TIMEOUT_MS",
            s.amqp.confirm_timeout_ms.to_string(),
        ),
        (
            "FLASHSALE__AMQP__RECONNECT_MIN_MS",
            s.amqp.reconnect_min_ms.to_string(),
        ),
        (
            "FLASHSALE__AMQP__RECONNECT_MAX_MS",
            s.amqp.reconnect_max_ms.to_string(),
        ),
        ("FLASHSALE__AMQP__PREFETCH", s.amqp.prefetch.to_string()),
        (
            "FLASHSALE__AUTH__JWT_SECRET",
            s.auth.jwt_secret.expose_secret().to_owned(),
        ),
        (
            "FLASHSALE__AUTH__ADMIN_TOKEN",
            s.auth.admin_token.expose_secret().to_owned(),
        ),
        (
            "FLASHSALE__OUTBOX__RELAY_INTERVAL_MS",
            s.outbox.relay_interval_ms.to_string(),
        ),
        (
            "FLASHSALE__OUTBOX__RELAY_AGE_MS",
            s.outbox.relay_age_ms.to_string(),
        ),
        ("FLASHSALE__GATEWAY__WORKERS", s.gateway.workers.to_string()),
        (
            "FLASHSALE__GATEWAY__MAX_IN_FLIGHT",
            s.gateway.max_in_flight.to_string(),
        ),
        (
            "FLASHSALE__GATEWAY__WARM_INTERVAL_MS",
            s.gateway.warm_interval_ms.to_string(),
        ),
        (
            "FLASHSALE__GATEWAY__SHUTDOWN_DELAY_MS",
            s.gateway.shutdown_delay_ms.to_string(),
        ),
        (
            "FLASHSALE__GATEWAY__SHUTDOWN_GRACE_MS",
            s.gateway.shutdown_grace_ms.to_string(),
        ),
        (
            "FLASHSALE__ORDER_WRITER__BATCH_SIZE",
            s.order_writer.batch_size.to_string(),
        ),
        (
            "FLASHSALE__ORDER_WRITER__BATCH_LINGER_MS",
            s.order_writer.batch_linger_ms.to_string(),
        ),
        (
            "FLASHSALE__ORDER_WRITER__BATCHES_IN_FLIGHT",
            s.order_writer.batches_in_flight.to_string(),
        ),
        (
            "FLASHSALE__ORDER_WRITER__SHUTDOWN_DELAY_MS",
            s.order_writer.shutdown_delay_ms.to_string(),
        ),
        (
            "FLASHSALE__ORDER_WRITER__SHUTDOWN_GRACE_MS",
            s.order_writer.shutdown_grace_ms.to_string(),
        ),
    ]
}

/// One child process of a test.
pub struct ServiceProcess {
    name: &'static str,
    pid: Pid,
    child: Arc<Mutex<tokio::process::Child>>,
}

impl ServiceProcess {
    /// Starts `target/<profile>/<name>` with the test's settings plus `extra` variables.
    pub(crate) fn start(name: &'static str, s: &Settings, extra: &[(&str, String)]) -> Self {
        let child = tokio::process::Command::new(binary(name))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "RUST_LOG",
                std::env::var("FLASHSALE_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .envs(settings_env(s))
            .envs(extra.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let pid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(Pid::from_raw)
            .unwrap_or_else(|| panic!("{name} has no pid"));
        let child = Arc::new(Mutex::new(child));
        register(&s.amqp.prefix, Started::Process(Arc::clone(&child)));
        Self { name, pid, child }
    }

    /// The process id, to read the process's `/proc` entries.
    pub fn pid(&self) -> i32 {
        self.pid.as_raw_nonzero().get()
    }

    /// SIGTERM: the orderly stop an orchestrator asks for.
    pub fn terminate(&self) {
        self.signal(Signal::Term);
    }

    /// SIGKILL, then wait until it is gone: no shutdown, no flush, whatever was in hand is lost to the process.
    pub async fn kill(self) {
        self.signal(Signal::Kill);
        if !reaped(&self.child, Instant::now() + Duration::from_secs(10)).await {
            panic!("{} survived SIGKILL for 10 s", self.name);
        }
    }

    fn signal(&self, signal: Signal) {
        // Only while it has not been reaped: a reaped pid may already belong to another process.
        if self.try_status().is_none() {
            kill_process(self.pid, signal)
                .unwrap_or_else(|e| panic!("cannot signal {}: {e}", self.name));
        }
    }

    /// The exit status, once the process has exited.
    pub fn try_status(&self) -> Option<ExitStatus> {
        self.child
            .lock()
            .ok()
            .and_then(|mut child| child.try_wait().ok().flatten())
    }

    /// SIGTERM, then the exit status and how long the exit took, if it came within `timeout`.
    pub async fn terminate_within(&self, timeout: Duration) -> (Option<ExitStatus>, Duration) {
        self.terminate();
        let sent = Instant::now();
        let status = self.exit_within(timeout).await;
        (status, sent.elapsed())
    }

    /// Waits at most `timeout` for the process to exit; `None` if it is still running then.
    pub async fn exit_within(&self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if let Ok(mut child) = self.child.lock() {
            let _ = child.start_kill();
        }
    }
}

/// A real `order-writer` process, its ops endpoints on a free port of 127.0.0.1 (`base`).
pub struct OrderWriterProcess {
    process: ServiceProcess,
    pub base: String,
}

impl OrderWriterProcess {
    /// Starts it; it may still be connecting when this returns (its `/readyz` says when it consumes).
    pub fn start(s: &Settings) -> Self {
        let port = free_port();
        let listen = (
            "FLASHSALE__ORDER_WRITER__LISTEN",
            format!("127.0.0.1:{port}"),
        );
        Self {
            process: ServiceProcess::start("order-writer", s, &[listen]),
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// SIGKILL: no shutdown, no flush, whatever was in hand is lost to the process.
    pub async fn kill(self) {
        self.process.kill().await;
    }
}

impl Deref for OrderWriterProcess {
    type Target = ServiceProcess;
    fn deref(&self) -> &ServiceProcess {
        &self.process
    }
}

/// A real `gateway` process listening on a free port of 127.0.0.1, with an HTTP client for it.
pub struct GatewayProcess {
    process: ServiceProcess,
    client: GatewayClient,
}

impl GatewayProcess {
    /// Starts it and waits until `/readyz` answers 200.
    pub async fn start(s: &Settings) -> Self {
        let port = free_port();
        let listen = ("FLASHSALE__GATEWAY__LISTEN", format!("127.0.0.1:{port}"));
        let process = ServiceProcess::start("gateway", s, &[listen]);
        let client = GatewayClient::new(format!("http://127.0.0.1:{port}"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = process.try_status() {
                panic!("gateway exited during start-up: {status}");
            }
            let ready = client
                .http
                .get(format!("{}/readyz", client.base))
                .send()
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK);
            if ready {
                return Self { process, client };
            }
            assert!(Instant::now() < deadline, "gateway not ready within 30 s");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn process(&self) -> &ServiceProcess {
        &self.process
    }

    /// SIGKILL, and wait until it is gone.
    pub async fn kill(self) {
        self.process.kill().await;
    }
}

impl Deref for GatewayProcess {
    type Target = GatewayClient;
    fn deref(&self) -> &GatewayClient {
        &self.client
    }
}
