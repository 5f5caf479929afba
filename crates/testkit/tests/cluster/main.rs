//! Tests on real local clusters (flashsale_testkit::clusters): each test starts a Redis Cluster or a
//! RabbitMQ cluster of its own, on ports of its own, and tears it down when dropped. `launchers` checks
//! the launchers themselves and needs no database; the others run the services on the clusters.

mod burst;
mod launchers;
mod rabbit_node;
mod redis_failover;
mod redis_race;
mod redis_shards;
mod replicas;
