//! The depth of one queue (the dead-letter queue) as a Prometheus gauge, refreshed periodically with a
//! passive declare: it reads the count and can create or change nothing. Runs on a connection of its own, so
//! a failed declare (the queue not there yet closes the channel) never disturbs a consumer's unacknowledged
//! deliveries.

use flashsale_platform::settings::AmqpSettings;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use prometheus::IntGauge;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Messages ready in `queue` (a passive declare; fails when the queue does not exist).
pub async fn queue_depth(ch: &Channel, queue: &str) -> lapin::Result<u32> {
    let q = ch
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok(q.message_count())
}

/// Sets `gauge` to the depth of `queue` every `every` until `shutdown`, reconnecting as needed. While the
/// broker cannot be asked, the gauge keeps its last value (the failure is logged).
pub async fn watch_depth(
    settings: AmqpSettings,
    role: String,
    queue: String,
    gauge: IntGauge,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut link: Option<(Connection, Channel)> = None;
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        if link
            .as_ref()
            .is_none_or(|(c, ch)| !c.status().connected() || !ch.status().connected())
        {
            link = open(&settings, &role, link.take()).await;
        }
        let Some((_, ch)) = &link else { continue };
        match queue_depth(ch, &queue).await {
            Ok(n) => gauge.set(n.into()),
            Err(error) => {
                tracing::warn!(%queue, %error, "cannot read the queue depth");
            }
        }
    }
    if let Some((conn, _)) = link {
        let _ = conn.close(200, "stopping".into()).await;
    }
}

/// A channel on the existing connection when it still works, otherwise on a new one.
async fn open(
    settings: &AmqpSettings,
    role: &str,
    old: Option<(Connection, Channel)>,
) -> Option<(Connection, Channel)> {
    let conn = match old {
        Some((conn, _)) if conn.status().connected() => conn,
        _ => match crate::connect(settings, role).await {
            Ok(conn) => conn,
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "queue depth probe cannot connect"
                );
                return None;
            }
        },
    };
    match conn.create_channel().await {
        Ok(ch) => Some((conn, ch)),
        Err(error) => {
            tracing::warn!(%error, "queue depth probe cannot open a channel");
            None
        }
    }
}
