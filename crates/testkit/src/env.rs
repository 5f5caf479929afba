//! `TestEnv`: one test's isolated slice of the real services.
//!
//! - PostgreSQL: a schema `t<unix secs>_<random>` in the database `flashsale_test`, carried in the URL as
//!   `options=--search_path=<schema>`, migrated like production.
//! - Redis: the key prefix `<schema>:`; RabbitMQ: the name prefix `<schema>.`, with expiring queues and
//!   auto-deleted exchanges as a backstop.
//! - `cleanup()` stops the services the test started (in-process and processes), then deletes the queues and
//!   exchanges, drops the schema and unlinks the keys (`teardown`). A test that panics, or forgets to call
//!   `cleanup()`, gets the same teardown from `Drop`, run on a thread of its own. `FLASHSALE_TEST_KEEP=1` keeps
//!   the slice of a test that did not clean up, to look at it after a failure.
//! - The database is prepared once per run by the nextest setup script, or else by the first environment of
//!   each test process (`prepare`).
//!
//! Environment: `FLASHSALE_TEST_PG` (admin URL, default `postgres://postgres@127.0.0.1:5432`),
//! `FLASHSALE_TEST_REDIS` (default `redis://127.0.0.1:6379`), `FLASHSALE_TEST_AMQP` (default local guest).

use crate::prepare::{TEST_DATABASE, admin_url, prepared_by_runner, redis_url, var};
use crate::teardown::Teardown;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use flashsale_platform::Settings;
use flashsale_stock::Stock;
use jsonwebtoken::{EncodingKey, Header, encode};
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::OnceCell;

pub struct TestEnv {
    pub name: String,
    pub settings: Settings,
    pub stock: Stock,
    pub(crate) pg_url: String,
    /// Set once `cleanup()` ran, so `Drop` has nothing left to do.
    cleaned: bool,
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
    pub stock_shards: i64,
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
            stock_shards: 1,
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
            "stock_shards": self.stock_shards,
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
        if !prepared_by_runner() {
            SETUP.get_or_try_init(crate::prepare::prepare).await?;
        }
        let admin = admin_url();

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
        s.redis.url = SecretString::from(redis_url());
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
        // Well inside the teardown's wait for the services, so cleanup never deletes under a live service.
        s.gateway.shutdown_grace_ms = 5000;
        s.order_writer.shutdown_grace_ms = 5000;
        // Services stop at once: a test that checks the readiness delay sets its own.
        s.gateway.shutdown_delay_ms = 0;
        s.order_writer.shutdown_delay_ms = 0;
        s.payment.shutdown_delay_ms = 0;
        s.expiry.shutdown_delay_ms = 0;
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
            cleaned: false,
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

    /// Stops the services started from this environment's settings and waits for them, then deletes the
    /// queues and exchanges, drops the schema and unlinks the Redis keys.
    pub async fn cleanup(mut self) {
        self.cleaned = true;
        self.teardown().run(true).await;
    }

    fn teardown(&self) -> Teardown {
        Teardown {
            name: self.name.clone(),
            pg_url: self.pg_url.clone(),
            amqp: self.settings.amqp.clone(),
        }
    }
}

/// The guard: a test that panicked (or returned without `cleanup()`) still leaves nothing behind.
impl Drop for TestEnv {
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        if var("FLASHSALE_TEST_KEEP", "0") == "1" {
            tracing::warn!(env = %self.name, "FLASHSALE_TEST_KEEP=1: keeping the schema, keys and queues");
            return;
        }
        self.teardown().run_on_own_thread();
    }
}

/// How long tests wait for queues to drain.
pub const DRAIN: Duration = Duration::from_secs(20);
