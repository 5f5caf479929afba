//! PostgreSQL, the record of what was sold: schema, models, one function per query, the pool, migrations.
//!
//! Reads `postgres.url`, `postgres.pool_size`, `postgres.acquire_timeout_ms`, `postgres.statement_timeout_ms`,
//! `postgres.run_migrations`.

pub mod admission;
pub mod errors;
pub mod expiry;
pub mod models;
pub mod orders;
pub mod paying;
pub mod payments;
pub mod pool;
pub mod sales;
pub mod schema;

pub use diesel_async::pooled_connection::bb8::RunError as PoolError;
pub use pool::{Conn, PgPool, StoreError, connect, migrate, ping, writable};
