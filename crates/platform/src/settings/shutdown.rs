//! The shutdown timing of the four services: each `<section>.shutdown_delay_ms` (readiness 503 while still
//! serving) comes before its `<section>.shutdown_grace_ms` (the drain), and must be shorter than it.

use super::Settings;

impl Settings {
    /// Every service's `(section, shutdown_delay_ms, shutdown_grace_ms)`.
    pub fn shutdown_timings(&self) -> [(&'static str, u64, u64); 4] {
        [
            (
                "gateway",
                self.gateway.shutdown_delay_ms,
                self.gateway.shutdown_grace_ms,
            ),
            (
                "order_writer",
                self.order_writer.shutdown_delay_ms,
                self.order_writer.shutdown_grace_ms,
            ),
            (
                "payment",
                self.payment.shutdown_delay_ms,
                self.payment.shutdown_grace_ms,
            ),
            (
                "expiry",
                self.expiry.shutdown_delay_ms,
                self.expiry.shutdown_grace_ms,
            ),
        ]
    }

    /// A delay as long as the drain is a misread setting: the two add up, and the orchestrator's kill timeout
    /// must exceed their sum (docs/operations.md, Graceful shutdown).
    pub(super) fn check_shutdown_delays(&self) -> anyhow::Result<()> {
        for (section, delay, grace) in self.shutdown_timings() {
            anyhow::ensure!(
                delay < grace,
                "{section}.shutdown_delay_ms ({delay}) must be below {section}.shutdown_grace_ms ({grace}): the \
                 readiness delay comes before the drain, and the orchestrator's kill timeout must exceed both \
                 together"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::environment;
    use super::*;

    fn from_env(vars: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let map = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::layered(None, environment().source(Some(map)))
    }

    #[test]
    fn every_service_waits_one_second_then_drains_within_twenty() {
        let s = Settings::defaults().expect("defaults");
        for (section, delay, grace) in s.shutdown_timings() {
            // docs/operations.md, deploy/k8s and docker-compose.yml are sized on these.
            assert_eq!((delay, grace), (1000, 20_000), "{section}");
        }
    }

    #[test]
    fn a_delay_not_below_the_grace_stops_the_start_naming_the_setting() {
        for (section, var) in [
            ("gateway", "GATEWAY"),
            ("order_writer", "ORDER_WRITER"),
            ("payment", "PAYMENT"),
            ("expiry", "EXPIRY"),
        ] {
            let delay = format!("FLASHSALE__{var}__SHUTDOWN_DELAY_MS");
            let grace = format!("FLASHSALE__{var}__SHUTDOWN_GRACE_MS");
            let err = from_env(&[(&delay, "5000"), (&grace, "5000")]).expect_err(&delay);
            let text = format!("{err:#}");
            assert!(
                text.contains(&format!("{section}.shutdown_delay_ms")),
                "{text}"
            );
            let s = from_env(&[(&delay, "0"), (&grace, "1")]).expect("0 turns the delay off");
            assert!(s.shutdown_timings().contains(&(section, 0, 1)));
        }
        let err = from_env(&[("FLASHSALE__EXPIRY__SHUTDOWN_DELAY_MS", "soon")]).expect_err("text");
        assert!(format!("{err:#}").contains("shutdown_delay_ms"), "{err:#}");
    }
}
