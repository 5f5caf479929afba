//! The error body in the OpenAPI documents: one schema per set of codes a response can carry, so a client
//! generated from the document knows, for each status of each operation, exactly which codes to expect.
//! Every schema is `{"error": {"code", "message"}}` (plus `order_id` where `LIMIT_EXCEEDED` is one of the codes),
//! built from [`ErrorCode`] itself, so a code cannot be misspelt here.

use flashsale_domain::ErrorCode;
use flashsale_platform::http::status_of;
use serde_json::{Value, json};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};

/// Every code, for reading a document back (`check_error_statuses`).
const ALL_CODES: [ErrorCode; 17] = [
    ErrorCode::InvalidRequest,
    ErrorCode::Unauthorized,
    ErrorCode::InvalidSignature,
    ErrorCode::NotFound,
    ErrorCode::SaleNotFound,
    ErrorCode::OrderNotFound,
    ErrorCode::PaymentNotFound,
    ErrorCode::MethodNotAllowed,
    ErrorCode::SoldOut,
    ErrorCode::LimitExceeded,
    ErrorCode::SaleNotStarted,
    ErrorCode::SaleEnded,
    ErrorCode::OrderNotPayable,
    ErrorCode::PayloadTooLarge,
    ErrorCode::RateLimited,
    ErrorCode::Unavailable,
    ErrorCode::Internal,
];

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

/// `{"error": {"code": <one of codes>, "message", ["order_id"]}}`, with an example of the first code.
pub fn error_schema(codes: &[ErrorCode], example_message: &str) -> Schema {
    let code = string().enum_values(Some(codes.iter().map(|c| c.as_str())));
    let mut error = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("code", code)
        .required("code")
        .property(
            "message",
            string().description(Some("For people; match on `code`, never on the text.")),
        )
        .required("message");
    let mut example =
        json!({ "code": codes.first().map(|c| c.as_str()), "message": example_message });
    if codes.contains(&ErrorCode::LimitExceeded) {
        error = error.property(
            "order_id",
            string()
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
                .description(Some(
                    "LIMIT_EXCEEDED only: the order the buyer already holds in this sale.",
                )),
        );
        if codes.first() == Some(&ErrorCode::LimitExceeded) {
            example["order_id"] = json!("019a9c3e-6f1d-7c44-9b1e-2f0c5a7d8e90");
        }
    }
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("error", error)
        .required("error")
        .examples([json!({ "error": example })])
        .into()
}

/// Declares one schema type per set of codes, named after the type.
macro_rules! error_bodies {
    ($($(#[doc = $doc:literal])* $name:ident: [$($code:ident),+] $message:literal;)+) => {
        $(
            $(#[doc = $doc])*
            pub struct $name;

            impl utoipa::PartialSchema for $name {
                fn schema() -> RefOr<Schema> {
                    error_schema(&[$(ErrorCode::$code),+], $message).into()
                }
            }

            impl utoipa::ToSchema for $name {}
        )+
    };
}

error_bodies! {
    /// 400: malformed id, body, header, or a rule the schema cannot express.
    InvalidRequestError: [InvalidRequest] "quantity must be at least 1";
    /// 401: missing, malformed, invalid or expired token.
    UnauthorizedError: [Unauthorized] "missing bearer token";
    /// 401: missing or invalid `Psp-Signature`.
    InvalidSignatureError: [InvalidSignature] "missing or invalid Psp-Signature (missing)";
    /// 404: no such route.
    NotFoundError: [NotFound] "no such route";
    /// 404: no such sale.
    SaleNotFoundError: [SaleNotFound] "no such sale";
    /// 404: no such order, or another buyer's.
    OrderNotFoundError: [OrderNotFound] "no such order";
    /// 404: no such payment.
    PaymentNotFoundError: [PaymentNotFound] "no such payment";
    /// 409: a reservation refused.
    ReservationRefusedError: [SoldOut, LimitExceeded, SaleNotStarted, SaleEnded] "the sale is sold out";
    /// 409: the sale is over and its state is gone.
    SaleEndedError: [SaleEnded] "the sale has ended";
    /// 409: the order is paid, expired, rejected or past its deadline.
    OrderNotPayableError: [OrderNotPayable] "the order is expired";
    /// 413: the body is over the limit.
    PayloadTooLargeError: [PayloadTooLarge] "the body exceeds 16384 bytes";
    /// 429: a token bucket is empty.
    RateLimitedError: [RateLimited] "too many requests; retry shortly";
    /// 503: a dependency is down or the service is at capacity; retry after `Retry-After`.
    UnavailableError: [Unavailable] "the stock service is unavailable; retry shortly";
    /// 500: a bug; the cause is logged, never sent.
    InternalError: [Internal] "internal error";
}

/// Checks a serialised document: every error code a response lists is one whose status is that response's.
/// Returns one line per mismatch.
pub fn check_error_statuses(doc: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let schemas = &doc["components"]["schemas"];
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            for (status, response) in op["responses"].as_object().into_iter().flatten() {
                for media in response["content"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|m| m.1)
                {
                    let mut schema = &media["schema"];
                    if let Some(name) = schema["$ref"].as_str().and_then(|r| r.rsplit('/').next()) {
                        schema = &schemas[name];
                    }
                    let codes =
                        schema["properties"]["error"]["properties"]["code"]["enum"].as_array();
                    for code in codes.into_iter().flatten() {
                        let known = ALL_CODES.iter().find(|c| Some(c.as_str()) == code.as_str());
                        match known {
                            Some(c) if status_of(*c).as_str() == status => {}
                            Some(c) => problems.push(format!(
                                "{method} {path}: {status} lists {code}, whose status is {}",
                                status_of(*c).as_u16()
                            )),
                            None => problems.push(format!("{method} {path}: unknown code {code}")),
                        }
                    }
                }
            }
        }
    }
    problems
}

/// Adds the named security schemes to a document.
pub struct SecuritySchemes(pub &'static [&'static str]);

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        let components = doc.components.get_or_insert_with(Default::default);
        for name in self.0 {
            let scheme = match *name {
                BUYER_JWT => SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .description(Some(
                            "A buyer's JWT: HS256, signed with auth.jwt_secret, `sub` the user id, `exp` required.",
                        ))
                        .build(),
                ),
                ADMIN_TOKEN => SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some("The admin token (auth.admin_token). A buyer JWT is not one."))
                        .build(),
                ),
                _ => SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                    "Psp-Signature",
                    "`t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<raw body>\">` under a webhook secret.",
                ))),
            };
            components.add_security_scheme(*name, scheme);
        }
    }
}

/// Buyers: `Authorization: Bearer <JWT>`.
pub const BUYER_JWT: &str = "buyer_jwt";
/// Admins: `Authorization: Bearer <auth.admin_token>`.
pub const ADMIN_TOKEN: &str = "admin_token";
/// The payment provider: the `Psp-Signature` header.
pub const PSP_SIGNATURE: &str = "psp_signature";
