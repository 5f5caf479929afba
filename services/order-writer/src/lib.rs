//! order-writer: consumes `reservation.created` from `<prefix>order-writer` in batches and writes orders.
//!
//! Reads `[postgres]`, `[amqp]`, `[order_writer]` and `[telemetry]`. Serves `/healthz`, `/readyz` and
//! `/metrics` on `order_writer.listen` (8082), including the dead-letter queue's depth
//! (`flashsale_dead_letter_messages`, read every `order_writer.dead_letter_poll_ms`).

pub mod metrics;
pub mod writer;

use anyhow::Context;
use flashsale_broker::{
    ConsumeOptions, ConsumerMetrics, Names, Publisher, RetryPolicy, consume_batches,
};
use flashsale_platform::http::Check;
use flashsale_platform::ops::Readiness;
use flashsale_platform::{Settings, Shutdown};
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
    pool: PgPool,
    publisher: Publisher,
    registry: Registry,
    listener: TcpListener,
    port: u16,
}

/// What `/readyz` checks.
struct Ops {
    pool: PgPool,
    publisher: Publisher,
    consuming: Arc<AtomicBool>,
}

impl App {
    /// Connects to PostgreSQL and RabbitMQ (failing fast), migrates if configured, declares the topology and
    /// binds the ops port.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        if settings.postgres.run_migrations {
            flashsale_store::migrate(settings.postgres.url.expose_secret()).await?;
        }
        let pool = flashsale_store::connect(&settings.postgres).await?;
        let registry = flashsale_platform::metrics::service_registry();
        let publisher = Publisher::start(
            &settings.amqp,
            Names::new(&settings.amqp.prefix),
            "order-writer",
            [],
            &registry,
        )
        .await?;
        let listener = TcpListener::bind(&settings.order_writer.listen)
            .with_context(|| format!("binding {}", settings.order_writer.listen))?;
        let port = listener.local_addr()?.port();
        Ok(Self {
            settings,
            pool,
            publisher,
            registry,
            listener,
            port,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Consumes until `shutdown` is requested; then readiness turns 503 and the batches in hand are finished,
    /// the ops server stops once `order_writer.shutdown_delay_ms` has passed too (less if the stop is hurried)
    /// and the publisher closes, all within the delay plus `order_writer.shutdown_grace_ms` (an error past it).
    pub async fn run_until(self, shutdown: impl Into<Shutdown>) -> anyhow::Result<()> {
        let shutdown = shutdown.into();
        let delay = Duration::from_millis(self.settings.order_writer.shutdown_delay_ms);
        let consuming = Arc::new(AtomicBool::new(false));
        let ops = Ops {
            pool: self.pool.clone(),
            publisher: self.publisher.clone(),
            consuming: Arc::clone(&consuming),
        };
        let ops_server = flashsale_platform::ops::serve(
            "order-writer",
            self.listener,
            &self.registry,
            ops,
            shutdown.requested(),
            self.settings.order_writer.shutdown_grace_ms,
        )?;
        let server_handle = ops_server.handle();

        let names = Names::new(&self.settings.amqp.prefix);
        let writer_metrics = metrics::WriterMetrics::new(&self.registry);
        let depth = tokio::spawn(flashsale_broker::depth::watch_depth(
            self.settings.amqp.clone(),
            "order-writer-dead-letter-probe".into(),
            names.dead_queue(),
            writer_metrics.dead_letter_depth.clone(),
            Duration::from_millis(self.settings.order_writer.dead_letter_poll_ms),
            shutdown.requested(),
        ));
        let handler = Arc::new(writer::OrderWriter {
            pool: self.pool.clone(),
            publisher: self.publisher.clone(),
            metrics: writer_metrics,
        });
        let opts = ConsumeOptions {
            role: "order-writer".into(),
            queue: names.order_writer_queue(),
            batch_size: self.settings.order_writer.batch_size,
            linger: Duration::from_millis(self.settings.order_writer.batch_linger_ms),
            retry: RetryPolicy::new(self.settings.order_writer.failed_batch_attempts),
            in_flight: self.settings.order_writer.batches_in_flight,
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
        let publisher = self.publisher.clone();
        let delayed = shutdown.clone();
        let stop = std::pin::pin!(async move {
            // The consumer returns once shutdown is requested and the batches in hand are settled; the ops server
            // answers 503 for the whole readiness delay, so probes see the stop before its port closes.
            tokio::join!(consume, delayed.readiness_delay(delay));
            ops_server.stop(true).await;
            // Only a gauge: a probe stuck on a silent broker must not hold up the exit.
            depth.abort();
            let _ = depth.await;
            // A broker that does not answer the close handshake is gone anyway; do not wait for it.
            let _ = tokio::time::timeout(CLOSE_WITHIN, publisher.close()).await;
        });
        // From the signal on, everything is bounded by the grace period, so an orchestrator never has to
        // SIGKILL us. A batch cut short is not acknowledged, so the broker redelivers it.
        let grace = Duration::from_millis(self.settings.order_writer.shutdown_grace_ms);
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
                "shutdown took longer than order_writer.shutdown_grace_ms ({} ms); the batches in hand are \
                 redelivered",
                grace.as_millis()
            );
        }
        tracing::info!("order-writer stopped");
        Ok(())
    }
}

impl Readiness for Ops {
    async fn checks(&self) -> Vec<Check> {
        let postgres = flashsale_store::ping(&self.pool)
            .await
            .map_err(|e| e.to_string());
        let amqp = if self.consuming.load(Ordering::Relaxed) && self.publisher.is_connected() {
            Ok(())
        } else {
            Err("not connected".to_owned())
        };
        vec![("postgres", postgres), ("amqp", amqp)]
    }
}
