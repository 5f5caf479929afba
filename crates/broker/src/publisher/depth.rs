//! How many messages wait in a queue, for rules that must know whether anything is still in flight.

impl super::Publisher {
    /// Ready messages in `queue`, asked on a short-lived channel of the publisher's connection, so a missing
    /// queue closes that channel, never the publishing one. Deliveries a consumer holds unacknowledged are
    /// not counted.
    pub async fn queue_depth(&self, queue: &str) -> anyhow::Result<u32> {
        let link = self
            .inner
            .current()
            .ok_or_else(|| anyhow::anyhow!("RabbitMQ is not connected"))?;
        let ch = link.conn.create_channel().await?;
        let depth = crate::depth::queue_depth(&ch, queue).await;
        let _ = ch.close(200, "inspected".into()).await;
        Ok(depth?)
    }
}
