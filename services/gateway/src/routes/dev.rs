//! `POST /api/v1/dev/token`: a buyer JWT for any user id, for the storefront's development sign-in. Registered
//! only in development mode (`dev`, `FLASHSALE__DEV=1`); otherwise the route does not exist (404 NOT_FOUND),
//! because whoever may call it can be anyone.

use crate::error::ApiError;
use actix_web::{HttpResponse, web};
use flashsale_api_error::openapi::{InvalidRequestError, PayloadTooLargeError};
use flashsale_domain::UserId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How long a development token is valid (seconds): a working day.
pub const TTL_SECS: u64 = 12 * 3600;

/// The signing settings, present (as app data) only in development mode.
pub struct Minter(pub flashsale_platform::settings::AuthSettings);

/// Who to sign in as.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"user_id": "alice"}))]
pub struct TokenRequest {
    /// 1..64 characters, no control characters.
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]+$"
    )]
    user_id: String,
}

/// A buyer JWT, as the shop's identity provider would issue.
#[derive(Serialize, ToSchema)]
pub struct TokenAnswer {
    token: String,
    /// Seconds until it expires.
    expires_in: u64,
}

/// A development buyer token
///
/// Only in development mode (`FLASHSALE__DEV=1`): absent, and so 404, in production.
#[utoipa::path(
    post,
    path = "/api/v1/dev/token",
    tag = "dev",
    operation_id = "dev_token",
    request_body(content = TokenRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "A buyer JWT for `user_id`.", body = TokenAnswer),
        (status = 400, description = "Not JSON, an unknown field, or a user id that is not 1..64 allowed characters.", body = InvalidRequestError),
        (status = 413, description = "Body over `gateway.max_body_bytes`.", body = PayloadTooLargeError),
    ),
)]
pub async fn token(
    minter: web::Data<Minter>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    // serde would take a struct written as an array; the API speaks objects only.
    let body = body.into_inner();
    if !body.is_object() {
        return Err(ApiError::invalid("the body must be a JSON object"));
    }
    let request: TokenRequest = serde_json::from_value(body)
        .map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))?;
    let user = UserId::parse(request.user_id).map_err(|e| ApiError::invalid(format!("{e}")))?;
    let token =
        flashsale_auth::mint_buyer_token(&minter.0, &user, TTL_SECS).map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(TokenAnswer {
        token,
        expires_in: TTL_SECS,
    }))
}
