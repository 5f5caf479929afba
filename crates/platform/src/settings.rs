//! Layered settings: the compiled-in `config/default.toml`, then the file named by `FLASHSALE_CONFIG`,
//! then `FLASHSALE__SECTION__KEY` environment variables. Unknown keys fail at start-up.
//!
//! Environment values are never type-guessed: each stays the string it was and serde converts it to the type of
//! its field (numbers and booleans parse as before), so a secret made of digits is exactly the digits given.
//! Guessing (`Environment::try_parsing`) turned 36 digits into a float and `true` into a boolean.

use anyhow::Context;
use config::{Config, Environment, File, FileFormat};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

mod breaker;
mod edge;
mod expiry;
mod order_writer;
mod payment;
mod shutdown;
mod sse;

pub use breaker::BreakerSettings;
pub use expiry::ExpirySettings;
pub use order_writer::OrderWriterSettings;
pub use payment::{PaymentSettings, SimulatorSettings};
pub use sse::SseSettings;

pub const DEFAULT_TOML: &str = include_str!("../../../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Development mode: weak secrets are allowed (see `secrets`). Never on in production.
    pub dev: bool,
    pub telemetry: TelemetrySettings,
    pub redis: RedisSettings,
    pub amqp: AmqpSettings,
    pub postgres: PostgresSettings,
    pub auth: AuthSettings,
    pub gateway: GatewaySettings,
    pub breaker: BreakerSettings,
    pub sse: SseSettings,
    pub outbox: OutboxSettings,
    pub order_writer: OrderWriterSettings,
    pub payment: PaymentSettings,
    pub expiry: ExpirySettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    pub log_level: String,
    pub log_format: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    pub mode: RedisMode,
    /// One URL, or (cluster mode) seed node URLs, comma-separated.
    pub url: SecretString,
    pub key_prefix: String,
    pub response_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    pub retention_secs: u64,
}

/// The addresses of a URL setting that may list several, comma-separated (`redis.url` in cluster mode, the
/// nodes of a RabbitMQ cluster in `amqp.url`).
pub fn addresses(url: &SecretString) -> Vec<&str> {
    url.expose_secret().split(',').map(str::trim).collect()
}

/// One Redis (or a primary with replicas behind one address), or a Redis Cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedisMode {
    Single,
    Cluster,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueType {
    Quorum,
    Classic,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpSettings {
    pub url: SecretString,
    pub prefix: String,
    pub queue_type: QueueType,
    pub delivery_limit: u32,
    pub queue_expires_ms: u64,
    pub confirm_timeout_ms: u64,
    /// Longest a connection and its AMQP handshake may take.
    pub connect_timeout_ms: u64,
    /// Largest AMQP frame this client proposes, unless `url` names its own `frame_max`.
    pub frame_max: u32,
    pub prefetch: u16,
    pub reconnect_min_ms: u64,
    pub reconnect_max_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSettings {
    pub url: SecretString,
    pub pool_size: u32,
    pub acquire_timeout_ms: u64,
    /// PostgreSQL's `statement_timeout` on every pooled connection; 0 = none.
    pub statement_timeout_ms: u64,
    pub run_migrations: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    pub jwt_secret: SecretString,
    pub admin_token: SecretString,
    /// The `aud` a buyer's JWT must name; empty = none, and then a token that carries `aud` is refused.
    pub jwt_audience: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySettings {
    pub listen: String,
    pub workers: usize,
    pub max_in_flight: usize,
    /// API requests per second one instance admits (governor bucket, burst one second's worth); 0 = off.
    pub max_requests_per_sec: u32,
    pub buyer_rate_per_sec: u32,
    pub buyer_rate_burst: u32,
    /// Per client address, across all sales, in the gateway's memory; 0 = off.
    pub address_rate_per_sec: u32,
    pub address_rate_burst: u32,
    /// CIDR networks (or single addresses) of reverse proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<String>,
    /// Origins (`https://shop.example`) allowed to call the API from a browser; empty = no CORS headers.
    #[serde(deserialize_with = "origin_list")]
    pub cors_allowed_origins: Vec<String>,
    /// `Strict-Transport-Security: max-age=<this>` on every answer; 0 = not sent.
    pub hsts_max_age_secs: u64,
    pub idempotency_ttl_secs: u64,
    pub max_body_bytes: usize,
    pub warm_interval_ms: u64,
    pub restore_quiet_ms: u64,
    pub sold_out_check_ms: u64,
    /// Group commit: how long the first accepted reservation waits for others to share its message (µs).
    pub group_commit_linger_us: u64,
    /// Most reservations in one message; 1 = off.
    pub group_commit_max: usize,
    /// After SIGTERM, how long `/readyz` answers 503 while the API is still served, before the drain (ms).
    pub shutdown_delay_ms: u64,
    pub shutdown_grace_ms: u64,
    pub storefront: StorefrontSettings,
}

/// `[gateway.storefront]`: the shop page the gateway serves at `/`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorefrontSettings {
    /// Origin of the payment service as the buyer's browser reaches it (`http://127.0.0.1:8081`): the page
    /// posts checkout there, so it is also allowed in the page's Content-Security-Policy.
    pub payment_url: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxSettings {
    pub relay_interval_ms: u64,
    pub relay_age_ms: u64,
    pub relay_batch: usize,
}

/// `FLASHSALE__SECTION__KEY`, every value a string (no `try_parsing`: see the module docs). Lists of origins
/// read such a string as comma-separated ([`origin_list`]).
fn environment() -> Environment {
    Environment::with_prefix("FLASHSALE")
        .prefix_separator("__")
        .separator("__")
}

/// A list of origins: a list in a file, or one string from an environment variable, split at commas (an origin
/// never holds one). config's own list parsing needs `try_parsing`, which the module docs rule out.
pub(crate) fn origin_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Given {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Given::deserialize(d)? {
        Given::List(list) => list,
        Given::Text(text) if text.trim().is_empty() => Vec::new(),
        Given::Text(text) => text.split(',').map(|s| s.trim().to_owned()).collect(),
    })
}

impl Settings {
    /// Loads all three layers and validates them.
    pub fn load() -> anyhow::Result<Self> {
        Self::layered(std::env::var("FLASHSALE_CONFIG").ok(), environment())
    }

    fn layered(file: Option<String>, env: Environment) -> anyhow::Result<Self> {
        let mut builder =
            Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml));
        if let Some(path) = file {
            builder = builder.add_source(File::with_name(&path).required(true));
        }
        let settings: Settings = builder
            .add_source(env)
            .build()
            .context("reading settings")?
            .try_deserialize()
            .context("parsing settings")?;
        settings.validate()?;
        Ok(settings)
    }

    /// The compiled-in defaults alone, ignoring files and environment (tests start from these). Validated, but
    /// their development secrets are only accepted where `dev` is turned on (`require_secrets`).
    pub fn defaults() -> anyhow::Result<Self> {
        let settings: Settings = Config::builder()
            .add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml))
            .build()?
            .try_deserialize()
            .context("parsing default settings")?;
        settings.validate()?;
        Ok(settings)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.outbox.relay_age_ms > self.amqp.confirm_timeout_ms,
            "outbox.relay_age_ms ({}) must exceed amqp.confirm_timeout_ms ({}): the relay must never re-publish \
             a reservation whose gateway is still waiting for its confirm",
            self.outbox.relay_age_ms,
            self.amqp.confirm_timeout_ms
        );
        anyhow::ensure!(
            self.redis.mode == RedisMode::Cluster || addresses(&self.redis.url).len() == 1,
            "redis.url lists several addresses but redis.mode is \"single\": set redis.mode = \"cluster\" \
             for a Redis Cluster"
        );
        anyhow::ensure!(
            !self.redis.key_prefix.contains(['{', '}']),
            "redis.key_prefix must not contain braces (they would change the cluster hash tag)"
        );
        anyhow::ensure!(
            self.gateway.buyer_rate_per_sec > 0 && self.gateway.buyer_rate_burst > 0,
            "gateway.buyer_rate_per_sec and gateway.buyer_rate_burst must be positive"
        );
        anyhow::ensure!(
            (self.gateway.address_rate_per_sec == 0) == (self.gateway.address_rate_burst == 0),
            "gateway.address_rate_per_sec and gateway.address_rate_burst are both 0 (off) or both positive"
        );
        self.gateway.validate_edge()?;
        anyhow::ensure!(
            (10..=1000).contains(&self.gateway.sold_out_check_ms),
            "gateway.sold_out_check_ms must be 10..=1000: units that come back must be on sale again within 1 s"
        );
        anyhow::ensure!(
            self.gateway.group_commit_linger_us <= 100_000,
            "gateway.group_commit_linger_us must be 0..=100000 (at most 100 ms added to every 202)"
        );
        anyhow::ensure!(
            (1..=1000).contains(&self.gateway.group_commit_max),
            "gateway.group_commit_max must be 1..=1000 (1 = off)"
        );
        anyhow::ensure!(
            self.outbox.relay_age_ms * 1000
                > self.amqp.confirm_timeout_ms * 1000 + self.gateway.group_commit_linger_us,
            "outbox.relay_age_ms must exceed amqp.confirm_timeout_ms plus gateway.group_commit_linger_us: the \
             relay must never re-publish a reservation still waiting for its message's confirm"
        );
        self.order_writer.validate()?;
        anyhow::ensure!(
            usize::from(self.amqp.prefetch) >= self.order_writer.batch_size,
            "amqp.prefetch must be at least order_writer.batch_size, or batches can never fill"
        );
        anyhow::ensure!(
            self.gateway.shutdown_grace_ms > 0 && self.order_writer.shutdown_grace_ms > 0,
            "gateway.shutdown_grace_ms and order_writer.shutdown_grace_ms must be positive"
        );
        self.check_shutdown_delays()?;
        anyhow::ensure!(
            ["text", "json"].contains(&self.telemetry.log_format.as_str()),
            "telemetry.log_format must be \"text\" or \"json\""
        );
        anyhow::ensure!(
            self.auth.jwt_audience.trim() == self.auth.jwt_audience,
            "auth.jwt_audience must not start or end with white space"
        );
        anyhow::ensure!(
            self.gateway.max_requests_per_sec <= 10_000_000,
            "gateway.max_requests_per_sec must be 0 (off) or at most 10000000"
        );
        anyhow::ensure!(
            self.amqp.connect_timeout_ms >= 100,
            "amqp.connect_timeout_ms must be at least 100"
        );
        anyhow::ensure!(
            (4096..=1_048_576).contains(&self.amqp.frame_max),
            "amqp.frame_max must be 4096..=1048576 (bytes)"
        );
        anyhow::ensure!(
            self.postgres.statement_timeout_ms == 0 || self.postgres.statement_timeout_ms >= 100,
            "postgres.statement_timeout_ms must be 0 (none) or at least 100"
        );
        self.breaker.validate()?;
        self.sse.validate()?;
        self.payment.validate()?;
        self.expiry.validate()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn defaults_parse_and_validate() {
        let s = Settings::defaults().expect("defaults are valid");
        assert_eq!(s.redis.key_prefix, "fs:");
        assert_eq!(s.amqp.prefix, "flashsale.");
        assert_eq!(s.gateway.buyer_rate_per_sec, 5);
        assert_eq!(s.gateway.max_in_flight, 20_000);
        assert_eq!(
            s.gateway.max_requests_per_sec, 0,
            "off: a race from one machine never meets it"
        );
    }

    #[test]
    fn bad_breaker_and_timeout_settings_stop_the_start_naming_the_setting() {
        for (var, value, setting) in [
            (
                "FLASHSALE__BREAKER__FAILURE_THRESHOLD",
                "0",
                "breaker.failure_threshold",
            ),
            (
                "FLASHSALE__BREAKER__COOL_DOWN_MS",
                "10",
                "breaker.cool_down_ms",
            ),
            (
                "FLASHSALE__BREAKER__HALF_OPEN_PROBES",
                "0",
                "breaker.half_open_probes",
            ),
            (
                "FLASHSALE__REDIS__URL",
                "redis://10.0.0.1:6379,redis://10.0.0.2:6379",
                "redis.mode",
            ),
            ("FLASHSALE__SSE__COALESCE_MS", "0", "sse.coalesce_ms"),
            ("FLASHSALE__SSE__COALESCE_MS", "1001", "sse.coalesce_ms"),
            ("FLASHSALE__SSE__RECHECK_MS", "50", "sse.recheck_ms"),
            ("FLASHSALE__SSE__HEARTBEAT_MS", "1", "sse.heartbeat_ms"),
            ("FLASHSALE__SSE__CLIENT_BUFFER", "0", "sse.client_buffer"),
            ("FLASHSALE__SSE__MAX_STREAMS", "0", "sse.max_streams"),
            (
                "FLASHSALE__SSE__SEND_BUFFER_BYTES",
                "100",
                "sse.send_buffer_bytes",
            ),
            (
                "FLASHSALE__GATEWAY__MAX_REQUESTS_PER_SEC",
                "20000000",
                "gateway.max_requests_per_sec",
            ),
            (
                "FLASHSALE__AMQP__CONNECT_TIMEOUT_MS",
                "0",
                "amqp.connect_timeout_ms",
            ),
            ("FLASHSALE__AMQP__FRAME_MAX", "1024", "amqp.frame_max"),
            ("FLASHSALE__AMQP__FRAME_MAX", "2000000", "amqp.frame_max"),
            (
                "FLASHSALE__ORDER_WRITER__BATCHES_IN_FLIGHT",
                "0",
                "order_writer.batches_in_flight",
            ),
            (
                "FLASHSALE__ORDER_WRITER__BATCHES_IN_FLIGHT",
                "17",
                "order_writer.batches_in_flight",
            ),
            (
                "FLASHSALE__GATEWAY__GROUP_COMMIT_MAX",
                "0",
                "gateway.group_commit_max",
            ),
            (
                "FLASHSALE__GATEWAY__GROUP_COMMIT_LINGER_US",
                "200000",
                "gateway.group_commit_linger_us",
            ),
            (
                "FLASHSALE__POSTGRES__STATEMENT_TIMEOUT_MS",
                "5",
                "postgres.statement_timeout_ms",
            ),
        ] {
            let err = from_env(&[(var, value)]).expect_err(var);
            assert!(format!("{err:#}").contains(setting), "{var}: {err:#}");
        }
        let s = from_env(&[
            ("FLASHSALE__BREAKER__FAILURE_THRESHOLD", "3"),
            ("FLASHSALE__POSTGRES__STATEMENT_TIMEOUT_MS", "0"),
        ])
        .expect("valid");
        assert_eq!(s.breaker.failure_threshold, 3);
        assert_eq!(s.postgres.statement_timeout_ms, 0);
    }

    fn from_env(vars: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let map = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::layered(None, environment().source(Some(map)))
    }

    #[test]
    fn origin_lists_come_comma_separated_from_the_environment_and_bad_origins_name_the_setting() {
        let s = from_env(&[
            (
                "FLASHSALE__PAYMENT__CORS_ALLOWED_ORIGINS",
                "http://127.0.0.1:8080,http://localhost:8080",
            ),
            (
                "FLASHSALE__GATEWAY__CORS_ALLOWED_ORIGINS",
                "https://shop.example",
            ),
            (
                "FLASHSALE__GATEWAY__STOREFRONT__PAYMENT_URL",
                "https://pay.example",
            ),
        ])
        .expect("valid");
        assert_eq!(
            s.payment.cors_allowed_origins,
            ["http://127.0.0.1:8080", "http://localhost:8080"]
        );
        assert_eq!(s.gateway.cors_allowed_origins, ["https://shop.example"]);
        assert_eq!(s.gateway.storefront.payment_url, "https://pay.example");
        assert!(
            Settings::defaults()
                .expect("defaults")
                .payment
                .cors_allowed_origins
                .is_empty()
        );
        for (var, value, setting) in [
            (
                "FLASHSALE__PAYMENT__CORS_ALLOWED_ORIGINS",
                "http://127.0.0.1:8080/",
                "payment.cors_allowed_origins",
            ),
            (
                "FLASHSALE__GATEWAY__STOREFRONT__PAYMENT_URL",
                "http://127.0.0.1:8081/api",
                "gateway.storefront.payment_url",
            ),
            (
                "FLASHSALE__GATEWAY__STOREFRONT__PAYMENT_URL",
                "",
                "gateway.storefront.payment_url",
            ),
        ] {
            let err = from_env(&[(var, value)]).expect_err(value);
            assert!(format!("{err:#}").contains(setting), "{value}: {err:#}");
        }
    }

    #[test]
    fn secrets_from_the_environment_stay_exactly_the_string_given() {
        let digits = "123456789012345678901234567890123456";
        for secret in [
            digits,
            "0123456789012345678901234567890123",
            "true",
            "1e40",
            " padded ",
        ] {
            let s = from_env(&[
                ("FLASHSALE__AUTH__JWT_SECRET", secret),
                ("FLASHSALE__AUTH__ADMIN_TOKEN", secret),
                ("FLASHSALE__AUTH__JWT_AUDIENCE", "12345"),
            ])
            .expect("settings load");
            assert_eq!(s.auth.jwt_secret.expose_secret(), secret);
            assert_eq!(s.auth.admin_token.expose_secret(), secret);
            assert_eq!(s.auth.jwt_audience, "12345");
        }
    }

    #[test]
    fn numbers_and_booleans_still_parse_from_the_environment() {
        let s = from_env(&[
            ("FLASHSALE__DEV", "1"),
            ("FLASHSALE__GATEWAY__MAX_IN_FLIGHT", "64"),
            ("FLASHSALE__AMQP__PREFETCH", "4096"),
            ("FLASHSALE__AMQP__QUEUE_TYPE", "classic"),
            ("FLASHSALE__POSTGRES__RUN_MIGRATIONS", "false"),
            ("FLASHSALE__REDIS__KEY_PREFIX", "42"),
        ])
        .expect("settings load");
        assert!(s.dev);
        assert_eq!(s.gateway.max_in_flight, 64);
        assert_eq!(s.amqp.prefetch, 4096);
        assert_eq!(s.amqp.queue_type, QueueType::Classic);
        assert!(!s.postgres.run_migrations);
        assert_eq!(s.redis.key_prefix, "42");
        let err =
            from_env(&[("FLASHSALE__GATEWAY__MAX_IN_FLIGHT", "many")]).expect_err("not a number");
        assert!(format!("{err:#}").contains("max_in_flight"), "{err:#}");
        assert!(!Settings::defaults().expect("defaults").dev);
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let s = Settings::defaults().expect("defaults are valid");
        let printed = format!("{s:?}");
        assert!(!printed.contains("dev-only-jwt-secret"));
        assert!(!printed.contains("guest:guest"));
    }
}
