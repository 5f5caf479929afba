//! `POST /webhooks/psp`: the payment provider's signed events. The signature is checked on the raw bytes
//! before anything else (401 INVALID_SIGNATURE, nothing changes); then the event is applied (`apply`) and
//! followed up (`follow_up`); a replayed `event_id` answers its first answer again and re-drives the follow-up.

use crate::applier::ApplyError;
use crate::apply::{Answer, Applied, Refusal};
use crate::error::ApiError;
use crate::event::Event;
use crate::follow_up;
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use flashsale_domain::ErrorCode;
use secrecy::ExposeSecret;

pub async fn receive(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let result = handle(&state, &req, payload).await;
    if let Err(e) = &result {
        state.metrics.webhook(match e.code {
            ErrorCode::InvalidSignature => "invalid_signature",
            ErrorCode::PaymentNotFound => "not_found",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::InvalidRequest | ErrorCode::PayloadTooLarge => "invalid_request",
            _ => "error",
        });
    }
    result
}

async fn handle(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = crate::routes::read_body(payload).await?;
    verify(state, req, &body)?;
    let event = Event::parse(&body)?;

    let applied = state.applier.apply(&event).await;
    match applied {
        Ok(Applied::Answered {
            answer,
            follow_up,
            result,
        }) => {
            follow_up::run(state, &follow_up).await?;
            state.metrics.webhook(result);
            Ok(respond(&answer))
        }
        Ok(Applied::Replayed(answer)) => {
            replay(
                state,
                i32::from(answer.status),
                answer.body,
                event.payment_id,
            )
            .await
        }
        Err(ApplyError::Refused(refusal)) => Err(refused(refusal)),
        Err(ApplyError::Db(e)) => Err(e.into()),
        Err(ApplyError::Unavailable(cause)) => {
            tracing::warn!(%cause, "webhook not applied");
            Err(ApiError::unavailable(
                "the payment store is unavailable; retry shortly",
            ))
        }
        Err(ApplyError::Conflict) => Err(ApiError::unavailable(
            "the payment store is busy; retry shortly",
        )),
    }
}

fn verify(state: &AppState, req: &HttpRequest, body: &[u8]) -> Result<(), ApiError> {
    let header = match req.headers().get(flashsale_webhook::HEADER) {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| invalid_signature("malformed"))?),
    };
    let secrets: Vec<&[u8]> = state
        .webhook_secrets
        .iter()
        .map(|s| s.expose_secret().as_bytes())
        .collect();
    let now = chrono::Utc::now().timestamp();
    flashsale_webhook::verify(header, body, &secrets, now, state.webhook_tolerance_secs).map_err(
        |e| {
            tracing::info!(reason = e.label(), "webhook refused: {e}");
            invalid_signature(e.label())
        },
    )
}

fn invalid_signature(reason: &str) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidSignature,
        format!("missing or invalid Psp-Signature ({reason})"),
    )
}

async fn replay(
    state: &AppState,
    status: i32,
    body: String,
    payment: uuid::Uuid,
) -> Result<HttpResponse, ApiError> {
    let follow_up = follow_up::of_payment(state, payment).await?;
    follow_up::run(state, &follow_up).await?;
    state.metrics.webhook("replayed");
    Ok(respond(&Answer {
        status: u16::try_from(status).unwrap_or(200),
        body,
    }))
}

fn respond(answer: &Answer) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK))
        .content_type("application/json")
        .body(answer.body.clone())
}

fn refused(refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::PaymentNotFound => ApiError::new(ErrorCode::PaymentNotFound, "no such payment"),
        Refusal::OrderMismatch => {
            ApiError::invalid("the payment and the order do not belong together")
        }
        Refusal::AmountMismatch => ApiError::invalid("the amount is not the payment's amount"),
        Refusal::UnknownSale => ApiError::invalid("the payment's sale does not exist"),
    }
}
