//! `TestEnv`: one test's isolated slice of the real services.
//!
//! - PostgreSQL: a schema `t<unix secs>_<random>` in the database `flashsale_test` (created if missing), carried in
//!   the URL as `options=--search_path=<schema>`, migrated like production.
//! - Redis: the key prefix `<schema>:`; RabbitMQ: the name prefix `<schema>.`, with expiring queues and
//!   auto-deleted exchanges, so the broker cleans up after the test by itself.
//! - `cleanup()` drops the schema and unlinks the keys; each new environment also sweeps what tests older than
//!   an hour left behind (a test that panicked never reaches its cleanup).
//!
//! Environment: `FLASHSALE_TEST_PG` (admin URL, default `postgres://postgres@127.0.0.1:5432`),
//! `FLASHSALE_TEST_REDIS` (default `redis://127.0.0.1:6379`), `FLASHSALE_TEST_AMQP` (default local guest).

use anyhow::Context;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use flashsale_domain::SaleId;
use flashsale_platform::Settings;
use flashsale_stock::Stock;
use jsonwebtoken::{EncodingKey, Header, encode};
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::OnceCell;

const TEST_DATABASE: &str = "flashsale_test";
const STALE_AFTER_SECS: u64 = 3600;

fn var(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

pub struct TestEnv {
    pub name: String,
    pub settings: Settings,
    pub stock: Stock,
    pg_url: String,
}

/// What a test wants of a sale; `Default` is an active sale of 10 units, limit 1, 60 s window.
#[derive(Debug, Clone)]
pub struct SaleSpec {
    pub stock: i64,
    pub per_user_limit: i64,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub payment_window_secs: i64,
    pub price: &'static str,
}

impl Default for SaleSpec {
    fn default() -> Self {
        let now = Utc::now();
        Self {
            stock: 10,
            per_user_limit: 1,
            starts_at: now - ChronoDuration::minutes(1),
            ends_at: now + ChronoDuration::hours(1),
            payment_window_secs: 60,
            price: "2990.00",
        }
    }
}

impl SaleSpec {
    pub fn stock(stock: i64) -> Self {
        Self {
            stock,
            ..Self::default()
        }
    }

    pub fn body(&self) -> Value {
        json!({
            "product_name": "Test phone",
            "price": self.price,
            "stock": self.stock,
            "per_user_limit": self.per_user_limit,
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "payment_window_secs": self.payment_window_secs,
        })
    }
}

static SETUP: OnceCell<()> = OnceCell::const_new();

impl TestEnv {
    pub async fn new() -> Self {
        Self::with(|_| {}).await
    }

    /// A fresh environment whose settings `adjust` may change before anything connects.
    pub async fn with(adjust: impl FnOnce(&mut Settings)) -> Self {
        match Self::try_with(adjust).await {
            Ok(env) => env,
            Err(e) => panic!(
                "cannot set up the test environment (are PostgreSQL, Redis and RabbitMQ running? `make services`): {e:#}"
            ),
        }
    }

    async fn try_with(adjust: impl FnOnce(&mut Settings)) -> anyhow::Result<Self> {
        let admin = var("FLASHSALE_TEST_PG", "postgres://postgres@127.0.0.1:5432");
        SETUP
            .get_or_try_init(|| async {
                ensure_database(&admin).await?;
                sweep_stale(&admin).await
            })
            .await?;

        let secs = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let name = format!("t{secs}_{:06x}", rand::rng().random_range(0..0xff_ffff));
        let db = format!("{admin}/{TEST_DATABASE}");
        let mut conn = AsyncPgConnection::establish(&db).await?;
        diesel::sql_query(format!("CREATE SCHEMA {name}"))
            .execute(&mut conn)
            .await?;
        let pg_url = format!("{db}?options=--search_path%3D{name}");

        let mut s = Settings::defaults()?;
        // Tests run on the development secrets of config/default.toml, which only development mode allows.
        s.dev = true;
        s.postgres.url = SecretString::from(pg_url.clone());
        s.postgres.pool_size = 8;
        s.redis.url = SecretString::from(var("FLASHSALE_TEST_REDIS", "redis://127.0.0.1:6379"));
        s.redis.key_prefix = format!("{name}:");
        s.amqp.url = SecretString::from(var(
            "FLASHSALE_TEST_AMQP",
            "amqp://guest:guest@127.0.0.1:5672/%2f",
        ));
        s.amqp.prefix = format!("{name}.");
        // Cleanup deletes the queues; expiry is the backstop for tests that panicked. Quorum queues hold file
        // descriptors in the broker, so leftovers must not pile up.
        s.amqp.queue_expires_ms = 120_000;
        s.amqp.confirm_timeout_ms = 1000;
        s.amqp.reconnect_min_ms = 50;
        s.amqp.reconnect_max_ms = 400;
        s.outbox.relay_interval_ms = 200;
        s.outbox.relay_age_ms = 1500;
        s.gateway.listen = "127.0.0.1:0".into();
        s.gateway.workers = 2;
        s.gateway.warm_interval_ms = 500;
        s.order_writer.listen = "127.0.0.1:0".into();
        s.telemetry.log_level = "warn".into();
        if let Ok(filter) = std::env::var("FLASHSALE_TEST_LOG") {
            s.telemetry.log_level = filter;
            flashsale_platform::telemetry::init("test", &s.telemetry);
        }
        adjust(&mut s);
        s.validate()?;

        flashsale_store::migrate(&pg_url).await?;
        let stock = Stock::connect(&s.redis).await?;
        Ok(Self {
            name,
            settings: s,
            stock,
            pg_url,
        })
    }

    pub async fn pg(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.pg_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test schema: {e}"))
    }

    pub fn redis(&self) -> redis::Client {
        redis::Client::open(self.settings.redis.url.expose_secret())
            .unwrap_or_else(|e| panic!("bad redis url: {e}"))
    }

    /// A buyer's JWT, valid for an hour.
    pub fn token(&self, user: &str) -> String {
        self.token_expiring(user, Utc::now() + ChronoDuration::hours(1))
    }

    pub fn token_expiring(&self, user: &str, exp: DateTime<Utc>) -> String {
        self.token_signed(user, exp, self.settings.auth.jwt_secret.expose_secret())
    }

    pub fn token_signed(&self, user: &str, exp: DateTime<Utc>, secret: &str) -> String {
        encode(
            &Header::default(),
            &json!({ "sub": user, "exp": exp.timestamp() }),
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap_or_else(|e| panic!("cannot sign a token: {e}"))
    }

    pub fn admin_token(&self) -> String {
        self.settings.auth.admin_token.expose_secret().to_owned()
    }

    /// Units Redis says are left (`None` when the sale has no state there).
    pub async fn remaining(&self, sale: SaleId) -> Option<i64> {
        let mut conn = self
            .redis()
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|e| panic!("redis: {e}"));
        redis::AsyncCommands::get(&mut conn, self.stock.keys().stock(sale))
            .await
            .unwrap_or_else(|e| panic!("redis: {e}"))
    }

    /// Entries waiting in the sale's outbox.
    pub async fn outbox_len(&self, sale: SaleId) -> usize {
        let mut conn = self
            .redis()
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|e| panic!("redis: {e}"));
        redis::AsyncCommands::zcard(&mut conn, self.stock.keys().outbox(sale))
            .await
            .unwrap_or_else(|e| panic!("redis: {e}"))
    }

    pub async fn order_count(&self, sale: SaleId) -> i64 {
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let mut conn = self.pg().await;
        diesel::sql_query("SELECT count(*) AS n FROM orders WHERE sale_id = $1")
            .bind::<BigInt, _>(sale.get())
            .get_result::<N>(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("counting orders: {e}"))
            .n
    }

    /// `(order id, user id, status)` of every order row of a sale.
    pub async fn orders(&self, sale: SaleId) -> Vec<(String, String, String)> {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = Text)]
            id: String,
            #[diesel(sql_type = Text)]
            user_id: String,
            #[diesel(sql_type = Text)]
            status: String,
        }
        let mut conn = self.pg().await;
        diesel::sql_query(
            "SELECT id::text AS id, user_id, status FROM orders WHERE sale_id = $1 ORDER BY id",
        )
        .bind::<BigInt, _>(sale.get())
        .load::<Row>(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("listing orders: {e}"))
        .into_iter()
        .map(|r| (r.id, r.user_id, r.status))
        .collect()
    }

    /// The database's count of units held by active orders.
    pub async fn held(&self, sale: SaleId) -> i64 {
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = BigInt)]
            held: i64,
        }
        let mut conn = self.pg().await;
        diesel::sql_query("SELECT held FROM sales WHERE id = $1")
            .bind::<BigInt, _>(sale.get())
            .get_result::<N>(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("reading held: {e}"))
            .held
    }

    pub async fn sale_rows(&self) -> i64 {
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let mut conn = self.pg().await;
        diesel::sql_query("SELECT count(*) AS n FROM sales")
            .get_result::<N>(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("counting sales: {e}"))
            .n
    }

    /// Deletes the queues and exchanges, drops the schema and unlinks the Redis keys.
    pub async fn cleanup(self) {
        if let Err(e) = tokio::time::timeout(Duration::from_secs(10), self.delete_topology()).await
        {
            tracing::warn!(error = %e, env = %self.name, "deleting test queues timed out; they expire by themselves");
        }
        let dropped = tokio::time::timeout(Duration::from_secs(20), drop_env(&self.name))
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("timed out")));
        if let Err(e) = dropped {
            tracing::warn!(error = %e, env = %self.name, "test cleanup failed; the next sweep retries");
        }
    }
}

impl TestEnv {
    async fn delete_topology(&self) {
        #[derive(QueryableByName)]
        struct W {
            #[diesel(sql_type = diesel::sql_types::Integer)]
            w: i32,
        }
        let windows: Vec<i32> =
            diesel::sql_query("SELECT DISTINCT payment_window_secs AS w FROM sales")
                .load::<W>(&mut self.pg().await)
                .await
                .map(|rows| rows.into_iter().map(|r| r.w).collect())
                .unwrap_or_default();
        let names = flashsale_broker::Names::new(&self.settings.amqp.prefix);
        let Ok(conn) = flashsale_broker::connect(&self.settings.amqp, "test-cleanup").await else {
            return;
        };
        let Ok(ch) = conn.create_channel().await else {
            return;
        };
        flashsale_broker::topology::delete(
            &ch,
            &names,
            windows.into_iter().filter_map(|w| u32::try_from(w).ok()),
        )
        .await;
        let _ = conn.close(200, "test done".into()).await;
    }
}

async fn ensure_database(admin: &str) -> anyhow::Result<()> {
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let mut conn = AsyncPgConnection::establish(&format!("{admin}/postgres"))
        .await
        .context("connecting to PostgreSQL")?;
    let exists = diesel::sql_query("SELECT count(*) AS n FROM pg_database WHERE datname = $1")
        .bind::<Text, _>(TEST_DATABASE)
        .get_result::<N>(&mut conn)
        .await?
        .n
        > 0;
    if !exists {
        // Parallel test processes may race here; losing the race is fine.
        let _ = diesel::sql_query(format!("CREATE DATABASE {TEST_DATABASE}"))
            .execute(&mut conn)
            .await;
    }
    Ok(())
}

/// Removes schemas and Redis keys of environments older than an hour.
async fn sweep_stale(admin: &str) -> anyhow::Result<()> {
    #[derive(QueryableByName)]
    struct Name {
        #[diesel(sql_type = Text)]
        nspname: String,
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let is_stale = |name: &str| {
        name.strip_prefix('t')
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse::<u64>().ok())
            .is_some_and(|secs| secs + STALE_AFTER_SECS < now)
    };
    let mut conn = AsyncPgConnection::establish(&format!("{admin}/{TEST_DATABASE}")).await?;
    let schemas = diesel::sql_query("SELECT nspname FROM pg_namespace WHERE nspname ~ '^t[0-9]+_'")
        .load::<Name>(&mut conn)
        .await?;
    for schema in schemas.iter().filter(|s| is_stale(&s.nspname)) {
        let _ = diesel::sql_query(format!("DROP SCHEMA IF EXISTS {} CASCADE", schema.nspname))
            .execute(&mut conn)
            .await;
    }
    let client = redis::Client::open(var("FLASHSALE_TEST_REDIS", "redis://127.0.0.1:6379"))?;
    let mut redis = client.get_multiplexed_async_connection().await?;
    let stale: Vec<String> = scan(&mut redis, "t*_*")
        .await?
        .into_iter()
        .filter(|key| is_stale(key))
        .collect();
    for chunk in stale.chunks(500) {
        let _: () = redis::cmd("UNLINK")
            .arg(chunk)
            .query_async(&mut redis)
            .await?;
    }
    Ok(())
}

/// Every key matching `pattern`, with an explicit SCAN cursor loop.
async fn scan(
    redis: &mut redis::aio::MultiplexedConnection,
    pattern: &str,
) -> anyhow::Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(redis)
            .await?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

async fn drop_env(name: &str) -> anyhow::Result<()> {
    let admin = var("FLASHSALE_TEST_PG", "postgres://postgres@127.0.0.1:5432");
    let mut conn = AsyncPgConnection::establish(&format!("{admin}/{TEST_DATABASE}")).await?;
    diesel::sql_query(format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
        .execute(&mut conn)
        .await?;
    let client = redis::Client::open(var("FLASHSALE_TEST_REDIS", "redis://127.0.0.1:6379"))?;
    let mut redis = client.get_multiplexed_async_connection().await?;
    let keys = scan(&mut redis, &format!("{name}:*")).await?;
    for chunk in keys.chunks(500) {
        let _: () = redis::cmd("UNLINK")
            .arg(chunk)
            .query_async(&mut redis)
            .await?;
    }
    Ok(())
}

/// How long tests wait for queues to drain.
pub const DRAIN: Duration = Duration::from_secs(20);
