//! Rows as they are stored. Money is in minor units; conversion to domain types happens at the edges.

use crate::schema::{orders, sales};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use flashsale_domain::OrderStatus;
use uuid::Uuid;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = sales, check_for_backend(diesel::pg::Pg))]
pub struct SaleRow {
    pub id: i64,
    pub product_name: String,
    pub price_minor: i64,
    pub total_stock: i64,
    pub per_user_limit: i32,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub payment_window_secs: i32,
    pub held: i64,
    pub created_at: DateTime<Utc>,
    pub stock_shards: i16,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = sales)]
pub struct NewSaleRow<'a> {
    pub product_name: &'a str,
    pub price_minor: i64,
    pub total_stock: i64,
    pub per_user_limit: i32,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub payment_window_secs: i32,
    pub stock_shards: i16,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = orders, check_for_backend(diesel::pg::Pg))]
pub struct OrderRow {
    pub id: Uuid,
    pub sale_id: i64,
    pub user_id: String,
    pub quantity: i32,
    pub amount_minor: i64,
    pub status: OrderStatus,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
    pub shipping_priority: Option<i64>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = orders)]
pub struct NewOrderRow {
    pub id: Uuid,
    pub sale_id: i64,
    pub user_id: String,
    pub quantity: i32,
    pub amount_minor: i64,
    pub status: OrderStatus,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}
