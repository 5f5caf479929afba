//! The simulated payment provider (`payment.simulator.enabled`): a checkout page with Pay and Fail buttons,
//! and `POST /psp/checkout/{payment_id}/complete`, which sends the signed webhook over real HTTP to
//! `payment.simulator.webhook_url`, exactly as a provider would, and answers with the webhook's status and
//! body. No authentication: it stands in for the provider's own site.

use crate::error::ApiError;
use crate::routes::webhook::WebhookAnswer;
use crate::routes::{read_body, rfc3339, uuid_in_path};
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use flashsale_api_error::openapi::{
    InvalidRequestError, InvalidSignatureError, PayloadTooLargeError, PaymentNotFoundError,
    UnavailableError,
};
use flashsale_domain::{ErrorCode, Money};
use flashsale_store::StoreError;
use flashsale_store::payments::{self, PaymentRow};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

async fn payment(state: &AppState, raw: &str) -> Result<PaymentRow, ApiError> {
    let id = uuid_in_path(raw, "the payment id")?;
    let mut conn = state.pool.get().await.map_err(StoreError::from)?;
    payments::find(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::PaymentNotFound, "no such payment"))
}

/// The simulated provider's checkout page
#[utoipa::path(
    get,
    path = "/psp/checkout/{payment_id}",
    tag = "simulator",
    operation_id = "psp_page",
    params(("payment_id" = uuid::Uuid, Path, description = "The payment.")),
    responses(
        (status = 200, description = "An HTML page with Pay and Fail buttons.", content_type = "text/html", body = String),
        (status = 400, description = "The id is not a UUID.", body = InvalidRequestError),
        (status = 404, description = "No such payment.", body = PaymentNotFoundError),
        (status = 503, description = "PostgreSQL unreachable.", body = UnavailableError,
         headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
)]
pub async fn page(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let p = payment(&state, &path).await?;
    // Only ids, a decimal amount, a status word and a timestamp go into the page: nothing to escape.
    let html = PAGE
        .replace("{payment_id}", &p.id.to_string())
        .replace("{order_id}", &p.order_id.to_string())
        .replace("{amount}", &Money::from_minor(p.amount_minor).to_string())
        .replace("{status}", p.status.as_str())
        .replace("{expires_at}", &rfc3339(p.expires_at));
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(html))
}

/// What the simulated buyer chose.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"outcome": "succeeded"}))]
pub(crate) struct Complete {
    outcome: Outcome,
}

#[derive(Deserialize, Clone, Copy, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Outcome {
    Succeeded,
    Failed,
}

/// Pay or fail a payment (simulator)
///
/// Sends the signed webhook to `payment.simulator.webhook_url`, as a provider would, and answers with the
/// webhook's own status and body.
#[utoipa::path(
    post,
    path = "/psp/checkout/{payment_id}/complete",
    tag = "simulator",
    operation_id = "psp_complete",
    params(("payment_id" = uuid::Uuid, Path, description = "The payment.")),
    request_body(content = Complete, content_type = "application/json"),
    responses(
        (status = 200, description = "The webhook's answer.", body = WebhookAnswer),
        (status = 400, description = "A bad body or id, or the webhook's 400.", body = InvalidRequestError),
        (status = 401, description = "The webhook refused the signature (secrets differ).", body = InvalidSignatureError),
        (status = 404, description = "No such payment.", body = PaymentNotFoundError),
        (status = 413, description = "Body over 16 KiB.", body = PayloadTooLargeError),
        (status = 503, description = "The webhook could not be delivered, or answered 503.", body = UnavailableError,
         headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
)]
pub async fn complete(
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(payload).await?;
    let request: Complete = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid(format!(
            "the body must be {{\"outcome\": \"succeeded\"|\"failed\"}}: {e}"
        ))
    })?;
    let p = payment(&state, &path).await?;
    let event = json!({
        "event_id": format!("evt_{}", uuid::Uuid::now_v7().simple()),
        "type": match request.outcome {
            Outcome::Succeeded => "payment.succeeded",
            Outcome::Failed => "payment.failed",
        },
        "payment_id": p.id,
        "order_id": p.order_id,
        "amount": Money::from_minor(p.amount_minor),
    });
    let raw = serde_json::to_vec(&event).map_err(ApiError::internal)?;
    let current = state
        .webhook_secrets
        .first()
        .map(|s| s.expose_secret().as_bytes().to_vec())
        .unwrap_or_default();
    let signature = flashsale_webhook::sign(&[&current], chrono::Utc::now().timestamp(), &raw);
    let answer = state
        .http
        .post(&state.simulator_webhook_url)
        .header(flashsale_webhook::HEADER, signature)
        .header("content-type", "application/json")
        .body(raw)
        .send()
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "the simulator's webhook was not delivered");
            ApiError::unavailable("the webhook could not be delivered; retry shortly")
        })?;
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let retry_after = answer.headers().get("retry-after").cloned();
    let bytes = answer.bytes().await.map_err(|e| {
        ApiError::unavailable(format!("the webhook's answer could not be read: {e}"))
    })?;
    let mut res = HttpResponse::build(status);
    res.content_type("application/json");
    if let Some(v) = retry_after.and_then(|v| v.to_str().ok().map(str::to_owned)) {
        res.insert_header(("Retry-After", v));
    }
    Ok(res.body(bytes))
}

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Simulated payment</title>
<style>body{font-family:sans-serif;max-width:32rem;margin:3rem auto}button{font-size:1.1rem;margin-right:1rem}</style>
</head>
<body>
<h1>Simulated payment provider</h1>
<p>Payment <code>{payment_id}</code> for order <code>{order_id}</code></p>
<p>Amount: <strong>{amount}</strong> &middot; status: {status} &middot; pay before {expires_at}</p>
<button id="pay" data-test="psp-pay">Pay</button><button id="fail" data-test="psp-fail">Fail</button>
<pre id="result" data-test="psp-result" aria-live="polite"></pre>
<script>
async function complete(outcome) {
  const res = await fetch("/psp/checkout/{payment_id}/complete", {
    method: "POST", headers: {"content-type": "application/json"},
    body: JSON.stringify({outcome})
  });
  document.getElementById("result").textContent = res.status + " " + await res.text();
}
document.getElementById("pay").onclick = () => complete("succeeded");
document.getElementById("fail").onclick = () => complete("failed");
</script>
</body>
</html>
"#;
