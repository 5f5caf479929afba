//! Smoke tests of the load tool against in-process services: a small race with its own verification, and a short
//! open-loop sustain with its drain and memory figures. The full benchmark is `make bench`, not part of the suite.

use flashsale_testkit::TestEnv;
use flashsale_testkit::services::binary;
use secrecy::ExposeSecret;
use serde_json::Value;

async fn loadtest(env: &TestEnv, gateway: &str, args: &[&str]) -> Value {
    let out = tokio::process::Command::new(binary("flashsale-loadtest"))
        .env(
            "FLASHSALE__POSTGRES__URL",
            env.settings.postgres.url.expose_secret(),
        )
        .env("RUST_LOG", "warn")
        .args(["--gateway", gateway, "--json"])
        .args(args)
        .output()
        .await
        .expect("flashsale-loadtest runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not one JSON report ({e}): {stdout}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_load_tool_runs_a_small_race_and_verifies_it() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let _writer = env.spawn_order_writer().await;
    let report = loadtest(
        &env,
        &gw.base,
        &[
            "race",
            "--buyers",
            "300",
            "--stock",
            "50",
            "--concurrency",
            "50",
        ],
    )
    .await;
    assert_eq!(report["requests"], 300, "{report}");
    assert_eq!(report["outcomes"]["202"], 50, "{report}");
    assert_eq!(report["outcomes"]["409 SOLD_OUT"], 250, "{report}");
    assert_eq!(report["verification"]["clean"], true, "{report}");
    assert!(
        report["latency_ms"]["p99"]
            .as_f64()
            .is_some_and(|p| p > 0.0),
        "{report}"
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_load_tool_sustains_an_open_loop_rate_and_times_the_drain() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let _writer = env.spawn_order_writer().await;
    let report = loadtest(
        &env,
        &gw.base,
        &[
            "sustain",
            "--duration",
            "1",
            "--rate",
            "200",
            "--concurrency",
            "20",
        ],
    )
    .await;
    assert_eq!(report["mode"], "open", "{report}");
    // 200/s for one second, scheduled from t = 0: requests 0..=199 are due before the end.
    assert_eq!(report["requests"], 200, "{report}");
    assert_eq!(report["outcomes"]["202"], 200, "{report}");
    assert_eq!(report["verification"]["clean"], true, "{report}");
    let figures = &report["figures"];
    assert!(
        figures["last_row_after_last_202_ms"].as_f64().is_some(),
        "{report}"
    );
    assert!(
        figures["order_writer_rows_per_s"]
            .as_f64()
            .is_some_and(|r| r > 0.0),
        "{report}"
    );
    assert!(
        figures["gateway_peak_rss_mib"]
            .as_f64()
            .is_some_and(|m| m > 1.0),
        "{report}"
    );
    env.cleanup().await;
}

/// `make bench` hands these arguments to redis-benchmark: they must make the reservation script reserve (they
/// once named 8 keys after the script had grown a ninth, and the bench stopped there).
#[tokio::test(flavor = "multi_thread")]
async fn the_redis_benchmark_arguments_run_the_reservation_script() {
    let env = TestEnv::new().await;
    let out = tokio::process::Command::new(binary("flashsale-loadtest"))
        .env(
            "FLASHSALE__REDIS__KEY_PREFIX",
            &env.settings.redis.key_prefix,
        )
        .env("RUST_LOG", "warn")
        .arg("evalsha-args")
        .output()
        .await
        .expect("flashsale-loadtest runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let args: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|a| a.replace("__rand_int__", "7"))
        .collect();
    let mut redis = env
        .redis()
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let reply: Vec<String> = redis::cmd(&args[0])
        .arg(&args[1..])
        .query_async(&mut redis)
        .await
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert_eq!(
        reply.first().map(String::as_str),
        Some("RESERVED"),
        "{reply:?}"
    );
}
