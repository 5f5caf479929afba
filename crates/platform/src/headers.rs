//! Security headers on every answer of an HTTP service, error answers included (wrap it outside every
//! middleware that may answer by itself).

use actix_web::http::header::{
    CACHE_CONTROL, HeaderValue, STRICT_TRANSPORT_SECURITY, X_CONTENT_TYPE_OPTIONS,
};
use actix_web::middleware::DefaultHeaders;

/// `X-Content-Type-Options: nosniff` (a browser never reads a JSON answer as script or HTML),
/// `Cache-Control: no-store` (answers are per buyer and change by the millisecond: no cache may keep them;
/// on the ops endpoints too, which no cache should keep either) and, when `hsts_max_age_secs > 0`,
/// `Strict-Transport-Security: max-age=<secs>`. A header a handler set itself is left as it is.
pub fn security_headers(hsts_max_age_secs: u64) -> DefaultHeaders {
    let headers = DefaultHeaders::new()
        .add((X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .add((CACHE_CONTROL, HeaderValue::from_static("no-store")));
    if hsts_max_age_secs == 0 {
        return headers;
    }
    headers.add((
        STRICT_TRANSPORT_SECURITY,
        format!("max-age={hsts_max_age_secs}"),
    ))
}
