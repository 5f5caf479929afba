//! CORS for a configured list of origins (off when empty: no CORS header at all), with actix-cors, shared by
//! the gateway (`gateway.cors_allowed_origins`) and payment (`payment.cors_allowed_origins`). Preflights are
//! answered by the middleware itself, so they never reach admission, a handler, Redis or RabbitMQ, and its
//! refusals are answered as the JSON error body like every other error.

use crate::ApiError;
pub use actix_cors::Cors;
use actix_cors::CorsError;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, RETRY_AFTER, VARY};
use actix_web::middleware::{Condition, Next};

/// How long a browser may keep a preflight's answer (seconds).
const PREFLIGHT_MAX_AGE: usize = 600;

/// The CORS middleware for GET and POST with `Authorization`, `Content-Type` and `extra_headers`; a
/// pass-through when no origin is configured. Origins must have been validated at start (each service's
/// settings check), which `Cors::allowed_origin` needs (it panics on a bad one).
pub fn cors(origins: &[String], extra_headers: &[HeaderName]) -> Condition<Cors> {
    let mut cors = Cors::default()
        .allowed_methods([Method::GET, Method::POST])
        .allowed_headers([AUTHORIZATION, CONTENT_TYPE])
        .allowed_headers(extra_headers.iter().cloned())
        // A browser script may only read the headers listed here: a 429 or 503 is useless without Retry-After.
        .expose_headers([RETRY_AFTER])
        .max_age(PREFLIGHT_MAX_AGE);
    for origin in origins {
        cors = cors.allowed_origin(origin);
    }
    Condition::new(!origins.is_empty(), cors)
}

/// actix-cors refuses a preflight (origin, method or header not allowed) with a plain-text 400; the API
/// answers every error as JSON, so it becomes 400 INVALID_REQUEST with the same message. Wrap it directly
/// outside `cors`.
pub async fn refusals_as_json(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let res = next.call(req).await?;
    let Some(refusal) = res
        .response()
        .error()
        .and_then(|e| e.as_error::<CorsError>())
    else {
        return Ok(res.map_into_boxed_body());
    };
    let mut json =
        actix_web::ResponseError::error_response(&ApiError::invalid(refusal.to_string()));
    if let Some(vary) = res.headers().get(VARY) {
        json.headers_mut().insert(VARY, vary.clone());
    }
    let (req, _) = res.into_parts();
    Ok(ServiceResponse::new(req, json))
}
