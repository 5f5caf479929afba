//! The stock client: one shared multiplexed connection (to one Redis or a Redis Cluster, `conn.rs`) and the
//! Lua scripts, hashed once at start-up and run by SHA (`invoke_async` reloads a script on NOSCRIPT, which
//! happens after a Redis restart, failover or SCRIPT FLUSH).

use crate::conn::{Conn, Link};
use crate::keys::Keys;
use flashsale_domain::SaleId;
use flashsale_platform::settings::RedisSettings;
use redis::{FromRedisValue, Pipeline, Script};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StockError {
    /// Redis is unreachable, too slow or read-only: the caller answers 503 and nothing was promised.
    #[error("redis unavailable: {0}")]
    Unavailable(#[from] redis::RedisError),
    /// Redis answered something the scripts never return: a bug or a foreign writer.
    #[error("unexpected redis reply: {0}")]
    Reply(String),
}

#[derive(Clone)]
pub struct Stock {
    pub(crate) link: Arc<Link>,
    pub(crate) keys: Keys,
    pub(crate) scripts: Arc<Scripts>,
    /// How long a sale's keys outlive its last possible reservation (`redis.retention_secs`).
    pub(crate) retention: Duration,
    /// Each sale's stock shard count, fixed at its creation (`shards.rs`).
    pub(crate) shards: Arc<RwLock<HashMap<SaleId, u16>>>,
}

pub(crate) struct Scripts {
    pub reserve: Script,
    pub cancel: Script,
    pub claim: Script,
    pub warm: Script,
    pub reject: Script,
    pub pay: Script,
    pub expire: Script,
    pub lend: Script,
    pub receive: Script,
}

impl Stock {
    /// Connects (failing fast when Redis is down) and loads every script once.
    pub async fn connect(settings: &RedisSettings) -> anyhow::Result<Self> {
        let link = Link::connect(settings).await?;
        let mut conn = link.conn();
        let scripts = Scripts {
            reserve: Script::new(include_str!("lua/reserve.lua")),
            cancel: Script::new(include_str!("lua/cancel.lua")),
            claim: Script::new(include_str!("lua/claim.lua")),
            warm: Script::new(include_str!("lua/warm.lua")),
            reject: Script::new(include_str!("lua/reject.lua")),
            pay: Script::new(include_str!("lua/pay.lua")),
            expire: Script::new(include_str!("lua/expire.lua")),
            lend: Script::new(include_str!("lua/lend.lua")),
            receive: Script::new(include_str!("lua/receive.lua")),
        };
        for script in [
            &scripts.reserve,
            &scripts.cancel,
            &scripts.claim,
            &scripts.warm,
            &scripts.reject,
            &scripts.pay,
            &scripts.expire,
            &scripts.lend,
            &scripts.receive,
        ] {
            script.load_async(&mut conn).await?;
        }
        Ok(Self {
            link: Arc::new(link),
            keys: Keys::new(settings.key_prefix.clone()),
            scripts: Arc::new(scripts),
            retention: Duration::from_secs(settings.retention_secs),
            shards: Arc::default(),
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// A handle on the shared connection (cheap: a clone of the multiplexed connection).
    pub(crate) fn conn(&self) -> Conn {
        self.link.conn()
    }

    /// A dedicated connection for Pub/Sub (a subscribed connection can do nothing else).
    pub(crate) async fn pubsub(&self) -> redis::RedisResult<redis::aio::PubSub> {
        self.link.pubsub().await
    }

    /// One pipeline per key group (a sale or one stock shard of it, `build`), sent together: on one Redis the
    /// multiplexed connection writes them back to back (one round trip); on a cluster each goes to its group's
    /// primary, since a pipeline may not span slots. Answers each pipeline's reply, in the order of `groups`.
    pub(crate) async fn per_group<G: Copy, T: FromRedisValue>(
        &self,
        groups: &[G],
        build: impl Fn(G) -> Pipeline,
    ) -> Result<Vec<T>, StockError> {
        let calls = groups.iter().map(|group| {
            let pipe = build(*group);
            let mut conn = self.conn();
            async move { pipe.query_async::<T>(&mut conn).await }
        });
        futures_util::future::join_all(calls)
            .await
            .into_iter()
            .map(|reply| self.checked(reply))
            .collect()
    }

    /// Passes a command's result through, replacing the connection first if Redis said READONLY.
    pub(crate) fn checked<T>(&self, result: redis::RedisResult<T>) -> Result<T, StockError> {
        result.map_err(|e| {
            if is_read_only(&e) {
                self.link.replace();
            }
            StockError::Unavailable(e)
        })
    }
}

/// READONLY, also when a script's write hit a replica (then the code is wrapped in the script error).
fn is_read_only(e: &redis::RedisError) -> bool {
    e.code() == Some("READONLY") || e.to_string().contains("READONLY")
}
