//! The end-to-end suite: every test runs against the real PostgreSQL, Redis and RabbitMQ, in its own schema,
//! key prefix and queue prefix. One binary, so the suite links once.

mod faults;
mod health;
mod loadtest;
mod order_writer;
mod orders;
mod poison;
mod refusals;
mod reservations;
