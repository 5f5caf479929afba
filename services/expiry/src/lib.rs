//! expiry: ends unpaid reservations at their deadline. Consumes `<prefix>expiry.due` in batches (each message
//! the original `reservation.created`, dead-lettered there by its payment window's wait queue when the TTL ran
//! out) and runs a periodic sweeper for anything a message missed; both take the same path (`expire`).
//!
//! Reads `[postgres]`, `[redis]`, `[amqp]`, `[expiry]` and `[telemetry]`. Serves `/healthz`, `/readyz`
//! (redis, amqp, postgres) and `/metrics` on `expiry.listen` (8083).

pub mod consumer;
pub mod due;
pub mod expire;
pub mod metrics;
pub mod sweeper;

use anyhow::Context;
use flashsale_broker::{
    ConsumeOptions, ConsumerMetrics, Names, Publisher, RetryPolicy, consume_batches,
};
use flashsale_platform::http::Check;
use flashsale_platform::ops::Readiness;
use flashsale_platform::{Settings, Shutdown};
use flashsale_stock::Stock;
use flashsale_store::PgPool;
use prometheus::Registry;
use secrecy::ExposeSecret;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long closing a broker connection may take at shutdown.
const CLOSE_WITHIN: Duration = Duration::from_secs(1);

pub struct App {
    settings: Settings,
    expirer: Arc<expire::Expirer>,
    registry: Registry,
    listener: TcpListener,
    port: u16,
}

/// What `/readyz` checks.
struct Ops {
    pool: PgPool,
    stock: Stock,
    publisher: Publisher,
    consuming: Arc<AtomicBool>,
}

impl App {
    /// Connects to PostgreSQL, Redis and RabbitMQ (failing fast), migrates if configured, declares the topology
    /// and binds the ops port.
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
            "expiry",
            [],
            &registry,
        )
        .await?;
        let listener = TcpListener::bind(&settings.expiry.listen)
            .with_context(|| format!("binding expiry.listen {}", settings.expiry.listen))?;
        let port = listener.local_addr()?.port();
        let expirer = Arc::new(expire::Expirer {
            pool,
            stock,
            publisher,
            metrics: metrics::ExpiryMetrics::new(&registry),
        });
        Ok(Self {
            settings,
            expirer,
            registry,
            listener,
            port,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Consumes and sweeps until `shutdown` is requested; then readiness turns 503 and the batch and the sweep
    /// in hand are finished, the ops server stops once `expiry.shutdown_delay_ms` has passed too (less if the
    /// stop is hurried) and the publisher closes, all within the delay plus `expiry.shutdown_grace_ms` (an
    /// error past it).
    pub async fn run_until(self, shutdown: impl Into<Shutdown>) -> anyhow::Result<()> {
        let shutdown = shutdown.into();
        let s = &self.settings.expiry;
        let delay = Duration::from_millis(s.shutdown_delay_ms);
        let consuming = Arc::new(AtomicBool::new(false));
        let ops = Ops {
            pool: self.expirer.pool.clone(),
            stock: self.expirer.stock.clone(),
            publisher: self.expirer.publisher.clone(),
            consuming: Arc::clone(&consuming),
        };
        let ops_server = flashsale_platform::ops::serve(
            "expiry",
            self.listener,
            &self.registry,
            ops,
            shutdown.requested(),
            s.shutdown_grace_ms,
        )?;
        let server_handle = ops_server.handle();

        let sweeper = tokio::spawn(sweeper::run(
            Arc::clone(&self.expirer),
            s.clone(),
            shutdown.requested(),
        ));
        let names = Names::new(&self.settings.amqp.prefix);
        let handler = Arc::new(consumer::DueConsumer {
            expirer: Arc::clone(&self.expirer),
            early_wait_max: Duration::from_millis(s.early_wait_max_ms),
            shutdown: shutdown.requested(),
        });
        let opts = ConsumeOptions {
            role: "expiry".into(),
            queue: names.expiry_due_queue(),
            batch_size: s.batch_size,
            linger: Duration::from_millis(s.batch_linger_ms),
            retry: RetryPolicy::new(s.failed_batch_attempts),
            in_flight: 1,
        };
        let consume = consume_batches(
            self.settings.amqp.clone(),
            names,
            opts,
            handler,
            ConsumerMetrics::new(&self.registry),
            consuming,
            shutdown.requested(),
        );
        let publisher = self.expirer.publisher.clone();
        let delayed = shutdown.clone();
        let stop = std::pin::pin!(async move {
            // The consumer returns once shutdown is requested and the batch in hand is settled; the ops server
            // answers 503 for the whole readiness delay, so probes see the stop before its port closes.
            let drained = async {
                consume.await;
                let _ = sweeper.await;
            };
            tokio::join!(drained, delayed.readiness_delay(delay));
            ops_server.stop(true).await;
            // A broker that does not answer the close handshake is gone anyway; do not wait for it.
            let _ = tokio::time::timeout(CLOSE_WITHIN, publisher.close()).await;
        });
        // From the signal on, everything is bounded by the grace period. Work cut short is not acknowledged
        // (the broker redelivers it) or is found again by the next sweep; the re-drive finishes it.
        let grace = Duration::from_millis(s.shutdown_grace_ms);
        let over = async {
            shutdown.readiness_delay(delay).await;
            tokio::time::sleep(grace).await;
        };
        let stopped = tokio::select! {
            () = stop => true,
            () = over => false,
        };
        if !stopped {
            let _ = tokio::time::timeout(CLOSE_WITHIN, server_handle.stop(false)).await;
            anyhow::bail!(
                "shutdown took longer than expiry.shutdown_grace_ms ({} ms); the batch in hand is redelivered",
                grace.as_millis()
            );
        }
        tracing::info!("expiry stopped");
        Ok(())
    }
}

impl Readiness for Ops {
    async fn checks(&self) -> Vec<Check> {
        let redis = self.stock.probe().await.map_err(|e| e.to_string());
        let amqp = if self.consuming.load(Ordering::Relaxed) && self.publisher.is_connected() {
            Ok(())
        } else {
            Err("not connected".to_owned())
        };
        let postgres = flashsale_store::ping(&self.pool)
            .await
            .map_err(|e| e.to_string());
        vec![("redis", redis), ("amqp", amqp), ("postgres", postgres)]
    }
}
