//! The storefront: a small page of plain HTML, CSS and JavaScript modules compiled into the binary and served
//! at `/` and `/storefront/<file>` (no CDN, nothing fetched at run time; docs/frontend.md). The page gets its
//! settings from `<meta>` tags filled in once at start-up, and a strict Content-Security-Policy: its own
//! scripts and styles only, network access to the gateway and the payment service only.

use crate::error::ApiError;
use actix_web::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, ETAG, HeaderValue, IF_NONE_MATCH,
};
use actix_web::{HttpRequest, HttpResponse, web};
use flashsale_api_error::openapi::NotFoundError;
use flashsale_domain::ErrorCode;
use std::hash::{Hash, Hasher};

/// Every file of the page: name under `/storefront/`, content type, bytes.
const ASSETS: [(&str, &str, &str); 7] = [
    ("app.js", JS, include_str!("../../storefront/app.js")),
    ("api.js", JS, include_str!("../../storefront/api.js")),
    (
        "identity.js",
        JS,
        include_str!("../../storefront/identity.js"),
    ),
    ("sales.js", JS, include_str!("../../storefront/sales.js")),
    ("order.js", JS, include_str!("../../storefront/order.js")),
    ("words.js", JS, include_str!("../../storefront/words.js")),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../storefront/style.css"),
    ),
];
const JS: &str = "text/javascript; charset=utf-8";
const INDEX: &str = include_str!("../../storefront/index.html");

/// Revalidate on every load (an ETag makes that a 304): the files change with the binary, and a page must
/// never run a stale module beside fresh ones.
const REVALIDATE: &str = "no-cache";

/// The page as served, built once from the settings.
pub struct Storefront {
    index: String,
    index_etag: String,
    csp: String,
}

impl Storefront {
    /// `payment_url` and `frame_origins` were validated as origins at start (`GatewaySettings::validate_edge`),
    /// so they hold no quote, space or angle bracket; escaped anyway, as everything put into HTML.
    pub fn new(payment_url: &str, dev: bool, frame_origins: &[String]) -> Self {
        let index = INDEX
            .replace("{{payment_url}}", &escape(payment_url))
            .replace("{{dev}}", if dev { "on" } else { "off" });
        let ancestors = std::iter::once("'self'")
            .chain(frame_origins.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ");
        let csp = format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self' {payment_url}; form-action 'none'; base-uri 'none'; \
             frame-ancestors {ancestors}"
        );
        Self {
            index_etag: etag(&index),
            index,
            csp,
        }
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn etag(body: &str) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut hasher);
    format!("\"{:016x}\"", hasher.finish())
}

fn answer(req: &HttpRequest, content_type: &str, body: &str, tag: String) -> HttpResponse {
    let fresh = req
        .headers()
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut res = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((CACHE_CONTROL, HeaderValue::from_static(REVALIDATE)))
        .insert_header((ETAG, tag));
    if fresh {
        return res.finish();
    }
    res.content_type(content_type).body(body.to_owned())
}

/// The storefront page
///
/// HTML with a strict Content-Security-Policy; its settings are in `<meta>` tags (docs/frontend.md).
#[utoipa::path(
    get,
    path = "/",
    tag = "storefront",
    operation_id = "storefront_page",
    responses(
        (status = 200, description = "The page.", content_type = "text/html", body = String),
        (status = 304, description = "Unchanged since the `If-None-Match` ETag."),
    ),
)]
pub async fn page(req: HttpRequest, site: web::Data<Storefront>) -> HttpResponse {
    let mut res = answer(
        &req,
        "text/html; charset=utf-8",
        &site.index,
        site.index_etag.clone(),
    );
    if let Ok(csp) = HeaderValue::from_str(&site.csp) {
        res.headers_mut().insert(CONTENT_SECURITY_POLICY, csp);
    }
    res
}

/// A file of the storefront
///
/// The page's scripts (JavaScript modules) and style sheet.
#[utoipa::path(
    get,
    path = "/storefront/{file}",
    tag = "storefront",
    operation_id = "storefront_file",
    params(("file" = String, Path, description = "A file name such as `app.js` or `style.css`.")),
    responses(
        (status = 200, description = "The file.", content_type = "text/javascript", body = String),
        (status = 304, description = "Unchanged since the `If-None-Match` ETag."),
        (status = 404, description = "No such file.", body = NotFoundError),
    ),
)]
pub async fn file(req: HttpRequest, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let (_, content_type, body) = ASSETS
        .iter()
        .find(|(name, _, _)| *name == path.as_str())
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such storefront file"))?;
    Ok(answer(&req, content_type, body, etag(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_carries_its_settings_escaped_and_a_policy_naming_the_payment_origin() {
        let site = Storefront::new(
            "https://pay.example",
            true,
            &["https://shop.example".into()],
        );
        assert!(site.index.contains(r#"content="https://pay.example""#));
        assert!(site.index.contains(r#"name="flashsale-dev" content="on""#));
        assert!(!site.index.contains("{{"));
        assert!(site.csp.contains("connect-src 'self' https://pay.example;"));
        assert!(
            site.csp
                .contains("frame-ancestors 'self' https://shop.example")
        );
        assert!(site.csp.contains("script-src 'self';"));
        let off = Storefront::new("https://pay.example", false, &[]);
        assert!(off.index.contains(r#"name="flashsale-dev" content="off""#));
        assert_eq!(escape(r#"a"<&>"#), "a&quot;&lt;&amp;&gt;");
    }

    #[test]
    fn no_file_of_the_page_has_an_inline_script_or_style_the_policy_would_refuse() {
        assert!(!INDEX.contains("<script>") && !INDEX.contains("style="));
        assert!(!INDEX.contains(" on") || !INDEX.contains("onclick"));
        for (name, _, body) in ASSETS {
            assert!(body.lines().count() < 400, "{name} is over 400 lines");
            assert!(
                !body.contains("innerHTML"),
                "{name} writes HTML from strings"
            );
        }
    }
}
