//! Who is calling. Buyers: `Authorization: Bearer <JWT>`, HS256 only (`none` and every other alg refused),
//! `exp` required, 30 s leeway, `sub` = user id, `aud` as `auth.jwt_audience` says: when it is set the token must
//! name it (a string, or an array containing it); when it is empty a token carrying any `aud` is refused, since
//! it was issued for some other service (RFC 7519 4.1.3). Admins: `Authorization: Bearer <auth.admin_token>`.
//! Keys and validation rules are built once at start-up. Shared by the gateway and the payment service, which
//! each map [`Unauthorized`] to their 401 answer.

use actix_web::HttpRequest;
use flashsale_domain::UserId;
use flashsale_platform::settings::AuthSettings;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use secrecy::ExposeSecret;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::borrow::Cow;

/// A buyer JWT for `user`, valid for `ttl_secs`, signed with `auth.jwt_secret` (with `aud` when
/// `auth.jwt_audience` is set, since [`Auth`] then requires it). For development only: `flashsale-mint-token`
/// and the gateway's development sign-in; whoever holds the secret can be anyone.
pub fn mint_buyer_token(
    settings: &AuthSettings,
    user: &UserId,
    ttl_secs: u64,
) -> Result<String, jsonwebtoken::errors::Error> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut claims =
        serde_json::json!({ "sub": user.as_str(), "exp": now.saturating_add(ttl_secs) });
    if !settings.jwt_audience.is_empty() {
        claims["aud"] = serde_json::json!(settings.jwt_audience);
    }
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(settings.jwt_secret.expose_secret().as_bytes()),
    )
}

/// Why a caller is refused: the message of the 401 UNAUTHORIZED answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unauthorized(pub Cow<'static, str>);

fn unauthorized(message: impl Into<Cow<'static, str>>) -> Unauthorized {
    Unauthorized(message.into())
}

pub struct Auth {
    key: DecodingKey,
    validation: Validation,
    /// No audience configured: every token with an `aud` claim is refused.
    refuse_any_audience: bool,
    admin_digest: [u8; 32],
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    /// Read here too because jsonwebtoken lets a malformed `aud` (say `42`) through when no audience is set.
    #[serde(default)]
    aud: Option<serde_json::Value>,
}

impl Auth {
    pub fn new(settings: &AuthSettings) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 30;
        let audience = settings.jwt_audience.as_str();
        if audience.is_empty() {
            validation.set_required_spec_claims(&["exp", "sub"]);
        } else {
            validation.set_audience(&[audience]);
            validation.set_required_spec_claims(&["exp", "sub", "aud"]);
        }
        Self {
            key: DecodingKey::from_secret(settings.jwt_secret.expose_secret().as_bytes()),
            validation,
            refuse_any_audience: audience.is_empty(),
            admin_digest: Sha256::digest(settings.admin_token.expose_secret().as_bytes()).into(),
        }
    }

    pub fn buyer(&self, token: &str) -> Result<UserId, Unauthorized> {
        let data = decode::<Claims>(token, &self.key, &self.validation).map_err(|e| {
            unauthorized(match e.kind() {
                ErrorKind::InvalidAudience => {
                    "invalid token: its audience (aud) is not accepted here".into()
                }
                ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => {
                    "invalid token: it must name this service's audience (aud)".into()
                }
                _ => format!("invalid token: {e}"),
            })
        })?;
        if self.refuse_any_audience && data.claims.aud.is_some() {
            return Err(unauthorized(
                "invalid token: it carries an audience (aud) and this service accepts none",
            ));
        }
        UserId::parse(data.claims.sub).map_err(|e| unauthorized(e.to_string()))
    }

    /// The buyer of a request's bearer token.
    pub fn buyer_of(&self, req: &HttpRequest) -> Result<UserId, Unauthorized> {
        self.buyer(bearer(req)?)
    }

    /// Compares digests, so the comparison time says nothing about the token.
    pub fn is_admin(&self, token: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        digest == self.admin_digest
    }
}

/// The token of `Authorization: Bearer <token>`.
pub fn bearer(req: &HttpRequest) -> Result<&str, Unauthorized> {
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("missing Authorization header"))?
        .to_str()
        .map_err(|_| unauthorized("malformed Authorization header"))?;
    header
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| unauthorized("Authorization must be \"Bearer <token>\""))
}

#[cfg(test)]
mod fuzz;
