//! The stock client: one shared multiplexed connection (`ConnectionManager` reconnects by itself) and the Lua
//! scripts, hashed once at start-up and run by SHA (`invoke_async` reloads a script on NOSCRIPT, which happens
//! after a Redis restart, failover or SCRIPT FLUSH).

use crate::keys::Keys;
use crate::reply;
use chrono::{DateTime, Utc};
use flashsale_domain::reservation::{Refusal, Reservation};
use flashsale_domain::{Money, OrderId, SaleId, UserId};
use flashsale_platform::settings::RedisSettings;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};
use secrecy::ExposeSecret;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StockError {
    /// Redis is unreachable or too slow: the caller answers 503 and nothing was promised.
    #[error("redis unavailable: {0}")]
    Unavailable(#[from] redis::RedisError),
    /// Redis answered something the scripts never return: a bug or a foreign writer.
    #[error("unexpected redis reply: {0}")]
    Reply(String),
}

/// Per-sale token buckets, from `gateway.*_rate_*`.
#[derive(Debug, Clone, Copy)]
pub struct RateLimits {
    pub buyer_per_sec: u32,
    pub buyer_burst: u32,
    pub address_per_sec: u32,
    pub address_burst: u32,
    pub idempotency_ttl_secs: u64,
}

#[derive(Debug, Clone)]
pub struct ReserveRequest<'a> {
    pub sale: SaleId,
    pub order_id: OrderId,
    pub user: &'a UserId,
    pub quantity: u32,
    pub idempotency_key: Option<&'a str>,
    pub address: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveOutcome {
    /// Units were taken now; the caller must publish and then confirm or cancel.
    Reserved(Reservation),
    /// A retry with a known Idempotency-Key: the first answer again, nothing taken.
    Replayed(Reservation),
    Refused(Refusal),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    Released,
    /// A retry already got its 202, or the relay took the entry over: leave it to the relay.
    KeptForRelay,
    NotHeld,
}

/// A reservation as Redis holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldReservation {
    pub order_id: OrderId,
    pub sale: SaleId,
    pub user: UserId,
    pub quantity: u32,
    pub amount: Money,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub state: String,
}

/// What `GET /sales/{id}` shows, read from Redis alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaleSnapshot {
    pub sale: SaleId,
    pub product_name: String,
    pub price: Money,
    pub total_stock: i64,
    pub per_user_limit: u32,
    pub payment_window_secs: u32,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub remaining: i64,
    pub sold: i64,
}

/// Everything needed to make a sale live in Redis from PostgreSQL.
#[derive(Debug, Clone)]
pub struct SaleWarmup {
    pub snapshot: SaleSnapshot,
    /// Buyers holding an active order: `(user id, order id)`.
    pub buyers: Vec<(String, OrderId)>,
}

#[derive(Clone)]
pub struct Stock {
    conn: ConnectionManager,
    keys: Keys,
    scripts: Arc<Scripts>,
}

struct Scripts {
    reserve: Script,
    cancel: Script,
    claim: Script,
    warm: Script,
}

impl Stock {
    /// Connects (failing fast when Redis is down) and loads every script once.
    pub async fn connect(settings: &RedisSettings) -> anyhow::Result<Self> {
        let client = redis::Client::open(settings.url.expose_secret())?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(Duration::from_millis(settings.response_timeout_ms)))
            .set_connection_timeout(Some(Duration::from_millis(settings.connect_timeout_ms)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let mut conn = ConnectionManager::new_with_config(client, config).await?;
        let scripts = Scripts {
            reserve: Script::new(include_str!("lua/reserve.lua")),
            cancel: Script::new(include_str!("lua/cancel.lua")),
            claim: Script::new(include_str!("lua/claim.lua")),
            warm: Script::new(include_str!("lua/warm.lua")),
        };
        for script in [
            &scripts.reserve,
            &scripts.cancel,
            &scripts.claim,
            &scripts.warm,
        ] {
            script.load_async(&mut conn).await?;
        }
        Ok(Self {
            conn,
            keys: Keys::new(settings.key_prefix.clone()),
            scripts: Arc::new(scripts),
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Deletes a sale's counters, buyers and outbox. Only for a sale id PostgreSQL has just issued: any state
    /// under it belongs to an earlier database (reset without Redis) and would sell the wrong stock.
    pub async fn forget(&self, sale: SaleId) -> Result<bool, StockError> {
        let k = &self.keys;
        let deleted: i64 = self
            .conn
            .clone()
            .del(&[k.sale(sale), k.stock(sale), k.buyers(sale), k.outbox(sale)])
            .await?;
        Ok(deleted > 0)
    }

    /// SHA1 of the reservation script, for `EVALSHA` from outside (the benchmark of the cache's own ceiling).
    pub fn reserve_script_sha(&self) -> &str {
        self.scripts.reserve.get_hash()
    }

    /// The whole reservation decision in one EVALSHA.
    pub async fn reserve(
        &self,
        req: &ReserveRequest<'_>,
        limits: &RateLimits,
    ) -> Result<ReserveOutcome, StockError> {
        let k = &self.keys;
        let idem = req
            .idempotency_key
            .map(|key| k.idempotency(req.sale, req.user, key))
            .unwrap_or_default();
        let address = match (req.address, limits.address_per_sec) {
            (Some(addr), rate) if rate > 0 => k.address_rate(req.sale, addr),
            _ => String::new(),
        };
        let reply: Vec<String> = self
            .scripts
            .reserve
            .key(k.sale(req.sale))
            .key(k.stock(req.sale))
            .key(k.buyers(req.sale))
            .key(k.outbox(req.sale))
            .key(k.reservation(req.sale, req.order_id))
            .key(k.buyer_rate(req.sale, req.user))
            .key(idem)
            .key(address)
            .arg(req.order_id.to_string())
            .arg(req.user.as_str())
            .arg(req.quantity)
            .arg(limits.idempotency_ttl_secs)
            .arg(limits.buyer_per_sec)
            .arg(limits.buyer_burst)
            .arg(limits.address_per_sec)
            .arg(limits.address_burst)
            .invoke_async(&mut self.conn.clone())
            .await?;
        match reply.first().map(String::as_str) {
            Some("RESERVED") => Ok(ReserveOutcome::Reserved(
                reply::reservation(&reply).map_err(StockError::Reply)?,
            )),
            Some("REPLAYED") => Ok(ReserveOutcome::Replayed(
                reply::reservation(&reply).map_err(StockError::Reply)?,
            )),
            _ => Ok(ReserveOutcome::Refused(
                reply::refusal(&reply).map_err(StockError::Reply)?,
            )),
        }
    }

    /// Gives the units back after the broker definitely refused the message, unless a 202 was already given
    /// for this reservation or the relay claimed it (then a message may exist, and releasing could oversell).
    pub async fn cancel(
        &self,
        sale: SaleId,
        order: OrderId,
        user: &UserId,
        idempotency_key: Option<&str>,
    ) -> Result<CancelOutcome, StockError> {
        let k = &self.keys;
        let idem = idempotency_key
            .map(|key| k.idempotency(sale, user, key))
            .unwrap_or_default();
        let reply: String = self
            .scripts
            .cancel
            .key(k.reservation(sale, order))
            .key(k.stock(sale))
            .key(k.buyers(sale))
            .key(k.outbox(sale))
            .key(idem)
            .arg(order.to_string())
            .invoke_async(&mut self.conn.clone())
            .await?;
        match reply.as_str() {
            "RELEASED" => Ok(CancelOutcome::Released),
            "PROMISED" | "CLAIMED" => Ok(CancelOutcome::KeptForRelay),
            "NOT_HELD" => Ok(CancelOutcome::NotHeld),
            other => Err(StockError::Reply(format!("cancel answered {other:?}"))),
        }
    }

    /// Removes outbox entries whose message the broker confirmed.
    pub async fn confirmed(&self, sale: SaleId, orders: &[OrderId]) -> Result<(), StockError> {
        if orders.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = orders.iter().map(ToString::to_string).collect();
        let _: i64 = self.conn.clone().zrem(self.keys.outbox(sale), ids).await?;
        Ok(())
    }

    /// Claims outbox entries older than `age` for re-publishing.
    pub async fn claim_stale(
        &self,
        sale: SaleId,
        age: Duration,
        limit: usize,
    ) -> Result<Vec<OrderId>, StockError> {
        let ids: Vec<String> = self
            .scripts
            .claim
            .key(self.keys.outbox(sale))
            .arg(u64::try_from(age.as_millis()).unwrap_or(u64::MAX))
            .arg(limit)
            .invoke_async(&mut self.conn.clone())
            .await?;
        ids.iter()
            .map(|id| {
                id.parse()
                    .map_err(|_| StockError::Reply(format!("outbox holds {id:?}")))
            })
            .collect()
    }

    /// Reads reservations of one sale in one pipelined round trip; `None` where a record is gone.
    pub async fn reservations(
        &self,
        sale: SaleId,
        orders: &[OrderId],
    ) -> Result<Vec<Option<HeldReservation>>, StockError> {
        if orders.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for order in orders {
            pipe.hgetall(self.keys.reservation(sale, *order));
        }
        let rows: Vec<HashMap<String, String>> = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(orders
            .iter()
            .zip(rows)
            .map(|(order, row)| held_from(sale, *order, &row))
            .collect())
    }

    /// Sale ids warmed into this Redis (prefix).
    pub async fn sale_ids(&self) -> Result<Vec<SaleId>, StockError> {
        let raw: Vec<i64> = self.conn.clone().smembers(self.keys.sales_index()).await?;
        let mut ids: Vec<SaleId> = raw
            .into_iter()
            .filter_map(|id| SaleId::new(id).ok())
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// The sale's live state; `None` when Redis holds no state for it.
    pub async fn snapshot(&self, sale: SaleId) -> Result<Option<SaleSnapshot>, StockError> {
        let (fields, remaining): (HashMap<String, String>, Option<i64>) = redis::pipe()
            .hgetall(self.keys.sale(sale))
            .get(self.keys.stock(sale))
            .query_async(&mut self.conn.clone())
            .await?;
        let Some(remaining) = remaining else {
            return Ok(None);
        };
        if fields.is_empty() {
            return Ok(None);
        }
        snapshot_from(sale, &fields, remaining)
            .map(Some)
            .map_err(StockError::Reply)
    }

    /// Makes a sale live if Redis holds no state for it. Returns whether it warmed.
    ///
    /// Buyers are written first, then the sale itself (atomically, only if absent), so the per-buyer limit is
    /// in force from the moment the sale accepts reservations.
    pub async fn warm(&self, w: &SaleWarmup) -> Result<bool, StockError> {
        let s = &w.snapshot;
        let mut conn = self.conn.clone();
        for chunk in w.buyers.chunks(1000) {
            let pairs: Vec<(String, String)> = chunk
                .iter()
                .map(|(user, order)| (user.clone(), order.to_string()))
                .collect();
            let _: () = conn.hset_multiple(self.keys.buyers(s.sale), &pairs).await?;
        }
        let warmed: i64 = self
            .scripts
            .warm
            .key(self.keys.sale(s.sale))
            .key(self.keys.stock(s.sale))
            .arg(s.remaining)
            .arg(&[
                ("sale_id", s.sale.get().to_string()),
                ("product_name", s.product_name.clone()),
                ("price_minor", s.price.minor().to_string()),
                ("total_stock", s.total_stock.to_string()),
                ("per_user_limit", s.per_user_limit.to_string()),
                ("window_secs", s.payment_window_secs.to_string()),
                ("starts_ms", s.starts_at.timestamp_millis().to_string()),
                ("ends_ms", s.ends_at.timestamp_millis().to_string()),
                ("sold", s.sold.to_string()),
            ])
            .invoke_async(&mut conn)
            .await?;
        let _: i64 = conn.sadd(self.keys.sales_index(), s.sale.get()).await?;
        Ok(warmed == 1)
    }

    /// Finds a reservation by order id among the given sales (one pipelined round trip). Used only while the
    /// order row is not yet written, so a fresh order never answers 404.
    pub async fn find_reservation(
        &self,
        order: OrderId,
        sales: &[SaleId],
    ) -> Result<Option<HeldReservation>, StockError> {
        if sales.is_empty() {
            return Ok(None);
        }
        let mut pipe = redis::pipe();
        for sale in sales {
            pipe.hgetall(self.keys.reservation(*sale, order));
        }
        let rows: Vec<HashMap<String, String>> = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(sales
            .iter()
            .zip(rows)
            .find_map(|(sale, row)| held_from(*sale, order, &row)))
    }

    /// The buyer's reservations in the given sales, as Redis holds them.
    pub async fn reservations_of_buyer(
        &self,
        user: &UserId,
        sales: &[SaleId],
    ) -> Result<Vec<HeldReservation>, StockError> {
        if sales.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for sale in sales {
            pipe.hget(self.keys.buyers(*sale), user.as_str());
        }
        let held: Vec<Option<String>> = pipe.query_async(&mut self.conn.clone()).await?;
        let mut found = Vec::new();
        for (sale, order) in sales.iter().zip(held) {
            if let Some(order) = order.and_then(|o| o.parse::<OrderId>().ok())
                && let Some(Some(r)) = self.reservations(*sale, &[order]).await?.pop()
            {
                found.push(r);
            }
        }
        Ok(found)
    }

    /// Readiness: runs the reservation script's cheap path (a sale that cannot exist), which proves the
    /// connection and the script cache, not just PING.
    pub async fn probe(&self) -> Result<(), StockError> {
        let probe_sale = SaleId::new(i64::MAX).map_err(|e| StockError::Reply(e.to_string()))?;
        let probe_user =
            UserId::parse("readiness-probe").map_err(|e| StockError::Reply(e.to_string()))?;
        let req = ReserveRequest {
            sale: probe_sale,
            order_id: OrderId::new_v7(),
            user: &probe_user,
            quantity: 1,
            idempotency_key: None,
            address: None,
        };
        let limits = RateLimits {
            buyer_per_sec: 1,
            buyer_burst: 1,
            address_per_sec: 0,
            address_burst: 0,
            idempotency_ttl_secs: 1,
        };
        match self.reserve(&req, &limits).await? {
            ReserveOutcome::Refused(Refusal::SaleStateMissing) => Ok(()),
            other => Err(StockError::Reply(format!(
                "probe sale unexpectedly answered {other:?}"
            ))),
        }
    }
}

fn held_from(
    sale: SaleId,
    order: OrderId,
    row: &HashMap<String, String>,
) -> Option<HeldReservation> {
    let get = |name: &str| row.get(name);
    Some(HeldReservation {
        order_id: order,
        sale,
        user: UserId::parse(get("user")?.clone()).ok()?,
        quantity: get("qty")?.parse().ok()?,
        amount: Money::from_minor(get("amount")?.parse().ok()?),
        created_at: reply::millis(get("created_ms")?.parse().ok()?).ok()?,
        expires_at: reply::millis(get("expires_ms")?.parse().ok()?).ok()?,
        state: get("state")?.clone(),
    })
}

fn snapshot_from(
    sale: SaleId,
    f: &HashMap<String, String>,
    remaining: i64,
) -> Result<SaleSnapshot, String> {
    fn num<T: std::str::FromStr>(f: &HashMap<String, String>, name: &str) -> Result<T, String> {
        f.get(name)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("sale hash field {name} missing or malformed"))
    }
    Ok(SaleSnapshot {
        sale,
        product_name: f.get("product_name").cloned().unwrap_or_default(),
        price: Money::from_minor(num(f, "price_minor")?),
        total_stock: num(f, "total_stock")?,
        per_user_limit: num(f, "per_user_limit")?,
        payment_window_secs: num(f, "window_secs")?,
        starts_at: reply::millis(num(f, "starts_ms")?)?,
        ends_at: reply::millis(num(f, "ends_ms")?)?,
        remaining,
        sold: num(f, "sold")?,
    })
}
