//! The identity service's HTTP side. So far: the JWKS (`/.well-known/jwks.json`), the public keys
//! every service verifies access tokens with. The OAuth2/OIDC endpoints (discovery, authorize,
//! token, revoke, logout) will join this router. Who serves it is the binary's choice: on the
//! suite's shared origin in `emporium up`, on its own port in `emporium serve identity`.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::keys::SigningKeys;
use crate::oauth::Clock;

/// Path of the JWKS document.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// The identity service's HTTP routes.
pub fn router(keys: SigningKeys, clock: Clock) -> axum::Router {
    axum::Router::new()
        .route(JWKS_PATH, get(jwks))
        .with_state((keys, clock))
}

async fn jwks(State((keys, clock)): State<(SigningKeys, Clock)>) -> Response {
    // Make sure the signing key exists (and rotates on time) before publishing: a client that
    // fetches the JWKS before the first token is issued must already find the key it will name.
    let now = clock.now();
    let key_set = match keys.current(now).await {
        Ok(_) => keys.key_set(now).await,
        Err(error) => Err(error),
    };
    match key_set {
        // Verifiers re-fetch on an unknown key id, so a short cache lifetime is enough.
        Ok(key_set) => (
            [(header::CACHE_CONTROL, "public, max-age=60")],
            Json(key_set),
        )
            .into_response(),
        Err(error) => {
            tracing::error!(error.message = %error, error.cause_chain = ?error, "Failed to read the signing keys");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}
