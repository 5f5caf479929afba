//! order-writer on its own: dead-lettering, idempotency on redelivery, and the database's stock guard.

mod optimistic;

use chrono::{Duration as ChronoDuration, Utc};
use flashsale_broker::{Names, Publisher};
use flashsale_domain::{Money, OrderId, ReservationCreated, SaleId, UserId};
use flashsale_testkit::env::DRAIN;
use flashsale_testkit::{SaleSpec, TestEnv, eventually};
use prometheus::Registry;

fn message(sale: SaleId, user: &str) -> ReservationCreated {
    let now = Utc::now();
    ReservationCreated {
        v: ReservationCreated::VERSION,
        order_id: OrderId::new_v7(),
        sale_id: sale,
        user_id: UserId::parse(user).expect("valid"),
        quantity: 1,
        amount: Money::from_minor(299_000),
        created_at: now,
        expires_at: now + ChronoDuration::seconds(60),
        payment_window_secs: 60,
    }
}

async fn publish(p: &Publisher, m: &ReservationCreated) {
    let body = serde_json::to_vec(m).expect("json");
    p.publish(&m.routing_key(), &m.order_id.to_string(), &body)
        .await
        .expect("published");
}

#[tokio::test(flavor = "multi_thread")]
async fn redeliveries_poison_and_the_stock_guard() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(2)).await;
    gw.stop().await;
    let _writer = env.spawn_order_writer().await;
    let publisher = Publisher::start(
        &env.settings.amqp,
        Names::new(&env.settings.amqp.prefix),
        "test",
        [60],
        &Registry::new(),
    )
    .await
    .expect("publisher");

    // The same message twice (a redelivery or a relay re-publish): one row.
    let first = message(sale, "quinn");
    publish(&publisher, &first).await;
    publish(&publisher, &first).await;
    eventually(DRAIN, || env.order_count(sale), 1).await;

    // Redis lost writes and admitted the same buyer again, then one unit more than the stock: the database
    // guard writes both as rejected instead of overselling.
    publish(&publisher, &message(sale, "quinn")).await;
    publish(&publisher, &message(sale, "rosa")).await;
    publish(&publisher, &message(sale, "sam")).await;
    eventually(DRAIN, || env.order_count(sale), 4).await;
    let rows = env.orders(sale).await;
    let status_of = |user: &str| {
        rows.iter()
            .filter(|r| r.1 == user)
            .map(|r| r.2.as_str())
            .collect::<Vec<_>>()
    };
    // One unit for two buyers: which of them gets it depends on which consumer's batch commits first.
    let mut last_two = [status_of("rosa"), status_of("sam")].concat();
    last_two.sort_unstable();
    assert_eq!(last_two, ["pending_payment", "rejected"]);
    let mut quinn = status_of("quinn");
    quinn.sort_unstable();
    assert_eq!(quinn, ["pending_payment", "rejected"]);
    assert_eq!(env.held(sale).await, 2, "held never exceeds the stock");

    // Poison: undecodable, and a sale that does not exist. Dead-lettered, never requeued forever.
    publisher
        .publish("reservation.created.w60", "poison", b"not json")
        .await
        .expect("published");
    publish(
        &publisher,
        &message(SaleId::new(999_999).expect("positive"), "tom"),
    )
    .await;
    // Decodes, but no row could ever hold it: dead-lettered instead of failing its batch forever.
    let zero = ReservationCreated {
        quantity: 0,
        ..message(sale, "uri")
    };
    publish(&publisher, &zero).await;
    eventually(DRAIN, || env.dead_letters(), 3).await;
    assert_eq!(env.order_count(sale).await, 4);
    publisher.close().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pooled_connections_plan_each_statement_with_its_parameters() {
    #[derive(diesel::QueryableByName)]
    struct Mode {
        #[diesel(sql_type = diesel::sql_types::Text)]
        plan_cache_mode: String,
    }
    use diesel_async::RunQueryDsl;
    let env = TestEnv::new().await;
    let pool = flashsale_store::connect(&env.settings.postgres)
        .await
        .expect("pool");
    let mut conn = pool.get().await.expect("connection");
    // A generic plan cached while `orders` was empty would keep id lookups sequential scans (docs/performance.md).
    let mode: Mode = diesel::sql_query("SHOW plan_cache_mode")
        .get_result(&mut conn)
        .await
        .expect("show");
    assert_eq!(mode.plan_cache_mode, "force_custom_plan");
    drop(conn);
    env.cleanup().await;
}
