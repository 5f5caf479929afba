//! `flashsale-admin dlq` (the real binary) and the dead-letter depth gauge of order-writer.

use super::{dead_letter_ids, message, metric, publish, publisher, sale, sql};
use flashsale_domain::OrderId;
use flashsale_testkit::env::DRAIN;
use flashsale_testkit::{TestEnv, eventually};
use secrecy::ExposeSecret;

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
    eventually(DRAIN, || env.dead_letters(), 2).await;
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
    assert_eq!(env.dead_letters().await, 2, "reading loses nothing");

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
