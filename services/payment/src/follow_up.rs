//! After the commit: Redis follows PostgreSQL (`Stock::mark_paid`), then the notification is published
//! (confirmed). Both are idempotent and run again on every replay of the event, which repairs a crash or a
//! failure between the commit and here. A failure answers 503 so the provider retries.

use crate::error::ApiError;
use crate::state::AppState;
use flashsale_domain::messages::{ORDER_PAID, PAYMENT_REFUND_REQUIRED};
use flashsale_domain::{
    Money, OrderId, OrderPaid, OrderStatus, PaymentRefundRequired, SaleId, UserId,
};
use flashsale_stock::PaidOutcome;
use flashsale_store::models::OrderRow;
use flashsale_store::payments::{self, PaymentRow, PaymentStatus};
use flashsale_store::{StoreError, orders};

pub enum FollowUp {
    Nothing,
    Paid(OrderPaid),
    Refund(PaymentRefundRequired),
}

pub fn paid_message(order: &OrderRow, payment: &PaymentRow) -> FollowUp {
    let (Some(paid_at), Some(priority), Ok(sale), Ok(user)) = (
        order.paid_at,
        order.shipping_priority,
        SaleId::new(order.sale_id),
        UserId::parse(order.user_id.clone()),
    ) else {
        tracing::error!(order_id = %order.id, "a paid order without paid_at or priority; nothing to announce");
        return FollowUp::Nothing;
    };
    FollowUp::Paid(OrderPaid {
        v: OrderPaid::VERSION,
        order_id: OrderId::from_uuid(order.id),
        sale_id: sale,
        user_id: user,
        quantity: u32::try_from(order.quantity).unwrap_or(0),
        amount: Money::from_minor(order.amount_minor),
        payment_id: payment.id,
        paid_at,
        shipping_priority: priority,
    })
}

pub fn refund_message(payment: &PaymentRow, order_status: OrderStatus) -> FollowUp {
    let (Ok(sale), Ok(user)) = (
        SaleId::new(payment.sale_id),
        UserId::parse(payment.user_id.clone()),
    ) else {
        return FollowUp::Nothing;
    };
    FollowUp::Refund(PaymentRefundRequired {
        v: PaymentRefundRequired::VERSION,
        payment_id: payment.id,
        order_id: OrderId::from_uuid(payment.order_id),
        sale_id: sale,
        user_id: user,
        amount: Money::from_minor(payment.amount_minor),
        order_status,
    })
}

/// What a replayed event must re-drive, read back from the payment and its order.
pub async fn of_payment(state: &AppState, payment: uuid::Uuid) -> Result<FollowUp, ApiError> {
    let mut conn = state.pool.get().await.map_err(StoreError::from)?;
    let Some(payment) = payments::find(&mut conn, payment).await? else {
        return Ok(FollowUp::Nothing);
    };
    let order = orders::find(&mut conn, OrderId::from_uuid(payment.order_id)).await?;
    Ok(match (payment.status(), order) {
        (Some(PaymentStatus::Succeeded), Some(order)) => paid_message(&order, &payment),
        (Some(PaymentStatus::RefundRequired), order) => {
            let status = order.map_or(OrderStatus::Expired, |o| o.status);
            // Still pending in PostgreSQL means its deadline had passed: it is on its way to expired.
            let status = if status == OrderStatus::PendingPayment {
                OrderStatus::Expired
            } else {
                status
            };
            refund_message(&payment, status)
        }
        _ => FollowUp::Nothing,
    })
}

pub async fn run(state: &AppState, follow_up: &FollowUp) -> Result<(), ApiError> {
    match follow_up {
        FollowUp::Nothing => Ok(()),
        FollowUp::Paid(m) => {
            match state
                .stock
                .mark_paid(m.sale_id, &m.user_id, m.order_id)
                .await?
            {
                PaidOutcome::Paid | PaidOutcome::AlreadyPaid => {}
                other => {
                    // PostgreSQL decided; the warmer rebuilds a sale whose Redis state was lost.
                    tracing::warn!(order_id = %m.order_id, ?other, "Redis could not mark a paid order paid");
                }
            }
            publish(state, ORDER_PAID, &m.order_id.to_string(), m).await
        }
        FollowUp::Refund(m) => {
            publish(state, PAYMENT_REFUND_REQUIRED, &m.payment_id.to_string(), m).await
        }
    }
}

async fn publish(
    state: &AppState,
    routing_key: &str,
    message_id: &str,
    message: &impl serde::Serialize,
) -> Result<(), ApiError> {
    let body = serde_json::to_vec(message).map_err(ApiError::internal)?;
    state
        .publisher
        .publish_event(routing_key, message_id, &body)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, routing_key, "notification not confirmed; the provider's retry re-drives it");
            ApiError::unavailable("the notification could not be published; retry shortly")
        })
}
