//! The document against the code: the routes the app registers (simulator on and off), the error codes'
//! statuses, the security schemes.

use super::document;
use crate::routes;
use actix_web::http::{Method, StatusCode};
use actix_web::test as actix_test;
use actix_web::{App, HttpResponse, web};
use flashsale_platform::openapi::{Document, Endpoint, differences, endpoints};
use serde_json::Value;
use std::collections::BTreeSet;

fn served(simulator: bool) -> (web::Data<Document>, Value) {
    let doc = Document::new(&document(simulator));
    let json = serde_json::from_slice(doc.bytes()).expect("the document is JSON");
    (web::Data::new(doc), json)
}

fn registered(simulator: bool, doc: &web::Data<Document>) -> BTreeSet<Endpoint> {
    let mut table = BTreeSet::new();
    // `configure` runs at once; the app itself is not needed.
    let _app = App::new().configure(|cfg| table = routes::configure(cfg, simulator, doc.clone()));
    table
}

#[test]
fn every_registered_route_is_documented_and_every_documented_one_registered() {
    for simulator in [true, false] {
        let (doc, json) = served(simulator);
        let table = registered(simulator, &doc);
        assert_eq!(
            differences(&table, &json),
            Vec::<String>::new(),
            "simulator {simulator}"
        );
        let psp = table.iter().filter(|(_, p)| p.starts_with("/psp/")).count();
        assert_eq!(psp, if simulator { 2 } else { 0 });
    }
}

/// The table is what the app routes: each documented operation reaches a handler, not the default service.
#[actix_web::test]
async fn every_documented_operation_reaches_a_handler() {
    let (doc, json) = served(true);
    let app = actix_test::init_service(
        App::new()
            .configure(|cfg| {
                routes::configure(cfg, true, doc.clone());
            })
            .default_service(web::to(HttpResponse::ImATeapot)),
    )
    .await;
    for (method, path) in endpoints(&json) {
        let uri = path.replace("{id}", "1").replace("{payment_id}", "1");
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
    let (_, json) = served(true);
    assert!(
        json["openapi"].as_str().unwrap_or("").starts_with("3.1."),
        "{}",
        json["openapi"]
    );
    let schemes = &json["components"]["securitySchemes"];
    assert_eq!(schemes["psp_signature"]["type"], "apiKey");
    assert_eq!(schemes["psp_signature"]["in"], "header");
    assert_eq!(schemes["psp_signature"]["name"], "Psp-Signature");
    assert_eq!(schemes["buyer_jwt"]["scheme"], "bearer");
    let webhook = &json["paths"]["/webhooks/psp"]["post"];
    assert_eq!(
        webhook["security"][0]["psp_signature"],
        serde_json::json!([])
    );
    assert_eq!(
        webhook["responses"]["401"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/InvalidSignatureError"
    );
}

#[test]
fn each_response_lists_only_codes_of_its_status() {
    for simulator in [true, false] {
        let (_, json) = served(simulator);
        assert_eq!(
            flashsale_api_error::openapi::check_error_statuses(&json),
            Vec::<String>::new()
        );
    }
}

#[test]
fn every_reference_names_a_component() {
    for simulator in [true, false] {
        let (_, json) = served(simulator);
        assert_eq!(
            flashsale_platform::openapi::dangling_refs(&json),
            Vec::<String>::new()
        );
    }
}
