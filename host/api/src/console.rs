//! `/console`: the operations console's static assets (one HTML page, a
//! stylesheet and a few ES modules under `host/api/console/`), embedded in
//! the binary so that `commerce serve` is the whole set-up.
//!
//! What it must not do: serve data. The console is a client of the same
//! authorized REST API as curl and the CLI, with the operator's bearer
//! token held in the browser's session storage; these routes answer the
//! same bytes to everybody, need no token, and are not in the OpenAPI
//! document (they are not part of the API).
//!
//! Every answer carries a strict Content-Security-Policy (scripts, styles
//! and fetches only from this origin, no inline script, no framing), so a
//! value that slipped into the page as markup could not run. Assets are
//! not fingerprinted, so they are revalidated on every load (`no-cache`
//! with an `ETag`): a new binary's console is seen at once, and an
//! unchanged one costs a 304.

use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use super::AppState;
use super::error::ApiError;

/// The policy every console answer carries. `connect-src 'self'`: the
/// page talks only to the service that served it.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'none'; \
     base-uri 'none'; frame-ancestors 'none'";

/// One embedded file: the name it is served under (below
/// `/console/assets/`, or `index.html` for the page), its media type and
/// its bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

macro_rules! asset {
    ($name:literal, $content_type:expr) => {
        Asset {
            name: $name,
            content_type: $content_type,
            body: include_str!(concat!("../console/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the console.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("console.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("metrics.js", JS),
    asset!("signin.js", JS),
    asset!("overview.js", JS),
    asset!("orders.js", JS),
    asset!("timeline.js", JS),
    asset!("sagas.js", JS),
    asset!("plugins.js", JS),
    asset!("stock.js", JS),
];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/console", get(page))
        .route("/console/", get(page))
        .route("/console/assets/{name}", get(asset))
}

/// The page itself; the console routes within it by its URL fragment
/// (`/console#/orders/<id>`), so one path serves every view.
async fn page(headers: HeaderMap) -> Response {
    serve(0, &headers)
}

async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Result<Response, ApiError> {
    let index = ASSETS
        .iter()
        .position(|a| a.name == name && a.name != "index.html")
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such asset"))?;
    Ok(serve(index, &headers))
}

/// The strong ETag of each asset, in [`ASSETS`] order: a digest of its
/// bytes, computed once.
fn etags() -> &'static [HeaderValue] {
    static ETAGS: OnceLock<Vec<HeaderValue>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let digest = hex::encode(&Sha256::digest(a.body.as_bytes())[..12]);
                HeaderValue::from_str(&format!("\"{digest}\"")).expect("hex is a valid header")
            })
            .collect()
    })
}

/// The asset at `index`, or 304 when the client holds this version.
fn serve(index: usize, request: &HeaderMap) -> Response {
    let asset = &ASSETS[index];
    let etag = etags()[index].clone();
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .any(|t| t.trim() == "*" || t.trim().trim_start_matches("W/") == etag)
        });
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            asset.body,
        )
            .into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, etag);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_assets_that_are_embedded() {
        let page = ASSETS[0].body;
        for needed in ["/console/assets/console.css", "/console/assets/app.js"] {
            assert!(page.contains(needed), "index.html does not load {needed}");
        }
        // Every module a module imports is served.
        for asset in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            for line in asset.body.lines().filter(|l| l.starts_with("import ")) {
                let Some(target) = line.split('\'').nth(1) else {
                    continue;
                };
                let target = target.trim_start_matches("./");
                assert!(
                    ASSETS.iter().any(|a| a.name == target),
                    "{} imports {target}, which is not embedded",
                    asset.name
                );
            }
        }
    }

    #[test]
    fn no_asset_runs_inline_script_or_style_the_policy_forbids() {
        let page = ASSETS[0].body;
        assert!(!page.contains("<script>"), "inline script in index.html");
        assert!(!page.contains("style="), "inline style in index.html");
        for asset in ASSETS {
            assert!(
                !asset.body.contains("innerHTML"),
                "{} writes markup: build nodes with dom.js so data stays text",
                asset.name
            );
        }
    }

    #[test]
    fn etags_match_their_asset() {
        let page = serve(0, &HeaderMap::new());
        let etag = page.headers()[header::ETAG].clone();
        let mut again = HeaderMap::new();
        again.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(serve(0, &again).status(), StatusCode::NOT_MODIFIED);
        assert_eq!(serve(1, &again).status(), StatusCode::OK);
    }
}
