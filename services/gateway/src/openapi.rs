//! The gateway's OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` annotations and served
//! at `GET /api/openapi.json` (built once at start-up).

use crate::routes::{admin, dev, events, list, ops, orders, reservations, sales, storefront};
use flashsale_api_error::openapi::{
    ADMIN_TOKEN, BUYER_JWT, NotFoundError, SecuritySchemes, UnavailableError,
};
use flashsale_domain::{OrderId, SaleId};
use flashsale_platform::openapi::OptionalBodies;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::{Content, HeaderBuilder, OpenApi as Document, RefOr};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "flashsale gateway",
        description = "The public API of flashsale: sales, reservations and orders. Every error is \
            `{\"error\": {\"code\", \"message\"}}`; each response lists the codes it can carry. An unknown route, \
            or a known path with another method, is 404 `NOT_FOUND` (no 405 is produced).",
    ),
    paths(
        reservations::reserve,
        admin::create_sale,
        list::list_sales,
        sales::get_sale,
        events::events,
        orders::get_order,
        orders::my_orders,
        ops::healthz,
        ops::readyz,
        ops::metrics,
        flashsale_platform::openapi::document,
        storefront::page,
        storefront::file,
    ),
    components(schemas(NotFoundError, UnavailableError, OrderId, SaleId)),
    modifiers(&SECURITY, &Admission, &OptionalBodies),
    tags(
        (name = "reservations", description = "The hot path."),
        (name = "sales", description = "Sale state, public."),
        (name = "orders", description = "A buyer's own orders."),
        (name = "admin", description = "Creating sales (admin token)."),
        (name = "ops", description = "Liveness, readiness, metrics and this document."),
        (name = "storefront", description = "The shop page served at `/` (docs/frontend.md)."),
        (name = "dev", description = "Development mode only (`FLASHSALE__DEV=1`): absent in production."),
    ),
)]
struct GatewayApi;

#[derive(OpenApi)]
#[openapi(paths(dev::token))]
struct DevApi;

const SECURITY: SecuritySchemes = SecuritySchemes(&[BUYER_JWT, ADMIN_TOKEN]);

/// The document, as served: with the development sign-in when development mode (`dev`) is on, as the route
/// is only registered then.
pub fn document(dev: bool) -> Document {
    let mut doc = GatewayApi::openapi();
    if dev {
        doc.merge(DevApi::openapi());
    }
    doc
}

/// Every `/api/` request passes admission first (`gateway.max_in_flight`, `gateway.max_requests_per_sec`),
/// which may answer 503 before any handler runs: said on each such operation that does not say it already.
struct Admission;

impl Modify for Admission {
    fn modify(&self, doc: &mut Document) {
        for (path, item) in doc.paths.paths.iter_mut() {
            if !path.starts_with("/api/") {
                continue;
            }
            let ops = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in ops.into_iter().flatten() {
                op.responses
                    .responses
                    .entry("503".to_owned())
                    .or_insert_with(shed_response);
            }
        }
    }
}

fn shed_response() -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description("The gateway is at capacity or at its request rate.")
        .content(
            "application/json",
            Content::new(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                UnavailableError::name(),
            )))),
        )
        .header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(u64::schema())
                .description(Some("Seconds to wait."))
                .build(),
        )
        .into()
}

#[cfg(test)]
mod tests;
