//! The HTTP error boundary, shared with the gateway (`flashsale-api-error`).

pub use flashsale_api_error::ApiError;
