//! The stock client: one shared multiplexed connection (`ConnectionManager` reconnects by itself after I/O
//! errors) and the Lua scripts, hashed once at start-up and run by SHA (`invoke_async` reloads a script on
//! NOSCRIPT, which happens after a Redis restart, failover or SCRIPT FLUSH).
//!
//! A failover can leave the connection open to a node that has become a read-only replica: every write then
//! fails with READONLY while the socket stays healthy, so `ConnectionManager` never reconnects. The client
//! replaces its connection when it sees READONLY, so the next command reaches whatever the URL points at now.

use crate::keys::Keys;
use flashsale_platform::settings::RedisSettings;
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::ExposeSecret;
use std::sync::atomic::{AtomicBool, Ordering};
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
}

pub(crate) struct Scripts {
    pub reserve: Script,
    pub cancel: Script,
    pub claim: Script,
    pub warm: Script,
    pub reject: Script,
    pub pay: Script,
    pub expire: Script,
}

/// The shared connection, replaced whole when the node behind it turned read-only.
pub(crate) struct Link {
    client: redis::Client,
    config: ConnectionManagerConfig,
    current: RwLock<ConnectionManager>,
    replacing: AtomicBool,
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
        let mut conn = ConnectionManager::new_with_config(client.clone(), config.clone()).await?;
        let scripts = Scripts {
            reserve: Script::new(include_str!("lua/reserve.lua")),
            cancel: Script::new(include_str!("lua/cancel.lua")),
            claim: Script::new(include_str!("lua/claim.lua")),
            warm: Script::new(include_str!("lua/warm.lua")),
            reject: Script::new(include_str!("lua/reject.lua")),
            pay: Script::new(include_str!("lua/pay.lua")),
            expire: Script::new(include_str!("lua/expire.lua")),
        };
        for script in [
            &scripts.reserve,
            &scripts.cancel,
            &scripts.claim,
            &scripts.warm,
            &scripts.reject,
            &scripts.pay,
            &scripts.expire,
        ] {
            script.load_async(&mut conn).await?;
        }
        Ok(Self {
            link: Arc::new(Link {
                client,
                config,
                current: RwLock::new(conn),
                replacing: AtomicBool::new(false),
            }),
            keys: Keys::new(settings.key_prefix.clone()),
            scripts: Arc::new(scripts),
            retention: Duration::from_secs(settings.retention_secs),
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// A handle on the shared connection (cheap: a clone of the multiplexed connection).
    pub(crate) fn conn(&self) -> ConnectionManager {
        match self.link.current.read() {
            Ok(conn) => conn.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// A dedicated connection for Pub/Sub (a subscribed connection can do nothing else).
    pub(crate) async fn pubsub(&self) -> redis::RedisResult<redis::aio::PubSub> {
        self.link.client.get_async_pubsub().await
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

impl Link {
    fn replace(&self) {
        if self.replacing.swap(true, Ordering::AcqRel) {
            return;
        }
        // Lazy: connects on first use, so this never blocks the request that saw READONLY.
        match ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone()) {
            Ok(fresh) => {
                tracing::warn!("Redis answered READONLY (failover?); reconnecting");
                if let Ok(mut current) = self.current.write() {
                    *current = fresh;
                }
            }
            Err(error) => tracing::error!(%error, "cannot create a new Redis connection"),
        }
        self.replacing.store(false, Ordering::Release);
    }
}
