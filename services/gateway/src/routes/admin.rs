//! `POST /api/v1/admin/sales`: PostgreSQL first (the record), then Redis (the admission ledger).

use crate::auth::Admin;
use crate::error::ApiError;
use crate::routes::sales::SaleView;
use crate::state::AppState;
use crate::warm::{snapshot_of, warm_sale};
use actix_web::{HttpResponse, web};
use chrono::Utc;
use flashsale_domain::NewSale;
use flashsale_domain::sale::SaleDraft;
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
    // The sale is recorded; if warming fails now, the periodic warmer makes it live within
    // gateway.warm_interval_ms, so the answer is still 201.
    if let Err(error) = warm_sale(&state, &row).await {
        tracing::warn!(sale = row.id, error = format!("{error:#}"), "sale created but not yet warmed");
    }
    let view = match state.stock.snapshot(flashsale_domain::SaleId::new(row.id).map_err(|e| ApiError::internal(e))?).await {
        Ok(Some(snapshot)) => SaleView::of(&snapshot, Utc::now()),
        _ => SaleView::of(
            &snapshot_of(&row, row.total_stock, 0).map_err(ApiError::internal)?,
            Utc::now(),
        ),
    };
    Ok(HttpResponse::Created().json(view))
}
