//! The stable, machine-readable error codes of the API. Which HTTP status each one answers with is decided at
//! the edge (`flashsale_platform::http::status_of`), not here: the domain knows no transport.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    InvalidRequest,
    Unauthorized,
    InvalidSignature,
    NotFound,
    SaleNotFound,
    OrderNotFound,
    PaymentNotFound,
    MethodNotAllowed,
    SoldOut,
    LimitExceeded,
    SaleNotStarted,
    SaleEnded,
    OrderNotPayable,
    PayloadTooLarge,
    RateLimited,
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "INVALID_REQUEST",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::InvalidSignature => "INVALID_SIGNATURE",
            Self::NotFound => "NOT_FOUND",
            Self::SaleNotFound => "SALE_NOT_FOUND",
            Self::OrderNotFound => "ORDER_NOT_FOUND",
            Self::PaymentNotFound => "PAYMENT_NOT_FOUND",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::SoldOut => "SOLD_OUT",
            Self::LimitExceeded => "LIMIT_EXCEEDED",
            Self::SaleNotStarted => "SALE_NOT_STARTED",
            Self::SaleEnded => "SALE_ENDED",
            Self::OrderNotPayable => "ORDER_NOT_PAYABLE",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::RateLimited => "RATE_LIMITED",
            Self::Unavailable => "UNAVAILABLE",
            Self::Internal => "INTERNAL",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
