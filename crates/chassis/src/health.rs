//! The process's health as HTTP probes, for load balancers and Kubernetes: `/healthz` (live: the
//! process answers) and `/readyz` (ready: every hosted service's migrations ran, its database
//! answers and the bus is connected). `/readyz` reads the same [`Readiness`] the gRPC health
//! service reports from, updated before it, so the two never disagree: NOT_SERVING until the
//! first check passed, whenever a check fails, and from the moment shutdown begins.

use std::sync::Arc;

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Serialize;
use tokio::sync::watch;

/// Whether each hosted service is ready, by its gRPC health names; shared by the gRPC health
/// service (which sets it) and the HTTP probes (which read it).
#[derive(Clone, Debug)]
pub struct Readiness {
    statuses: Arc<watch::Sender<Vec<ServiceStatus>>>,
    /// The same, by hosted service (`catalog`), for the ops API: a service with no gRPC
    /// service of its own (only consumers) is here too.
    services: Arc<watch::Sender<Vec<(&'static str, bool)>>>,
}

/// One gRPC service name and whether it is serving.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceStatus {
    /// The fully qualified gRPC service name, as the health service knows it, e.g.
    /// `emporium.catalog.v1.CatalogService`.
    pub name: &'static str,
    pub serving: bool,
}

/// The body of `/readyz` and `/healthz`.
#[derive(Debug, Serialize)]
struct ProbeBody {
    /// `SERVING` or `NOT_SERVING`, as gRPC health says it.
    status: &'static str,
    /// Each gRPC service name and its status (`/readyz` only).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    services: std::collections::BTreeMap<&'static str, &'static str>,
}

// === impl Readiness ===

impl Readiness {
    /// Nothing ready yet: `/readyz` answers 503 until the first statuses are set.
    pub fn new() -> Readiness {
        Readiness {
            statuses: Arc::new(watch::Sender::new(Vec::new())),
            services: Arc::new(watch::Sender::new(Vec::new())),
        }
    }

    /// Replaces every service's status.
    pub(crate) fn set(&self, statuses: Vec<ServiceStatus>) {
        self.statuses.send_replace(statuses);
    }

    /// Replaces every hosted service's status.
    pub(crate) fn set_services(&self, services: Vec<(&'static str, bool)>) {
        self.services.send_replace(services);
    }

    /// Whether the hosted service `name` (`catalog`) is serving; false before the first check.
    pub fn is_service_ready(&self, name: &str) -> bool {
        self.services
            .borrow()
            .iter()
            .any(|(service, serving)| *service == name && *serving)
    }

    /// The statuses as last set.
    pub fn statuses(&self) -> Vec<ServiceStatus> {
        self.statuses.borrow().clone()
    }

    /// Ready when there is at least one service and every one is serving.
    pub fn is_ready(&self) -> bool {
        all_serving(&self.statuses.borrow())
    }

    /// The operations endpoints: `GET /healthz`, `GET /readyz` and `GET /metrics` (the
    /// process's Prometheus metrics, [`crate::metrics`], with the figures of `sources` read at
    /// each scrape).
    pub fn router(&self, sources: crate::metrics::ScrapeSources) -> axum::Router {
        let readiness = self.clone();
        axum::Router::new()
            .route("/healthz", get(live))
            .route("/readyz", get(move || ready(readiness.clone())))
            .route("/metrics", get(move || metrics(sources.clone())))
    }
}

impl Default for Readiness {
    fn default() -> Readiness {
        Readiness::new()
    }
}

/// Live as long as the process answers at all: a stopping or not-yet-ready process is still
/// live (restarting it would not help; `/readyz` takes it out of rotation).
async fn live() -> impl IntoResponse {
    probe_response(
        StatusCode::OK,
        ProbeBody {
            status: status_name(true),
            services: Default::default(),
        },
    )
}

/// 200 while every hosted service is ready, 503 otherwise; the body names each one's status.
async fn ready(readiness: Readiness) -> impl IntoResponse {
    // One read of the statuses, so the code and the body agree.
    let statuses = readiness.statuses();
    let is_ready = all_serving(&statuses);
    let services = statuses
        .into_iter()
        .map(|status| (status.name, status_name(status.serving)))
        .collect();
    let code = if is_ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    probe_response(
        code,
        ProbeBody {
            status: status_name(is_ready),
            services,
        },
    )
}

/// The text exposition format, version 0.0.4, which every Prometheus scrapes.
async fn metrics(sources: crate::metrics::ScrapeSources) -> impl IntoResponse {
    sources.collect().await;
    (
        [
            (
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        crate::metrics::render(),
    )
}

fn all_serving(statuses: &[ServiceStatus]) -> bool {
    !statuses.is_empty() && statuses.iter().all(|status| status.serving)
}

fn probe_response(code: StatusCode, body: ProbeBody) -> impl IntoResponse {
    (code, [(header::CACHE_CONTROL, "no-store")], Json(body))
}

fn status_name(serving: bool) -> &'static str {
    if serving { "SERVING" } else { "NOT_SERVING" }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    use super::*;

    async fn get_probe(readiness: &Readiness, path: &str) -> (StatusCode, serde_json::Value) {
        let response = readiness
            .router(crate::metrics::ScrapeSources::default())
            .oneshot(
                http::Request::get(path)
                    .body(Body::empty())
                    .expect("a valid request"),
            )
            .await
            .expect("the router answers");
        let code = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("a body")
            .to_bytes();
        (code, serde_json::from_slice(&bytes).expect("a JSON body"))
    }

    fn status(name: &'static str, serving: bool) -> ServiceStatus {
        ServiceStatus { name, serving }
    }

    #[tokio::test]
    async fn readyz_is_unavailable_until_statuses_are_set_and_while_any_service_is_not_serving() {
        let readiness = Readiness::new();
        let (code, body) = get_probe(&readiness, "/readyz").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["status"], "NOT_SERVING");

        readiness.set(vec![status("a.v1.A", true), status("b.v1.B", false)]);
        let (code, body) = get_probe(&readiness, "/readyz").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body,
            serde_json::json!({
                "status": "NOT_SERVING",
                "services": {"a.v1.A": "SERVING", "b.v1.B": "NOT_SERVING"},
            })
        );

        readiness.set(vec![status("a.v1.A", true), status("b.v1.B", true)]);
        let (code, body) = get_probe(&readiness, "/readyz").await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(body["status"], "SERVING");
    }

    #[tokio::test]
    async fn healthz_is_live_whatever_the_readiness() {
        let readiness = Readiness::new();
        readiness.set(vec![status("a.v1.A", false)]);
        let (code, body) = get_probe(&readiness, "/healthz").await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(body, serde_json::json!({"status": "SERVING"}));
    }
}
