//! The dashboard: one page, its script and its style sheet, compiled into the binary (no
//! build step, nothing to install) and served at `/ui/`.
//!
//! The files hold no data and need no token; the page asks the API for everything with
//! the token the operator's link carries (`synchro dashboard` prints it), as a same-origin
//! page the API accepts ([`crate::access`]). The page only ever puts what it is sent on
//! screen as text, and its Content-Security-Policy allows no script but its own file, so
//! an entity key or a plugin's error that holds markup stays text.

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

const PAGE: &str = include_str!("../dashboard/index.html");
const SCRIPT: &str = include_str!("../dashboard/app.js");
const STYLE: &str = include_str!("../dashboard/style.css");

/// The page's own files and the API on its own origin, nothing inline, nothing framed.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; form-action 'none'; base-uri 'none'; \
     frame-ancestors 'none'";

/// The path of the dashboard's page.
pub const PATH: &str = "/ui/";

/// `/` leads to the page, which is served with its script and style sheet.
pub fn routes() -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to(PATH) }))
        .route(
            PATH,
            get(|| async { file("text/html; charset=utf-8", PAGE) }),
        )
        .route(
            "/ui/app.js",
            get(|| async { file("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/ui/style.css",
            get(|| async { file("text/css; charset=utf-8", STYLE) }),
        )
}

fn file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            // A new binary may serve a new page: always ask.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}
