//! The HTTP error boundary of every flashsale HTTP service (gateway, payment). Every failure leaves as `{"error": {"code", "message"}}` with the status its code
//! prescribes; dependency failures are 503 with Retry-After; a 500 body says only "internal error" and the
//! cause goes to the log, once, here.

pub mod cors;
pub mod openapi;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use flashsale_domain::{ErrorCode, OrderId};
use flashsale_platform::http::{error_response, status_of};
use flashsale_stock::StockError;
use flashsale_store::StoreError;
use std::borrow::Cow;
use std::fmt;

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: Cow<'static, str>,
    /// LIMIT_EXCEEDED names the order the buyer already holds.
    pub order_id: Option<OrderId>,
    /// Seconds, for 429 and 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        let retry_after = match code {
            ErrorCode::Unavailable | ErrorCode::RateLimited => Some(1),
            _ => None,
        };
        Self {
            code,
            message: message.into(),
            order_id: None,
            retry_after,
        }
    }

    pub fn invalid(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    pub fn unavailable(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }

    /// Logs the cause and answers an opaque 500.
    pub fn internal(cause: impl fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self::new(ErrorCode::Internal, "internal error")
    }

    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        status_of(self.code)
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = error_response(self.code, &self.message, self.order_id);
        if let Some(secs) = self.retry_after {
            res.headers_mut().insert(
                actix_web::http::header::RETRY_AFTER,
                actix_web::http::header::HeaderValue::from(secs),
            );
        }
        res
    }
}

impl From<StockError> for ApiError {
    fn from(e: StockError) -> Self {
        match e {
            StockError::Unavailable(cause) => {
                tracing::warn!(%cause, "redis unavailable");
                Self::unavailable("the stock service is unavailable; retry shortly")
            }
            StockError::Reply(cause) => Self::internal(cause),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(cause) => {
                tracing::warn!(%cause, "postgres unavailable");
                Self::unavailable("the database is unavailable; retry shortly")
            }
            StoreError::Query(cause) => {
                tracing::warn!(%cause, "postgres query failed");
                Self::unavailable("the database is unavailable; retry shortly")
            }
        }
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(e: diesel::result::Error) -> Self {
        StoreError::Query(e).into()
    }
}

impl From<flashsale_store::PoolError> for ApiError {
    fn from(e: flashsale_store::PoolError) -> Self {
        StoreError::from(e).into()
    }
}

impl From<flashsale_auth::Unauthorized> for ApiError {
    fn from(e: flashsale_auth::Unauthorized) -> Self {
        Self::new(ErrorCode::Unauthorized, e.0)
    }
}
