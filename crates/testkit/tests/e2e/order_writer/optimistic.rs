//! Batches of one sale written at once: each reads `held` unlocked and takes the sale's row only in its last
//! statement. Whatever a concurrent batch changed in between (the stock it took, a buyer it wrote) rolls the
//! attempt back, and the locked retry decides as a lone writer would.

use super::{message, publish};
use diesel::result::Error as DieselError;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use flashsale_domain::{RejectCause, ReservationCreated, SaleId};
use flashsale_store::admission::{Decisions, Stock, decide_and_write, retry_locked};
use flashsale_testkit::env::DRAIN;
use flashsale_testkit::{SaleSpec, TestEnv, eventually};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

async fn sale_of_stock(env: &TestEnv, stock: i64) -> SaleId {
    let gw = env.spawn_gateway().await;
    let sale = gw.create_sale(env, &SaleSpec::stock(stock)).await;
    gw.stop().await;
    sale
}

async fn attempt(
    conn: &mut AsyncPgConnection,
    messages: &[ReservationCreated],
    mode: Stock,
) -> Result<Decisions, DieselError> {
    let refs: Vec<&ReservationCreated> = messages.iter().collect();
    conn.transaction(async |c| decide_and_write(c, &refs, mode).await)
        .await
}

/// An optimistic batch whose transaction, once written, stays open (its row locks held) until `commit` fires.
fn held_open(
    mut conn: AsyncPgConnection,
    messages: Vec<ReservationCreated>,
) -> (
    oneshot::Receiver<()>,
    oneshot::Sender<()>,
    JoinHandle<Result<Decisions, DieselError>>,
) {
    let (written_tx, written) = oneshot::channel();
    let (commit, commit_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let refs: Vec<&ReservationCreated> = messages.iter().collect();
        conn.transaction(async |c| {
            let d = decide_and_write(c, &refs, Stock::Optimistic).await?;
            let _ = written_tx.send(());
            let _ = commit_rx.await;
            Ok(d)
        })
        .await
    });
    (written, commit, task)
}

async fn backend_pid(conn: &mut AsyncPgConnection) -> i32 {
    #[derive(diesel::QueryableByName)]
    struct Pid {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        pid: i32,
    }
    let row: Pid = diesel::sql_query("SELECT pg_backend_pid() AS pid")
        .get_result(conn)
        .await
        .expect("backend pid");
    row.pid
}

/// Whether the backend `pid` is waiting for a lock (a row, or another transaction's outcome).
async fn waits_for_a_lock(env: &TestEnv, pid: i32) -> bool {
    #[derive(diesel::QueryableByName)]
    struct Waiting {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        waiting: bool,
    }
    let mut conn = env.pg().await;
    let row: Waiting = diesel::sql_query(
        "SELECT coalesce(bool_or(wait_event_type = 'Lock'), false) AS waiting \
         FROM pg_stat_activity WHERE pid = $1",
    )
    .bind::<diesel::sql_types::Integer, _>(pid)
    .get_result(&mut conn)
    .await
    .expect("pg_stat_activity");
    row.waiting
}

/// Starts an optimistic batch on a connection of its own, once `first` holds its locks, and returns when it
/// waits for them.
async fn second_batch_behind(
    env: &TestEnv,
    messages: Vec<ReservationCreated>,
) -> JoinHandle<(AsyncPgConnection, Result<Decisions, DieselError>)> {
    let mut conn = env.pg().await;
    let pid = backend_pid(&mut conn).await;
    let task = tokio::spawn(async move {
        let result = attempt(&mut conn, &messages, Stock::Optimistic).await;
        (conn, result)
    });
    eventually(Duration::from_secs(10), || waits_for_a_lock(env, pid), true).await;
    task
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_that_read_the_stock_a_concurrent_batch_took_is_decided_again_under_the_lock() {
    let env = TestEnv::new().await;
    let sale = sale_of_stock(&env, 3).await;
    let (written, commit, first) = held_open(
        env.pg().await,
        vec![message(sale, "ada"), message(sale, "bo")],
    );
    written.await.expect("the first batch wrote its rows");
    // Reads held = 0 (the first batch has not committed), so both orders seem to fit; its conditional update
    // then waits for the first batch's row lock.
    let second = vec![message(sale, "cy"), message(sale, "di")];
    let second_task = second_batch_behind(&env, second.clone()).await;
    commit.send(()).expect("first batch waiting");
    first.await.expect("task").expect("the first batch commits");

    let (mut conn, result) = second_task.await.expect("task");
    let error = result.expect_err("2 held + 2 more would pass the stock of 3");
    assert!(retry_locked(&error), "{error:?}");
    assert_eq!(
        env.held(sale).await,
        2,
        "the rolled-back attempt holds nothing"
    );
    assert_eq!(env.order_count(sale).await, 2);

    let decided = attempt(&mut conn, &second, Stock::Locked)
        .await
        .expect("the locked retry");
    assert_eq!(decided.written.get("pending_payment"), Some(&1));
    assert_eq!(decided.written.get("rejected"), Some(&1));
    assert_eq!(decided.rejected.len(), 1);
    assert_eq!(decided.rejected[0].cause, RejectCause::StockExhausted);
    assert_eq!(env.held(sale).await, 3);
    drop(conn);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_buyer_written_by_a_concurrent_batch_is_rejected_by_the_locked_retry() {
    let env = TestEnv::new().await;
    let sale = sale_of_stock(&env, 5).await;
    let holder = message(sale, "ada");
    let (written, commit, first) = held_open(env.pg().await, vec![holder.clone()]);
    written.await.expect("the first batch wrote its row");
    // Finds no active order of ada (not committed yet); its insert then waits on the first batch's index
    // entry for the same buyer.
    let second = vec![message(sale, "ada"), message(sale, "bo")];
    let second_task = second_batch_behind(&env, second.clone()).await;
    commit.send(()).expect("first batch waiting");
    first.await.expect("task").expect("the first batch commits");

    let (mut conn, result) = second_task.await.expect("task");
    let error = result.expect_err("a second active order of ada");
    assert!(retry_locked(&error), "{error:?}");
    let decided = attempt(&mut conn, &second, Stock::Locked)
        .await
        .expect("the locked retry");
    assert_eq!(decided.rejected.len(), 1);
    let rejected = &decided.rejected[0];
    assert_eq!(rejected.order_id, second[0].order_id);
    assert_eq!(rejected.cause, RejectCause::BuyerAlreadyActive);
    assert_eq!(rejected.active_order_id, Some(holder.order_id));
    assert_eq!(env.held(sale).await, 2, "ada once, bo once");
    drop(conn);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_batches_in_flight_past_a_sales_recorded_stock_hold_exactly_the_stock() {
    const STOCK: i64 = 300;
    const MESSAGES: usize = 400;
    let env = TestEnv::with(|s| {
        s.order_writer.batch_size = 20;
        s.order_writer.batches_in_flight = 2;
    })
    .await;
    let sale = sale_of_stock(&env, STOCK).await;
    let publisher = crate::poison::publisher(&env).await;
    // As if Redis had lost writes and admitted 100 more than the stock: a backlog, so that the writer has
    // two batches in hand from the start.
    for i in 0..MESSAGES {
        publish(&publisher, &message(sale, &format!("buyer-{i}"))).await;
    }
    let writer = env.spawn_order_writer().await;
    eventually(DRAIN, || env.order_count(sale), MESSAGES as i64).await;

    let rows = env.orders(sale).await;
    let pending = rows.iter().filter(|r| r.2 == "pending_payment").count();
    let rejected = rows.iter().filter(|r| r.2 == "rejected").count();
    assert_eq!((pending, rejected), (300, 100));
    assert_eq!(env.held(sale).await, STOCK);
    let metrics = flashsale_testkit::metrics_text(&writer.base).await;
    assert!(
        metrics.lines().any(
            |l| l.starts_with("flashsale_order_writer_locked_retries_total ") && !l.ends_with(" 0")
        ),
        "the batches past the stock were decided under the lock: {metrics}"
    );
    writer.stop().await;
    publisher.close().await;
    env.cleanup().await;
}
