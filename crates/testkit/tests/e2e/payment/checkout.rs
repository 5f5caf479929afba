//! Checkout: the owner only, repeatable, before the order row exists, refused once paid, a new payment after a
//! failed one, malformed and unknown ids.

use super::reserve_and_checkout;
use flashsale_testkit::env::DRAIN;
use flashsale_testkit::{SaleSpec, TestEnv, eventually};
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread")]
async fn checkout_is_for_the_owner_repeatable_and_refused_once_paid() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let _writer = env.spawn_order_writer().await;
    let pay = env.spawn_payment().await;
    let sale = gw.create_sale(&env, &SaleSpec::default()).await;
    let first = reserve_and_checkout(&env, &gw, &pay, sale, "eve").await;
    let order = first["order_id"].as_str().unwrap_or_default().to_owned();
    let token = env.token("eve");

    let again = pay.checkout(&order, &token).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(
        again.body["payment_id"], first["payment_id"],
        "the same payment again"
    );
    let other = pay.checkout(&order, &env.token("mallory")).await;
    assert_eq!(
        (other.status, other.code()),
        (StatusCode::NOT_FOUND, "ORDER_NOT_FOUND")
    );
    let malformed = pay.checkout("not-a-uuid", &token).await;
    assert_eq!(
        (malformed.status, malformed.code()),
        (StatusCode::BAD_REQUEST, "INVALID_REQUEST")
    );
    let unknown = pay
        .checkout(&uuid::Uuid::now_v7().to_string(), &token)
        .await;
    assert_eq!(
        (unknown.status, unknown.code()),
        (StatusCode::NOT_FOUND, "ORDER_NOT_FOUND")
    );
    let anonymous = pay
        .send(
            pay.http
                .post(format!("{}/api/v1/orders/{order}/checkout", pay.base)),
        )
        .await;
    assert_eq!(
        (anonymous.status, anonymous.code()),
        (StatusCode::UNAUTHORIZED, "UNAUTHORIZED")
    );

    // The buyer's payment fails: the order stays payable and the next checkout is a new payment.
    let failed = pay
        .complete(first["payment_id"].as_str().unwrap_or_default(), "failed")
        .await;
    assert_eq!(failed.status, StatusCode::OK, "{failed:?}");
    assert_eq!(failed.body["status"], "pending_payment");
    let retry = pay.checkout(&order, &token).await;
    assert_eq!(retry.status, StatusCode::OK, "{retry:?}");
    assert_ne!(retry.body["payment_id"], first["payment_id"]);
    let paid = pay
        .complete(
            retry.body["payment_id"].as_str().unwrap_or_default(),
            "succeeded",
        )
        .await;
    assert_eq!(paid.body["status"], "paid", "{paid:?}");
    let statuses: Vec<String> = env
        .payments_of(&order)
        .await
        .into_iter()
        .map(|p| p.1)
        .collect();
    assert_eq!(statuses, ["failed", "succeeded"]);

    let after = pay.checkout(&order, &token).await;
    assert_eq!(
        (after.status, after.code()),
        (StatusCode::CONFLICT, "ORDER_NOT_PAYABLE")
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn checkout_and_payment_work_before_order_writer_wrote_the_row() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let pay = env.spawn_payment().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(2)).await;
    // No order-writer: the order row does not exist; Redis answers for the reservation.
    let checkout = reserve_and_checkout(&env, &gw, &pay, sale, "fay").await;
    assert_eq!(env.order_count(sale).await, 0);
    assert_eq!(checkout["amount"], "2990.00");
    let payment = checkout["payment_id"].as_str().unwrap_or_default();
    let paid = pay.complete(payment, "succeeded").await;
    assert_eq!(paid.body["status"], "paid", "{paid:?}");
    assert_eq!(paid.body["shipping_priority"], 1);
    // The payment admitted the row the way order-writer does, then paid it.
    let rows = env.paid_orders(sale).await;
    assert_eq!((rows.len(), rows[0].1.as_str()), (1, "paid"));
    assert_eq!(env.held(sale).await, 1);
    // order-writer, arriving late, finds the row and changes nothing.
    let _writer = env.spawn_order_writer().await;
    eventually(
        DRAIN,
        || async { env.paid_orders(sale).await[0].1.clone() },
        "paid".to_owned(),
    )
    .await;
    assert_eq!(env.held(sale).await, 1);
    assert_eq!(gw.sale(sale).await.body["sold"], 1);
    env.cleanup().await;
}
