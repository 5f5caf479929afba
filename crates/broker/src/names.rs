//! Exchange and queue names. Every name starts with `amqp.prefix` (`flashsale.` by default) so tests and
//! tenants never see each other's messages.

#[derive(Debug, Clone)]
pub struct Names {
    prefix: String,
}

impl Names {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    fn name(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// Topic exchange every service publishes to.
    pub fn events_exchange(&self) -> String {
        self.name("events")
    }

    /// Fanout exchange of messages that cannot be processed.
    pub fn dead_exchange(&self) -> String {
        self.name("dead")
    }

    pub fn dead_queue(&self) -> String {
        self.name("dead")
    }

    pub fn order_writer_queue(&self) -> String {
        self.name("order-writer")
    }

    pub fn payment_queue(&self) -> String {
        self.name("payment")
    }

    /// `reservation.rejected`, consumed by the gateways, which clear the refused reservation from Redis.
    pub fn gateway_rejected_queue(&self) -> String {
        self.name("gateway.rejected")
    }

    /// Direct exchange the expiry wait queues dead-letter into when a reservation's window has passed.
    pub fn expiry_exchange(&self) -> String {
        self.name("expiry")
    }

    /// Holds `reservation.created` for exactly one payment window (a per-queue TTL), then dead-letters it.
    pub fn expiry_wait_queue(&self, payment_window_secs: u32) -> String {
        self.name(&format!("expiry.wait.{payment_window_secs}s"))
    }

    /// Reservations whose payment window has passed, consumed by the expiry service.
    pub fn expiry_due_queue(&self) -> String {
        self.name("expiry.due")
    }
}

/// Routing key the wait queues dead-letter with.
pub const EXPIRY_DUE_KEY: &str = "expiry.due";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_prefix() {
        let n = Names::new("flashsale.");
        assert_eq!(n.events_exchange(), "flashsale.events");
        assert_eq!(n.order_writer_queue(), "flashsale.order-writer");
        assert_eq!(n.dead_queue(), "flashsale.dead");
        assert_eq!(n.expiry_wait_queue(3600), "flashsale.expiry.wait.3600s");
    }
}
