//! Poison and outages at order-writer: only a message that cannot be written reaches the dead-letter queue,
//! never a valid reservation that met a broker blip or a database outage; and the operator gets it back.

use chrono::{Duration as ChronoDuration, Utc};
use diesel_async::RunQueryDsl;
use flashsale_broker::{Names, Publisher};
use flashsale_domain::{Money, OrderId, ReservationCreated, SaleId, UserId};
use flashsale_testkit::env::DRAIN;
use flashsale_testkit::{SaleSpec, TcpProxy, TestEnv, eventually};
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicGetOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use prometheus::Registry;
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;

fn message(sale: SaleId, user: &str) -> ReservationCreated {
    let now = Utc::now();
    ReservationCreated::new(
        OrderId::new_v7(),
        sale,
        UserId::parse(user).expect("valid user id"),
        1,
        Money::from_minor(299_000),
        now,
        now + ChronoDuration::seconds(60),
    )
}

async fn publisher(env: &TestEnv) -> Publisher {
    Publisher::start(
        &env.settings.amqp,
        Names::new(&env.settings.amqp.prefix),
        "test",
        [60],
        &Registry::new(),
    )
    .await
    .expect("publisher")
}

async fn publish(p: &Publisher, m: &ReservationCreated) {
    let body = serde_json::to_vec(m).expect("json");
    p.publish(&m.routing_key(), &m.order_id.to_string(), &body)
        .await
        .expect("published");
}

/// A sale created through the gateway, which is stopped again (these tests feed order-writer directly).
async fn sale(env: &TestEnv, stock: i64) -> SaleId {
    let gw = env.spawn_gateway().await;
    let sale = gw.create_sale(env, &SaleSpec::stock(stock)).await;
    gw.stop().await;
    sale
}

async fn sql(env: &TestEnv, statement: &str) {
    diesel::sql_query(statement)
        .execute(&mut env.pg().await)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

/// Messages in the dead-letter queue (a passive declare: reads the count, changes nothing).
async fn dead_letters(env: &TestEnv) -> u32 {
    let conn = flashsale_broker::connect(&env.settings.amqp, "test-dead-letters")
        .await
        .expect("amqp");
    let ch = conn.create_channel().await.expect("channel");
    let q = ch
        .queue_declare(
            Names::new(&env.settings.amqp.prefix)
                .dead_queue()
                .as_str()
                .into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("dead queue exists");
    let _ = conn.close(200, "done".into()).await;
    q.message_count()
}

/// The `message_id`s in the dead-letter queue, read without acknowledging (closing the channel puts them back).
async fn dead_letter_ids(env: &TestEnv) -> Vec<String> {
    let conn = flashsale_broker::connect(&env.settings.amqp, "test-dead-letters")
        .await
        .expect("amqp");
    let ch = conn.create_channel().await.expect("channel");
    let queue = Names::new(&env.settings.amqp.prefix).dead_queue();
    let mut ids = Vec::new();
    while let Some(m) = ch
        .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false })
        .await
        .expect("basic.get")
    {
        ids.push(
            m.delivery
                .properties
                .message_id()
                .as_ref()
                .map(|id| id.to_string())
                .unwrap_or_default(),
        );
    }
    let _ = ch.close(200, "put them back".into()).await;
    let _ = conn.close(200, "done".into()).await;
    ids.sort();
    ids
}

/// The sum of one metric's samples (over all label sets containing `labels`) on a service's `/metrics`.
pub async fn metric(base: &str, name: &str, labels: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter(|l| l[name.len()..].starts_with([' ', '{']) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn channel_closures_beyond_the_old_delivery_limit_never_dead_letter_a_reservation() {
    let env = TestEnv::new().await;
    let sale = sale(&env, 5).await;
    let publisher = publisher(&env).await;
    let m = message(sale, "closer");
    publish(&publisher, &m).await;

    // A consumer that takes the message and loses its channel before acknowledging, again and again (broker
    // blips, reconnects): RabbitMQ 3.10-3.13 counts each as a delivery of the quorum queue.
    const CLOSURES: u32 = 30;
    let conn = flashsale_broker::connect(&env.settings.amqp, "test-closer")
        .await
        .expect("amqp");
    let queue = Names::new(&env.settings.amqp.prefix).order_writer_queue();
    let mut delivered = 0;
    for _ in 0..CLOSURES {
        let ch = conn.create_channel().await.expect("channel");
        ch.basic_qos(1, BasicQosOptions::default())
            .await
            .expect("qos");
        let mut consumer = ch
            .basic_consume(
                queue.as_str().into(),
                "closer".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consume");
        let got = tokio::time::timeout(Duration::from_secs(5), consumer.next()).await;
        let _ = ch.close(200, "blip".into()).await;
        match got {
            Ok(Some(Ok(_))) => delivered += 1,
            _ => break,
        }
    }
    let _ = conn.close(200, "done".into()).await;
    assert_eq!(
        (delivered, dead_letters(&env).await),
        (CLOSURES, 0),
        "the reservation must survive {CLOSURES} channel closures (deliveries seen, dead letters)"
    );

    let _writer = env.spawn_order_writer().await;
    eventually(DRAIN, || env.order_count(sale), 1).await;
    assert_eq!(dead_letters(&env).await, 0);
    publisher.close().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_database_poison_is_isolated_and_its_neighbours_written() {
    let env = TestEnv::new().await;
    let sale = sale(&env, 100).await;
    // A deterministic database error for one buyer only, in this test's schema.
    sql(
        &env,
        "CREATE FUNCTION refuse_mallory() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF NEW.user_id = 'mallory' THEN RAISE EXCEPTION 'mallory is refused'; END IF; RETURN NEW; END $$",
    )
    .await;
    sql(
        &env,
        "CREATE TRIGGER refuse_mallory BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION refuse_mallory()",
    )
    .await;
    let publisher = publisher(&env).await;
    // Published before order-writer starts, so they arrive as one batch with the poison in the middle.
    let mut poison = None;
    for i in 0..40 {
        if i == 17 {
            let m = message(sale, "mallory");
            publish(&publisher, &m).await;
            poison = Some(m.order_id.to_string());
        }
        publish(&publisher, &message(sale, &format!("buyer-{i}"))).await;
    }
    let writer = env.spawn_order_writer().await;
    eventually(DRAIN, || env.order_count(sale), 40).await;
    eventually(
        DRAIN,
        || dead_letter_ids(&env),
        vec![poison.unwrap_or_default()],
    )
    .await;
    assert_eq!(env.held(sale).await, 40);
    assert!(
        env.orders(sale).await.iter().all(|o| o.1 != "mallory"),
        "the poison is not written"
    );
    writer.stop().await;
    publisher.close().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_outage_dead_letters_nothing() {
    let proxy = TcpProxy::start("127.0.0.1:5432").await.expect("proxy");
    let env = TestEnv::with(|s| s.postgres.acquire_timeout_ms = 300).await;
    let sale = sale(&env, 100).await;
    let mut settings = env.settings.clone();
    let url = settings
        .postgres
        .url
        .expose_secret()
        .replace("127.0.0.1:5432", &proxy.addr().to_string());
    settings.postgres.url = SecretString::from(url);
    let writer = flashsale_testkit::services::spawn_order_writer_with(settings).await;
    let publisher = publisher(&env).await;

    proxy.cut();
    let messages: Vec<_> = (0..30)
        .map(|i| message(sale, &format!("buyer-{i}")))
        .collect();
    futures_util::future::join_all(messages.iter().map(|m| publish(&publisher, m))).await;
    // Several retry rounds of every message while PostgreSQL is unreachable.
    let retries = || metric(&writer.base, "flashsale_messages_total", "result=\"retry\"");
    eventually(
        Duration::from_secs(60),
        || async { retries().await >= 150.0 },
        true,
    )
    .await;
    assert_eq!(env.order_count(sale).await, 0);
    proxy.pass();

    eventually(DRAIN, || env.order_count(sale), 30).await;
    assert_eq!(
        dead_letters(&env).await,
        0,
        "an outage dead-letters nothing"
    );
    assert_eq!(env.held(sale).await, 30);
    writer.stop().await;
    publisher.close().await;
    env.cleanup().await;
}

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

/// Runs the real `flashsale-admin` binary against this test's broker names.
async fn admin(env: &TestEnv, args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new(flashsale_testkit::services::binary("flashsale-admin"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "FLASHSALE__AMQP__URL",
            env.settings.amqp.url.expose_secret(),
        )
        .env("FLASHSALE__AMQP__PREFIX", &env.settings.amqp.prefix)
        .output()
        .await
        .expect("flashsale-admin runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_tool_lists_shows_and_replays_dead_letters() {
    let env = TestEnv::with(|s| s.order_writer.dead_letter_poll_ms = 200).await;
    let sale = sale(&env, 10).await;
    sql(
        &env,
        "CREATE FUNCTION refuse_two() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF NEW.user_id IN ('mallory', 'mallet') THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$",
    )
    .await;
    sql(
        &env,
        "CREATE TRIGGER refuse_two BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION refuse_two()",
    )
    .await;
    let publisher = publisher(&env).await;
    let (mallory, mallet) = (message(sale, "mallory"), message(sale, "mallet"));
    for m in [&message(sale, "alice"), &mallory, &mallet] {
        publish(&publisher, m).await;
    }
    let writer = env.spawn_order_writer().await;
    eventually(DRAIN, || env.order_count(sale), 1).await;
    eventually(DRAIN, || dead_letters(&env), 2).await;
    let depth = || metric(&writer.base, "flashsale_dead_letter_messages", "");
    eventually(DRAIN, depth, 2.0).await;

    let (ok, out) = admin(&env, &["dlq", "list"]).await;
    assert!(ok, "{out}");
    for id in [mallory.order_id, mallet.order_id] {
        assert!(out.contains(&id.to_string()), "list shows {id}: {out}");
    }
    assert!(out.contains("2 message(s)"), "{out}");
    let (ok, out) = admin(&env, &["dlq", "show", &mallory.order_id.to_string()]).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("\"user_id\": \"mallory\""),
        "show prints the body: {out}"
    );
    assert!(
        out.contains("order-writer (rejected)"),
        "show names the queue: {out}"
    );
    let (ok, out) = admin(&env, &["dlq", "show", &OrderId::new_v7().to_string()]).await;
    assert!(!ok, "an unknown id is an error: {out}");
    assert_eq!(dead_letters(&env).await, 2, "reading loses nothing");

    // Fixed (here: the trigger goes), then replayed: the same order id becomes an order.
    sql(&env, "DROP TRIGGER refuse_two ON orders").await;
    let (ok, out) = admin(&env, &["dlq", "replay", &mallory.order_id.to_string()]).await;
    assert!(ok, "{out}");
    eventually(DRAIN, || env.order_count(sale), 2).await;
    eventually(DRAIN, depth, 1.0).await;
    assert_eq!(
        dead_letter_ids(&env).await,
        vec![mallet.order_id.to_string()]
    );
    let (ok, out) = admin(&env, &["dlq", "replay", "--all"]).await;
    assert!(ok, "{out}");
    eventually(DRAIN, || env.order_count(sale), 3).await;
    eventually(DRAIN, depth, 0.0).await;
    let orders = env.orders(sale).await;
    for m in [&mallory, &mallet] {
        let id = m.order_id.to_string();
        assert!(
            orders.iter().any(|o| o.0 == id && o.2 == "pending_payment"),
            "{id} written: {orders:?}"
        );
    }
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
    assert_eq!(dead_letters(&env).await, 0);
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
