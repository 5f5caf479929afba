//! `POST /api/v1/admin/sales`: PostgreSQL first (the record), then Redis (the admission ledger).

use crate::auth::Admin;
use crate::error::ApiError;
use crate::routes::sales::SaleView;
use crate::state::AppState;
use crate::warm::{snapshot_of, warm_sale};
use actix_web::{HttpResponse, web};
use chrono::Utc;
use flashsale_domain::sale::SaleDraft;
use flashsale_domain::{NewSale, SaleId};
use flashsale_store::{StoreError, sales};

pub async fn create_sale(
    _admin: Admin,
    state: web::Data<AppState>,
    draft: web::Json<SaleDraft>,
) -> Result<HttpResponse, ApiError> {
    let sale = NewSale::try_from(draft.into_inner()).map_err(|e| ApiError::invalid(e.0))?;
    let row = {
        let mut conn = state.pool.get().await.map_err(StoreError::from)?;
        sales::insert(&mut conn, &sale).await?
    };
    let id = SaleId::new(row.id).map_err(ApiError::internal)?;
    // The id is new to PostgreSQL, so Redis state under it is left from an earlier database (reset without
    // Redis); warming keeps live state, so it must go first or the new sale would sell the old stock.
    match state.stock.forget(id).await {
        Ok(true) => tracing::error!(
            sale = row.id,
            "Redis held state for a sale id PostgreSQL just issued (database reset without Redis?); replaced"
        ),
        Ok(false) => {}
        Err(error) => tracing::warn!(sale = row.id, %error, "cannot clear stale Redis state"),
    }
    // The sale is recorded; if warming fails now, the periodic warmer makes it live within
    // gateway.warm_interval_ms, so the answer is still 201.
    if let Err(error) = warm_sale(&state, &row).await {
        tracing::warn!(
            sale = row.id,
            error = format!("{error:#}"),
            "sale created but not yet warmed"
        );
    }
    let snapshot = match state.stock.snapshot(id).await {
        Ok(Some(live)) => live,
        // Not warmed yet: what PostgreSQL recorded is the truth.
        _ => snapshot_of(&row, row.total_stock, 0).map_err(ApiError::internal)?,
    };
    let view = SaleView::of(&snapshot, Utc::now());
    Ok(HttpResponse::Created().json(view))
}
