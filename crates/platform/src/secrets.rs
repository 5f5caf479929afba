//! Secret settings and development mode. Each service names the secrets it uses and calls
//! [`Settings::require_secrets`] at start-up: an empty secret, one shorter than [`MIN_SECRET_BYTES`], or the
//! development value compiled in from `config/default.toml` stops the service with a message naming the setting,
//! unless development mode (`dev`, `FLASHSALE__DEV=1`) is on, where it is only logged. A service checks only
//! what it uses, so a deployment never has to hand a secret to a service that does not need it.

use crate::settings::Settings;
use secrecy::{ExposeSecret, SecretString};

/// Shortest accepted secret, in bytes (256 bits, the HMAC-SHA256 key size).
pub const MIN_SECRET_BYTES: usize = 32;

/// A secret setting some service relies on. A new secret (for example `payment.webhook_secret`) gets a variant
/// here and is listed by the services that use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secret {
    /// `auth.jwt_secret`: the HS256 key of buyers' JWTs (gateway).
    JwtSecret,
    /// `auth.admin_token`: the bearer token of the admin endpoints (gateway).
    AdminToken,
    /// `payment.webhook_secret`: the HMAC key of the payment provider's webhooks (payment). Checking it also
    /// checks every `payment.webhook_secrets_previous` entry.
    WebhookSecret,
}

impl Secret {
    /// The setting's name, `section.key`.
    pub const fn setting(self) -> &'static str {
        match self {
            Self::JwtSecret => "auth.jwt_secret",
            Self::AdminToken => "auth.admin_token",
            Self::WebhookSecret => "payment.webhook_secret",
        }
    }

    /// The environment variable that sets it: `FLASHSALE__SECTION__KEY`.
    pub fn env_var(self) -> String {
        format!(
            "FLASHSALE__{}",
            self.setting().replace('.', "__").to_uppercase()
        )
    }

    fn value(self, s: &Settings) -> &SecretString {
        match self {
            Self::JwtSecret => &s.auth.jwt_secret,
            Self::AdminToken => &s.auth.admin_token,
            Self::WebhookSecret => &s.payment.webhook_secret,
        }
    }
}

/// Why `value` must not be used outside development mode, if it must not.
fn weakness(value: &str, development_value: &str) -> Option<String> {
    if value.is_empty() {
        Some("is empty".into())
    } else if value == development_value {
        Some("is the development value from config/default.toml".into())
    } else if value.len() < MIN_SECRET_BYTES {
        Some(format!(
            "is {} bytes long, shorter than {MIN_SECRET_BYTES}",
            value.len()
        ))
    } else {
        None
    }
}

impl Settings {
    /// Checks the secrets a service uses (see the module docs). Call it after `telemetry::init`, so that in
    /// development mode the warnings reach the log.
    pub fn require_secrets(&self, used: &[Secret]) -> anyhow::Result<()> {
        let defaults = Settings::defaults()?;
        let mut weak: Vec<String> = used
            .iter()
            .filter_map(|&secret| {
                let why = weakness(
                    secret.value(self).expose_secret(),
                    secret.value(&defaults).expose_secret(),
                )?;
                Some(format!(
                    "{} {why}: set a secret of at least {MIN_SECRET_BYTES} bytes ({})",
                    secret.setting(),
                    secret.env_var()
                ))
            })
            .collect();
        if used.contains(&Secret::WebhookSecret) {
            let development = defaults.payment.webhook_secret.expose_secret();
            for (i, previous) in self.payment.webhook_secrets_previous.iter().enumerate() {
                if let Some(why) = weakness(previous.expose_secret(), development) {
                    weak.push(format!(
                        "payment.webhook_secrets_previous[{i}] {why}: every key still accepted must be a strong one"
                    ));
                }
            }
        }
        if weak.is_empty() {
            return Ok(());
        }
        if self.dev {
            for problem in &weak {
                tracing::warn!("development mode (dev = true) allows this: {problem}");
            }
            return Ok(());
        }
        anyhow::bail!(
            "refusing to start with weak secrets:\n  {}\nFor local development only, turn development mode on with \
             FLASHSALE__DEV=1 (setting `dev`), which allows them.",
            weak.join("\n  ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(jwt: &str, admin: &str, dev: bool) -> Settings {
        let mut s = Settings::defaults().expect("defaults parse");
        s.auth.jwt_secret = SecretString::from(jwt);
        s.auth.admin_token = SecretString::from(admin);
        s.dev = dev;
        s
    }

    const STRONG: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn the_development_defaults_are_refused_outside_development_mode() {
        let s = Settings::defaults().expect("defaults parse");
        assert!(!s.dev, "development mode is off by default");
        let err = s
            .require_secrets(&[Secret::JwtSecret, Secret::AdminToken])
            .expect_err("the development secrets must be refused")
            .to_string();
        assert!(
            err.contains("auth.jwt_secret is the development value"),
            "{err}"
        );
        assert!(
            err.contains("auth.admin_token is the development value"),
            "{err}"
        );
        assert!(err.contains("FLASHSALE__AUTH__JWT_SECRET"), "{err}");
        assert!(err.contains("FLASHSALE__DEV=1"), "{err}");
    }

    #[test]
    fn empty_and_short_secrets_are_refused_and_named() {
        let err = with("", STRONG, false)
            .require_secrets(&[Secret::JwtSecret, Secret::AdminToken])
            .expect_err("empty")
            .to_string();
        assert!(err.contains("auth.jwt_secret is empty"), "{err}");
        assert!(!err.contains("auth.admin_token"), "{err}");
        let short = &STRONG[..31];
        let err = with(STRONG, short, false)
            .require_secrets(&[Secret::JwtSecret, Secret::AdminToken])
            .expect_err("short")
            .to_string();
        assert!(err.contains("auth.admin_token is 31 bytes long"), "{err}");
    }

    #[test]
    fn strong_secrets_pass_and_only_used_secrets_are_checked() {
        assert!(
            with(STRONG, STRONG, false)
                .require_secrets(&[Secret::JwtSecret, Secret::AdminToken])
                .is_ok()
        );
        // A service that uses no secret starts with the defaults in place.
        assert!(
            Settings::defaults()
                .expect("defaults parse")
                .require_secrets(&[])
                .is_ok()
        );
        assert!(
            with("", STRONG, false)
                .require_secrets(&[Secret::AdminToken])
                .is_ok()
        );
    }

    #[test]
    fn weak_webhook_secrets_current_or_previous_are_refused() {
        let mut s = with(STRONG, STRONG, false);
        let err = s
            .require_secrets(&[Secret::WebhookSecret])
            .expect_err("the development webhook secret")
            .to_string();
        assert!(
            err.contains("payment.webhook_secret is the development value"),
            "{err}"
        );
        s.payment.webhook_secret = SecretString::from(STRONG);
        assert!(s.require_secrets(&[Secret::WebhookSecret]).is_ok());
        s.payment.webhook_secrets_previous = vec![SecretString::from("short")];
        let err = s
            .require_secrets(&[Secret::WebhookSecret])
            .expect_err("a short previous secret")
            .to_string();
        assert!(
            err.contains("payment.webhook_secrets_previous[0] is 5 bytes long"),
            "{err}"
        );
        s.dev = true;
        assert!(s.require_secrets(&[Secret::WebhookSecret]).is_ok());
    }

    #[test]
    fn development_mode_allows_weak_secrets() {
        assert!(
            with("", "short", true)
                .require_secrets(&[Secret::JwtSecret, Secret::AdminToken])
                .is_ok()
        );
    }
}
