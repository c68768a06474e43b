//! `/graphql` on the suite's HTTP origin: a POST of a GraphQL request as JSON, or a GET of a
//! query in the query string, answered as JSON (HTTP 200 even when fields failed: the errors
//! are in the answer); a GET asking for a WebSocket (`graphql-transport-ws`, or the older
//! `graphql-ws`) carries subscriptions, and in the embedded mode a browser opening it gets
//! GraphiQL. An `Authorization: Bearer` header (or, on a WebSocket, an `Authorization` entry of
//! the `connection_init` payload), else the browser session's cookie ([`crate::sessions`]), is
//! handed to the resolvers as the caller's token, which they forward. A query (never a mutation
//! or a subscription) from a caller with neither is made with the gateway's visitor token, which
//! the services admit only where the contract declares `visitors: true` (the catalog's reads).

use std::str::FromStr as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_graphql::http::{WebSocket, WebSocketProtocols as Protocols, WsMessage};
use axum::extract::State;
use axum::extract::ws::{
    CloseFrame, Message, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chassis::settings::GraphqlSettings;
use futures::{SinkExt as _, StreamExt as _};

use crate::schema::Gateway;
use crate::sessions::{BrowserSessions, CrossSite};

/// The routes the gateway adds to an origin: `POST /graphql`, its body at most
/// `limits.max_body_bytes` (else 413), each request answered within `limits.timeout` (else 504);
/// with `sessions`, the browser sessions' `/auth/` routes too, and their cookie taken in place
/// of a bearer token.
pub fn router(
    gateway: Gateway,
    limits: &GraphqlSettings,
    sessions: Option<BrowserSessions>,
    graphiql: bool,
) -> axum::Router {
    // The process's recorder, before the first request is counted.
    chassis::metrics::handle();
    let sessions = sessions.map(Arc::new);
    let served = Served {
        gateway: Arc::new(gateway),
        timeout: limits.timeout,
        max_message_bytes: limits.max_body_bytes,
        sessions: sessions.clone(),
        graphiql,
    };
    let router = axum::Router::new()
        .route("/graphql", axum::routing::post(execute).get(execute_get))
        .layer(axum::extract::DefaultBodyLimit::max(limits.max_body_bytes))
        .with_state(served);
    match sessions {
        Some(sessions) => router.merge(sessions.router()),
        None => router,
    }
}

#[derive(Clone)]
struct Served {
    gateway: Arc<Gateway>,
    timeout: Duration,
    /// The largest WebSocket message taken: the body limit.
    max_message_bytes: usize,
    sessions: Option<Arc<BrowserSessions>>,
    /// Whether a browser asking for `/graphql` without a query gets GraphiQL.
    graphiql: bool,
}

/// GraphiQL, for a browser opening `/graphql` in the embedded mode.
const GRAPHIQL: &str = include_str!("../assets/graphiql.html");

/// How long a `graphql-transport-ws` client may leave a ping unanswered before the connection
/// is closed.
const KEEPALIVE: Duration = Duration::from_secs(30);

impl Served {
    /// The caller's token: the request's bearer token, else its browser session's (for a
    /// request from this site only; `changes`: it may change something).
    async fn token(&self, headers: &HeaderMap, changes: bool) -> Result<Option<String>, Response> {
        if let Some(token) = bearer_token(headers) {
            return Ok(Some(token.to_owned()));
        }
        let Some(sessions) = &self.sessions else {
            return Ok(None);
        };
        sessions
            .access_token(headers, changes)
            .await
            .map_err(|CrossSite| {
                refusal(
                    StatusCode::FORBIDDEN,
                    "FORBIDDEN",
                    "a request signed in by the session cookie must come from this site".to_owned(),
                )
            })
    }

    /// The token for a caller who sent none and has no session: the gateway's visitor token
    /// ([`BrowserSessions::visitor_token`]) when `request` only reads; none for a mutation,
    /// which is then refused as unauthenticated, as it should be.
    async fn visitor_token(&self, request: &mut async_graphql::Request) -> Option<String> {
        let sessions = self.sessions.as_ref()?;
        if !only_queries(request) {
            return None;
        }
        sessions.visitor_token().await
    }
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
    answer(&served, &headers, true, request).await
}

/// A GET: a WebSocket for subscriptions when the client asks to upgrade, else a query.
async fn execute_get(
    State(served): State<Served>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match upgrade {
        Ok(upgrade) => match served.token(&headers, true).await {
            Ok(token) => subscriptions(served, &headers, token, upgrade),
            Err(refused) => refused,
        },
        Err(_) => execute_query_string(served, headers, uri).await,
    }
}

/// Subscriptions (and any other operation) over a WebSocket, in the protocol the client
/// names in `Sec-WebSocket-Protocol`. The caller's token is the `connection_init` payload's
/// `Authorization`, else `header_token` (the upgrade request's bearer token or browser
/// session), checked by each subscription as it starts and before each delivery.
fn subscriptions(
    served: Served,
    headers: &HeaderMap,
    header_token: Option<String>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let protocol = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|value| value.to_str().ok())
        .and_then(|protocols| {
            protocols
                .split(',')
                .find_map(|protocol| Protocols::from_str(protocol.trim()).ok())
        });
    let Some(protocol) = protocol else {
        return refusal(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "a WebSocket at /graphql speaks graphql-transport-ws (Sec-WebSocket-Protocol)"
                .to_owned(),
        );
    };
    upgrade
        .protocols([protocol.sec_websocket_protocol()])
        .max_message_size(served.max_message_bytes)
        .on_upgrade(move |socket| async move {
            let gateway = Arc::clone(&served.gateway);
            let (mut sink, incoming) = socket.split();
            let incoming = incoming
                .take_while(|message| futures::future::ready(message.is_ok()))
                .filter_map(|message| {
                    futures::future::ready(match message {
                        Ok(message @ (Message::Text(_) | Message::Binary(_))) => {
                            Some(message.into_data())
                        }
                        _ => None,
                    })
                });
            let mut outgoing = WebSocket::new(gateway.schema().clone(), incoming, protocol)
                .on_connection_init(move |payload| async move {
                    let token = payload_token(&payload).or(header_token);
                    Ok(gateway.caller_data(token))
                })
                .keepalive_timeout(KEEPALIVE)
                .map(|message| match message {
                    WsMessage::Text(text) => Message::Text(text.into()),
                    WsMessage::Close(code, reason) => Message::Close(Some(CloseFrame {
                        code,
                        reason: reason.into(),
                    })),
                });
            while let Some(message) = outgoing.next().await {
                if sink.send(message).await.is_err() {
                    break;
                }
            }
        })
}

/// The bearer token of a `connection_init` payload: `{"Authorization": "Bearer …"}` (any case
/// of the key, as headers have it).
fn payload_token(payload: &serde_json::Value) -> Option<String> {
    let fields = payload.as_object()?;
    let value = fields
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case("authorization"))?
        .1
        .as_str()?;
    bearer(value).map(str::to_owned)
}

/// A query (never a mutation, which needs POST) in the query string, as the GraphQL over HTTP
/// convention has it (`?query=…&variables=…&operationName=…`).
async fn execute_query_string(
    served: Served,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    if served.graphiql && wants_a_page(&headers, &uri) {
        return (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            GRAPHIQL,
        )
            .into_response();
    }
    let mut request = match async_graphql::http::parse_query_string(uri.query().unwrap_or_default())
    {
        Ok(request) => request,
        Err(error) => {
            return refusal(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                format!("the query string is not a GraphQL request: {error}"),
            );
        }
    };
    if !only_queries(&mut request) {
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
    answer(&served, &headers, false, request).await
}

/// Whether a GET is a browser opening the page: HTML accepted and no query asked.
fn wants_a_page(headers: &HeaderMap, uri: &axum::http::Uri) -> bool {
    let accepts_html = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    let asks_a_query = uri.query().is_some_and(|query| {
        form_urlencoded::parse(query.as_bytes()).any(|(name, _)| name == "query")
    });
    accepts_html && !asks_a_query
}

/// Whether the operation `request` runs is a query (a document that does not parse is left to
/// the schema, which says why). The parsed document stays in `request`, so the schema does not
/// parse it again.
fn only_queries(request: &mut async_graphql::Request) -> bool {
    use async_graphql::parser::types::{DocumentOperations, OperationType};
    let operation_name = request.operation_name.clone();
    let Ok(document) = request.parsed_query() else {
        return true;
    };
    match &document.operations {
        DocumentOperations::Single(operation) => operation.node.ty == OperationType::Query,
        DocumentOperations::Multiple(operations) => match &operation_name {
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
async fn answer(
    served: &Served,
    headers: &HeaderMap,
    changes: bool,
    mut request: async_graphql::Request,
) -> Response {
    let started = Instant::now();
    let token = match served.token(headers, changes).await {
        Ok(Some(token)) => Some(token),
        Ok(None) => served.visitor_token(&mut request).await,
        Err(refused) => return refused,
    };
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
    bearer(headers.get(header::AUTHORIZATION)?.to_str().ok()?)
}

/// The token of an `Authorization` value `Bearer <token>` (the scheme in any case).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}
