//! Bad input and bad configuration: money that overflows, secrets that must not start a service, secrets given
//! as digits, and the JWT audience. Secrets are tested on the real `gateway` binary, configured only through
//! `FLASHSALE__*` variables, because how the environment is read is part of what is tested.

use flashsale_testkit::TestEnv;
use flashsale_testkit::services::binary;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// 36 digits: a strong secret that an environment reader which guesses types would turn into a float.
const DIGIT_SECRET: &str = "123456789012345678901234567890123456";
const DIGIT_ADMIN_TOKEN: &str = "987654321098765432109876543210987654321";
const STRONG_SECRET: &str = "a-strong-secret-of-more-than-32-bytes-for-tests";

#[tokio::test(flavor = "multi_thread")]
async fn a_price_beyond_decimal_range_is_refused_and_writes_no_sale() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let mut body = flashsale_testkit::SaleSpec::default().body();
    for price in [
        "1000000000000000000000000000",
        "79228162514264337593543950335",
    ] {
        body["price"] = json!(price);
        let reply = gw
            .send(
                gw.http
                    .post(format!("{}/api/v1/admin/sales", gw.base))
                    .bearer_auth(env.admin_token())
                    .json(&body),
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{price}: {reply:?}");
        assert_eq!(reply.code(), "INVALID_REQUEST", "{price}: {reply:?}");
    }
    assert_eq!(env.sale_rows().await, 0, "no sale may be written");
    assert_eq!(gw.get("/healthz", None).await.status, StatusCode::OK);
    gw.stop().await;
    env.cleanup().await;
}

/// The real gateway binary, configured for `env` through the environment only; `extra` is added last.
fn gateway_command(env: &TestEnv, extra: &[(&str, &str)]) -> Command {
    let s = &env.settings;
    let mut cmd = Command::new(binary("gateway"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("FLASHSALE__POSTGRES__URL", s.postgres.url.expose_secret())
        // Numbers and booleans from the environment still parse although nothing is guessed any more.
        .env("FLASHSALE__POSTGRES__RUN_MIGRATIONS", "false")
        .env("FLASHSALE__POSTGRES__POOL_SIZE", "2")
        .env("FLASHSALE__REDIS__URL", s.redis.url.expose_secret())
        .env("FLASHSALE__REDIS__KEY_PREFIX", &s.redis.key_prefix)
        .env("FLASHSALE__AMQP__URL", s.amqp.url.expose_secret())
        .env("FLASHSALE__AMQP__PREFIX", &s.amqp.prefix)
        .env(
            "FLASHSALE__AMQP__QUEUE_EXPIRES_MS",
            s.amqp.queue_expires_ms.to_string(),
        )
        .env("FLASHSALE__GATEWAY__LISTEN", "127.0.0.1:0")
        .env("FLASHSALE__GATEWAY__WORKERS", "1")
        .env("FLASHSALE__TELEMETRY__LOG_LEVEL", "info")
        .env("FLASHSALE__TELEMETRY__LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (key, value) in extra {
        cmd.env(key, value);
    }
    cmd
}

/// Runs a gateway that must refuse to start; returns its stderr.
async fn refused(env: &TestEnv, extra: &[(&str, &str)]) -> String {
    let child = gateway_command(env, extra)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the gateway: {e}"));
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .unwrap_or_else(|_| {
            panic!("the gateway with {extra:?} kept running; it must refuse to start")
        })
        .unwrap_or_else(|e| panic!("waiting for the gateway: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "{extra:?}: exit {:?}, {stderr}",
        out.status
    );
    stderr
}

/// A gateway that started: the child (killed on drop) and its base URL, read from its "gateway ready" log line.
async fn started(env: &TestEnv, extra: &[(&str, &str)]) -> (Child, String) {
    let mut child = gateway_command(env, extra)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the gateway: {e}"));
    let stdout = child
        .stdout
        .take()
        .unwrap_or_else(|| panic!("stdout is piped"));
    let mut lines = BufReader::new(stdout).lines();
    let port = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            let Ok(event) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if event["fields"]["message"] == "gateway ready" {
                return event["fields"]["port"].as_u64();
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    let Some(port) = port else {
        let _ = child.start_kill();
        let out = child.wait_with_output().await;
        let stderr = out
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .unwrap_or_default();
        panic!("the gateway with {extra:?} did not start: {stderr}");
    };
    // Keep draining its log so the pipe never fills and blocks the process.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, format!("http://127.0.0.1:{port}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn weak_secrets_stop_the_gateway_outside_development_mode() {
    let env = TestEnv::new().await;
    // The development defaults of config/default.toml.
    let stderr = refused(&env, &[]).await;
    assert!(stderr.contains("auth.jwt_secret"), "{stderr}");
    assert!(stderr.contains("FLASHSALE__DEV"), "{stderr}");
    // A strong JWT secret but the default admin token.
    let stderr = refused(&env, &[("FLASHSALE__AUTH__JWT_SECRET", STRONG_SECRET)]).await;
    assert!(stderr.contains("auth.admin_token"), "{stderr}");
    // Empty and short (31 bytes) secrets.
    for weak in ["", "0123456789012345678901234567890"] {
        let stderr = refused(
            &env,
            &[
                ("FLASHSALE__AUTH__JWT_SECRET", weak),
                ("FLASHSALE__AUTH__ADMIN_TOKEN", STRONG_SECRET),
            ],
        )
        .await;
        assert!(stderr.contains("auth.jwt_secret"), "{weak:?}: {stderr}");
    }
    // Development mode switched off explicitly is still off.
    let stderr = refused(&env, &[("FLASHSALE__DEV", "0")]).await;
    assert!(stderr.contains("auth.jwt_secret"), "{stderr}");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn development_mode_lets_the_gateway_start_with_the_default_secrets() {
    let env = TestEnv::new().await;
    let (mut child, base) = started(&env, &[("FLASHSALE__DEV", "1")]).await;
    let token = env.token("dev-buyer");
    let reply = reqwest::Client::new()
        .get(format!("{base}/api/v1/me/orders"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("gateway: {e}"));
    assert_eq!(reply.status(), StatusCode::OK);
    let _ = child.kill().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_made_of_digits_are_read_as_strings() {
    let env = TestEnv::new().await;
    let (mut child, base) = started(
        &env,
        &[
            ("FLASHSALE__AUTH__JWT_SECRET", DIGIT_SECRET),
            ("FLASHSALE__AUTH__ADMIN_TOKEN", DIGIT_ADMIN_TOKEN),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let exp = chrono::Utc::now() + chrono::Duration::hours(1);
    let buyer = env.token_signed("digit-buyer", exp, DIGIT_SECRET);
    let reply = http
        .get(format!("{base}/api/v1/me/orders"))
        .bearer_auth(&buyer)
        .send()
        .await
        .unwrap_or_else(|e| panic!("gateway: {e}"));
    assert_eq!(
        reply.status(),
        StatusCode::OK,
        "a JWT signed with exactly the configured digits: {:?}",
        reply.text().await
    );
    let reply = http
        .post(format!("{base}/api/v1/admin/sales"))
        .bearer_auth(DIGIT_ADMIN_TOKEN)
        .json(&flashsale_testkit::SaleSpec::default().body())
        .send()
        .await
        .unwrap_or_else(|e| panic!("gateway: {e}"));
    assert_eq!(
        reply.status(),
        StatusCode::CREATED,
        "the admin token made of digits: {:?}",
        reply.text().await
    );
    let _ = child.kill().await;
    env.cleanup().await;
}

/// A buyer's JWT signed with the environment's secret, carrying `aud` when given.
fn token_with_audience(env: &TestEnv, user: &str, aud: Option<Value>) -> String {
    let mut claims = json!({ "sub": user, "exp": (chrono::Utc::now() + chrono::Duration::hours(1)).timestamp() });
    if let Some(aud) = aud {
        claims["aud"] = aud;
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(
            env.settings.auth.jwt_secret.expose_secret().as_bytes(),
        ),
    )
    .unwrap_or_else(|e| panic!("cannot sign a token: {e}"))
}

/// The status of `GET /api/v1/me/orders` with each token, in order.
async fn statuses(gw: &flashsale_testkit::GatewayHandle, tokens: &[String]) -> Vec<StatusCode> {
    let mut out = Vec::new();
    for token in tokens {
        out.push(gw.get("/api/v1/me/orders", Some(token)).await.status);
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configured_audience_accepts_only_tokens_that_name_it() {
    let env = TestEnv::with(|s| s.auth.jwt_audience = "flashsale-shop".into()).await;
    let gw = env.spawn_gateway().await;
    let tokens = [
        token_with_audience(&env, "ann", Some(json!("flashsale-shop"))),
        token_with_audience(&env, "ann", Some(json!(["billing", "flashsale-shop"]))),
        token_with_audience(&env, "ann", Some(json!("billing"))),
        token_with_audience(&env, "ann", Some(json!(["billing", "crm"]))),
        token_with_audience(&env, "ann", Some(json!(42))),
        token_with_audience(&env, "ann", None),
    ];
    use StatusCode as S;
    assert_eq!(
        statuses(&gw, &tokens).await,
        [
            S::OK,
            S::OK,
            S::UNAUTHORIZED,
            S::UNAUTHORIZED,
            S::UNAUTHORIZED,
            S::UNAUTHORIZED
        ],
        "matching string, matching array member, other string, other array, malformed, missing"
    );
    let refused = gw.get("/api/v1/me/orders", Some(&tokens[2])).await;
    assert_eq!(refused.code(), "UNAUTHORIZED", "{refused:?}");
    gw.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_an_audience_tokens_that_carry_one_are_refused() {
    let env = TestEnv::new().await;
    assert_eq!(env.settings.auth.jwt_audience, "", "no audience by default");
    let gw = env.spawn_gateway().await;
    let tokens = [
        token_with_audience(&env, "bob", None),
        token_with_audience(&env, "bob", Some(json!("flashsale-shop"))),
        token_with_audience(&env, "bob", Some(json!([]))),
        token_with_audience(&env, "bob", Some(json!(42))),
    ];
    use StatusCode as S;
    assert_eq!(
        statuses(&gw, &tokens).await,
        [S::OK, S::UNAUTHORIZED, S::UNAUTHORIZED, S::UNAUTHORIZED],
        "no aud, a string aud, an empty array, a malformed aud"
    );
    let refused = gw.get("/api/v1/me/orders", Some(&tokens[1])).await;
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("aud")),
        "the refusal says why: {refused:?}"
    );
    gw.stop().await;
    env.cleanup().await;
}
