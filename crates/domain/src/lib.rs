//! The language of flashsale: ids, money, sales, orders and the messages the services exchange.
//!
//! No I/O lives here, so every service and test can share these types without pulling in a driver.

pub mod batch;
pub mod error;
pub mod ids;
pub mod messages;
pub mod money;
#[cfg(feature = "openapi")]
mod openapi;
pub mod order;
pub mod reservation;
pub mod sale;

pub use batch::{RESERVATION_BATCH_TYPE, ReservationBatch};
pub use error::ErrorCode;
pub use ids::{OrderId, SaleId, UserId};
pub use messages::{
    OrderExpired, OrderPaid, PaymentRefundRequired, RejectCause, ReservationCreated,
    ReservationRejected,
};
pub use money::Money;
pub use order::OrderStatus;
pub use sale::{NewSale, Sale, SaleStatus};

#[cfg(test)]
mod fuzz;
