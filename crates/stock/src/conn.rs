//! The connection the scripts and reads go through: one Redis (`redis.mode = "single"`) or a Redis Cluster
//! (`"cluster"`, `redis.url` listing seed nodes, comma-separated). Both are multiplexed and cheap to clone.
//!
//! On a cluster the client (redis-rs `cluster-async`) routes every command by its first key's slot, follows
//! MOVED and ASK, refreshes the slot map after a failover and loads a script on every primary when one answers
//! NOSCRIPT. Every key of a sale carries the sale's hash tag, so each script and each per-sale pipeline lands
//! on one slot; nothing here routes by hand.
//!
//! A failover can leave a single-node connection open to a node that has become a read-only replica: every
//! write then fails with READONLY while the socket stays healthy, so `ConnectionManager` never reconnects. The
//! link replaces its connection when it sees READONLY, so the next command reaches whatever the URL points at
//! now. (A cluster client learns the new primary from the cluster itself.)

use flashsale_platform::settings::{RedisMode, RedisSettings, addresses};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A handle on the shared connection.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// The shared connection, replaced whole when a single node behind it turned read-only.
pub(crate) struct Link {
    /// One client per seed (one for a single node): Pub/Sub connects to the first that answers.
    seeds: Vec<redis::Client>,
    single: Option<ConnectionManagerConfig>,
    current: RwLock<Conn>,
    replacing: AtomicBool,
}

/// The seed URLs of `redis.url`, each checked, naming the setting when one is wrong.
fn seeds(settings: &RedisSettings) -> anyhow::Result<Vec<redis::Client>> {
    let urls = addresses(&settings.url);
    anyhow::ensure!(
        settings.mode == RedisMode::Cluster || urls.len() == 1,
        "redis.url lists {} addresses but redis.mode is \"single\": set redis.mode = \"cluster\" for a Redis Cluster",
        urls.len()
    );
    urls.iter()
        .map(|url| {
            redis::Client::open(*url).map_err(|e| anyhow::anyhow!("redis.url: {e} (in {url:?})"))
        })
        .collect()
}

impl Link {
    /// Connects, failing fast when Redis (every seed, on a cluster) is down.
    pub(crate) async fn connect(settings: &RedisSettings) -> anyhow::Result<Self> {
        let seeds = seeds(settings)?;
        let response = Duration::from_millis(settings.response_timeout_ms);
        let connect = Duration::from_millis(settings.connect_timeout_ms);
        let (conn, single) = match settings.mode {
            RedisMode::Single => {
                let config = ConnectionManagerConfig::new()
                    .set_response_timeout(Some(response))
                    .set_connection_timeout(Some(connect))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_millis(500));
                let conn =
                    ConnectionManager::new_with_config(seeds[0].clone(), config.clone()).await?;
                (Conn::Single(conn), Some(config))
            }
            RedisMode::Cluster => {
                let infos: Vec<_> = seeds
                    .iter()
                    .map(|c| c.get_connection_info().clone())
                    .collect();
                let client = ClusterClient::builder(infos)
                    .response_timeout(response)
                    .connection_timeout(connect)
                    // A failover takes the cluster's node timeout and an election: retries with backoff
                    // ride out MOVED and TRYAGAIN while the slot map catches up, within the response timeout.
                    .retries(3)
                    .build()?;
                (Conn::Cluster(client.get_async_connection().await?), None)
            }
        };
        Ok(Self {
            seeds,
            single,
            current: RwLock::new(conn),
            replacing: AtomicBool::new(false),
        })
    }

    pub(crate) fn conn(&self) -> Conn {
        match self.current.read() {
            Ok(conn) => conn.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// A dedicated connection for Pub/Sub, to the first seed that answers. On a cluster, a message published
    /// on any node reaches subscribers on every node, so one node is enough; when it dies the subscription
    /// ends and the caller subscribes again (through the next seed).
    pub(crate) async fn pubsub(&self) -> redis::RedisResult<redis::aio::PubSub> {
        let mut last = None;
        for seed in &self.seeds {
            match seed.get_async_pubsub().await {
                Ok(pubsub) => return Ok(pubsub),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| (redis::ErrorKind::Client, "no redis.url").into()))
    }

    /// After READONLY from a single node: a fresh connection, made lazily so that this never blocks the
    /// request that saw it. A cluster client needs no help.
    pub(crate) fn replace(&self) {
        let Some(config) = &self.single else { return };
        if self.replacing.swap(true, Ordering::AcqRel) {
            return;
        }
        match ConnectionManager::new_lazy_with_config(self.seeds[0].clone(), config.clone()) {
            Ok(fresh) => {
                tracing::warn!("Redis answered READONLY (failover?); reconnecting");
                if let Ok(mut current) = self.current.write() {
                    *current = Conn::Single(fresh);
                }
            }
            Err(error) => tracing::error!(%error, "cannot create a new Redis connection"),
        }
        self.replacing.store(false, Ordering::Release);
    }
}
