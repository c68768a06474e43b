//! The admin console's files (`web/admin/dist`, built by `npm run build`) at `/admin/`, read
//! from a directory (`EMPORIUM_ADMIN_DIR`) rather than embedded in the binary, so that the
//! binary builds without Node and a console rebuilt is served without a new binary.
//!
//! A path under `/admin/` that names no file is one of the console's own routes
//! (`/admin/Product/…`), answered with its `index.html`; one under `assets/` that names no file
//! is a 404. The hashed bundles under `assets/`
//! are cached for good; `index.html` is revalidated on every load, so a new console is picked up
//! at once. Every answer carries a Content-Security-Policy that admits scripts and connections
//! to this origin only.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, header};
use axum::middleware::Next;
use axum::response::{Redirect, Response};
use axum::routing::get;
use tower_http::services::{ServeDir, ServeFile};

/// Where the console is served.
pub const PATH: &str = "/admin/";

/// The console's policy: its own scripts, its own API (`connect-src 'self'` covers the
/// WebSocket of subscriptions on the same origin), inline styles (the component library writes
/// its styles at run time), and no framing. No `form-action`: the one form, signing out, is
/// redirected on to identity's origin, which the console does not know.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; \
     connect-src 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The routes serving the console built into `dir`; fails, naming the directory, when it holds
/// no `index.html` (not built yet).
pub fn routes(dir: &Path) -> anyhow::Result<Router> {
    let index: PathBuf = dir.join("index.html");
    anyhow::ensure!(
        index.is_file(),
        "The admin console is not built in {} (no index.html): run `npm ci && npm run build` in \
         web/admin, or unset EMPORIUM_ADMIN_DIR",
        dir.display()
    );
    let dir = dir
        .canonicalize()
        .with_context(|| format!("Cannot read {}", dir.display()))?;
    // A bundle that is not there is a 404, never the page in its place.
    let assets = ServeDir::new(dir.join("assets"));
    let files = ServeDir::new(&dir).fallback(ServeFile::new(dir.join("index.html")));
    let served = Router::new()
        .nest_service("/admin/assets", assets)
        .nest_service(PATH, files)
        .layer(axum::middleware::from_fn(headers));
    // `/` too, where identity sends a browser after signing it out (the storefront will take
    // `/` when there is one).
    Ok(served
        .route("/admin", get(|| async { Redirect::permanent(PATH) }))
        .route("/", get(|| async { Redirect::to(PATH) })))
}

/// The console's headers: hashed bundles (`assets/`) cached for good, everything else
/// (`index.html`, the favicon) revalidated; the policy and `nosniff` on every answer.
async fn headers(request: Request<Body>, next: Next) -> Response {
    let hashed = request.uri().path().starts_with("/admin/assets/");
    let mut response = next.run(request).await;
    let cached = hashed && response.status().is_success();
    let headers = response.headers_mut();
    let cache = if cached {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
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
        HeaderValue::from_static("same-origin"),
    );
    response
}
