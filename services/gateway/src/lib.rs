//! gateway: the public HTTP edge. Admin sale creation, sale status, the reservation hot path, orders, and the
//! background work that keeps promises: the outbox relay, confirmed-entry removal and the Redis warmer; the live
//! stock feed (Server-Sent Events) and the list of sales.
//!
//! Reads every section of the settings except `[order_writer]`. Serves on `gateway.listen` (8080).

pub mod address_limit;
pub mod admission;
pub mod announcements;
pub mod auth;
pub mod body;
pub mod breaker;
pub mod breakers;
pub mod catalog;
pub mod client_addr;
pub mod cors;
pub mod error;
#[cfg(test)]
mod fuzz;
pub mod live;
pub mod metrics;
pub mod openapi;
pub mod outbox;
pub mod rejected;
pub mod reserve;
pub mod routes;
pub mod sold_out;
pub mod state;
pub mod warm;

use crate::state::AppState;
use actix_web::{App as HttpApp, HttpServer, web};
use anyhow::Context;
use flashsale_broker::{Names, Publisher};
use flashsale_platform::headers::security_headers;
use flashsale_platform::metrics::{HttpMetrics, track_http};
use flashsale_platform::{Settings, Shutdown};
use flashsale_stock::{RateLimits, Stock};
use secrecy::ExposeSecret;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long closing a broker connection may take at shutdown.
const CLOSE_WITHIN: Duration = Duration::from_secs(1);

pub struct App {
    settings: Settings,
    state: AppState,
    confirmed_rx: UnboundedReceiver<(flashsale_stock::Tag, flashsale_domain::OrderId)>,
    listener: TcpListener,
    port: u16,
}

impl App {
    /// Connects everything (failing fast), migrates if configured, declares the topology, warms live sales
    /// whose Redis state is missing, and binds the port.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        if settings.postgres.run_migrations {
            flashsale_store::migrate(settings.postgres.url.expose_secret()).await?;
        }
        let pool = flashsale_store::connect(&settings.postgres).await?;
        let stock = Stock::connect(&settings.redis)
            .await
            .context("connecting to Redis")?;
        let windows = {
            let mut conn = pool.get().await.context("acquiring a connection")?;
            flashsale_store::sales::live_payment_windows(&mut conn).await?
        };
        let registry = flashsale_platform::metrics::service_registry();
        let publisher = Publisher::start(
            &settings.amqp,
            Names::new(&settings.amqp.prefix),
            "gateway",
            windows.into_iter().filter_map(|w| u32::try_from(w).ok()),
            &registry,
        )
        .await?;
        let (confirmed, confirmed_rx) = tokio::sync::mpsc::unbounded_channel();
        let g = &settings.gateway;
        let metrics = metrics::GatewayMetrics::new(&registry);
        let address_limit = Arc::new(address_limit::AddressLimit::new(g, metrics.shed.clone())?);
        let stopping = CancellationToken::new();
        let live = Arc::new(live::LiveFeed::new(
            stock.clone(),
            &settings.sse,
            &registry,
            stopping.clone(),
        )?);
        let group = flashsale_broker::GroupCommit::start(
            publisher.clone(),
            Duration::from_micros(g.group_commit_linger_us),
            g.group_commit_max,
            &registry,
        );
        let state = AppState {
            stock,
            publisher,
            group,
            catalog: Arc::new(catalog::SaleCatalog::new(pool.clone())),
            sold_out: Arc::default(),
            pool,
            restores: Arc::default(),
            restore_rule: warm::RestoreRule {
                horizon: Duration::from_millis(settings.outbox.relay_age_ms),
                quiet: Duration::from_millis(g.restore_quiet_ms),
            },
            order_writer_queue: Names::new(&settings.amqp.prefix).order_writer_queue(),
            auth: Arc::new(auth::Auth::new(&settings.auth)),
            limits: RateLimits {
                buyer_per_sec: g.buyer_rate_per_sec,
                buyer_burst: g.buyer_rate_burst,
                idempotency_ttl_secs: g.idempotency_ttl_secs,
                announce_every_ms: settings.sse.coalesce_ms,
            },
            breakers: Arc::new(breakers::Breakers::new(&settings.breaker, &metrics)),
            address_limit,
            metrics,
            registry,
            confirmed,
            max_body_bytes: g.max_body_bytes,
            relay_age: Duration::from_millis(settings.outbox.relay_age_ms),
            relay_batch: settings.outbox.relay_batch,
            live,
            stopping,
        };
        if let Err(error) = warm::warm_missing(&state).await {
            tracing::warn!(
                error = format!("{error:#}"),
                "initial warming failed; the warmer retries"
            );
        }
        let listener =
            TcpListener::bind(&g.listen).with_context(|| format!("binding {}", g.listen))?;
        let port = listener.local_addr()?.port();
        Ok(Self {
            settings,
            state,
            confirmed_rx,
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

    /// Serves until `shutdown` is requested; then readiness turns 503 while the API is still served for
    /// `gateway.shutdown_delay_ms` (less if the stop is hurried), then HTTP stops taking requests and drains,
    /// the background loops stop, confirmed outbox entries are flushed and the publisher closes, all within
    /// `gateway.shutdown_grace_ms` (an error past it).
    pub async fn run_until(self, shutdown: impl Into<Shutdown>) -> anyhow::Result<()> {
        let shutdown = shutdown.into();
        let Self {
            settings,
            state,
            confirmed_rx,
            listener,
            ..
        } = self;
        let background = TaskTracker::new();
        let loops = CancellationToken::new();
        let flush = CancellationToken::new();
        let remover = tokio::spawn(outbox::remove_confirmed(
            state.clone(),
            confirmed_rx,
            flush.clone(),
        ));
        background.spawn(outbox::relay(
            state.clone(),
            Duration::from_millis(settings.outbox.relay_interval_ms),
            loops.clone(),
        ));
        background.spawn(warm::warmer(
            state.clone(),
            Duration::from_millis(settings.gateway.warm_interval_ms),
            loops.clone(),
        ));
        background.spawn(announcements::follow(
            state.clone(),
            Duration::from_millis(settings.gateway.sold_out_check_ms),
            loops.clone(),
        ));
        let limit = state.address_limit.clone();
        let stop = loops.clone();
        background.spawn(async move { limit.forget_idle_until(stop).await });
        background.spawn(clear_rejected(
            state.clone(),
            settings.amqp.clone(),
            loops.clone(),
        ));
        background.close();

        let server = http_server(state.clone(), &settings, listener)?;
        let handle = server.handle();
        let mut server_task = tokio::spawn(server);
        let crashed = tokio::select! {
            () = shutdown.wait() => false,
            result = &mut server_task => {
                tracing::error!(?result, "HTTP server stopped on its own");
                true
            }
        };
        state.stopping.cancel();
        if !crashed {
            // Readiness first: load balancers see the 503 and stop routing here while requests are still
            // answered, instead of meeting a closed port.
            let delay = Duration::from_millis(settings.gateway.shutdown_delay_ms);
            shutdown.readiness_delay(delay).await;
        }
        // Everything below is bounded by the grace period, so an orchestrator never has to SIGKILL us.
        // Whatever is cut short loses nothing: outbox entries stay for the relays.
        let grace = Duration::from_millis(settings.gateway.shutdown_grace_ms);
        let stopped = tokio::time::timeout(grace, async {
            handle.stop(true).await;
            let _ = server_task.await;
            loops.cancel();
            background.wait().await;
            // HTTP has drained, so no new confirmed entries can arrive: flush the queued ones and stop.
            flush.cancel();
            let _ = remover.await;
            // A broker that does not answer the close handshake is gone anyway; do not wait for it.
            let _ = tokio::time::timeout(CLOSE_WITHIN, state.publisher.close()).await;
        })
        .await;
        if stopped.is_err() {
            let _ = tokio::time::timeout(CLOSE_WITHIN, handle.stop(false)).await;
            anyhow::bail!(
                "shutdown took longer than gateway.shutdown_grace_ms ({} ms); outbox entries left behind are \
                 re-published by the relays",
                grace.as_millis()
            );
        }
        tracing::info!("gateway stopped");
        Ok(())
    }
}

/// Consumes `reservation.rejected` until `shutdown` and clears each refused reservation from Redis.
async fn clear_rejected(
    state: AppState,
    amqp: flashsale_platform::settings::AmqpSettings,
    shutdown: CancellationToken,
) {
    let names = Names::new(&amqp.prefix);
    let opts = flashsale_broker::ConsumeOptions {
        role: "gateway-rejected".into(),
        queue: names.gateway_rejected_queue(),
        batch_size: 100,
        linger: Duration::from_millis(5),
        retry: flashsale_broker::RetryPolicy::new(3),
        in_flight: 1,
    };
    let handler = Arc::new(rejected::ClearRejected {
        stock: state.stock.clone(),
    });
    let metrics = flashsale_broker::ConsumerMetrics::new(&state.registry);
    let attached = Arc::new(std::sync::atomic::AtomicBool::new(false));
    flashsale_broker::consume_batches(amqp, names, opts, handler, metrics, attached, shutdown)
        .await;
}

/// Bounds each accepted connection's kernel send buffer (`sse.send_buffer_bytes`): a live-stock client that stops
/// reading then backs up into its broadcast place within a few hundred events and is dropped, instead of pinning
/// megabytes of kernel memory.
fn socket_options(
    send_buffer: usize,
) -> impl Fn(&dyn std::any::Any, &mut actix_web::dev::Extensions) + Send + Sync + 'static {
    move |conn, _| {
        if send_buffer == 0 {
            return;
        }
        if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>()
            && let Err(error) = socket2::SockRef::from(tcp).set_send_buffer_size(send_buffer)
        {
            tracing::debug!(%error, "cannot set SO_SNDBUF");
        }
    }
}

fn http_server(
    state: AppState,
    settings: &Settings,
    listener: TcpListener,
) -> anyhow::Result<actix_web::dev::Server> {
    let http_metrics = web::Data::new(HttpMetrics::new(&state.registry));
    let in_flight = web::Data::new(admission::InFlight::new(
        settings.gateway.max_in_flight,
        state.metrics.shed.clone(),
    ));
    let rate = web::Data::new(admission::RateBound::new(
        settings.gateway.max_requests_per_sec,
        state.metrics.shed.clone(),
    ));
    let json = body::json_config(settings.gateway.max_body_bytes);
    let doc = web::Data::new(flashsale_platform::openapi::Document::new(
        &openapi::document(settings.dev),
    ));
    let site = routes::Site {
        storefront: web::Data::new(routes::storefront::Storefront::new(
            &settings.gateway.storefront.payment_url,
            settings.dev,
            &settings.gateway.cors_allowed_origins,
        )),
        dev: settings
            .dev
            .then(|| web::Data::new(routes::dev::Minter(settings.auth.clone()))),
    };
    let data = web::Data::new(state);
    let edge = settings.gateway.clone();
    let mut server = HttpServer::new(move || {
        HttpApp::new()
            .app_data(data.clone())
            .app_data(http_metrics.clone())
            .app_data(in_flight.clone())
            .app_data(rate.clone())
            .app_data(json.clone())
            .configure(|cfg| {
                routes::configure(cfg, doc.clone(), &site);
            })
            .default_service(web::to(routes::not_found))
            .wrap(actix_web::middleware::from_fn(admission::admit))
            // Outside admission: its 503s carry CORS and security headers too, and preflights never count.
            .wrap(cors::cors(&edge.cors_allowed_origins))
            .wrap(actix_web::middleware::from_fn(cors::refusals_as_json))
            .wrap(security_headers(edge.hsts_max_age_secs))
            .wrap(actix_web::middleware::from_fn(track_http))
    })
    .on_connect(socket_options(settings.sse.send_buffer_bytes))
    .disable_signals()
    .shutdown_timeout(settings.gateway.shutdown_grace_ms.div_ceil(1000))
    .backlog(4096)
    .max_connections(100_000);
    if settings.gateway.workers > 0 {
        server = server.workers(settings.gateway.workers);
    }
    Ok(server.listen(listener)?.run())
}
