//! The payment service's OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` annotations and
//! served at `GET /api/openapi.json` (built once at start-up). The simulator's routes are in it only when the
//! simulator is on, as they are only registered then.

use crate::routes::{checkout, ops, psp, webhook};
use flashsale_api_error::openapi::{BUYER_JWT, NotFoundError, PSP_SIGNATURE, SecuritySchemes};
use flashsale_domain::OrderId;
use flashsale_platform::openapi::OptionalBodies;
use utoipa::OpenApi;
use utoipa::openapi::OpenApi as Document;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "flashsale payment",
        description = "Checkout, the signed payment-provider webhook and (in development) the simulated provider. \
            Every error is `{\"error\": {\"code\", \"message\"}}`; each response lists the codes it can carry. \
            An unknown route, or a known path with another method, is 404 `NOT_FOUND`.",
    ),
    paths(
        checkout::checkout,
        webhook::receive,
        ops::healthz,
        ops::readyz,
        ops::metrics,
        flashsale_platform::openapi::document,
    ),
    components(schemas(NotFoundError, OrderId)),
    modifiers(&SECURITY, &OptionalBodies),
    tags(
        (name = "payments", description = "Checkout and the provider's webhook."),
        (name = "simulator", description = "The simulated payment provider (payment.simulator.enabled)."),
        (name = "ops", description = "Liveness, readiness, metrics and this document."),
    ),
)]
struct PaymentApi;

#[derive(OpenApi)]
#[openapi(paths(psp::page, psp::complete))]
struct SimulatorApi;

const SECURITY: SecuritySchemes = SecuritySchemes(&[BUYER_JWT, PSP_SIGNATURE]);

/// The document, as served: with the simulator's routes when `simulator` is on.
pub fn document(simulator: bool) -> Document {
    let mut doc = PaymentApi::openapi();
    if simulator {
        doc.merge(SimulatorApi::openapi());
    }
    doc
}

#[cfg(test)]
mod tests;
