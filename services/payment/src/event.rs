//! The webhook's body: `{"event_id", "type", "payment_id", "order_id", "amount"}`, parsed only after the
//! signature was checked on the raw bytes. Unknown fields are allowed: providers add fields over time.

use crate::error::ApiError;
use flashsale_domain::Money;
use serde::Deserialize;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Succeeded,
    Failed,
}

impl EventKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "payment.succeeded",
            Self::Failed => "payment.failed",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Event {
    pub event_id: String,
    pub kind: EventKind,
    pub payment_id: Uuid,
    pub order_id: Uuid,
    pub amount: Money,
}

/// A payment provider's event. Unknown fields are allowed (providers add fields over time).
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = WebhookEvent, example = json!({
    "event_id": "evt_019a9c41", "type": "payment.succeeded", "payment_id": "019a9c40-1b2c-7d3e-8f40-5a6b7c8d9e0f",
    "order_id": "019a9c3e-6f1d-7c44-9b1e-2f0c5a7d8e90", "amount": "2990.00"
}))]
pub(crate) struct Raw {
    /// Unique per event: a repeat answers the first answer again.
    #[schema(min_length = 1, max_length = 200)]
    event_id: String,
    #[serde(rename = "type")]
    #[schema(pattern = "^payment\\.(succeeded|failed)$")]
    kind: String,
    #[schema(format = Uuid)]
    payment_id: String,
    #[schema(format = Uuid)]
    order_id: String,
    /// Must be the payment's amount.
    amount: Money,
}

/// Longest accepted event id.
const MAX_EVENT_ID: usize = 200;

impl Event {
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        // serde would also take the struct written as an array of its values; providers send an object.
        let first = body
            .iter()
            .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
        if first != Some(&b'{') {
            return Err(ApiError::invalid("the webhook body must be a JSON object"));
        }
        let raw: Raw = serde_json::from_slice(body)
            .map_err(|e| ApiError::invalid(format!("invalid webhook body: {e}")))?;
        if raw.event_id.is_empty() || raw.event_id.len() > MAX_EVENT_ID {
            return Err(ApiError::invalid(format!(
                "event_id must be 1..={MAX_EVENT_ID} characters"
            )));
        }
        let kind = match raw.kind.as_str() {
            "payment.succeeded" => EventKind::Succeeded,
            "payment.failed" => EventKind::Failed,
            other => {
                return Err(ApiError::invalid(format!(
                    "type must be payment.succeeded or payment.failed, not {other:?}"
                )));
            }
        };
        let uuid = |name: &str, raw: &str| {
            Uuid::parse_str(raw).map_err(|_| ApiError::invalid(format!("{name} is not a UUID")))
        };
        Ok(Self {
            payment_id: uuid("payment_id", &raw.payment_id)?,
            order_id: uuid("order_id", &raw.order_id)?,
            event_id: raw.event_id,
            kind,
            amount: raw.amount,
        })
    }
}
