//! The ops server of a consumer service (order-writer, expiry): `/healthz`, `/readyz` and `/metrics` on a port
//! of its own, one worker, no signal handling of its own (the service owns SIGTERM and stops it in order).
//!
//! The service says what readiness means by implementing [`Readiness`]; everything else is the same for all.

use crate::http::Readiness as ReadinessBody;
use crate::http::{Alive, Check, Health, ReadyStatus, healthz, readiness_response};
use crate::metrics::{HttpMetrics, render, track_http};
use crate::openapi::{Document, Endpoint, Routes};
use actix_web::dev::ServerHandle;
use actix_web::http::Method;
use actix_web::{App, HttpResponse, HttpServer, web};
use prometheus::Registry;
use std::collections::BTreeSet;
use std::future::Future;
use std::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;

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
/// `service` names the service in its OpenAPI document.
pub fn serve<R: Readiness>(
    service: &'static str,
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
    let doc = web::Data::new(Document::new(&document(service)));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(ops.clone())
            .app_data(http_metrics.clone())
            .app_data(registry.clone())
            .wrap(actix_web::middleware::from_fn(track_http))
            .configure(|cfg| {
                routes::<R>(cfg, doc.clone());
            })
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

/// Registers the ops routes and yields them: the one table of what an ops server serves.
pub fn routes<R: Readiness>(
    cfg: &mut web::ServiceConfig,
    doc: web::Data<Document>,
) -> BTreeSet<Endpoint> {
    let mut routes = Routes::new(cfg);
    routes
        .add(Method::GET, "/healthz", alive)
        .add(Method::GET, "/readyz", readyz::<R>)
        .add(Method::GET, "/metrics", metrics);
    crate::openapi::serve(&mut routes, doc);
    routes.table()
}

/// The ops server's document, titled after `service`.
pub fn document(service: &str) -> utoipa::openapi::OpenApi {
    let mut doc = OpsApi::openapi();
    doc.info.title = format!("flashsale {service}");
    doc.info.description = Some(format!(
        "The {service} has no public API: liveness, readiness and Prometheus metrics only."
    ));
    doc
}

#[derive(OpenApi)]
#[openapi(
    paths(alive, readyz, metrics, crate::openapi::document),
    components(schemas(Health, Alive, ReadinessBody, ReadyStatus)),
    tags((name = "ops", description = "Liveness, readiness, metrics and this document.")),
)]
struct OpsApi;

/// The process is alive and serves HTTP.
#[utoipa::path(get, path = "/healthz", tag = "ops", operation_id = "healthz",
    responses((status = 200, description = "Alive.", body = Health)))]
async fn alive() -> HttpResponse {
    healthz()
}

/// Every dependency answers (200), or one does not or the service is stopping (503, `Retry-After: 1`).
#[utoipa::path(get, path = "/readyz", tag = "ops", operation_id = "readyz",
    responses(
        (status = 200, description = "Ready: every check is `ok`.", body = ReadinessBody),
        (status = 503, description = "Not ready: a check failed, or the service is stopping.", body = ReadinessBody,
         headers(("Retry-After" = u64, description = "Seconds to wait: always 1."))),
    ))]
async fn readyz<R: Readiness>(ops: web::Data<Ops<R>>) -> HttpResponse {
    let checks = ops.readiness.checks().await;
    readiness_response(checks, ops.stopping.is_cancelled())
}

/// Prometheus text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "ops", operation_id = "metrics",
    responses((status = 200, description = "Prometheus text format.", content_type = "text/plain", body = String)))]
async fn metrics(registry: web::Data<Registry>) -> HttpResponse {
    render(&registry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openapi::{differences, endpoints};

    struct AlwaysReady;

    impl Readiness for AlwaysReady {
        async fn checks(&self) -> Vec<Check> {
            vec![("postgres", Ok(()))]
        }
    }

    #[test]
    fn the_ops_document_is_what_an_ops_server_registers() {
        let doc = web::Data::new(Document::new(&document("expiry")));
        let json: serde_json::Value = serde_json::from_slice(doc.bytes()).expect("JSON");
        let mut table = BTreeSet::new();
        let _app = App::new().configure(|cfg| table = routes::<AlwaysReady>(cfg, doc.clone()));
        assert_eq!(table.len(), 4, "{table:?}");
        assert_eq!(differences(&table, &json), Vec::<String>::new());
        assert_eq!(json["info"]["title"], "flashsale expiry");
        assert!(json["openapi"].as_str().unwrap_or("").starts_with("3.1."));

        // And a disagreement either way is named.
        let mut more = table.clone();
        more.insert(("POST".into(), "/healthz".into()));
        more.remove(&("GET".to_owned(), "/metrics".to_owned()));
        let found = differences(&more, &json);
        assert_eq!(
            found,
            vec![
                "POST /healthz is registered but not in the document".to_owned(),
                "GET /metrics is in the document but not registered".to_owned(),
            ]
        );
        assert_eq!(endpoints(&json).len(), 4);
    }
}
