//! CORS for the origins in `gateway.cors_allowed_origins` (off when empty): the shared middleware of
//! `flashsale-api-error`, with the headers the gateway's API reads besides the usual two.

use actix_web::http::header::HeaderName;

pub use flashsale_api_error::cors::refusals_as_json;

pub fn cors(
    origins: &[String],
) -> actix_web::middleware::Condition<flashsale_api_error::cors::Cors> {
    flashsale_api_error::cors::cors(
        origins,
        &[
            HeaderName::from_static("idempotency-key"),
            // EventSource sends it when it resumes the live stock feed, and it is not CORS-safelisted.
            HeaderName::from_static("last-event-id"),
        ],
    )
}
