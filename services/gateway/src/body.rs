//! Request bodies: bounded size (413), JSON only, unknown fields refused (400).

use crate::error::ApiError;
use actix_web::{HttpRequest, web};
use flashsale_domain::ErrorCode;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

/// Reads the whole body, refusing it past `limit` bytes without buffering the rest.
pub async fn read_limited(
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::BytesMut, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::invalid(format!("cannot read the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

pub fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("the body exceeds {limit} bytes"),
    )
}

/// `Some(value)` for a JSON body sent as `application/json`, `None` for an empty body.
pub fn optional_json<T: DeserializeOwned>(
    req: &HttpRequest,
    body: &[u8],
) -> Result<Option<T>, ApiError> {
    // JSON's own whitespace only (RFC 8259): `is_ascii_whitespace` would also take a form feed for nothing.
    if body
        .iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        return Ok(None);
    }
    require_json_content_type(req)?;
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))?;
    // serde would accept a struct written as an array; the API speaks objects only.
    if !value.is_object() {
        return Err(ApiError::invalid("the body must be a JSON object"));
    }
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
}

pub fn require_json_content_type(req: &HttpRequest) -> Result<(), ApiError> {
    let is_json = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if is_json {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "the body must be sent as application/json",
        ))
    }
}

/// The JSON extractor configuration used for typed bodies: the same limit and error codes as above.
pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .content_type_required(true)
        .error_handler(move |err, _req| {
            use actix_web::error::JsonPayloadError as E;
            match err {
                E::Overflow { .. } | E::OverflowKnownLength { .. } => too_large(limit).into(),
                E::ContentType => {
                    ApiError::invalid("the body must be sent as application/json").into()
                }
                other => ApiError::invalid(format!("invalid JSON body: {other}")).into(),
            }
        })
}
