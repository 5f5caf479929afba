//! `POST /api/v1/admin/sales`: PostgreSQL first (the record), then Redis (the admission ledger).

use crate::auth::Admin;
use crate::error::ApiError;
use crate::routes::sales::SaleView;
use crate::state::AppState;
use crate::warm::warm_new;
use actix_web::{HttpResponse, web};
use chrono::Utc;
use flashsale_api_error::openapi::{
    InvalidRequestError, PayloadTooLargeError, UnauthorizedError, UnavailableError,
};
use flashsale_domain::NewSale;
use flashsale_domain::sale::SaleDraft;
use flashsale_stock::{SaleSnapshot, Warmed};
use flashsale_store::{StoreError, sales};

/// Create a sale
///
/// Written to PostgreSQL, then warmed into Redis. 201 even when warming fails: the periodic warmer makes the
/// sale live, and until then reservations answer 503. Unknown fields are refused.
#[utoipa::path(
    post,
    path = "/api/v1/admin/sales",
    tag = "admin",
    operation_id = "create_sale",
    request_body(content = SaleDraft, content_type = "application/json"),
    responses(
        (status = 201, description = "Created; the same shape as `GET /api/v1/sales/{id}`.", body = SaleView),
        (status = 400, description = "Not `application/json`, invalid JSON, a missing, unknown or mistyped field, or a rule (`ends_at` after `starts_at`, `price` > 0): nothing is written.", body = InvalidRequestError),
        (status = 401, description = "Missing or wrong admin token.", body = UnauthorizedError),
        (status = 413, description = "Body over `gateway.max_body_bytes`.", body = PayloadTooLargeError),
        (status = 503, description = "PostgreSQL unreachable or the insert failed.", body = UnavailableError,
         headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
    security(("admin_token" = [])),
)]
pub async fn create_sale(
    _admin: Admin,
    state: web::Data<AppState>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    // serde would take a struct written as an array, field by field; the API speaks objects only.
    let body = body.into_inner();
    if !body.is_object() {
        return Err(ApiError::invalid("the body must be a JSON object"));
    }
    let draft: SaleDraft = serde_json::from_value(body)
        .map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))?;
    let new = NewSale::try_from(draft).map_err(|e| ApiError::invalid(e.0))?;
    let row = {
        let mut conn = state.pool.get().await.map_err(StoreError::from)?;
        sales::insert(&mut conn, &new).await?
    };
    let sale = row.to_sale().map_err(ApiError::internal)?;
    state.catalog.remember(sale.clone(), 0);
    // The sale is recorded; if warming fails now, the periodic warmer makes it live within
    // gateway.warm_interval_ms, so the answer is still 201.
    match warm_new(&state, &sale).await {
        Ok(Warmed::ReplacedStale) => tracing::error!(
            sale = row.id,
            "Redis held state of an earlier database under a sale id PostgreSQL just issued; replaced"
        ),
        Ok(_) => {}
        Err(error) => tracing::warn!(
            sale = row.id,
            error = format!("{error:#}"),
            "sale created but not yet warmed"
        ),
    }
    let snapshot = match state.stock.snapshot(sale.id).await {
        Ok(Some(live)) => live,
        // Not warmed yet: what PostgreSQL recorded is the truth.
        _ => SaleSnapshot {
            remaining: sale.total_stock,
            sold: 0,
            sale,
        },
    };
    Ok(HttpResponse::Created().json(SaleView::of(&snapshot, Utc::now())))
}
