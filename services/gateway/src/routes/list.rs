//! `GET /api/v1/sales?limit=&cursor=`: upcoming and active sales, soonest first (by `starts_at`, then id), in
//! pages. The sales come from the gateway's catalog in memory and their counters from Redis in one pipelined
//! round trip for the page: no PostgreSQL query per request.

use crate::error::ApiError;
use crate::routes::sales::SaleView;
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use flashsale_api_error::openapi::{InvalidRequestError, UnavailableError};
use flashsale_domain::SaleId;
use flashsale_stock::SaleSnapshot;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Query {
    limit: Option<String>,
    cursor: Option<String>,
}

/// Where a page ends: the last sale's `starts_at` (Unix ms) and id. Opaque to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Cursor {
    starts_ms: i64,
    id: i64,
}

impl Cursor {
    fn parse(raw: &str) -> Option<Self> {
        let (starts, id) = raw.split_once('_')?;
        Some(Self {
            starts_ms: starts.parse().ok()?,
            id: SaleId::new(id.parse().ok()?).ok()?.get(),
        })
    }

    fn encode(self) -> String {
        format!("{}_{}", self.starts_ms, self.id)
    }
}

/// One page of the listed sales.
#[derive(Serialize, ToSchema)]
pub struct Page {
    sales: Vec<SaleView>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    next_cursor: Option<String>,
}

fn parse(query: &str) -> Result<(usize, Option<Cursor>), ApiError> {
    let q = web::Query::<Query>::from_query(query)
        .map_err(|e| ApiError::invalid(format!("invalid query: {e}")))?
        .into_inner();
    let limit = match q.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(raw) => raw
            .parse()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::invalid(format!("limit must be an integer 1..={MAX_LIMIT}"))
            })?,
    };
    let cursor = match q.cursor.as_deref() {
        None => None,
        Some(raw) => Some(Cursor::parse(raw).ok_or_else(|| {
            ApiError::invalid("cursor is not one this API gave (use next_cursor as it is)")
        })?),
    };
    Ok((limit, cursor))
}

#[utoipa::path(
    get,
    path = "/api/v1/sales",
    tag = "sales",
    operation_id = "list_sales",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Sales per page (default 20)."),
        ("cursor" = Option<String>, Query, pattern = r"^-?[0-9]{1,18}_[1-9][0-9]{0,17}$",
         description = "The `next_cursor` of the previous page, as it was given."),
    ),
    responses(
        (status = 200, description = "Upcoming and active sales, soonest first.", body = Page),
        (status = 400, description = "`limit` or `cursor` is malformed.", body = InvalidRequestError),
        (status = 503, description = "Redis unreachable.", body = UnavailableError,
         headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
)]
pub async fn list_sales(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (limit, after) = parse(req.query_string())?;
    let listed = state.catalog.upcoming_and_active();
    let cursor_of = |e: &crate::catalog::Entry| Cursor {
        starts_ms: e.sale.starts_at.timestamp_millis(),
        id: e.sale.id.get(),
    };
    let rest: Vec<_> = listed
        .iter()
        .filter(|e| after.is_none_or(|c| cursor_of(e) > c))
        .collect();
    let page = &rest[..rest.len().min(limit)];
    let ids: Vec<SaleId> = page.iter().map(|e| e.sale.id).collect();
    let counters = state.stock.counters_of(&ids).await?;
    let now = Utc::now();
    let sales = page
        .iter()
        .zip(counters)
        .map(|(entry, counters)| {
            // Not in Redis yet (the warmer has not reached it): what PostgreSQL recorded.
            let (remaining, sold) = counters
                .map_or((entry.sale.total_stock - entry.held, 0), |c| {
                    (c.remaining, c.sold)
                });
            SaleView::of(
                &SaleSnapshot {
                    sale: entry.sale.clone(),
                    remaining,
                    sold,
                },
                now,
            )
        })
        .collect();
    let next_cursor = (rest.len() > page.len())
        .then(|| page.last().map(|e| cursor_of(e).encode()))
        .flatten();
    Ok(HttpResponse::Ok().json(Page { sales, next_cursor }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_checked() {
        assert_eq!(parse("").map(|p| p.0).ok(), Some(DEFAULT_LIMIT));
        assert_eq!(parse("limit=100").map(|p| p.0).ok(), Some(100));
        let c = Cursor {
            starts_ms: 1_700_000_000_000,
            id: 7,
        };
        assert_eq!(
            parse(&format!("cursor={}", c.encode())).map(|p| p.1).ok(),
            Some(Some(c))
        );
        for bad in [
            "limit=0",
            "limit=101",
            "limit=x",
            "limit=-1",
            "cursor=abc",
            "cursor=1_0",
            "cursor=",
            "page=2",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
