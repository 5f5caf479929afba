//! OpenAPI schemas of the domain types the HTTP services send (feature `openapi`): how each is written on the
//! wire, which serde does by hand here (`Money` as a string, `SaleId` as a number), so it is said by hand too.

use crate::{Money, OrderId, SaleId, UserId};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::{PartialSchema, ToSchema};

impl PartialSchema for Money {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(r"^\d+\.\d{2}$"))
            .description(Some("An exact amount: a decimal string with two places."))
            .examples(["2990.00"])
            .into()
    }
}

impl ToSchema for Money {}

impl PartialSchema for SaleId {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(1))
            .maximum(Some(i64::MAX))
            .description(Some("A sale id: a positive 64-bit integer."))
            .examples([1])
            .into()
    }
}

impl ToSchema for SaleId {}

impl PartialSchema for OrderId {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
            .description(Some("An order id: a UUIDv7."))
            .examples(["019a9c3e-6f1d-7c44-9b1e-2f0c5a7d8e90"])
            .into()
    }
}

impl ToSchema for OrderId {}

impl PartialSchema for UserId {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(UserId::MAX_LEN))
            .description(Some(
                "A buyer: the JWT `sub`, 1 to 64 characters, no control characters.",
            ))
            .examples(["alice"])
            .into()
    }
}

impl ToSchema for UserId {}
