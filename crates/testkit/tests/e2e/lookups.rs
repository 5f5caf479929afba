//! The store's look-ups on the hot paths read what they need, not what the sale has written so far, so a batch
//! costs the same at the end of a big drop as at its start. PostgreSQL plans `x = ANY($1)` over a batch-sized
//! array as a sequential scan of a table that is small next to the array (each index probe is priced as a
//! random page read), and a condition on a volatile function (`clock_timestamp()`) cannot bound an index
//! scan at all. Each test sets up a table of thousands of orders and counts what one look-up read.

use chrono::{Duration as ChronoDuration, Utc};
use flashsale_domain::OrderStatus;
use flashsale_store::models::NewOrderRow;
use flashsale_testkit::plans::{self, Of};
use flashsale_testkit::{SaleSpec, TestEnv};

/// A sale of 5,000 units with `rows` pending orders written straight to the database, due in an hour but the
/// first `overdue`, which were due a minute ago.
async fn sale_with_orders(
    env: &TestEnv,
    rows: usize,
    overdue: usize,
) -> (i64, Vec<NewOrderRow>, flashsale_store::PgPool) {
    let gw = env.spawn_gateway().await;
    let sale = gw.create_sale(env, &SaleSpec::stock(5000)).await.get();
    gw.stop().await;
    let pool = flashsale_store::connect(&env.settings.postgres)
        .await
        .expect("pool");
    let now = Utc::now();
    let orders: Vec<NewOrderRow> = (0..rows)
        .map(|i| NewOrderRow {
            id: uuid::Uuid::now_v7(),
            sale_id: sale,
            user_id: format!("holder-{i}"),
            quantity: 1,
            amount_minor: 100,
            status: OrderStatus::PendingPayment,
            created_at: now,
            expires_at: if i < overdue {
                now - ChronoDuration::minutes(1)
            } else {
                now + ChronoDuration::hours(1)
            },
        })
        .collect();
    let mut conn = pool.get().await.expect("connection");
    let inserted = flashsale_store::orders::insert_many(&mut conn, &orders)
        .await
        .expect("insert");
    assert_eq!(inserted.len(), rows);
    drop(conn);
    (sale, orders, pool)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_looks_up_its_buyers_without_reading_every_active_order_of_the_sale() {
    let env = TestEnv::new().await;
    let (sale, rows, pool) = sale_with_orders(&env, 3000, 0).await;
    let (mut conn, mut stats) = (
        pool.get().await.expect("conn"),
        pool.get().await.expect("conn"),
    );

    let index = Of::Index("orders_one_active_per_buyer");
    let before = plans::reads(&mut stats, index).await;
    let found = flashsale_store::orders::active_buyers(
        &mut conn,
        &[(sale, "holder-7"), (sale, "nobody"), (sale + 1, "holder-8")],
    )
    .await
    .expect("look-up");
    let read = plans::settled(&mut conn, &mut stats, index, before).await;
    assert!(
        read.index_entries < 10,
        "{} index entries read to find 3 buyers among 3,000 orders",
        read.index_entries
    );
    assert_eq!(found, vec![(sale, "holder-7".to_owned(), rows[7].id)]);
    drop((conn, stats));
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_finds_its_already_written_orders_without_scanning_the_table() {
    let env = TestEnv::new().await;
    let (_, rows, pool) = sale_with_orders(&env, 3000, 0).await;
    let (mut conn, mut stats) = (
        pool.get().await.expect("conn"),
        pool.get().await.expect("conn"),
    );

    // A batch of 1,000 messages: 600 redeliveries of written orders and 400 new ones.
    let mut ids: Vec<uuid::Uuid> = rows.iter().step_by(5).map(|r| r.id).collect();
    ids.extend((0..400).map(|_| uuid::Uuid::now_v7()));
    let table = Of::Table("orders");
    let before = plans::reads(&mut stats, table).await;
    let found = flashsale_store::orders::statuses(&mut conn, &ids)
        .await
        .expect("look-up");
    let read = plans::settled(&mut conn, &mut stats, table, before).await;
    assert_eq!(
        (read.seq_scans, read.seq_rows),
        (0, 0),
        "the look-up scanned the table: {read:?}"
    );
    let mut found_ids: Vec<uuid::Uuid> = found.iter().map(|(id, _)| *id).collect();
    found_ids.sort_unstable();
    let mut written: Vec<uuid::Uuid> = ids[..600].to_vec();
    written.sort_unstable();
    assert_eq!(found_ids, written);
    assert!(found.iter().all(|(_, s)| *s == OrderStatus::PendingPayment));
    drop((conn, stats));
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sweeper_reads_the_overdue_orders_not_every_pending_one() {
    let env = TestEnv::new().await;
    let (_, rows, pool) = sale_with_orders(&env, 3000, 3).await;
    let (mut conn, mut stats) = (
        pool.get().await.expect("conn"),
        pool.get().await.expect("conn"),
    );

    let index = Of::Index("orders_pending_by_deadline");
    let before = plans::reads(&mut stats, index).await;
    let overdue = flashsale_store::expiry::overdue_pending(&mut conn, 2_000, 500)
        .await
        .expect("look-up");
    let read = plans::settled(&mut conn, &mut stats, index, before).await;
    assert!(
        read.index_entries < 10,
        "{} index entries read to find 3 overdue orders among 3,000 pending",
        read.index_entries
    );
    let mut found: Vec<uuid::Uuid> = overdue.iter().map(|o| o.id).collect();
    found.sort_unstable();
    let mut want: Vec<uuid::Uuid> = rows[..3].iter().map(|r| r.id).collect();
    want.sort_unstable();
    assert_eq!(found, want);
    drop((conn, stats));
    env.cleanup().await;
}
