//! payment: records a pending payment for every reservation (`reservation.created` from `<prefix>payment`),
//! serves checkout and the signed payment-provider webhook that pays orders with their shipping priority, and
//! the simulated payment provider when `payment.simulator.enabled`.
//!
//! Reads `[payment]`, `[auth]`, `[redis]`, `[amqp]`, `[postgres]` and `[telemetry]`. Serves the API, `/healthz`,
//! `/readyz` and `/metrics` on `payment.listen` (8081).

pub mod applier;
pub mod apply;
pub mod consumer;
pub mod error;
pub mod event;
pub mod follow_up;
#[cfg(test)]
mod fuzz;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod state;

use crate::state::AppState;
use actix_web::{App as HttpApp, HttpServer, web};
use anyhow::Context;
use flashsale_broker::{
    ConsumeOptions, ConsumerMetrics, Names, Publisher, RetryPolicy, consume_batches,
};
use flashsale_platform::metrics::{HttpMetrics, track_http};
use flashsale_platform::{Settings, Shutdown};
use flashsale_stock::Stock;
use secrecy::ExposeSecret;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long closing a broker connection may take at shutdown.
const CLOSE_WITHIN: Duration = Duration::from_secs(1);
/// How long the simulator waits for its webhook's answer.
const SIMULATOR_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts at a failing batch of reservations before it is split to find the message at fault.
const FAILED_BATCH_ATTEMPTS: u32 = 3;

pub struct App {
    settings: Settings,
    state: AppState,
    listener: TcpListener,
    port: u16,
}

impl App {
    /// Connects to PostgreSQL, Redis and RabbitMQ (failing fast), migrates if configured, declares the
    /// topology and binds `payment.listen`.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        if settings.postgres.run_migrations {
            flashsale_store::migrate(settings.postgres.url.expose_secret()).await?;
        }
        let pool = flashsale_store::connect(&settings.postgres).await?;
        let stock = Stock::connect(&settings.redis)
            .await
            .context("connecting to Redis")?;
        let registry = flashsale_platform::metrics::service_registry();
        let publisher = Publisher::start(
            &settings.amqp,
            Names::new(&settings.amqp.prefix),
            "payment",
            [],
            &registry,
        )
        .await?;
        let p = &settings.payment;
        let mut secrets = vec![p.webhook_secret.clone()];
        secrets.extend(p.webhook_secrets_previous.iter().cloned());
        let state = AppState {
            applier: applier::Applier::start(pool.clone(), p.apply_batch_size),
            pool,
            stock,
            publisher,
            auth: Arc::new(flashsale_auth::Auth::new(&settings.auth)),
            webhook_secrets: Arc::new(secrets),
            webhook_tolerance_secs: p.webhook_tolerance_secs,
            checkout_base_url: p.checkout_base_url.clone(),
            simulator_webhook_url: p.simulator.webhook_url.clone(),
            http: reqwest::Client::builder()
                .timeout(SIMULATOR_TIMEOUT)
                .build()
                .context("building the simulator's HTTP client")?,
            metrics: metrics::PaymentMetrics::new(&registry),
            registry,
            consuming: Arc::new(AtomicBool::new(false)),
            stopping: CancellationToken::new(),
        };
        let listener =
            TcpListener::bind(&p.listen).with_context(|| format!("binding {}", p.listen))?;
        let port = listener.local_addr()?.port();
        Ok(Self {
            settings,
            state,
            listener,
            port,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves and consumes until `shutdown` is requested; then readiness turns 503 and the consumer settles
    /// the batch in hand and stops, while HTTP is still served for `payment.shutdown_delay_ms` (less if the
    /// stop is hurried); then HTTP drains and the publisher closes, all within `payment.shutdown_grace_ms` (an
    /// error past it).
    pub async fn run_until(self, shutdown: impl Into<Shutdown>) -> anyhow::Result<()> {
        let shutdown = shutdown.into();
        let Self {
            settings,
            state,
            listener,
            ..
        } = self;
        let http_metrics = web::Data::new(HttpMetrics::new(&state.registry));
        let simulator = settings.payment.simulator.enabled;
        let data = web::Data::new(state.clone());
        let origins = settings.payment.cors_allowed_origins.clone();
        let doc = web::Data::new(flashsale_platform::openapi::Document::new(
            &openapi::document(simulator),
        ));
        let server = HttpServer::new(move || {
            HttpApp::new()
                .app_data(data.clone())
                .app_data(http_metrics.clone())
                .configure(|cfg| {
                    routes::configure(cfg, simulator, doc.clone());
                })
                .default_service(web::to(routes::not_found))
                .wrap(flashsale_api_error::cors::cors(&origins, &[]))
                .wrap(actix_web::middleware::from_fn(
                    flashsale_api_error::cors::refusals_as_json,
                ))
                // nosniff and no-store like the gateway; HSTS is the gateway's setting (docs/protection.md).
                .wrap(flashsale_platform::headers::security_headers(0))
                .wrap(actix_web::middleware::from_fn(track_http))
        })
        .disable_signals()
        .shutdown_timeout(settings.payment.shutdown_grace_ms.div_ceil(1000))
        .listen(listener)?
        .run();
        let handle = server.handle();
        let mut server_task = tokio::spawn(server);

        let names = Names::new(&settings.amqp.prefix);
        let recorder = Arc::new(consumer::PaymentRecorder {
            pool: state.pool.clone(),
            metrics: state.metrics.clone(),
        });
        let opts = ConsumeOptions {
            role: "payment".into(),
            queue: names.payment_queue(),
            batch_size: settings.payment.batch_size,
            linger: Duration::from_millis(settings.payment.batch_linger_ms),
            retry: RetryPolicy::new(FAILED_BATCH_ATTEMPTS),
            in_flight: 1,
        };
        let consume = tokio::spawn(consume_batches(
            settings.amqp.clone(),
            names,
            opts,
            recorder,
            ConsumerMetrics::new(&state.registry),
            Arc::clone(&state.consuming),
            // Message intake stops at the signal: other consumers take the queue; only HTTP waits.
            shutdown.requested(),
        ));

        let crashed = tokio::select! {
            () = shutdown.wait() => false,
            result = &mut server_task => {
                tracing::error!(?result, "HTTP server stopped on its own");
                true
            }
        };
        state.stopping.cancel();
        if !crashed {
            // Readiness first: the load balancer sees the 503 and stops routing here while checkout and
            // webhooks are still answered, instead of meeting a closed port.
            let delay = Duration::from_millis(settings.payment.shutdown_delay_ms);
            shutdown.readiness_delay(delay).await;
        }
        // Everything below is bounded by the grace period. A batch cut short is not acknowledged (the broker
        // redelivers it); a webhook cut short is retried by the provider and finds its event or none.
        let grace = Duration::from_millis(settings.payment.shutdown_grace_ms);
        let stopped = tokio::time::timeout(grace, async {
            handle.stop(true).await;
            let _ = server_task.await;
            let _ = consume.await;
            let _ = tokio::time::timeout(CLOSE_WITHIN, state.publisher.close()).await;
        })
        .await;
        if stopped.is_err() {
            let _ = tokio::time::timeout(CLOSE_WITHIN, handle.stop(false)).await;
            anyhow::bail!(
                "shutdown took longer than payment.shutdown_grace_ms ({} ms)",
                grace.as_millis()
            );
        }
        tracing::info!("payment stopped");
        Ok(())
    }
}
