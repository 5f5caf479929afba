//! Readiness: the reservation script's path that writes, against a probe sale of its own.
//!
//! PING and a read-only script path stay green on a node that has become a read-only replica after a
//! failover, while every reservation fails. So the probe runs `reserve.lua` on a probe sale that has ended:
//! the script takes a token from the probe buyer's rate bucket (a write) and answers SALE_ENDED. A lost
//! script cache (NOSCRIPT is reloaded by `invoke_async`) and a read-only node both show here.

use crate::client::{Stock, StockError};
use crate::model::{RateLimits, ReserveOutcome, ReserveRequest};
use flashsale_domain::reservation::Refusal;
use flashsale_domain::{OrderId, SaleId, UserId};

/// The probe sale's keys live this long after each write, so they never accumulate.
const PROBE_TTL_MS: i64 = 600_000;

impl Stock {
    pub async fn probe(&self) -> Result<(), StockError> {
        let sale = SaleId::new(i64::MAX).map_err(|e| StockError::Reply(e.to_string()))?;
        let user =
            UserId::parse("readiness-probe").map_err(|e| StockError::Reply(e.to_string()))?;
        let req = ReserveRequest {
            sale,
            order_id: OrderId::new_v7(),
            user: &user,
            quantity: 1,
            idempotency_key: None,
        };
        // A bucket that never runs dry: every probe writes it.
        let limits = RateLimits {
            buyer_per_sec: 1_000_000,
            buyer_burst: 1_000_000,
            idempotency_ttl_secs: 1,
            announce_every_ms: 1000,
        };
        for _ in 0..2 {
            match self.reserve(&req, &limits).await? {
                ReserveOutcome::Refused(Refusal::Ended) => return Ok(()),
                ReserveOutcome::Refused(Refusal::SaleStateMissing) => {
                    self.write_probe_sale(sale).await?
                }
                other => {
                    return Err(StockError::Reply(format!(
                        "probe sale unexpectedly answered {other:?}"
                    )));
                }
            }
        }
        Err(StockError::Reply("probe sale could not be written".into()))
    }

    /// An ended sale with no stock: nothing can ever be reserved from it.
    async fn write_probe_sale(&self, sale: SaleId) -> Result<(), StockError> {
        let k = &self.keys;
        let () = self.checked(
            redis::pipe()
                .hset_multiple(
                    k.sale(sale),
                    &[
                        ("starts_ms", "0"),
                        ("ends_ms", "1"),
                        ("per_user_limit", "1"),
                        ("payment_window_secs", "1"),
                        ("price_minor", "1"),
                        ("expire_ms", "1"),
                    ],
                )
                .ignore()
                .pexpire(k.sale(sale), PROBE_TTL_MS)
                .ignore()
                .query_async(&mut self.conn())
                .await,
        )?;
        Ok(())
    }
}
