//! What the broker holds in a queue, unacknowledged deliveries included. AMQP itself only tells the ready
//! count, so this asks `rabbitmqctl` (the server's own CLI, on the machine that runs RabbitMQ for the tests).

use crate::env::TestEnv;
use secrecy::ExposeSecret;
use serde::Deserialize;

/// One queue as the broker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct QueueCounts {
    /// Waiting for a consumer.
    #[serde(rename = "messages_ready")]
    pub ready: u64,
    /// Delivered to a consumer and not yet acknowledged (or rejected).
    #[serde(rename = "messages_unacknowledged")]
    pub unacked: u64,
    pub consumers: u64,
}

#[derive(Deserialize)]
struct Row {
    name: String,
    #[serde(flatten)]
    counts: QueueCounts,
}

impl TestEnv {
    /// The counts of one of this test's queues (`queue` is its full name, e.g. from `Names`).
    pub async fn queue_counts(&self, queue: &str) -> QueueCounts {
        let vhost = vhost_of(self.settings.amqp.url.expose_secret());
        let out = tokio::process::Command::new("rabbitmqctl")
            .args(["list_queues", "--quiet", "--formatter", "json", "-p"])
            .arg(&vhost)
            .args([
                "name",
                "messages_ready",
                "messages_unacknowledged",
                "consumers",
            ])
            .output()
            .await
            .unwrap_or_else(|e| {
                panic!("cannot run rabbitmqctl (RabbitMQ's CLI, needed to count unacknowledged deliveries): {e}")
            });
        assert!(
            out.status.success(),
            "rabbitmqctl list_queues failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rows: Vec<Row> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "rabbitmqctl's JSON: {e}: {}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        rows.into_iter()
            .find(|r| r.name == queue)
            .map(|r| r.counts)
            .unwrap_or_else(|| panic!("no queue {queue} in vhost {vhost}"))
    }
}

/// The vhost of an AMQP URL: its path, percent-decoded (`/%2f` is `/`); `/` when there is none.
fn vhost_of(url: &str) -> String {
    let after_host = url.split_once("://").map_or(url, |(_, rest)| rest);
    match after_host.split_once('/') {
        Some((_, path)) if !path.is_empty() => path
            .split('?')
            .next()
            .unwrap_or_default()
            .replace("%2f", "/")
            .replace("%2F", "/"),
        _ => "/".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::vhost_of;

    #[test]
    fn vhosts_are_read_from_the_url_path() {
        assert_eq!(vhost_of("amqp://guest:guest@127.0.0.1:5672/%2f"), "/");
        assert_eq!(vhost_of("amqp://guest:guest@127.0.0.1:5672"), "/");
        assert_eq!(vhost_of("amqp://u:p@h:5672/shop?heartbeat=10"), "shop");
    }
}
