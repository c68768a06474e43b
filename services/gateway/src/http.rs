//! `/graphql` on the suite's HTTP origin: a POST of a GraphQL request as JSON, answered as JSON
//! (HTTP 200 even when fields failed: the errors are in the answer). An `Authorization: Bearer`
//! header is handed to the resolvers as the caller's [`BearerToken`], which they forward.

use async_graphql::dynamic::Schema;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::schema::BearerToken;

/// The routes the gateway adds to an origin: `POST /graphql`.
pub fn router(schema: Schema) -> axum::Router {
    axum::Router::new()
        .route("/graphql", axum::routing::post(execute))
        .with_state(schema)
}

async fn execute(
    State(schema): State<Schema>,
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
    let request = match bearer_token(&headers) {
        Some(token) => request.data(BearerToken(token.to_owned())),
        None => request,
    };
    let answer = schema.execute(request).await;
    axum::Json(answer).into_response()
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
