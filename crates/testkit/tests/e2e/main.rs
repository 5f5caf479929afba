//! The end-to-end suite: every test runs against the real PostgreSQL, Redis and RabbitMQ, in its own schema,
//! key prefix and queue prefix. One binary, so the suite links once.

mod breakers;
mod broker;
mod browsers;
mod config;
mod edge;
mod expiry;
mod faults;
mod group_commit;
mod health;
mod lifecycle;
mod limits;
mod loadtest;
mod lookups;
mod lost_sale;
mod openapi;
mod order_writer;
mod orders;
mod payment;
mod poison;
mod redis_state;
mod refusals;
mod rejected;
mod reservations;
mod settlement;
mod shards;
mod sold_out;
mod sse;
mod sse_list;
mod storefront;
mod timeouts;
