//! The life cycle of tests and services: a test leaves nothing behind (even when it panics), and the services
//! stop cleanly on SIGTERM, within their grace period, or lose nothing on SIGKILL, as real processes.

mod cleanup;
mod readiness;
mod signals;

const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
