//! Test support: every test gets its own PostgreSQL schema, Redis key prefix and AMQP name prefix on the real
//! local services, so tests run in parallel without seeing each other's data. Services start in-process on
//! port 0 (or as real processes, to be SIGKILLed). Waiting is on conditions with a deadline, never on sleeps.

pub mod clusters;
pub mod env;
pub mod expiry;
mod inspect;
pub mod payment;
pub mod plans;
pub mod prepare;
pub mod process;
pub mod proxy;
pub mod queues;
pub mod redis_server;
pub mod services;
pub mod sse;
mod teardown;
pub mod wait;

pub use clusters::{RabbitCluster, RedisCluster};
pub use env::{SaleSpec, TestEnv};
pub use expiry::{ExpiryHandle, ExpiryProcess};
pub use payment::{EventProbe, PaymentClient, PaymentHandle, PaymentProcess};
pub use process::{GatewayProcess, OrderWriterProcess, ServiceProcess};
pub use proxy::TcpProxy;
pub use queues::QueueCounts;
pub use redis_server::LocalRedis;
pub use services::{GatewayClient, GatewayHandle, OrderWriterHandle, Reply, metrics_text};
pub use sse::{SseItem, SseStream};
pub use wait::eventually;
