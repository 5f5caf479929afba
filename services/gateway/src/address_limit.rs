//! The per-client-address limit on reservations (`gateway.address_rate_per_sec`, `gateway.address_rate_burst`;
//! off by default): a token bucket per client address (`client_addr`), kept in this process with governor, so
//! it costs no Redis round trip and is checked before any Redis or RabbitMQ work.
//!
//! One bucket per address across all sales, not per sale: a bot's address is what an operator limits, and a
//! per-sale bucket would multiply its allowance by the number of live sales. Per instance: behind N gateways
//! an address gets up to N times the rate (docs/protection.md sizes it).

use crate::client_addr::{ClientAddr, bucket_key};
use crate::error::ApiError;
use actix_web::HttpRequest;
use flashsale_domain::ErrorCode;
use flashsale_platform::settings::GatewaySettings;
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};
use prometheus::IntCounterVec;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often buckets that have refilled are forgotten. The map then holds at most the addresses seen in the
/// last `FORGET_EVERY + burst / rate` seconds: memory follows the live clients, not every client ever seen.
pub const FORGET_EVERY: Duration = Duration::from_secs(5);

pub struct AddressLimit {
    /// `None` when the limit is off: nothing is looked up or stored.
    buckets: Option<DefaultKeyedRateLimiter<IpAddr>>,
    clients: ClientAddr,
    shed: IntCounterVec,
}

impl AddressLimit {
    pub fn new(settings: &GatewaySettings, shed: IntCounterVec) -> anyhow::Result<Self> {
        let quota = NonZeroU32::new(settings.address_rate_per_sec)
            .zip(NonZeroU32::new(settings.address_rate_burst))
            .map(|(rate, burst)| Quota::per_second(rate).allow_burst(burst));
        Ok(Self {
            buckets: quota.map(DefaultKeyedRateLimiter::keyed),
            clients: ClientAddr::new(settings.trusted_proxy_networks()?),
            shed,
        })
    }

    /// Takes a token for the client of `req`, or answers 429 RATE_LIMITED with Retry-After (whole seconds until
    /// a token is back, at least 1), counted in `flashsale_requests_shed_total{reason="address"}`.
    pub fn check(&self, req: &HttpRequest) -> Result<(), ApiError> {
        let Some(buckets) = &self.buckets else {
            return Ok(());
        };
        let Some(client) = self.clients.of(req.peer_addr(), req.headers()) else {
            return Ok(());
        };
        let Err(not_until) = buckets.check_key(&bucket_key(client)) else {
            return Ok(());
        };
        self.shed.with_label_values(&["address"]).inc();
        let wait = not_until.wait_time_from(buckets.clock().now());
        let secs = u64::try_from(wait.as_millis().div_ceil(1000)).unwrap_or(u64::MAX);
        Err(ApiError::new(
            ErrorCode::RateLimited,
            "too many reservation attempts from this address; retry later",
        )
        .with_retry_after(secs))
    }

    /// Addresses with a bucket now (refilled ones until the next `forget_idle`).
    pub fn tracked(&self) -> usize {
        self.buckets.as_ref().map_or(0, |b| b.len())
    }

    /// Forgets the buckets that have refilled (indistinguishable from a fresh one) and frees the space.
    pub fn forget_idle(&self) {
        if let Some(buckets) = &self.buckets {
            buckets.retain_recent();
            buckets.shrink_to_fit();
        }
    }

    /// `forget_idle` every `FORGET_EVERY` until `stop`.
    pub async fn forget_idle_until(&self, stop: CancellationToken) {
        if self.buckets.is_none() {
            return;
        }
        let mut tick = tokio::time::interval(FORGET_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => self.forget_idle(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;
    use prometheus::Opts;

    fn limit(rate: u32, burst: u32) -> AddressLimit {
        let mut s = flashsale_platform::Settings::defaults().expect("defaults");
        s.gateway.address_rate_per_sec = rate;
        s.gateway.address_rate_burst = burst;
        let shed = IntCounterVec::new(Opts::new("shed", "shed"), &["reason"]).expect("counter");
        AddressLimit::new(&s.gateway, shed).expect("limit")
    }

    fn from(ip: &str) -> HttpRequest {
        TestRequest::default()
            .peer_addr(format!("{ip}:40000").parse().expect("addr"))
            .to_http_request()
    }

    #[test]
    fn past_the_burst_an_address_gets_429_with_whole_seconds_and_others_do_not() {
        let l = limit(1, 2);
        assert!(l.check(&from("192.0.2.1")).is_ok());
        assert!(l.check(&from("192.0.2.1")).is_ok());
        let refused = l.check(&from("192.0.2.1")).expect_err("over the burst");
        assert_eq!(refused.code, ErrorCode::RateLimited);
        assert_eq!(refused.retry_after, Some(1));
        assert_eq!(l.shed.with_label_values(&["address"]).get(), 1);
        assert!(l.check(&from("192.0.2.2")).is_ok());
    }

    #[test]
    fn off_tracks_nothing() {
        let l = limit(0, 0);
        for _ in 0..100 {
            assert!(l.check(&from("192.0.2.1")).is_ok());
        }
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn refilled_buckets_are_forgotten() {
        // 1,000/s with a burst of 1: a bucket is full again 1 ms after its last request.
        let l = limit(1000, 1);
        for i in 0..200u8 {
            assert!(l.check(&from(&format!("198.51.100.{i}"))).is_ok());
        }
        assert_eq!(l.tracked(), 200);
        std::thread::sleep(Duration::from_millis(20));
        l.forget_idle();
        assert_eq!(l.tracked(), 0);
    }
}
