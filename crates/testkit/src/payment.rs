//! The payment service for tests: in-process (`TestEnv::spawn_payment`) or as a process to SIGKILL
//! (`PaymentProcess`), an HTTP client for its API, webhook signing with the test's secret, a probe that catches
//! notifications on the events exchange, and read-backs of payments and paid orders.

use crate::env::TestEnv;
use crate::process::ServiceProcess;
use crate::services::{GatewayClient, Reply, spawn_registered};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz};
use diesel_async::RunQueryDsl;
use flashsale_domain::SaleId;
use flashsale_platform::Settings;
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use std::ops::Deref;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A free port of 127.0.0.1, and the settings of a payment service listening there whose simulator sends
/// its webhooks to itself. The port is known before the service binds it (a clash would fail loudly).
fn payment_settings(s: &Settings) -> (Settings, u16) {
    let port = crate::process::free_port();
    let mut s = s.clone();
    s.payment.listen = format!("127.0.0.1:{port}");
    s.payment.simulator.webhook_url = format!("http://127.0.0.1:{port}/webhooks/psp");
    s.payment.checkout_base_url = format!("http://127.0.0.1:{port}/psp/checkout/");
    (s, port)
}

/// The payment API at `base`, wherever the service runs.
pub struct PaymentClient(GatewayClient);

impl Deref for PaymentClient {
    type Target = GatewayClient;
    fn deref(&self) -> &GatewayClient {
        &self.0
    }
}

impl PaymentClient {
    pub fn new(base: String) -> Self {
        Self(GatewayClient::new(base))
    }

    pub async fn checkout(&self, order: &str, token: &str) -> Reply {
        self.send(
            self.http
                .post(format!("{}/api/v1/orders/{order}/checkout", self.base))
                .bearer_auth(token),
        )
        .await
    }

    /// `POST /webhooks/psp` with this raw body and `Psp-Signature` header (none when `None`).
    pub async fn webhook(&self, body: &[u8], signature: Option<&str>) -> Reply {
        let mut req = self
            .http
            .post(format!("{}/webhooks/psp", self.base))
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(sig) = signature {
            req = req.header(flashsale_webhook::HEADER, sig);
        }
        self.send(req).await
    }

    /// The simulator's Pay (`succeeded`) or Fail (`failed`) button.
    pub async fn complete(&self, payment: &str, outcome: &str) -> Reply {
        self.send(
            self.http
                .post(format!("{}/psp/checkout/{payment}/complete", self.base))
                .json(&json!({ "outcome": outcome })),
        )
        .await
    }
}

/// An in-process payment service.
pub struct PaymentHandle {
    client: PaymentClient,
    shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Deref for PaymentHandle {
    type Target = PaymentClient;
    fn deref(&self) -> &PaymentClient {
        &self.client
    }
}

impl PaymentHandle {
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for PaymentHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A real `payment` process, ready when `start` returns.
pub struct PaymentProcess {
    process: ServiceProcess,
    client: PaymentClient,
}

impl Deref for PaymentProcess {
    type Target = PaymentClient;
    fn deref(&self) -> &PaymentClient {
        &self.client
    }
}

impl PaymentProcess {
    pub async fn start(s: &Settings) -> Self {
        let (s, port) = payment_settings(s);
        let p = &s.payment;
        let env = [
            ("FLASHSALE__PAYMENT__LISTEN", p.listen.clone()),
            (
                "FLASHSALE__PAYMENT__SIMULATOR__WEBHOOK_URL",
                p.simulator.webhook_url.clone(),
            ),
            (
                "FLASHSALE__PAYMENT__CHECKOUT_BASE_URL",
                p.checkout_base_url.clone(),
            ),
            (
                "FLASHSALE__PAYMENT__WEBHOOK_SECRET",
                p.webhook_secret.expose_secret().to_owned(),
            ),
            (
                "FLASHSALE__PAYMENT__SHUTDOWN_DELAY_MS",
                p.shutdown_delay_ms.to_string(),
            ),
            (
                "FLASHSALE__PAYMENT__SHUTDOWN_GRACE_MS",
                p.shutdown_grace_ms.to_string(),
            ),
        ];
        let process = ServiceProcess::start("payment", &s, &env);
        let client = PaymentClient::new(format!("http://127.0.0.1:{port}"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = process.try_status() {
                panic!("payment exited during start-up: {status}");
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
            assert!(Instant::now() < deadline, "payment not ready within 30 s");
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

/// Notifications published on the test's events exchange under one routing key, caught by an exclusive queue.
pub struct EventProbe {
    _conn: lapin::Connection,
    consumer: lapin::Consumer,
}

impl EventProbe {
    /// The next message's `message_id` and JSON body, waiting at most `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<(String, Value)> {
        let delivery = tokio::time::timeout(timeout, self.consumer.next())
            .await
            .ok()??
            .ok()?;
        let id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default();
        let body = serde_json::from_slice(&delivery.data).unwrap_or(Value::Null);
        Some((id, body))
    }
}

/// One paid-order read-back: `(order id, status, shipping_priority, paid_at)`.
pub type PaidRow = (String, String, Option<i64>, Option<DateTime<Utc>>);

impl TestEnv {
    /// The payment service in-process; its simulator signs with the test's secret and calls it back.
    pub async fn spawn_payment(&self) -> PaymentHandle {
        self.spawn_payment_with(|_| {}).await
    }

    /// The payment service in-process with the test's settings changed by `adjust` (a dependency behind a
    /// proxy, the simulator off, ...).
    pub async fn spawn_payment_with(&self, adjust: impl FnOnce(&mut Settings)) -> PaymentHandle {
        let mut base = self.settings.clone();
        adjust(&mut base);
        let (settings, port) = payment_settings(&base);
        let prefix = settings.amqp.prefix.clone();
        let app = flashsale_payment::App::build(settings)
            .await
            .unwrap_or_else(|e| panic!("payment failed to start: {e:#}"));
        assert_eq!(app.port(), port);
        let (shutdown, task) = spawn_registered(&prefix, |stop| app.run_until(stop));
        PaymentHandle {
            client: PaymentClient::new(format!("http://127.0.0.1:{port}")),
            shutdown,
            task: Some(task),
        }
    }

    pub async fn start_payment_process(&self) -> PaymentProcess {
        PaymentProcess::start(&self.settings).await
    }

    /// A `Psp-Signature` for `body` at `t` with the test's current webhook secret.
    pub fn sign_webhook_at(&self, body: &[u8], t: i64) -> String {
        let secret = self.settings.payment.webhook_secret.expose_secret();
        flashsale_webhook::sign(&[secret.as_bytes()], t, body)
    }

    pub fn sign_webhook(&self, body: &[u8]) -> String {
        self.sign_webhook_at(body, Utc::now().timestamp())
    }

    /// A webhook body for a payment as the payment provider sends it.
    pub fn webhook_body(event_id: &str, kind: &str, payment: &Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "event_id": event_id,
            "type": kind,
            "payment_id": payment["payment_id"],
            "order_id": payment["order_id"],
            "amount": payment["amount"],
        }))
        .unwrap_or_default()
    }

    /// Catches what is published under `routing_key` from now on.
    pub async fn probe_events(&self, routing_key: &str) -> EventProbe {
        let conn = flashsale_broker::connect(&self.settings.amqp, "test-event-probe")
            .await
            .unwrap_or_else(|e| panic!("amqp: {e:#}"));
        let ch = conn
            .create_channel()
            .await
            .unwrap_or_else(|e| panic!("channel: {e}"));
        let exchange = flashsale_broker::Names::new(&self.settings.amqp.prefix).events_exchange();
        let queue = ch
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("probe queue: {e}"));
        ch.queue_bind(
            queue.name().as_str().into(),
            exchange.as_str().into(),
            routing_key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("binding the probe to {exchange}: {e}"));
        let consumer = ch
            .basic_consume(
                queue.name().as_str().into(),
                "probe".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("probe consumer: {e}"));
        EventProbe {
            _conn: conn,
            consumer,
        }
    }

    /// `(order id, status, shipping_priority, paid_at)` of every order of a sale, ordered by paid_at then id.
    pub async fn paid_orders(&self, sale: SaleId) -> Vec<PaidRow> {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = Text)]
            id: String,
            #[diesel(sql_type = Text)]
            status: String,
            #[diesel(sql_type = Nullable<BigInt>)]
            shipping_priority: Option<i64>,
            #[diesel(sql_type = Nullable<Timestamptz>)]
            paid_at: Option<DateTime<Utc>>,
        }
        let mut conn = self.pg().await;
        diesel::sql_query(
            "SELECT id::text AS id, status, shipping_priority, paid_at FROM orders WHERE sale_id = $1 \
             ORDER BY paid_at NULLS LAST, id",
        )
        .bind::<BigInt, _>(sale.get())
        .load::<Row>(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("listing paid orders: {e}"))
        .into_iter()
        .map(|r| (r.id, r.status, r.shipping_priority, r.paid_at))
        .collect()
    }

    /// `(payment id, status)` of an order's payments, oldest first.
    pub async fn payments_of(&self, order: &str) -> Vec<(String, String)> {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = Text)]
            id: String,
            #[diesel(sql_type = Text)]
            status: String,
        }
        let mut conn = self.pg().await;
        diesel::sql_query(
            "SELECT id::text AS id, status FROM payments WHERE order_id = $1::uuid ORDER BY created_at, id",
        )
        .bind::<Text, _>(order)
        .load::<Row>(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("listing payments: {e}"))
        .into_iter()
        .map(|r| (r.id, r.status))
        .collect()
    }

    /// Rows in `payments` and `webhook_events`, and the sale's `paid_count`: what "nothing changed" compares.
    pub async fn payment_counters(&self, sale: SaleId) -> (i64, i64, i64) {
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = BigInt)]
            payments: i64,
            #[diesel(sql_type = BigInt)]
            events: i64,
            #[diesel(sql_type = BigInt)]
            paid_count: i64,
        }
        let mut conn = self.pg().await;
        let n: N = diesel::sql_query(
            "SELECT (SELECT count(*) FROM payments WHERE sale_id = $1) AS payments, \
                    (SELECT count(*) FROM webhook_events) AS events, \
                    (SELECT paid_count FROM sales WHERE id = $1) AS paid_count",
        )
        .bind::<BigInt, _>(sale.get())
        .get_result(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("reading payment counters: {e}"));
        (n.payments, n.events, n.paid_count)
    }
}
