//! HTTP answers every service gives the same way: the JSON error body, `/healthz` and `/readyz`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, HttpResponseBuilder};
use flashsale_domain::ErrorCode;
use serde_json::{Map, Value, json};

/// `{"error": {"code", "message", ...extra}}` with the status the code prescribes.
pub fn error_response(code: ErrorCode, message: &str, extra: Map<String, Value>) -> HttpResponse {
    let status =
        StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut error = Map::new();
    error.insert("code".into(), Value::from(code.as_str()));
    error.insert("message".into(), Value::from(message));
    error.extend(extra);
    HttpResponseBuilder::new(status).json(json!({ "error": error }))
}

/// One dependency's readiness: `Ok` or a short error text.
pub type Check = (&'static str, Result<(), String>);

/// `{"status": "ok"|"unavailable", "checks": {...}}`: 200 when every check passed, else 503 naming the failure.
pub fn readiness_response(checks: Vec<Check>, stopping: bool) -> HttpResponse {
    let mut all_ok = !stopping;
    let mut body = Map::new();
    for (name, result) in checks {
        let text = match result {
            Ok(()) => "ok".to_owned(),
            Err(e) => {
                all_ok = false;
                e
            }
        };
        body.insert(name.to_owned(), Value::from(text));
    }
    let mut answer = json!({
        "status": if all_ok { "ok" } else { "unavailable" },
        "checks": body,
    });
    if stopping {
        answer["stopping"] = Value::Bool(true);
    }
    if all_ok {
        HttpResponse::Ok().json(answer)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "1"))
            .json(answer)
    }
}

pub fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}
