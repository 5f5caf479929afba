//! The gateway's callers: buyers (JWT) and admins (bearer token), checked by `flashsale-auth` (shared with the
//! payment service) and refused with 401 UNAUTHORIZED.

use crate::error::ApiError;
use crate::state::AppState;
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use flashsale_domain::{ErrorCode, UserId};
use flashsale_platform::Secret;
use std::future::{Ready, ready};

pub use flashsale_auth::{Auth, Unauthorized, bearer};

/// The secrets the gateway uses; `main` refuses to start when one is weak outside development mode.
pub const SECRETS: &[Secret] = &[Secret::JwtSecret, Secret::AdminToken];

fn state(req: &HttpRequest) -> Result<&web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::internal("AppState missing from app data"))
}

/// An authenticated buyer.
pub struct Buyer(pub UserId);

impl FromRequest for Buyer {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(state(req).and_then(|s| Ok(Buyer(s.auth.buyer_of(req)?))))
    }
}

/// A caller holding the admin token.
pub struct Admin;

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(state(req).and_then(|s| {
            if s.auth.is_admin(bearer(req)?) {
                Ok(Admin)
            } else {
                Err(ApiError::new(
                    ErrorCode::Unauthorized,
                    "invalid admin token",
                ))
            }
        }))
    }
}
