//! `/graphql` on the suite's HTTP origin: a POST of a GraphQL request as JSON, answered as JSON
//! (HTTP 200 even when fields failed: the errors are in the answer). An `Authorization: Bearer`
//! header is handed to the resolvers as the caller's token, which they forward.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chassis::settings::GraphqlSettings;

use crate::schema::Gateway;

/// The routes the gateway adds to an origin: `POST /graphql`, its body at most
/// `limits.max_body_bytes` (else 413), each request answered within `limits.timeout` (else 504).
pub fn router(gateway: Gateway, limits: &GraphqlSettings) -> axum::Router {
    let served = Served {
        gateway: Arc::new(gateway),
        timeout: limits.timeout,
    };
    axum::Router::new()
        .route("/graphql", axum::routing::post(execute))
        .layer(axum::extract::DefaultBodyLimit::max(limits.max_body_bytes))
        .with_state(served)
}

#[derive(Clone)]
struct Served {
    gateway: Arc<Gateway>,
    timeout: Duration,
}

async fn execute(
    State(served): State<Served>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            let answer = serde_json::json!({
                "errors": [{
                    "message": format!("the body is not a GraphQL request: {error}"),
                    "extensions": { "code": "BAD_REQUEST" },
                }]
            });
            return (StatusCode::BAD_REQUEST, axum::Json(answer)).into_response();
        }
    };
    let token = bearer_token(&headers).map(str::to_owned);
    match tokio::time::timeout(served.timeout, served.gateway.execute(request, token)).await {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(_) => {
            let answer = serde_json::json!({
                "errors": [{
                    "message": format!(
                        "the request took longer than {} s",
                        served.timeout.as_secs()
                    ),
                    "extensions": { "code": "TIMEOUT" },
                }]
            });
            (StatusCode::GATEWAY_TIMEOUT, axum::Json(answer)).into_response()
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case).
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}
