//! The reservation use case: one EVALSHA, then a confirmed publish, then the answer.
//!
//! Invariant 7: a 4xx holds no stock; a 503 whose message the broker definitely did not take (never sent, or
//! returned as unroutable) is cancelled in Redis; any other 503 (no confirm in time, or a nack: one queue refused
//! while others may keep a copy) keeps its outbox entry for the relay, so nothing is released while a message
//! for it may exist.

use crate::error::ApiError;
use crate::sold_out::Gone;
use crate::state::AppState;
use flashsale_broker::PublishError;
use flashsale_domain::reservation::{Refusal, Reservation};
use flashsale_domain::{ErrorCode, OrderId, ReservationCreated, SaleId, UserId};
use flashsale_stock::{CancelOutcome, ReserveOutcome, ReserveRequest, StockError};

pub struct ReserveCommand<'a> {
    pub sale: SaleId,
    pub user: &'a UserId,
    pub quantity: u32,
    pub idempotency_key: Option<&'a str>,
}

/// The answer to the buyer, and the label it is counted under.
pub async fn reserve(
    state: &AppState,
    cmd: &ReserveCommand<'_>,
) -> (Result<Reservation, ApiError>, &'static str) {
    let order_id = OrderId::new_v7();
    let req = ReserveRequest {
        sale: cmd.sale,
        order_id,
        user: cmd.user,
        quantity: cmd.quantity,
        idempotency_key: cmd.idempotency_key,
    };
    // Both breakers before the script: once it ran, a unit is held (invariant 7).
    let permits = match state.breakers.admit(&state.metrics) {
        Ok(permits) => permits,
        Err(e) => return (Err(e), ErrorCode::Unavailable.as_str()),
    };
    let outcome = match state.stock.reserve(&req, &state.limits).await {
        Ok(outcome) => {
            permits.redis.success();
            outcome
        }
        Err(e) => {
            // An unexpected reply is a bug, not an outage: it does not count against Redis.
            if matches!(e, StockError::Unavailable(_)) {
                permits.redis.failure();
            }
            return (Err(e.into()), ErrorCode::Unavailable.as_str());
        }
    };
    let reservation = match outcome {
        ReserveOutcome::Replayed(r) => return (Ok(r), "REPLAYED"),
        ReserveOutcome::Refused(refusal) => {
            let error = refused(state, cmd.sale, refusal).await;
            let label = error.code.as_str();
            return (Err(error), label);
        }
        ReserveOutcome::Reserved(r) => r,
    };

    let message = created_message(cmd, &reservation);
    let body = match serde_json::to_vec(&message) {
        Ok(body) => body,
        Err(e) => return (Err(ApiError::internal(e)), ErrorCode::Internal.as_str()),
    };
    // Group commit: this reservation may share its message with others accepted within the linger; the
    // answer is that message's outcome.
    match state
        .group
        .publish(message.routing_key(), order_id.to_string(), body)
        .await
    {
        Ok(()) => {
            permits.amqp.success();
            // Removing the outbox entry is batched off the hot path; if it never happens the relay re-publishes
            // and consumers dedupe by message_id.
            // The home shard is remembered by now (the script ran there): no Redis call.
            if let Ok(at) = state.stock.home(cmd.sale, cmd.user).await {
                let _ = state.confirmed.send((at, order_id));
            }
            (Ok(reservation), "RESERVED")
        }
        Err(e) => {
            // Every publish error says the broker is unreachable, slow or refusing: all count against it.
            permits.amqp.failure();
            (
                Err(publish_failed(state, cmd, order_id, e).await),
                ErrorCode::Unavailable.as_str(),
            )
        }
    }
}

fn created_message(cmd: &ReserveCommand<'_>, r: &Reservation) -> ReservationCreated {
    ReservationCreated::new(
        r.order_id,
        cmd.sale,
        cmd.user.clone(),
        r.quantity,
        r.amount,
        r.created_at,
        r.expires_at,
    )
}

async fn publish_failed(
    state: &AppState,
    cmd: &ReserveCommand<'_>,
    order_id: OrderId,
    error: PublishError,
) -> ApiError {
    let retry = ApiError::unavailable("the order queue is unavailable; retry shortly");
    if !error.broker_did_not_take_it() {
        // A nack lands here too: the order-writer queue may hold a copy, so releasing the unit would sell it twice.
        tracing::warn!(%order_id, %error, "publish outcome unknown; the outbox relay will finish this reservation");
        return retry;
    }
    match state
        .stock
        .cancel(cmd.sale, order_id, cmd.user, cmd.idempotency_key)
        .await
    {
        Ok(CancelOutcome::Released) => {
            tracing::warn!(%order_id, %error, "broker did not take the reservation; units released");
        }
        Ok(outcome) => {
            tracing::warn!(%order_id, %error, ?outcome, "broker did not take the reservation; left to the relay");
        }
        Err(cancel_error) => {
            // The entry stays in the outbox, so the relay turns it into an order: held, never lost.
            tracing::error!(%order_id, %error, %cancel_error, "cannot release a refused reservation; left to the relay");
        }
    }
    retry
}

async fn refused(state: &AppState, sale: SaleId, refusal: Refusal) -> ApiError {
    let message = refusal.to_string();
    match refusal {
        Refusal::SaleStateMissing => missing_sale_state(state, sale).await,
        Refusal::IdempotencyKeyReused | Refusal::QuantityAboveLimit { .. } => {
            ApiError::invalid(message)
        }
        Refusal::RateLimited { retry_after_ms } => ApiError::new(ErrorCode::RateLimited, message)
            .with_retry_after(retry_after_ms.div_ceil(1000)),
        Refusal::NotStarted => ApiError::new(ErrorCode::SaleNotStarted, message),
        Refusal::Ended => {
            state.sold_out.learn(&state.stock, sale, Gone::Ended);
            gone_error(Gone::Ended)
        }
        Refusal::LimitExceeded { order_id } => {
            let mut e = ApiError::new(ErrorCode::LimitExceeded, message);
            e.order_id = Some(order_id);
            e
        }
        Refusal::SoldOut => {
            state.sold_out.learn(&state.stock, sale, Gone::SoldOut);
            gone_error(Gone::SoldOut)
        }
    }
}

/// The same answer whether the script or the memory gives it.
pub fn gone_error(gone: Gone) -> ApiError {
    // Static messages: the flood's answer allocates nothing for its text.
    match gone {
        Gone::SoldOut => ApiError::new(ErrorCode::SoldOut, "the sale is sold out"),
        Gone::Ended => ApiError::new(ErrorCode::SaleEnded, "the sale has ended"),
    }
}

/// Redis holds nothing for this sale: either it never existed (404), or it is over and nothing of it can be
/// held any more (409 SALE_ENDED), or Redis lost it (503 until the warmer restores it from PostgreSQL; never
/// SOLD_OUT, never unlimited). Answered from the sale catalog, so a flood of these costs no query per request.
pub async fn missing_sale_state(state: &AppState, sale: SaleId) -> ApiError {
    match state.catalog.get(sale).await {
        Ok(None) => ApiError::new(ErrorCode::SaleNotFound, "no such sale"),
        // Inside the payment window its buyers' orders still live in Redis: a lost state is a 503 like any other.
        Ok(Some(entry)) if !entry.sale.is_live(chrono::Utc::now()) => {
            ApiError::new(ErrorCode::SaleEnded, Refusal::Ended.to_string())
        }
        Ok(Some(_)) => {
            ApiError::unavailable("the sale is being restored to the stock cache; retry shortly")
        }
        Err(e) => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_answers_with_the_scripts_words() {
        assert_eq!(
            gone_error(Gone::SoldOut).message,
            Refusal::SoldOut.to_string()
        );
        assert_eq!(gone_error(Gone::Ended).message, Refusal::Ended.to_string());
    }
}
