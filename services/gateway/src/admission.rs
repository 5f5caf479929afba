//! Admission before any Redis or RabbitMQ work: the global request-rate bound (`gateway.max_requests_per_sec`)
//! and the global in-flight bound (`gateway.max_in_flight`). What is shed is answered 503 UNAVAILABLE with
//! Retry-After at once and counted in `flashsale_requests_shed_total{reason}` ("rate", "in_flight").

use crate::error::ApiError;
use actix_web::{HttpResponse, web};
use flashsale_domain::ErrorCode;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use prometheus::IntCounterVec;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The request-rate bound (`gateway.max_requests_per_sec`) on `/api/` requests: a governor token bucket holding
/// one second's worth, so a burst up to the rate passes and a sustained excess is shed. `None` when off.
pub struct RateBound {
    bucket: Option<DefaultDirectRateLimiter>,
    shed: IntCounterVec,
}

impl RateBound {
    pub fn new(per_sec: u32, shed: IntCounterVec) -> Self {
        Self {
            bucket: NonZeroU32::new(per_sec).map(|n| RateLimiter::direct(Quota::per_second(n))),
            shed,
        }
    }

    /// False past the bound. Lock-free: one compare-and-swap on the bucket's state. The next token is at most
    /// 1/rate s away, so whoever is shed is told to retry in 1 s.
    fn admit(&self) -> bool {
        self.bucket.as_ref().is_none_or(|b| b.check().is_ok())
    }
}

/// The global in-flight bound (`gateway.max_in_flight`) on `/api/` requests: past it, answer 503 at once
/// instead of queueing.
pub struct InFlight {
    now: AtomicUsize,
    max: usize,
    shed: IntCounterVec,
}

/// One admitted request. The count comes back down when this is dropped: after the answer, and equally when
/// the handler's future is dropped at an `.await` (client reset, panic, shutdown), which code after the
/// `.await` would never see.
struct Admitted(web::Data<InFlight>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::AcqRel);
    }
}

impl InFlight {
    pub fn new(max: usize, shed: IntCounterVec) -> Self {
        Self {
            now: AtomicUsize::new(0),
            max,
            shed,
        }
    }

    fn admit(bound: web::Data<InFlight>) -> Option<Admitted> {
        if bound.now.fetch_add(1, Ordering::AcqRel) >= bound.max {
            bound.now.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Admitted(bound))
    }
}

pub async fn admit(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    // Only the API counts: /healthz, /readyz and /metrics must answer while the gateway is saturated, or
    // orchestrators would restart (liveness) or scrapers lose sight of an instance exactly when it is busiest.
    let bound = match req.app_data::<web::Data<InFlight>>() {
        Some(bound) if req.path().starts_with("/api/") => bound.clone(),
        _ => return next.call(req).await.map(|r| r.map_into_boxed_body()),
    };
    if let Some(rate) = req.app_data::<web::Data<RateBound>>()
        && !rate.admit()
    {
        rate.shed.with_label_values(&["rate"]).inc();
        let error = ApiError::new(
            ErrorCode::Unavailable,
            "the gateway is at its request rate; retry shortly",
        )
        .with_retry_after(1);
        return refuse(req, &error).await;
    }
    let Some(_admitted) = InFlight::admit(bound.clone()) else {
        bound.shed.with_label_values(&["in_flight"]).inc();
        let error = ApiError::new(
            ErrorCode::Unavailable,
            "the gateway is at capacity; retry shortly",
        );
        return refuse(req, &error).await;
    };
    next.call(req).await.map(|r| r.map_into_boxed_body())
}

/// Most of a refused request's body read before answering; a larger one is left, and the connection closes.
const DRAIN_LIMIT: usize = 64 * 1024;

/// Answers `error` after reading what the client sent: a body left unread makes the server close the
/// keep-alive connection, and a flood of reconnects costs more than reading a small body.
async fn refuse(
    mut req: actix_web::dev::ServiceRequest,
    error: &ApiError,
) -> Result<actix_web::dev::ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    use actix_web::HttpMessage;
    use futures_util::StreamExt;
    let mut payload = req.take_payload();
    let mut read = 0;
    while let Some(Ok(chunk)) = payload.next().await {
        read += chunk.len();
        if read > DRAIN_LIMIT {
            break;
        }
    }
    let res: HttpResponse = actix_web::ResponseError::error_response(error);
    Ok(req.into_response(res))
}
