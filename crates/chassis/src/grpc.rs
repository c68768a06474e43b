//! gRPC bootstrap shared by every service: the standard health service (per-service status, NOT
//! SERVING until the service is ready and again from the moment shutdown begins), server
//! reflection, request tracing, token verification and the contract's access rules (before any
//! handler runs), graceful shutdown, and the one mapping from [`Error`] to a status. One listener
//! may serve several services (`emporium up`): each reports its own health, and reflection lists
//! them all.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::{Code, Status};
use tonic_health::ServingStatus;
use tonic_types::{ErrorDetails, StatusExt};

use crate::auth::{AccessTable, AuthLayer};
use crate::bus::Bus;
use crate::error::Error;
use crate::health::{Readiness, ServiceStatus};
use crate::metrics::RpcMetricsLayer;
use crate::storage::{Database, Timestamp};
use crate::telemetry::TraceContextLayer;

/// A bound gRPC listener, ready to serve.
#[derive(Debug)]
pub struct GrpcListener {
    listener: TcpListener,
}

/// What a process hands to [`GrpcListener::serve`]: the routes of one or more services.
pub struct GrpcService {
    /// Every served service's routes (its tonic server, plus any extra).
    pub routes: Routes,
    /// The services behind `routes`, each with its health names and the database its readiness
    /// depends on. The health service reports each one's names, and reflection lists every name
    /// (with health and reflection), and nothing else.
    pub services: Vec<ServedService>,
    /// The encoded descriptor set, for reflection.
    pub file_descriptor_set: &'static [u8],
    /// Watched for readiness: while it is disconnected every service reports NOT_SERVING.
    pub bus: Bus,
    /// Verifies bearer tokens for the access rules the contract declares and for
    /// [`crate::auth::authenticated`]; `None` while a service does not enforce tokens yet. Every
    /// service on one listener shares it.
    pub verifier: Option<std::sync::Arc<crate::auth::TokenVerifier>>,
    /// Set with every status the health service reports (before it), for the HTTP probes.
    pub readiness: Readiness,
}

/// One service behind a [`GrpcService`], as health and reflection see it.
#[derive(Clone, Debug)]
pub struct ServedService {
    /// The service's name (`catalog`), as the ops API reports it.
    pub name: &'static str,
    /// Fully qualified names of the service's gRPC services, e.g.
    /// `emporium.catalog.v1.CatalogService`.
    pub health_names: Vec<&'static str>,
    /// Watched for readiness: while it does not answer, this service reports NOT_SERVING.
    pub database: Database,
}

// === impl GrpcListener ===

impl GrpcListener {
    /// Binds `addr` (port 0 picks a free port).
    pub async fn bind(addr: SocketAddr) -> anyhow::Result<GrpcListener> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("Failed to listen on {addr}"))?;
        Ok(GrpcListener { listener })
    }

    pub fn local_addr(&self) -> SocketAddr {
        // A bound TCP listener always has a local address.
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Serves until `shutdown` is cancelled; then reports NOT_SERVING at once, keeps serving
    /// (new connections and calls too) for `delay`, so load balancers that poll health stop
    /// sending calls before the port closes, then stops accepting and lets in-flight calls finish
    /// for up to `grace`.
    pub async fn serve(
        self,
        service: GrpcService,
        shutdown: CancellationToken,
        delay: Duration,
        grace: Duration,
    ) -> anyhow::Result<()> {
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        // Reflection lists exactly what this port serves: the service's own names, health and
        // reflection itself. The descriptor set holds every contract (so the types resolve),
        // but advertising all of it would send reflection-driven clients to the wrong port.
        let served_names: Vec<&'static str> = service
            .services
            .iter()
            .flat_map(|served| served.health_names.iter().copied())
            .chain([
                service_name_of(&health_service),
                REFLECTION_V1_NAME,
                REFLECTION_V1ALPHA_NAME,
            ])
            .collect();
        let reflection = || {
            served_names.iter().fold(
                tonic_reflection::server::Builder::configure()
                    .register_encoded_file_descriptor_set(service.file_descriptor_set)
                    .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET),
                |builder, name| builder.with_service_name(*name),
            )
        };
        let reflection_v1 = reflection()
            .build_v1()
            .context("Failed to build the reflection service")?;
        let reflection_v1alpha = reflection()
            .build_v1alpha()
            .context("Failed to build the reflection service")?;
        debug_assert_eq!(service_name_of(&reflection_v1), REFLECTION_V1_NAME);
        debug_assert_eq!(
            service_name_of(&reflection_v1alpha),
            REFLECTION_V1ALPHA_NAME
        );

        // Readiness: migrations ran before we got here, so each service's status depends on the
        // bus and its database answering. Set it before accepting the first call, then keep
        // watching.
        let ready = readiness_of(&service.bus, &service.services).await;
        let statuses = Statuses {
            reporter: health_reporter.clone(),
            readiness: service.readiness.clone(),
        };
        statuses.set(&service.services, &ready).await;
        let readiness = tokio::spawn(watch_readiness(
            statuses.clone(),
            service.services.clone(),
            service.bus.clone(),
            shutdown.clone(),
            ready,
        ));

        let routes = service
            .routes
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);
        let stop_accepting = CancellationToken::new();
        // Who may call each RPC, from the contract's `(emporium.api.v1.access)` options: read
        // once here, looked up once per call.
        let service_names: Vec<&'static str> = service
            .services
            .iter()
            .flat_map(|served| served.health_names.iter().copied())
            .collect();
        let access = AccessTable::from_descriptor_set(service.file_descriptor_set, &service_names)?;
        let metrics = RpcMetricsLayer::new(access.paths());
        let auth = match service.verifier {
            Some(verifier) => AuthLayer::new(verifier, access),
            None => AuthLayer::disabled(access),
        };
        // Layer order, outermost first: the request span (a child of the caller's
        // `traceparent`), then the RPC metrics (every call counted, refusals too), the span's
        // status code and the task-local trace context (without a subscriber), then token
        // verification and the contract's access rules (so a refusal is traced), then the
        // routes.
        let server = tonic::transport::Server::builder()
            .trace_fn(crate::telemetry::grpc_server_span::<()>)
            .layer(metrics)
            .layer(TraceContextLayer)
            .layer(auth)
            .add_routes(routes)
            .serve_with_incoming_shutdown(
                crate::net::grpc_incoming(self.listener),
                stop_accepting.clone().cancelled_owned(),
            );
        let mut server = std::pin::pin!(server);
        tokio::select! {
            result = &mut server => {
                readiness.abort();
                return result.context("gRPC server failed");
            }
            () = shutdown.cancelled() => {}
        }
        // The readiness watcher has stopped with `shutdown`, so nothing reports SERVING again.
        let stopping = vec![false; service.services.len()];
        statuses.set(&service.services, &stopping).await;
        if !delay.is_zero() {
            tracing::info!(
                delay_seconds = delay.as_secs_f64(),
                "Reporting NOT_SERVING; still serving for the shutdown delay"
            );
            tokio::select! {
                result = &mut server => {
                    readiness.abort();
                    return result.context("gRPC server failed");
                }
                () = tokio::time::sleep(delay) => {}
            }
        }
        stop_accepting.cancel();
        match tokio::time::timeout(grace, server).await {
            Ok(result) => result.context("gRPC server failed while draining")?,
            Err(_) => tracing::warn!(
                grace_seconds = grace.as_secs(),
                "In-flight gRPC calls did not finish within the grace period"
            ),
        }
        readiness.abort();
        Ok(())
    }
}

/// The reflection services' names, as their servers declare them (checked in debug builds).
const REFLECTION_V1_NAME: &str = "grpc.reflection.v1.ServerReflection";
const REFLECTION_V1ALPHA_NAME: &str = "grpc.reflection.v1alpha.ServerReflection";

/// The fully qualified name a generated tonic server serves under.
fn service_name_of<S: tonic::server::NamedService>(_: &S) -> &'static str {
    S::NAME
}

/// Reports each service SERVING while the bus is connected and its database answers,
/// NOT_SERVING otherwise; stops at shutdown.
async fn watch_readiness(
    statuses: Statuses,
    services: Vec<ServedService>,
    bus: Bus,
    shutdown: CancellationToken,
    mut ready: Vec<bool>,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let now_ready = tokio::select! {
            () = shutdown.cancelled() => return,
            now_ready = readiness_of(&bus, &services) => now_ready,
        };
        if now_ready != ready {
            for ((served, was_ready), is_ready) in services.iter().zip(&ready).zip(&now_ready) {
                let service = served.health_names.first().copied().unwrap_or_default();
                match (*was_ready, *is_ready) {
                    (false, true) => tracing::info!(
                        service,
                        bus = bus.kind(),
                        "Bus and database reachable again; reporting SERVING"
                    ),
                    (true, false) => tracing::warn!(
                        service,
                        bus = bus.kind(),
                        bus.connected = bus.is_connected(),
                        "Bus or database unreachable; reporting NOT_SERVING"
                    ),
                    _ => {}
                }
            }
            statuses.set(&services, &now_ready).await;
            ready = now_ready;
        }
    }
}

/// Whether each service is ready: the bus is connected and its database answers.
async fn readiness_of(bus: &Bus, services: &[ServedService]) -> Vec<bool> {
    let checks = services
        .iter()
        .map(|served| is_ready(bus, &served.database));
    futures::future::join_all(checks).await
}

/// Whether the bus is connected and the database answers a trivial query within a few seconds.
async fn is_ready(bus: &Bus, database: &Database) -> bool {
    if !bus.is_connected() {
        return false;
    }
    let answered = tokio::time::timeout(Duration::from_secs(3), async {
        let mut tx = database.single_read().await?;
        crate::on_backend!(tx, conn => {
            sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(conn).await
        })?;
        tx.rollback().await
    })
    .await;
    match answered {
        Ok(Ok(())) => true,
        Ok(Err(error)) => {
            tracing::debug!(error.message = %error, "The database does not answer");
            false
        }
        Err(_) => {
            tracing::debug!("The database did not answer within 3 s");
            false
        }
    }
}

/// Where the services' statuses are reported: the gRPC health service and the HTTP probes.
#[derive(Clone)]
struct Statuses {
    reporter: tonic_health::server::HealthReporter,
    readiness: Readiness,
}

impl Statuses {
    /// Sets each service's names to SERVING or NOT_SERVING as `ready` says (one flag per
    /// service, in order), and the server as a whole (`""`) to SERVING only while every service
    /// is. The HTTP probes' readiness is set first, so that whatever gRPC health reports,
    /// `/readyz` already says.
    async fn set(&self, services: &[ServedService], ready: &[bool]) {
        self.readiness.set_services(
            services
                .iter()
                .zip(ready)
                .map(|(served, is_ready)| (served.name, *is_ready))
                .collect(),
        );
        self.readiness.set(
            services
                .iter()
                .zip(ready)
                .flat_map(|(served, is_ready)| {
                    served
                        .health_names
                        .iter()
                        .copied()
                        .map(move |name| ServiceStatus {
                            name,
                            serving: *is_ready,
                        })
                })
                .collect(),
        );
        for (served, is_ready) in services.iter().zip(ready) {
            for name in served.health_names.iter().copied() {
                self.reporter
                    .set_service_status(name, serving_status(*is_ready))
                    .await;
            }
        }
        let all_ready = ready.iter().all(|is_ready| *is_ready);
        self.reporter
            .set_service_status("", serving_status(all_ready))
            .await;
    }
}

fn serving_status(ready: bool) -> ServingStatus {
    if ready {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    }
}

// === Error -> Status ===

impl From<Error> for Status {
    fn from(error: Error) -> Status {
        match error {
            Error::Validation(violations) => {
                let mut details = ErrorDetails::new();
                for violation in &violations {
                    details.add_bad_request_violation(&violation.field, &violation.description);
                }
                let message = Error::Validation(violations).to_string();
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            Error::AlreadyExists { resource, field } => {
                let message = Error::AlreadyExists { resource, field }.to_string();
                Status::with_error_details(
                    Code::AlreadyExists,
                    message,
                    ErrorDetails::with_bad_request_violation(field, "already taken"),
                )
            }
            error @ Error::NotFound { .. } => Status::not_found(error.to_string()),
            Error::Conflict(message) => Status::aborted(message),
            Error::FailedPrecondition(message) => Status::failed_precondition(message),
            Error::Unauthenticated(message) => Status::unauthenticated(message),
            Error::PermissionDenied(message) => Status::permission_denied(message),
            Error::Unexpected(error) => {
                tracing::error!(
                    error.cause_chain = ?error,
                    error.message = %error,
                    "Request failed unexpectedly"
                );
                Status::internal("internal error")
            }
        }
    }
}

// === conversions every service needs ===

pub fn timestamp_to_proto(timestamp: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: timestamp.unix_timestamp(),
        // Always below 1e9, so it fits an i32.
        nanos: i32::try_from(timestamp.nanosecond()).unwrap_or(0),
    }
}

/// For batch gets: orders `found` as `ids` asks (duplicates answered once) and lists the ids
/// nothing matched.
pub fn in_request_order<K, T>(
    ids: &[K],
    found: Vec<T>,
    id_of: impl Fn(&T) -> K,
) -> (Vec<T>, Vec<String>)
where
    K: Eq + std::hash::Hash + std::fmt::Display,
{
    let mut by_id: std::collections::HashMap<K, T> =
        found.into_iter().map(|item| (id_of(&item), item)).collect();
    let mut ordered = Vec::with_capacity(by_id.len());
    let mut missing = Vec::new();
    for id in ids {
        match by_id.remove(id) {
            Some(item) => ordered.push(item),
            None if !ordered.iter().any(|item| id_of(item) == *id) => missing.push(id.to_string()),
            None => {}
        }
    }
    (ordered, missing)
}
