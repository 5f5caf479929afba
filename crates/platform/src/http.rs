//! HTTP answers every service gives the same way: the status of each error code, the JSON error body,
//! `/healthz` and `/readyz`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, HttpResponseBuilder};
use flashsale_domain::{ErrorCode, OrderId};
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// The HTTP status of each error code. Exhaustive on purpose (no `_`): a new code must choose its status here.
pub const fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidRequest => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthorized | ErrorCode::InvalidSignature => StatusCode::UNAUTHORIZED,
        ErrorCode::NotFound
        | ErrorCode::SaleNotFound
        | ErrorCode::OrderNotFound
        | ErrorCode::PaymentNotFound => StatusCode::NOT_FOUND,
        ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::SoldOut
        | ErrorCode::LimitExceeded
        | ErrorCode::SaleNotStarted
        | ErrorCode::SaleEnded
        | ErrorCode::OrderNotPayable => StatusCode::CONFLICT,
        ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `{"error": {"code", "message"}}` with the status of the code (`status_of`), and the `order_id` a
/// LIMIT_EXCEEDED names. Typed, so a refusal costs one small serialisation, not a JSON tree.
pub fn error_response(code: ErrorCode, message: &str, order_id: Option<OrderId>) -> HttpResponse {
    #[derive(Serialize)]
    struct Body<'a> {
        error: Detail<'a>,
    }
    #[derive(Serialize)]
    struct Detail<'a> {
        code: &'static str,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        order_id: Option<OrderId>,
    }
    HttpResponseBuilder::new(status_of(code)).json(Body {
        error: Detail {
            code: code.as_str(),
            message,
            order_id,
        },
    })
}

/// One dependency's readiness: `Ok` or a short error text.
pub type Check = (&'static str, Result<(), String>);

/// `GET /healthz`: the process serves HTTP.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"status": "ok"}))]
pub struct Health {
    pub status: Alive,
}

/// Always `ok`.
#[derive(Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum Alive {
    Ok,
}

/// `GET /readyz`: every dependency answered (200), or one did not, or the service is stopping (503).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"status": "unavailable", "checks": {"redis": "ok", "amqp": "not connected", "postgres": "ok"}}))]
pub struct Readiness {
    pub status: ReadyStatus,
    /// One entry per dependency: `ok`, or a short error text.
    pub checks: BTreeMap<&'static str, String>,
    /// Present, and true, from SIGTERM on.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    #[schema(required = false)]
    pub stopping: bool,
}

#[derive(Serialize, ToSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ReadyStatus {
    Ok,
    Unavailable,
}

/// `{"status": "ok"|"unavailable", "checks": {...}}`: 200 when every check passed, else 503 naming the failure.
pub fn readiness_response(checks: Vec<Check>, stopping: bool) -> HttpResponse {
    let mut all_ok = !stopping;
    let mut named = BTreeMap::new();
    for (name, result) in checks {
        let text = match result {
            Ok(()) => "ok".to_owned(),
            Err(e) => {
                all_ok = false;
                e
            }
        };
        named.insert(name, text);
    }
    let answer = Readiness {
        status: if all_ok {
            ReadyStatus::Ok
        } else {
            ReadyStatus::Unavailable
        },
        checks: named,
        stopping,
    };
    if all_ok {
        HttpResponse::Ok().json(answer)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "1"))
            .json(answer)
    }
}

pub fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: Alive::Ok })
}
