//! `held` counts only the rows order-writer actually inserted: a conflict on another unique index raises (and
//! the message is dead-lettered as poison), and a row with the same id that appears meanwhile adds nothing.

use super::{dead_letter_ids, message, publish, publisher, sale, sql};
use diesel_async::RunQueryDsl;
use flashsale_domain::OrderId;
use flashsale_testkit::env::DRAIN;
use flashsale_testkit::{TestEnv, eventually};

#[tokio::test(flavor = "multi_thread")]
async fn a_conflict_on_another_unique_index_is_not_counted_as_held() {
    let env = TestEnv::new().await;
    let sale = sale(&env, 5).await;
    // Another unique index (a stand-in for any future one) that a row already written conflicts with.
    sql(
        &env,
        "CREATE UNIQUE INDEX test_one_row_per_buyer ON orders (user_id)",
    )
    .await;
    sql(
        &env,
        &format!(
            "INSERT INTO orders (id, sale_id, user_id, quantity, amount_minor, status, created_at, expires_at) \
             VALUES ('{}', {sale}, 'vera', 1, 100, 'rejected', now(), now() + interval '1 minute')",
            OrderId::new_v7()
        ),
    )
    .await;
    let publisher = publisher(&env).await;
    let clash = message(sale, "vera");
    publish(&publisher, &clash).await;
    publish(&publisher, &message(sale, "walt")).await;
    let writer = env.spawn_order_writer().await;

    eventually(DRAIN, || env.order_count(sale), 2).await;
    assert_eq!(env.held(sale).await, 1, "held counts only rows inserted");
    // The clash is refused loudly (dead-lettered, where an operator sees it), never swallowed as written.
    eventually(
        DRAIN,
        || dead_letter_ids(&env),
        vec![clash.order_id.to_string()],
    )
    .await;
    let statuses: Vec<(String, String)> = env
        .orders(sale)
        .await
        .into_iter()
        .map(|o| (o.1, o.2))
        .collect();
    assert_eq!(
        statuses.iter().filter(|o| o.0 == "walt").count(),
        1,
        "{statuses:?}"
    );
    writer.stop().await;
    publisher.close().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_row_that_appears_meanwhile_is_not_counted_as_held() {
    #[derive(diesel::QueryableByName, Debug, PartialEq)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let env = TestEnv::new().await;
    let sale = sale(&env, 5).await;
    let publisher = publisher(&env).await;
    let writer = env.spawn_order_writer().await;
    let clash = message(sale, "xena");

    // Another writer (not order-writer: it takes no lock on the sale) inserts the same order id and has not
    // committed yet when order-writer inserts it.
    let mut other = env.pg().await;
    sql_on(&mut other, "BEGIN").await;
    // No foreign-key check, so no lock on the sale row: order-writer gets as far as its INSERT.
    sql_on(&mut other, "SET LOCAL session_replication_role = replica").await;
    sql_on(
        &mut other,
        &format!(
            "INSERT INTO orders (id, sale_id, user_id, quantity, amount_minor, status, created_at, expires_at) \
             VALUES ('{}', {sale}, 'xena', 1, 100, 'expired', now(), now() + interval '1 minute')",
            clash.order_id
        ),
    )
    .await;
    let pid: N = diesel::sql_query("SELECT pg_backend_pid()::int8 AS n")
        .get_result(&mut other)
        .await
        .expect("pid");
    publish(&publisher, &clash).await;
    let blocked = || async {
        diesel::sql_query(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
        )
        .bind::<diesel::sql_types::Integer, _>(i32::try_from(pid.n).unwrap_or_default())
        .get_result::<N>(&mut env.pg().await)
        .await
        .expect("pg_stat_activity")
        .n
    };
    eventually(DRAIN, blocked, 1).await;
    sql_on(&mut other, "COMMIT").await;

    // A later batch proves the clash's batch is done.
    publish(&publisher, &message(sale, "yara")).await;
    eventually(DRAIN, || env.order_count(sale), 2).await;
    assert_eq!(env.held(sale).await, 1, "only yara's row holds a unit");
    assert_eq!(env.dead_letters().await, 0);
    writer.stop().await;
    publisher.close().await;
    env.cleanup().await;
}

async fn sql_on(conn: &mut diesel_async::AsyncPgConnection, statement: &str) {
    diesel::sql_query(statement)
        .execute(conn)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}
