//! Health, readiness and metrics of both services; the topology they declare.

use flashsale_broker::Names;
use flashsale_testkit::env::DRAIN;
use flashsale_testkit::{SaleSpec, TestEnv, eventually};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread")]
async fn health_readiness_and_metrics() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let writer = env.spawn_order_writer().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(3)).await;
    assert_eq!(
        gw.reserve(sale, &env.token("max")).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        gw.reserve(sale, &env.token("max")).await.code(),
        "LIMIT_EXCEEDED"
    );
    eventually(DRAIN, || env.order_count(sale), 1).await;

    assert_eq!(gw.get("/healthz", None).await.status, StatusCode::OK);
    let ready = gw.get("/readyz", None).await;
    assert_eq!(ready.status, StatusCode::OK, "{ready:?}");
    assert_eq!(ready.body["checks"]["redis"], "ok");
    assert_eq!(ready.body["checks"]["amqp"], "ok");
    assert_eq!(ready.body["checks"]["postgres"], "ok");

    let metrics = flashsale_testkit::metrics_text(&gw.base).await;
    assert!(
        metrics.contains(r#"flashsale_reservations_total{outcome="RESERVED"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"flashsale_reservations_total{outcome="LIMIT_EXCEEDED"} 1"#));
    assert!(metrics.contains(
        r#"flashsale_http_requests_total{route="/api/v1/sales/{id}/reservations",status="202"} 1"#
    ));
    assert!(metrics.contains("flashsale_http_request_duration_seconds_bucket"));
    assert!(metrics.contains("flashsale_publish_confirm_seconds_bucket"));

    let http = reqwest::Client::new();
    let w_ready = http
        .get(format!("{}/readyz", writer.base))
        .send()
        .await
        .expect("readyz");
    assert_eq!(w_ready.status(), StatusCode::OK);
    let w_metrics = flashsale_testkit::metrics_text(&writer.base).await;
    let queue = Names::new(&env.settings.amqp.prefix).order_writer_queue();
    assert!(
        w_metrics.contains(&format!(
            r#"flashsale_messages_total{{queue="{queue}",result="ack"}} 1"#
        )),
        "{w_metrics}"
    );
    assert!(w_metrics.contains(r#"flashsale_orders_written_total{status="pending_payment"} 1"#));
    assert!(w_metrics.contains("flashsale_order_writer_commit_seconds_bucket"));
    assert!(w_metrics.contains("flashsale_consumer_batch_size_bucket"));
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_service_declares_the_whole_topology() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let sale_window = 45;
    gw.create_sale(
        &env,
        &SaleSpec {
            payment_window_secs: sale_window,
            ..SaleSpec::stock(1)
        },
    )
    .await;
    let names = Names::new(&env.settings.amqp.prefix);
    let conn = flashsale_broker::connect(&env.settings.amqp, "topology-test")
        .await
        .expect("amqp");
    for queue in [
        names.order_writer_queue(),
        names.payment_queue(),
        names.expiry_due_queue(),
        names.dead_queue(),
        names.expiry_wait_queue(sale_window as u32),
    ] {
        // A passive declare fails (and closes its channel) when the queue does not exist.
        let ch = conn.create_channel().await.expect("channel");
        let declared = ch
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await;
        assert!(declared.is_ok(), "queue {queue} exists: {declared:?}");
    }
    env.cleanup().await;
}

/// The soft and hard "Max open files" of a process, from `/proc/<pid>/limits`.
fn open_file_limits(pid: i32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    let mut fields = line["Max open files".len()..].split_whitespace();
    let soft = fields.next().unwrap_or_default().to_owned();
    (soft, fields.next().unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_raises_its_open_file_limit_to_the_hard_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    // A shell's usual soft limit, well below the hard one: the gateway inherits it. nextest runs each test in
    // a process of its own, so no other test sees this.
    let hard = getrlimit(Resource::Nofile).maximum;
    let low = hard.map_or(1024, |h| h.min(1024) / 2);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(low),
            maximum: hard,
        },
    )
    .expect("lower the soft limit");
    let env = TestEnv::new().await;
    let gw = env.start_gateway_process().await;
    let (soft, max) = open_file_limits(gw.process().pid());
    assert_ne!(
        soft,
        low.to_string(),
        "the inherited soft limit is still in force"
    );
    assert_eq!(soft, max, "soft limit raised to the hard limit");
    gw.kill().await;
    env.cleanup().await;
}
