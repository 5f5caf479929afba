//! The document against the code: the routes the app registers, the error codes' statuses, the rule bounds.

use super::document;
use crate::routes;
use actix_web::http::{Method, StatusCode};
use actix_web::test as actix_test;
use actix_web::{App, HttpResponse, web};
use flashsale_platform::openapi::{Document, Endpoint, differences};
use serde_json::Value;
use std::collections::BTreeSet;

fn served_as(dev: bool) -> (web::Data<Document>, Value) {
    let doc = Document::new(&document(dev));
    let json = serde_json::from_slice(doc.bytes()).expect("the document is JSON");
    (web::Data::new(doc), json)
}

/// Development mode's document: every route the gateway can register.
fn served() -> (web::Data<Document>, Value) {
    served_as(true)
}

fn site(dev: bool) -> routes::Site {
    let auth = flashsale_platform::Settings::defaults()
        .expect("defaults")
        .auth;
    routes::Site {
        storefront: web::Data::new(routes::storefront::Storefront::new(
            "http://127.0.0.1:8081",
            dev,
            &[],
        )),
        dev: dev.then(|| web::Data::new(routes::dev::Minter(auth))),
    }
}

fn registered_as(doc: &web::Data<Document>, dev: bool) -> BTreeSet<Endpoint> {
    let mut table = BTreeSet::new();
    let site = site(dev);
    // `configure` runs at once; the app itself is not needed.
    let _app = App::new().configure(|cfg| table = routes::configure(cfg, doc.clone(), &site));
    table
}

#[test]
fn every_registered_route_is_documented_and_every_documented_one_registered() {
    for dev in [true, false] {
        let (doc, json) = served_as(dev);
        let table = registered_as(&doc, dev);
        assert!(table.len() >= 11, "{table:?}");
        assert_eq!(
            differences(&table, &json),
            Vec::<String>::new(),
            "dev {dev}"
        );
        let dev_route = ("POST".to_owned(), "/api/v1/dev/token".to_owned());
        assert_eq!(table.contains(&dev_route), dev, "dev {dev}");
    }
}

/// The table is what the app routes: each documented operation reaches a handler, not the default service.
#[actix_web::test]
async fn every_documented_operation_reaches_a_handler() {
    let (doc, json) = served();
    let site = site(true);
    let app = actix_test::init_service(
        App::new()
            .configure(|cfg| {
                routes::configure(cfg, doc.clone(), &site);
            })
            .default_service(web::to(HttpResponse::ImATeapot)),
    )
    .await;
    for (method, path) in flashsale_platform::openapi::endpoints(&json) {
        let uri = path.replace("{id}", "1").replace("{file}", "app.js");
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let req = actix_test::TestRequest::default()
            .method(method.clone())
            .uri(&uri)
            .to_request();
        let res = actix_test::call_service(&app, req).await;
        assert_ne!(
            res.status(),
            StatusCode::IM_A_TEAPOT,
            "{method} {path} is not routed"
        );
    }
}

#[test]
fn the_document_is_openapi_3_1_with_its_security_schemes() {
    let (_, json) = served();
    assert!(
        json["openapi"].as_str().unwrap_or("").starts_with("3.1."),
        "{}",
        json["openapi"]
    );
    let schemes = &json["components"]["securitySchemes"];
    for op in json["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(_, i)| i.as_object().into_iter().flatten())
    {
        for requirement in op.1["security"].as_array().into_iter().flatten() {
            for name in requirement.as_object().into_iter().flatten().map(|r| r.0) {
                assert!(
                    schemes.get(name).is_some(),
                    "security scheme {name} is not defined"
                );
            }
        }
    }
    assert_eq!(
        json["paths"]["/api/v1/admin/sales"]["post"]["security"][0]["admin_token"],
        serde_json::json!([])
    );
    assert_eq!(
        json["paths"]["/api/v1/sales/{id}/reservations"]["post"]["security"][0]["buyer_jwt"],
        serde_json::json!([])
    );
}

#[test]
fn each_response_lists_only_codes_of_its_status() {
    let (_, json) = served();
    assert_eq!(
        flashsale_api_error::openapi::check_error_statuses(&json),
        Vec::<String>::new()
    );
    let conflict = &json["components"]["schemas"]["ReservationRefusedError"]["properties"]["error"];
    assert_eq!(
        conflict["properties"]["code"]["enum"],
        serde_json::json!([
            "SOLD_OUT",
            "LIMIT_EXCEEDED",
            "SALE_NOT_STARTED",
            "SALE_ENDED"
        ])
    );
    assert!(conflict["properties"]["order_id"].is_object());
}

/// The create-sale schema's bounds are literals (utoipa takes no constants): they must be the rules' own.
#[test]
fn the_sale_rules_bounds_are_the_domain_constants() {
    use flashsale_domain::sale::{
        MAX_PAYMENT_WINDOW_SECS, MAX_PER_USER_LIMIT, MAX_PRODUCT_NAME_CHARS, MAX_STOCK,
    };
    let (_, json) = served();
    let draft = &json["components"]["schemas"]["SaleDraft"]["properties"];
    assert_eq!(draft["stock"]["maximum"], MAX_STOCK);
    assert_eq!(draft["per_user_limit"]["maximum"], MAX_PER_USER_LIMIT);
    assert_eq!(
        draft["payment_window_secs"]["maximum"],
        MAX_PAYMENT_WINDOW_SECS
    );
    assert_eq!(draft["product_name"]["maxLength"], MAX_PRODUCT_NAME_CHARS);
    let quantity = &json["components"]["schemas"]["ReserveBody"]["properties"]["quantity"];
    assert_eq!(quantity["maximum"], MAX_PER_USER_LIMIT);
}

#[test]
fn every_reference_names_a_component() {
    {
        let (_, json) = served();
        assert_eq!(
            flashsale_platform::openapi::dangling_refs(&json),
            Vec::<String>::new()
        );
    }
}
