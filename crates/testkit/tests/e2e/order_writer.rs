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

/// Index entries read from `orders_one_active_per_buyer` and index scans of it in this test's schema, once the
/// statistics of an earlier statement have reached shared memory.
async fn buyer_index_reads(conn: &mut diesel_async::AsyncPgConnection) -> (i64, i64) {
    #[derive(diesel::QueryableByName)]
    struct Reads {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        scans: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        tuples: i64,
    }
    use diesel_async::RunQueryDsl;
    let reads: Reads = diesel::sql_query(
        "SELECT idx_scan AS scans, idx_tup_read AS tuples FROM pg_stat_user_indexes \
         WHERE schemaname = current_schema() AND indexrelname = 'orders_one_active_per_buyer'",
    )
    .get_result(conn)
    .await
    .expect("index statistics");
    (reads.scans, reads.tuples)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_looks_up_its_buyers_without_reading_every_active_order_of_the_sale() {
    use diesel_async::RunQueryDsl;
    use flashsale_store::models::NewOrderRow;
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(5000)).await.get();
    gw.stop().await;
    let pool = flashsale_store::connect(&env.settings.postgres)
        .await
        .expect("pool");
    let mut conn = pool.get().await.expect("connection");
    let mut stats = pool.get().await.expect("second connection");
    let now = Utc::now();
    let rows: Vec<NewOrderRow> = (0..3000)
        .map(|i| NewOrderRow {
            id: uuid::Uuid::now_v7(),
            sale_id: sale,
            user_id: format!("holder-{i}"),
            quantity: 1,
            amount_minor: 100,
            status: flashsale_domain::OrderStatus::PendingPayment,
            created_at: now,
            expires_at: now + ChronoDuration::hours(1),
        })
        .collect();
    let inserted = flashsale_store::orders::insert_many(&mut conn, &rows)
        .await
        .expect("insert");
    assert_eq!(inserted.len(), 3000);

    let before = buyer_index_reads(&mut stats).await;
    let found = flashsale_store::orders::active_buyers(
        &mut conn,
        &[(sale, "holder-7"), (sale, "nobody"), (sale + 1, "holder-8")],
    )
    .await
    .expect("look-up");
    // The look-up's statistics reach shared memory once its connection is idle; wait for its index scans.
    diesel::sql_query("SELECT pg_stat_force_next_flush()")
        .execute(&mut conn)
        .await
        .expect("flush");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let after = loop {
        let now = buyer_index_reads(&mut stats).await;
        if now.0 > before.0 {
            break now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no index scan recorded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let read = after.1 - before.1;
    assert!(
        read < 10,
        "{read} index entries read to find 3 buyers among 3,000 orders"
    );
    assert_eq!(found, vec![(sale, "holder-7".to_owned(), rows[7].id)]);
    drop((conn, stats));
    env.cleanup().await;
}
