//! `/graphql` on the suite's HTTP origin: a POST of a GraphQL request as JSON, or a GET of a
//! query in the query string, answered as JSON (HTTP 200 even when fields failed: the errors
//! are in the answer). An `Authorization: Bearer`
//! header is handed to the resolvers as the caller's token, which they forward.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chassis::settings::GraphqlSettings;

use crate::schema::Gateway;

/// The routes the gateway adds to an origin: `POST /graphql`, its body at most
/// `limits.max_body_bytes` (else 413), each request answered within `limits.timeout` (else 504).
pub fn router(gateway: Gateway, limits: &GraphqlSettings) -> axum::Router {
    // The process's recorder, before the first request is counted.
    chassis::metrics::handle();
    let served = Served {
        gateway: Arc::new(gateway),
        timeout: limits.timeout,
    };
    axum::Router::new()
        .route(
            "/graphql",
            axum::routing::post(execute).get(execute_query_string),
        )
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
            return refusal(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                format!("the body is not a GraphQL request: {error}"),
            );
        }
    };
    answer(&served, &headers, request).await
}

/// A GET: a query (never a mutation, which needs POST) in the query string, as the GraphQL over
/// HTTP convention has it (`?query=…&variables=…&operationName=…`).
async fn execute_query_string(
    State(served): State<Served>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let request = match async_graphql::http::parse_query_string(uri.query().unwrap_or_default()) {
        Ok(request) => request,
        Err(error) => {
            return refusal(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                format!("the query string is not a GraphQL request: {error}"),
            );
        }
    };
    if !only_queries(&request) {
        let mut response = refusal(
            StatusCode::METHOD_NOT_ALLOWED,
            "BAD_REQUEST",
            "a mutation needs POST".to_owned(),
        );
        response
            .headers_mut()
            .insert(header::ALLOW, http::HeaderValue::from_static("GET, POST"));
        return response;
    }
    answer(&served, &headers, request).await
}

/// Whether the operation `request` runs is a query (a document that does not parse is left to
/// the schema, which says why).
fn only_queries(request: &async_graphql::Request) -> bool {
    use async_graphql::parser::types::{DocumentOperations, OperationType};
    let Ok(document) = async_graphql::parser::parse_query(&request.query) else {
        return true;
    };
    match &document.operations {
        DocumentOperations::Single(operation) => operation.node.ty == OperationType::Query,
        DocumentOperations::Multiple(operations) => match &request.operation_name {
            Some(name) => operations
                .get(name.as_str())
                .is_none_or(|operation| operation.node.ty == OperationType::Query),
            None => operations
                .values()
                .all(|operation| operation.node.ty == OperationType::Query),
        },
    }
}

fn refusal(status: StatusCode, code: &str, message: String) -> Response {
    let answer = serde_json::json!({
        "errors": [{ "message": message, "extensions": { "code": code } }]
    });
    (status, axum::Json(answer)).into_response()
}

/// Executes `request` for the caller the headers name, within the timeout, counted in
/// `emporium_graphql_requests_total{outcome}` and timed in `emporium_graphql_request_seconds`.
async fn answer(served: &Served, headers: &HeaderMap, request: async_graphql::Request) -> Response {
    let started = Instant::now();
    let token = bearer_token(headers).map(str::to_owned);
    let (outcome, response) =
        match tokio::time::timeout(served.timeout, served.gateway.execute(request, token)).await {
            Ok(answer) => {
                let outcome = if answer.errors.is_empty() {
                    "ok"
                } else {
                    "error"
                };
                (outcome, axum::Json(answer).into_response())
            }
            Err(_) => (
                "timeout",
                refusal(
                    StatusCode::GATEWAY_TIMEOUT,
                    "TIMEOUT",
                    format!(
                        "the request took longer than {} s",
                        served.timeout.as_secs()
                    ),
                ),
            ),
        };
    ::metrics::counter!("emporium_graphql_requests_total", "outcome" => outcome).increment(1);
    ::metrics::histogram!("emporium_graphql_request_seconds").record(started.elapsed());
    response
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
