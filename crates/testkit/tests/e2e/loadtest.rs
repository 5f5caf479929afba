//! Smoke test of the load tool: a small race with its own verification, against in-process services.

use flashsale_testkit::TestEnv;
use flashsale_testkit::services::binary;
use secrecy::ExposeSecret;

#[tokio::test(flavor = "multi_thread")]
async fn the_load_tool_runs_a_small_race_and_verifies_it() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let _writer = env.spawn_order_writer().await;
    let out = tokio::process::Command::new(binary("flashsale-loadtest"))
        .env(
            "FLASHSALE__POSTGRES__URL",
            env.settings.postgres.url.expose_secret(),
        )
        .env("RUST_LOG", "warn")
        .args([
            "--gateway",
            &gw.base,
            "race",
            "--buyers",
            "300",
            "--stock",
            "50",
            "--concurrency",
            "50",
        ])
        .output()
        .await
        .expect("flashsale-loadtest runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("202: 50"), "{stdout}");
    assert!(stdout.contains("409 SOLD_OUT: 250"), "{stdout}");
    assert!(stdout.contains("verification: clean"), "{stdout}");
    env.cleanup().await;
}
