//! Admission before any Redis or RabbitMQ work: the global in-flight bound (`gateway.max_in_flight`). What is
//! shed is answered 503 UNAVAILABLE with Retry-After at once and counted in
//! `flashsale_requests_shed_total{reason}`.

use crate::error::ApiError;
use actix_web::{HttpResponse, web};
use flashsale_domain::ErrorCode;
use prometheus::IntCounterVec;
use std::sync::atomic::{AtomicUsize, Ordering};

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

pub async fn bound_in_flight(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    // Only the API counts: /healthz, /readyz and /metrics must answer while the gateway is saturated, or
    // orchestrators would restart (liveness) or scrapers lose sight of an instance exactly when it is busiest.
    let bound = match req.app_data::<web::Data<InFlight>>() {
        Some(bound) if req.path().starts_with("/api/") => bound.clone(),
        _ => return next.call(req).await.map(|r| r.map_into_boxed_body()),
    };
    let Some(_admitted) = InFlight::admit(bound.clone()) else {
        bound.shed.with_label_values(&["in_flight"]).inc();
        let res: HttpResponse = actix_web::ResponseError::error_response(&ApiError::new(
            ErrorCode::Unavailable,
            "the gateway is at capacity; retry shortly",
        ));
        return Ok(req.into_response(res));
    };
    next.call(req).await.map(|r| r.map_into_boxed_body())
}
