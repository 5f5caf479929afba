//! The ops server of a consumer service (order-writer, expiry): `/healthz`, `/readyz` and `/metrics` on a port
//! of its own, one worker, no signal handling of its own (the service owns SIGTERM and stops it in order).
//!
//! The service says what readiness means by implementing [`Readiness`]; everything else is the same for all.

use crate::http::{Check, healthz, readiness_response};
use crate::metrics::{HttpMetrics, render, track_http};
use actix_web::dev::ServerHandle;
use actix_web::{App, HttpResponse, HttpServer, web};
use prometheus::Registry;
use std::future::Future;
use std::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What `/readyz` checks: one entry per dependency, `Ok` or a short error text.
pub trait Readiness: Send + Sync + 'static {
    fn checks(&self) -> impl Future<Output = Vec<Check>>;
}

/// A running ops server: stop it with [`OpsServer::stop`] once the service's work has drained.
pub struct OpsServer {
    handle: ServerHandle,
    task: JoinHandle<std::io::Result<()>>,
}

struct Ops<R> {
    readiness: R,
    /// Cancelled at shutdown: `/readyz` answers 503 from then on, so no new traffic is routed here.
    stopping: CancellationToken,
}

/// Starts serving on `listener`. `shutdown_grace_ms` bounds how long a graceful stop waits for open requests.
pub fn serve<R: Readiness>(
    listener: TcpListener,
    registry: &Registry,
    readiness: R,
    stopping: CancellationToken,
    shutdown_grace_ms: u64,
) -> std::io::Result<OpsServer> {
    let ops = web::Data::new(Ops {
        readiness,
        stopping,
    });
    let http_metrics = web::Data::new(HttpMetrics::new(registry));
    let registry = web::Data::new(registry.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(ops.clone())
            .app_data(http_metrics.clone())
            .app_data(registry.clone())
            .wrap(actix_web::middleware::from_fn(track_http))
            .route("/healthz", web::get().to(|| async { healthz() }))
            .route("/readyz", web::get().to(readyz::<R>))
            .route("/metrics", web::get().to(metrics))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(shutdown_grace_ms.div_ceil(1000))
    .listen(listener)?
    .run();
    let handle = server.handle();
    let task = tokio::spawn(server);
    Ok(OpsServer { handle, task })
}

impl OpsServer {
    /// A handle that can stop the server from elsewhere (a forced stop after the grace period).
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// Stops accepting, lets open requests finish (`graceful`) and waits for the server to end.
    pub async fn stop(self, graceful: bool) {
        self.handle.stop(graceful).await;
        let _ = self.task.await;
    }
}

async fn readyz<R: Readiness>(ops: web::Data<Ops<R>>) -> HttpResponse {
    let checks = ops.readiness.checks().await;
    readiness_response(checks, ops.stopping.is_cancelled())
}

async fn metrics(registry: web::Data<Registry>) -> HttpResponse {
    render(&registry)
}
