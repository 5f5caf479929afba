//! The HTTP error boundary, shared with the payment service (`flashsale-api-error`).

pub use flashsale_api_error::ApiError;
