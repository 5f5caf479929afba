//! Layered settings: the compiled-in `config/default.toml`, then the file named by `FLASHSALE_CONFIG`,
//! then `FLASHSALE__SECTION__KEY` environment variables. Unknown keys fail at start-up.

use anyhow::Context;
use config::{Config, Environment, File, FileFormat};
use secrecy::SecretString;
use serde::Deserialize;

pub const DEFAULT_TOML: &str = include_str!("../../../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub telemetry: TelemetrySettings,
    pub redis: RedisSettings,
    pub amqp: AmqpSettings,
    pub postgres: PostgresSettings,
    pub auth: AuthSettings,
    pub gateway: GatewaySettings,
    pub outbox: OutboxSettings,
    pub order_writer: OrderWriterSettings,
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
    pub url: SecretString,
    pub key_prefix: String,
    pub response_timeout_ms: u64,
    pub connect_timeout_ms: u64,
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
    pub run_migrations: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    pub jwt_secret: SecretString,
    pub admin_token: SecretString,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySettings {
    pub listen: String,
    pub workers: usize,
    pub max_in_flight: usize,
    pub buyer_rate_per_sec: u32,
    pub buyer_rate_burst: u32,
    pub address_rate_per_sec: u32,
    pub address_rate_burst: u32,
    pub idempotency_ttl_secs: u64,
    pub max_body_bytes: usize,
    pub warm_interval_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxSettings {
    pub relay_interval_ms: u64,
    pub relay_age_ms: u64,
    pub relay_batch: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderWriterSettings {
    pub listen: String,
    pub batch_size: usize,
    pub batch_linger_ms: u64,
    pub failed_batch_attempts: u32,
    pub dead_letter_poll_ms: u64,
}

impl Settings {
    /// Loads all three layers and validates them.
    pub fn load() -> anyhow::Result<Self> {
        let mut builder =
            Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml));
        if let Ok(path) = std::env::var("FLASHSALE_CONFIG") {
            builder = builder.add_source(File::with_name(&path).required(true));
        }
        let settings: Settings = builder
            .add_source(
                Environment::with_prefix("FLASHSALE")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true),
            )
            .build()
            .context("reading settings")?
            .try_deserialize()
            .context("parsing settings")?;
        settings.validate()?;
        Ok(settings)
    }

    /// The compiled-in defaults alone, ignoring files and environment (tests start from these).
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
        anyhow::ensure!(
            self.order_writer.batch_size > 0 && self.order_writer.batch_size <= 5000,
            "order_writer.batch_size must be 1..=5000"
        );
        anyhow::ensure!(
            (1..=100).contains(&self.order_writer.failed_batch_attempts),
            "order_writer.failed_batch_attempts must be 1..=100"
        );
        anyhow::ensure!(
            self.order_writer.dead_letter_poll_ms >= 100,
            "order_writer.dead_letter_poll_ms must be at least 100"
        );
        anyhow::ensure!(
            usize::from(self.amqp.prefetch) >= self.order_writer.batch_size,
            "amqp.prefetch must be at least order_writer.batch_size, or batches can never fill"
        );
        anyhow::ensure!(
            ["text", "json"].contains(&self.telemetry.log_format.as_str()),
            "telemetry.log_format must be \"text\" or \"json\""
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_validate() {
        let s = Settings::defaults().expect("defaults are valid");
        assert_eq!(s.redis.key_prefix, "fs:");
        assert_eq!(s.amqp.prefix, "flashsale.");
        assert_eq!(s.gateway.buyer_rate_per_sec, 5);
        assert_eq!(s.gateway.max_in_flight, 20_000);
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let s = Settings::defaults().expect("defaults are valid");
        let printed = format!("{s:?}");
        assert!(!printed.contains("dev-only-jwt-secret"));
        assert!(!printed.contains("guest:guest"));
    }
}
