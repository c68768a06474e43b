//! The ops API: what an operator of the running suite needs when no Jaeger or Prometheus is
//! there (the embedded mode), as JSON on the HTTP origin, for admins only (a bearer access token
//! with the `admin` role, verified like every gRPC call's):
//!
//! - `GET /ops/v1/status`: the bus, and per hosted service whether it serves, its pool, its
//!   outbox backlog and each of its consumers' lag, unsettled deliveries, dead letters and
//!   delivery counts ([`crate::metrics::ScrapeSources::snapshot`], the figures `/metrics`
//!   exports);
//! - `GET /ops/v1/dead-letters[?consumer=…&event_id=…]`: the dead letters of the hosted
//!   consumers, oldest first;
//! - `POST /ops/v1/dead-letters/redrive` with `{"consumer": …}`, `{"event_id": …}`,
//!   `{"sequence": …}` or `{"all": true}`: re-drives them ([`crate::deadletter::redrive`]);
//! - `GET /ops/v1/traces[?limit=N]`: the most recent traces the process kept in memory (when it
//!   exports none over OTLP), most recent first ([`crate::telemetry::recent_traces`]).
//!
//! Only the dead letters of consumers this process hosts are listed or re-driven: the
//! namespace's dead-letter stream is shared, and another process's consumers are its own
//! operator's business. `emporiumctl ops` prints and drives this API.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use crate::auth::{TokenVerifier, roles};
use crate::deadletter::{self, DeadLetterFilter};
use crate::health::Readiness;
use crate::metrics::ScrapeSources;

/// The role a caller of the ops API must hold.
pub const ROLE: &str = roles::ADMIN;

/// What the ops API reads.
#[derive(Clone, Debug)]
pub struct OpsApi {
    sources: ScrapeSources,
    readiness: Readiness,
    verifier: Arc<TokenVerifier>,
}

/// The body of `GET /ops/v1/status`.
#[derive(Debug, Serialize)]
struct Status {
    bus: BusStatus,
    services: Vec<ServiceStatus>,
}

#[derive(Debug, Serialize)]
struct BusStatus {
    kind: &'static str,
    connected: bool,
}

#[derive(Debug, Serialize)]
struct ServiceStatus {
    /// `SERVING` or `NOT_SERVING`, as gRPC health says it.
    status: &'static str,
    #[serde(flatten)]
    figures: crate::metrics::ServiceSnapshot,
}

/// The query of `GET /ops/v1/dead-letters`.
#[derive(Debug, Default)]
struct ListQuery {
    consumer: Option<String>,
    event_id: Option<String>,
}

/// The body of `POST /ops/v1/dead-letters/redrive`: at least one selector, or `all`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedriveRequest {
    consumer: Option<String>,
    event_id: Option<String>,
    sequence: Option<u64>,
    #[serde(default)]
    all: bool,
}

/// A refusal or failure, as JSON: `{"error": "<code>", "message": "…"}`.
#[derive(Debug)]
struct OpsError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

// === impl OpsApi ===

impl OpsApi {
    pub fn new(
        sources: ScrapeSources,
        readiness: Readiness,
        verifier: Arc<TokenVerifier>,
    ) -> OpsApi {
        OpsApi {
            sources,
            readiness,
            verifier,
        }
    }

    /// The routes under `/ops/v1`.
    pub fn router(self) -> axum::Router {
        axum::Router::new()
            .route("/ops/v1/status", get(status))
            .route("/ops/v1/dead-letters", get(list_dead_letters))
            .route("/ops/v1/dead-letters/redrive", post(redrive_dead_letters))
            .route("/ops/v1/traces", get(recent_traces))
            .with_state(self)
    }

    /// Admits a caller holding the admin role.
    async fn authorize(&self, headers: &HeaderMap) -> Result<(), OpsError> {
        let Some(token) = crate::auth::bearer_token(headers) else {
            return Err(OpsError::unauthenticated(
                "this needs a bearer access token (log in first)",
            ));
        };
        let caller = self.verifier.verify(&token).await.map_err(|error| {
            tracing::debug!(error.message = %error, "Refused a bearer token on the ops API");
            OpsError::unauthenticated(error.reason())
        })?;
        if caller.has_role(ROLE) {
            Ok(())
        } else {
            Err(OpsError {
                status: StatusCode::FORBIDDEN,
                code: "forbidden",
                message: format!("the ops API needs the {ROLE} role"),
            })
        }
    }

    fn bus(&self) -> Result<(&crate::bus::Bus, &str), OpsError> {
        self.sources.bus().ok_or_else(|| OpsError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "unavailable",
            message: "no service is hosted here yet".to_owned(),
        })
    }

    /// Names a consumer hosted here, or refuses naming it.
    fn hosted(&self, consumer: Option<&str>) -> Result<BTreeSet<String>, OpsError> {
        let hosted: BTreeSet<String> = self.sources.consumer_names().map(str::to_owned).collect();
        match consumer {
            Some(consumer) if !hosted.contains(consumer) => Err(OpsError {
                status: StatusCode::NOT_FOUND,
                code: "not_found",
                message: format!(
                    "no consumer {consumer:?} runs here (hosted: {})",
                    if hosted.is_empty() {
                        "none".to_owned()
                    } else {
                        hosted.iter().cloned().collect::<Vec<_>>().join(", ")
                    }
                ),
            }),
            _ => Ok(hosted),
        }
    }
}

// === handlers ===

async fn status(State(api): State<OpsApi>, headers: HeaderMap) -> Result<Response, OpsError> {
    api.authorize(&headers).await?;
    let snapshot = api.sources.snapshot().await;
    let services = snapshot
        .services
        .into_iter()
        .map(|figures| ServiceStatus {
            status: if api.readiness.is_service_ready(figures.name) {
                "SERVING"
            } else {
                "NOT_SERVING"
            },
            figures,
        })
        .collect();
    let bus = match api.sources.bus() {
        Some((bus, _)) => BusStatus {
            kind: bus.kind(),
            connected: bus.is_connected(),
        },
        None => BusStatus {
            kind: "none",
            connected: false,
        },
    };
    Ok(json(Status { bus, services }))
}

async fn list_dead_letters(
    State(api): State<OpsApi>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, OpsError> {
    api.authorize(&headers).await?;
    let query = ListQuery::parse(query.as_deref().unwrap_or_default())?;
    let hosted = api.hosted(query.consumer.as_deref())?;
    let (bus, namespace) = api.bus()?;
    let filter = DeadLetterFilter {
        consumer: query.consumer,
        event_id: query.event_id,
        sequence: None,
    };
    let dead_letters = deadletter::list(bus, namespace, &filter)
        .await
        .map_err(OpsError::bus)?;
    let listed: Vec<serde_json::Value> = dead_letters
        .iter()
        .filter(|dead_letter| hosted.contains(&dead_letter.consumer))
        .map(deadletter::DeadLetter::to_json)
        .collect();
    Ok(json(listed))
}

async fn redrive_dead_letters(
    State(api): State<OpsApi>,
    headers: HeaderMap,
    request: Result<Json<RedriveRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, OpsError> {
    api.authorize(&headers).await?;
    let Json(request) =
        request.map_err(|rejection| OpsError::bad_request(rejection.body_text()))?;
    let selects = request.consumer.is_some() || request.event_id.is_some();
    if request.all == (selects || request.sequence.is_some()) {
        return Err(OpsError::bad_request(
            "say which dead letters to re-drive: consumer, event_id and/or sequence, or all: true \
             (not both)"
                .to_owned(),
        ));
    }
    let hosted = api.hosted(request.consumer.as_deref())?;
    let (bus, namespace) = api.bus()?;
    let filter = DeadLetterFilter {
        consumer: request.consumer,
        event_id: request.event_id,
        sequence: request.sequence,
    };
    // The selected dead letters of the consumers hosted here, read once.
    let selected: Vec<deadletter::DeadLetter> = deadletter::list(bus, namespace, &filter)
        .await
        .map_err(OpsError::bus)?
        .into_iter()
        .filter(|dead_letter| hosted.contains(&dead_letter.consumer))
        .collect();
    let redriven: Vec<serde_json::Value> = deadletter::redrive_listed(bus, namespace, selected)
        .await
        .map_err(OpsError::bus)?
        .iter()
        .map(deadletter::Redriven::to_json)
        .collect();
    Ok(json(redriven))
}

/// The body of `GET /ops/v1/traces`.
#[derive(Debug, Serialize)]
struct RecentTraces {
    /// False when the process exports its traces over OTLP (look in the collector) or traces
    /// nothing: then `traces` is empty.
    kept_in_memory: bool,
    traces: Vec<crate::telemetry::TraceSummary>,
}

async fn recent_traces(
    State(api): State<OpsApi>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, OpsError> {
    api.authorize(&headers).await?;
    let mut limit = None;
    for (name, value) in form_urlencoded::parse(query.as_deref().unwrap_or_default().as_bytes()) {
        match (name.as_ref(), value.parse::<usize>()) {
            ("limit", Ok(n)) if n > 0 && limit.is_none() => limit = Some(n),
            ("limit", _) => {
                return Err(OpsError::bad_request(format!(
                    "limit must be given once, as a whole number of 1 or more (got {value:?})"
                )));
            }
            (other, _) => {
                return Err(OpsError::bad_request(format!(
                    "unknown query parameter {other:?}: only limit is taken"
                )));
            }
        }
    }
    let mut traces = crate::telemetry::recent_traces();
    traces.truncate(limit.unwrap_or(usize::MAX));
    Ok(json(RecentTraces {
        kept_in_memory: crate::telemetry::keeps_traces(),
        traces,
    }))
}

fn json(body: impl Serialize) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

// === impl ListQuery ===

impl ListQuery {
    /// `consumer=…&event_id=…`, each at most once; anything else is refused, naming it.
    fn parse(query: &str) -> Result<ListQuery, OpsError> {
        let mut parsed = ListQuery::default();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            let slot = match name.as_ref() {
                "consumer" => &mut parsed.consumer,
                "event_id" => &mut parsed.event_id,
                other => {
                    return Err(OpsError::bad_request(format!(
                        "unknown query parameter {other:?}: only consumer and event_id filter \
                         dead letters"
                    )));
                }
            };
            if slot.replace(value.into_owned()).is_some() {
                return Err(OpsError::bad_request(format!(
                    "query parameter {name:?} is given twice"
                )));
            }
        }
        Ok(parsed)
    }
}

// === impl OpsError ===

impl OpsError {
    fn unauthenticated(message: &str) -> OpsError {
        OpsError {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthenticated",
            message: message.to_owned(),
        }
    }

    fn bad_request(message: String) -> OpsError {
        OpsError {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            message,
        }
    }

    /// The bus failed: logged in full, told as unavailable.
    fn bus(error: anyhow::Error) -> OpsError {
        tracing::warn!(error.cause_chain = ?error, error.message = %error, "The ops API could not read the bus");
        OpsError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "unavailable",
            message: format!("{error:#}"),
        }
    }
}

impl IntoResponse for OpsError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.code, "message": self.message }));
        let mut response = (self.status, body).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
