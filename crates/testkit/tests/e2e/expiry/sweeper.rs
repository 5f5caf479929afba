//! What the message path alone cannot do: a due message lost before it reached the due queue (the sweeper), a
//! row order-writer has not written (written `expired`, never counted in `held`), a paid order (left alone).

use super::{expires_at, order_id, row_status, sale_with_window, until_late};
use diesel::sql_types::Uuid as SqlUuid;
use diesel_async::RunQueryDsl;
use flashsale_stock::{PaidOutcome, ReservationState};
use flashsale_testkit::env::DRAIN;
use flashsale_testkit::{TestEnv, eventually};
use reqwest::StatusCode;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn the_sweeper_expires_a_reservation_whose_message_was_lost() {
    let env = TestEnv::with(|s| {
        s.expiry.sweep_interval_ms = 200;
        s.expiry.sweep_grace_ms = 300;
    })
    .await;
    let gw = env.spawn_gateway().await;
    let _writer = env.spawn_order_writer().await;
    let sale = gw.create_sale(&env, &sale_with_window(1, 2)).await;
    let reply = gw.reserve(sale, &env.token("lost")).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
    let order = order_id(&reply);
    eventually(DRAIN, || env.held(sale), 1).await;
    // The broker loses the reservation's due message before its window ends.
    assert_eq!(env.purge_expiry_wait_queue(2).await, 1);

    let expiry = env.spawn_expiry().await;
    // Deadline + grace + one sweep interval, then the usual second.
    eventually(
        until_late(expires_at(&reply)) + Duration::from_millis(500),
        || row_status(&env, sale, order),
        Some("expired".to_owned()),
    )
    .await;
    eventually(DRAIN, || env.remaining(sale), Some(1)).await;
    assert_eq!(env.held(sale).await, 0);
    assert_eq!(
        expiry
            .metric(r#"flashsale_expirations_total{source="sweeper"}"#)
            .await,
        1.0
    );
    assert!(
        expiry
            .metric(r#"flashsale_sweeper_found_total{store="postgres"}"#)
            .await
            >= 1.0
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_order_writer_stopped_expiry_writes_the_row_expired() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let _expiry = env.spawn_expiry().await;
    let sale = gw.create_sale(&env, &sale_with_window(2, 2)).await;
    let first = gw.reserve(sale, &env.token("early")).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{first:?}");
    let early = order_id(&first);

    // No order-writer: expiry writes the row itself, straight as expired, and gives the unit back.
    eventually(
        until_late(expires_at(&first)),
        || row_status(&env, sale, early),
        Some("expired".to_owned()),
    )
    .await;
    eventually(DRAIN, || env.remaining(sale), Some(2)).await;
    assert_eq!(env.held(sale).await, 0);

    // order-writer comes back and consumes the old reservation.created (before the next one: one queue, in
    // order): it skips the row and never counts it in `held`.
    let _writer = env.spawn_order_writer().await;
    let second = gw.reserve(sale, &env.token("late")).await;
    assert_eq!(second.status, StatusCode::ACCEPTED, "{second:?}");
    eventually(DRAIN, || env.order_count(sale), 2).await;
    eventually(
        DRAIN,
        || row_status(&env, sale, order_id(&second)),
        Some("pending_payment".to_owned()),
    )
    .await;
    assert_eq!(
        row_status(&env, sale, early).await.as_deref(),
        Some("expired")
    );
    assert_eq!(env.held(sale).await, 1);
    assert_eq!(env.remaining(sale).await, Some(1));
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paid_order_is_left_alone_by_its_due_message() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let _writer = env.spawn_order_writer().await;
    let expiry = env.spawn_expiry().await;
    let sale = gw.create_sale(&env, &sale_with_window(2, 2)).await;
    let reply = gw.reserve(sale, &env.token("payer")).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
    let order = order_id(&reply);
    eventually(DRAIN, || env.held(sale), 1).await;

    // Paid before the deadline, the way the payment service does it: PostgreSQL first, then Redis.
    let mut conn = env.pg().await;
    let paid = diesel::sql_query(
        "UPDATE orders SET status = 'paid', paid_at = clock_timestamp(), shipping_priority = 1 \
         WHERE id = $1 AND status = 'pending_payment' AND expires_at > clock_timestamp()",
    )
    .bind::<SqlUuid, _>(order.as_uuid())
    .execute(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("paying: {e}"));
    assert_eq!(paid, 1, "paid before the deadline");
    assert_eq!(
        env.stock
            .mark_paid(
                sale,
                &flashsale_domain::UserId::parse("payer").expect("user"),
                order
            )
            .await
            .ok(),
        Some(PaidOutcome::Paid)
    );

    // The due message arrives after the deadline and is acknowledged without touching anything.
    let acked = format!(
        r#"flashsale_messages_total{{queue="{}expiry.due",result="ack"}}"#,
        env.settings.amqp.prefix
    );
    eventually(
        until_late(expires_at(&reply)) + DRAIN,
        || expiry.metric(&acked),
        1.0,
    )
    .await;
    assert_eq!(row_status(&env, sale, order).await.as_deref(), Some("paid"));
    assert_eq!(
        env.reservation_state(sale, order).await,
        Some(ReservationState::Paid)
    );
    assert_eq!(env.held(sale).await, 1);
    assert_eq!(env.remaining(sale).await, Some(1));
    assert_eq!(
        expiry
            .metric(r#"flashsale_expirations_total{source="message"}"#)
            .await,
        0.0
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sweeper_finishes_in_redis_what_a_crash_left_after_the_commit() {
    let env = TestEnv::with(|s| {
        s.expiry.sweep_interval_ms = 200;
        s.expiry.sweep_grace_ms = 300;
    })
    .await;
    let gw = env.spawn_gateway().await;
    let _writer = env.spawn_order_writer().await;
    let sale = gw.create_sale(&env, &sale_with_window(3, 2)).await;
    let cut = gw.reserve(sale, &env.token("cut")).await;
    let payer = gw.reserve(sale, &env.token("payer")).await;
    assert_eq!(
        (cut.status, payer.status),
        (StatusCode::ACCEPTED, StatusCode::ACCEPTED)
    );
    let (cut_order, paid_order) = (order_id(&cut), order_id(&payer));
    eventually(DRAIN, || env.held(sale), 2).await;
    assert_eq!(env.purge_expiry_wait_queue(2).await, 2);

    // Two services died between their PostgreSQL commit and their Redis step: an expiry (row expired, `held`
    // lowered, units still held in Redis) and a payment (row paid, Redis still held).
    let mut conn = env.pg().await;
    for (sql, order) in [
        (
            "UPDATE orders SET status = 'paid', paid_at = clock_timestamp(), shipping_priority = 1 \
          WHERE id = $1 AND status = 'pending_payment' AND expires_at > clock_timestamp()",
            paid_order,
        ),
        (
            "UPDATE orders SET status = 'expired' WHERE id = $1 AND status = 'pending_payment'",
            cut_order,
        ),
    ] {
        let n = diesel::sql_query(sql)
            .bind::<SqlUuid, _>(order.as_uuid())
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(n, 1, "{sql}");
    }
    diesel::sql_query("UPDATE sales SET held = held - 1 WHERE id = $1")
        .bind::<diesel::sql_types::BigInt, _>(sale.get())
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("held: {e}"));

    let expiry = env.spawn_expiry().await;
    let by = until_late(expires_at(&cut)) + Duration::from_millis(500);
    eventually(
        by,
        || env.reservation_state(sale, cut_order),
        Some(ReservationState::Expired),
    )
    .await;
    eventually(
        DRAIN,
        || env.reservation_state(sale, paid_order),
        Some(ReservationState::Paid),
    )
    .await;
    // One unit back (the expired one), one sold, one never taken.
    assert_eq!(env.remaining(sale).await, Some(2));
    let sold = env
        .stock
        .snapshot(sale)
        .await
        .ok()
        .flatten()
        .map(|s| s.sold);
    assert_eq!(sold, Some(1));
    assert_eq!(env.held(sale).await, 1);
    assert!(
        expiry
            .metric(r#"flashsale_sweeper_found_total{store="redis"}"#)
            .await
            >= 2.0
    );
    env.cleanup().await;
}
