//! The reservation path's two circuit breakers, Redis and RabbitMQ, and what their refusal answers.
//!
//! Both are asked BEFORE the reservation script runs: once the script has run a unit is held, and refusing the
//! publish then would leave it to be undone. A refusal is a 503 UNAVAILABLE with Retry-After (the rest of the
//! cool-down), counted in `flashsale_requests_shed_total{reason="breaker_redis"|"breaker_amqp"}`.

use crate::breaker::{Breaker, Instruments, Permit, Policy};
use crate::error::ApiError;
use crate::metrics::GatewayMetrics;
use flashsale_platform::settings::BreakerSettings;
use std::time::Duration;

pub struct Breakers {
    pub redis: Breaker,
    pub amqp: Breaker,
}

/// Permission to run the script (`redis`) and then publish (`amqp`).
pub struct Permits<'a> {
    pub redis: Permit<'a>,
    pub amqp: Permit<'a>,
}

/// What `/readyz` says of a dependency whose breaker is open.
pub const OPEN_CHECK: &str = "circuit open";

impl Breakers {
    pub fn new(settings: &BreakerSettings, metrics: &GatewayMetrics) -> Self {
        let policy = Policy {
            failure_threshold: settings.failure_threshold,
            cool_down: Duration::from_millis(settings.cool_down_ms),
            half_open_probes: settings.half_open_probes,
        };
        let instruments = |dependency: &str| Instruments {
            state: metrics.breaker_state.with_label_values(&[dependency]),
            to_closed: metrics
                .breaker_transitions
                .with_label_values(&[dependency, "closed"]),
            to_half_open: metrics
                .breaker_transitions
                .with_label_values(&[dependency, "half_open"]),
            to_open: metrics
                .breaker_transitions
                .with_label_values(&[dependency, "open"]),
        };
        Self {
            redis: Breaker::new("redis", policy, instruments("redis")),
            amqp: Breaker::new("amqp", policy, instruments("amqp")),
        }
    }

    /// Both permits, or the 503 to answer (counted as shed). No network call either way.
    pub fn admit(&self, metrics: &GatewayMetrics) -> Result<Permits<'_>, ApiError> {
        let refuse = |reason: &str, secs: u64, message: &'static str| {
            metrics.shed.with_label_values(&[reason]).inc();
            ApiError::unavailable(message).with_retry_after(secs)
        };
        let redis = self.redis.acquire().map_err(|r| {
            refuse(
                "breaker_redis",
                r.retry_after_secs(),
                "the stock service is unavailable; retry shortly",
            )
        })?;
        // A refusal here drops the Redis permit unused, which frees a half-open probe slot.
        let amqp = self.amqp.acquire().map_err(|r| {
            refuse(
                "breaker_amqp",
                r.retry_after_secs(),
                "the order queue is unavailable; retry shortly",
            )
        })?;
        Ok(Permits { redis, amqp })
    }

    pub fn refresh_gauges(&self) {
        self.redis.refresh_gauge();
        self.amqp.refresh_gauge();
    }
}
