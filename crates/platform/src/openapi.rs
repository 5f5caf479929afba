//! The OpenAPI 3.1 document each service serves at `GET /api/openapi.json`: generated from the handlers'
//! `#[utoipa::path]` annotations and serialised once at start-up. Routes are registered through [`Routes`],
//! which also yields the (method, path) table, so a test can hold what is served against what is documented
//! without a second, hand-written list.

use actix_web::http::Method;
use actix_web::{FromRequest, Handler, HttpResponse, Responder, web};
use serde_json::Value;
use std::collections::BTreeSet;
use utoipa::openapi::OpenApi;

/// Where every service serves its document.
pub const PATH: &str = "/api/openapi.json";

/// One operation: the method in upper case and the path pattern (`/api/v1/sales/{id}`).
pub type Endpoint = (String, String);

/// Registers routes on an actix `ServiceConfig` and remembers each one.
pub struct Routes<'a> {
    cfg: &'a mut web::ServiceConfig,
    table: BTreeSet<Endpoint>,
}

impl<'a> Routes<'a> {
    pub fn new(cfg: &'a mut web::ServiceConfig) -> Self {
        Self {
            cfg,
            table: BTreeSet::new(),
        }
    }

    /// `cfg.route(path, web::method(method).to(handler))`, recorded.
    pub fn add<F, Args>(&mut self, method: Method, path: &'static str, handler: F) -> &mut Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.cfg
            .route(path, web::method(method.clone()).to(handler));
        self.table
            .insert((method.as_str().to_owned(), path.to_owned()));
        self
    }

    /// Every route registered so far.
    pub fn table(&self) -> BTreeSet<Endpoint> {
        self.table.clone()
    }
}

/// The operations a serialised document describes.
pub fn endpoints(doc: &Value) -> BTreeSet<Endpoint> {
    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    let mut found = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for method in METHODS {
            if item.get(method).is_some() {
                found.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    found
}

/// What a route table and a document disagree on, one line each: registered but not documented, and
/// documented but not registered. Empty when they agree.
pub fn differences(registered: &BTreeSet<Endpoint>, doc: &Value) -> Vec<String> {
    let documented = endpoints(doc);
    let undocumented = registered
        .difference(&documented)
        .map(|(m, p)| format!("{m} {p} is registered but not in the document"));
    let unregistered = documented
        .difference(registered)
        .map(|(m, p)| format!("{m} {p} is in the document but not registered"));
    undocumented.chain(unregistered).collect()
}

/// utoipa writes an optional body (`Option<T>`) as `oneOf: [null, T]` with `required` unset; the services mean
/// "the body may be absent", and refuse a JSON `null`. This leaves `T` alone (still not required).
pub struct OptionalBodies;

impl utoipa::Modify for OptionalBodies {
    fn modify(&self, doc: &mut OpenApi) {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::schema::Schema;
        let null = serde_json::json!({"type": "null"});
        for item in doc.paths.paths.values_mut() {
            let ops = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for op in ops.into_iter().flatten() {
                let Some(body) = op.request_body.as_mut() else {
                    continue;
                };
                for content in body.content.values_mut() {
                    let Some(RefOr::T(Schema::OneOf(one_of))) = content.schema.as_ref() else {
                        continue;
                    };
                    let mut rest: Vec<_> = one_of
                        .items
                        .iter()
                        .filter(|s| serde_json::to_value(s).ok().as_ref() != Some(&null))
                        .cloned()
                        .collect();
                    if rest.len() == 1 && one_of.items.len() == 2 {
                        content.schema = rest.pop();
                    }
                }
            }
        }
    }
}

/// Every `$ref` of a document that names no component (utoipa collects the schemas of bodies, not those of
/// parameters: a parameter's type must be listed in `components` by hand).
pub fn dangling_refs(doc: &Value) -> Vec<String> {
    fn walk(v: &Value, doc: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                if let Some(r) = map.get("$ref").and_then(Value::as_str) {
                    let target = r
                        .strip_prefix("#/")
                        .map(|p| p.split('/').fold(doc, |at, key| &at[key]));
                    if target.is_none_or(Value::is_null) {
                        out.push(r.to_owned());
                    }
                }
                map.values().for_each(|v| walk(v, doc, out));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, doc, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(doc, doc, &mut out);
    out
}

/// A document serialised once, served as is.
#[derive(Clone)]
pub struct Document(web::Bytes);

impl Document {
    pub fn new(doc: &OpenApi) -> Self {
        // Serialising utoipa's own types cannot fail (string keys, no non-finite floats).
        Self(web::Bytes::from(doc.to_json().unwrap_or_default()))
    }

    pub fn bytes(&self) -> &web::Bytes {
        &self.0
    }
}

/// This service's OpenAPI 3.1 document.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "ops",
    operation_id = "openapi_document",
    responses(
        (status = 200, description = "This service's OpenAPI 3.1 document (JSON).", content_type = "application/json",
         body = serde_json::Value),
    ),
)]
pub async fn document(doc: web::Data<Document>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(doc.0.clone())
}

/// Registers `GET /api/openapi.json` serving `doc`.
pub fn serve(routes: &mut Routes<'_>, doc: web::Data<Document>) {
    routes.cfg.app_data(doc);
    routes.add(Method::GET, PATH, document);
}
