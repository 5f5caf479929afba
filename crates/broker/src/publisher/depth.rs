//! How many messages wait in a queue, for rules that must know whether anything is still in flight.

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;

impl super::Publisher {
    /// Ready messages in `queue` (a passive declare on a short-lived channel, so a missing queue closes that
    /// channel, never the publishing one). Deliveries a consumer holds unacknowledged are not counted.
    pub async fn queue_depth(&self, queue: &str) -> anyhow::Result<u32> {
        let link = self
            .inner
            .current()
            .ok_or_else(|| anyhow::anyhow!("RabbitMQ is not connected"))?;
        let ch = link.conn.create_channel().await?;
        let declared = ch
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await;
        let _ = ch.close(200, "inspected".into()).await;
        Ok(declared?.message_count())
    }
}
