//! The `[payment]` section: the payment service, its webhook and the simulated payment provider.

use secrecy::SecretString;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentSettings {
    pub listen: String,
    /// HMAC-SHA256 key of `Psp-Signature`; the provider signs with it.
    pub webhook_secret: SecretString,
    /// Earlier keys still accepted while a rotation is under way.
    pub webhook_secrets_previous: Vec<SecretString>,
    /// Largest |now - t| of a signature's timestamp, in seconds.
    pub webhook_tolerance_secs: u64,
    /// Where a buyer is sent to pay: `<checkout_base_url><payment_id>`.
    pub checkout_base_url: String,
    pub batch_size: usize,
    /// Most webhook events applied in one transaction (group commit; see the payment service's `applier`).
    pub apply_batch_size: usize,
    pub batch_linger_ms: u64,
    /// After SIGTERM, how long `/readyz` answers 503 while HTTP is still served, before the drain (ms).
    pub shutdown_delay_ms: u64,
    pub shutdown_grace_ms: u64,
    /// Origins whose pages may call checkout from a browser (the storefront's); empty = no CORS headers.
    #[serde(deserialize_with = "super::origin_list")]
    pub cors_allowed_origins: Vec<String>,
    pub simulator: SimulatorSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatorSettings {
    pub enabled: bool,
    pub webhook_url: String,
}

impl PaymentSettings {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=3600).contains(&self.webhook_tolerance_secs),
            "payment.webhook_tolerance_secs must be 1..=3600"
        );
        anyhow::ensure!(
            self.batch_size > 0 && self.batch_size <= 5000,
            "payment.batch_size must be 1..=5000"
        );
        anyhow::ensure!(
            (1..=1000).contains(&self.apply_batch_size),
            "payment.apply_batch_size must be 1..=1000"
        );
        anyhow::ensure!(
            self.shutdown_grace_ms > 0,
            "payment.shutdown_grace_ms must be positive"
        );
        super::edge::check_origins("payment.cors_allowed_origins", &self.cors_allowed_origins)
    }
}
