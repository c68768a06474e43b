//! Prometheus metrics: one recorder per process behind the `metrics` facade, rendered in the
//! text exposition format at `/metrics` beside the health probes. Per RPC the established
//! `grpc_server_*` names of the gRPC ecosystem's Prometheus middleware (go-grpc-prometheus,
//! and the Grafana dashboards built on it), from [`RpcMetricsLayer`]; docs/operations.md lists
//! every metric and its labels. Labels never carry ids or emails: an RPC is named only if the
//! contract (or the standard health and reflection services) declares it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

mod process;

/// Upper bounds, in seconds, of the latency histograms' buckets: from a cached read (well under
/// a millisecond) to a call that waits out a timeout.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often the recorder drains its histograms' samples into their buckets (and so bounds the
/// memory they hold between scrapes).
pub const UPKEEP_PERIOD: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed on first use. If another recorder was installed first (a
/// test harness of its own), the metrics go there and this one renders what it has: nothing.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)
            .map(PrometheusBuilder::build_recorder);
        let recorder = match recorder {
            Ok(recorder) => recorder,
            // The bucket list above is not empty, the one thing that can fail here.
            Err(error) => {
                tracing::error!(error.message = %error, "Invalid histogram buckets; using summaries");
                PrometheusBuilder::new().build_recorder()
            }
        };
        let handle = recorder.handle();
        if ::metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("A metrics recorder was installed already; /metrics renders nothing");
        }
        describe();
        handle
    })
}

/// The help text of every metric (Prometheus shows it; `promtool check metrics` requires it).
fn describe() {
    ::metrics::describe_counter!(
        "grpc_server_started_total",
        "gRPC calls started on the server."
    );
    ::metrics::describe_counter!(
        "emporium_graphql_requests_total",
        "GraphQL requests the gateway executed, by outcome (ok, error: the answer carries errors, timeout)."
    );
    ::metrics::describe_histogram!(
        "emporium_graphql_request_seconds",
        "Seconds the gateway took to answer a GraphQL request."
    );
    ::metrics::describe_gauge!(
        "emporium_graphql_subscriptions",
        "GraphQL subscriptions the gateway is serving."
    );
    ::metrics::describe_counter!(
        "grpc_server_handled_total",
        "gRPC calls completed on the server, by status code."
    );
    ::metrics::describe_histogram!(
        "grpc_server_handling_seconds",
        "Seconds from a gRPC call's arrival to its response headers (a unary call's whole time)."
    );
    ::metrics::describe_histogram!(
        "emporium_db_acquire_seconds",
        "Seconds a transaction or read waited for its pooled connection (writes on SQLite: for their turn in the file's write queue too), by kind (read, write)."
    );
    ::metrics::describe_counter!(
        "emporium_db_acquire_failures_total",
        "Transactions or reads that got no connection (the pool's wait ran out, or the database refused)."
    );
    ::metrics::describe_histogram!(
        "emporium_db_transaction_seconds",
        "Seconds from a write transaction's begin to its commit (its fsync included) or rollback, by outcome (commit, rollback)."
    );
    ::metrics::describe_gauge!(
        "emporium_db_pool_connections",
        "Connections the service's database pool holds, by state (idle, in_use)."
    );
    ::metrics::describe_gauge!(
        "emporium_db_pool_max_connections",
        "The most connections the service's database pool opens."
    );
    ::metrics::describe_gauge!(
        "emporium_outbox_unpublished_events",
        "Events recorded in the service's outbox and not yet published (parked ones excluded)."
    );
    ::metrics::describe_gauge!(
        "emporium_outbox_oldest_unpublished_age_seconds",
        "Seconds since the oldest unpublished event was recorded (0 when none waits)."
    );
    ::metrics::describe_gauge!(
        "emporium_outbox_parked_events",
        "Events the relay parked because the bus refuses them for good."
    );
    ::metrics::describe_counter!(
        "emporium_outbox_published_total",
        "Events the relay published from the service's outbox."
    );
    ::metrics::describe_counter!(
        "emporium_outbox_parked_total",
        "Events the relay parked since the process started."
    );
    ::metrics::describe_counter!(
        "emporium_consumer_deliveries_total",
        "Deliveries the consumer settled, by outcome (applied, duplicate, stale, gap, retried, dead_lettered, unavailable)."
    );
    ::metrics::describe_gauge!(
        "emporium_consumer_pending_messages",
        "Messages on the stream matching the consumer's filter that it has not been delivered yet: its lag."
    );
    ::metrics::describe_gauge!(
        "emporium_consumer_ack_pending_messages",
        "Messages delivered to the consumer and not settled yet."
    );
    ::metrics::describe_gauge!(
        "emporium_consumer_dead_letters",
        "Dead letters the consumer parked that wait in the dead-letter stream (a re-drive removes them)."
    );
    ::metrics::describe_counter!(
        "emporium_auth_tokens_refused_total",
        "Bearer tokens the process refused, by reason (malformed, wrong_algorithm, not_an_access_token, missing_key_id, unknown_key, expired, invalid, keys_unavailable)."
    );
    ::metrics::describe_counter!(
        "emporium_auth_jwks_fetches_total",
        "Fetches of the issuer's JWKS to verify tokens, by outcome (ok, error)."
    );
    ::metrics::describe_counter!(
        "emporium_scrape_failures_total",
        "Scrapes at which one of the service's figures (database or bus) could not be read (left at their last value)."
    );
}

/// The `/metrics` body: what the recorder holds, then the process collector's figures.
pub fn render() -> String {
    let mut body = handle().render();
    process::render(&mut body);
    body
}

/// What the process hosts, read at each scrape of `/metrics` and by the ops API
/// ([`crate::ops`]): each service's outbox backlog, the age of its oldest event, parked events
/// and pool connections, and each of its consumers' position on the bus and dead letters. Cheap
/// to clone.
#[derive(Clone, Debug, Default)]
pub struct ScrapeSources {
    inner: Arc<Sources>,
}

#[derive(Debug, Default)]
struct Sources {
    services: Vec<SourceService>,
    /// The bus the consumers consume from (none: a host with no service yet).
    bus: Option<crate::bus::Bus>,
    /// The bus namespace, whose dead-letter stream holds the consumers' dead letters.
    namespace: String,
}

/// One hosted service, as the scrape reads it.
#[derive(Clone, Debug)]
pub struct SourceService {
    pub name: &'static str,
    pub database: crate::storage::Database,
    pub consumers: Vec<HostedConsumer>,
}

/// A consumer the host runs: what it consumes and its live counts.
#[derive(Clone, Debug)]
pub struct HostedConsumer {
    /// Its durable name.
    pub name: String,
    pub stream: String,
    pub filter_subject: String,
    pub stats: Arc<crate::consumer::ConsumerStats>,
}

/// The figures of every hosted service at one moment.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Snapshot {
    pub services: Vec<ServiceSnapshot>,
}

/// One service's figures; a part that could not be read in time is `None` (and counted in
/// `emporium_scrape_failures_total`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct ServiceSnapshot {
    pub name: &'static str,
    pub pool: PoolFigures,
    pub outbox: Option<OutboxFigures>,
    pub consumers: Vec<ConsumerSnapshot>,
}

#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct PoolFigures {
    pub idle: u32,
    pub in_use: u32,
    pub max: u32,
}

#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct OutboxFigures {
    pub unpublished: u64,
    pub parked: u64,
    /// Seconds since the oldest unpublished event was recorded (0 when none waits).
    pub oldest_unpublished_age_seconds: f64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct ConsumerSnapshot {
    pub name: String,
    pub stream: String,
    pub filter_subject: String,
    /// Its position on the bus: `pending` is its lag. None: not readable, or not created yet.
    pub position: Option<crate::bus::ConsumerPosition>,
    /// Dead letters it parked that wait in the dead-letter stream.
    pub dead_letters: Option<u64>,
    /// How its deliveries ended since the process started.
    pub deliveries: crate::consumer::ConsumerCounts,
}

/// How long one service's figures (or the bus's) may take at a scrape before they are left out
/// of it (a database that does not answer must not stall the whole scrape).
const SCRAPE_QUERY_TIMEOUT: Duration = Duration::from_secs(2);

impl ScrapeSources {
    /// Reads `services`, whose consumers consume from `bus` in `namespace`.
    pub fn new(
        services: Vec<SourceService>,
        bus: crate::bus::Bus,
        namespace: &str,
    ) -> ScrapeSources {
        ScrapeSources {
            inner: Arc::new(Sources {
                services,
                bus: Some(bus),
                namespace: namespace.to_owned(),
            }),
        }
    }

    /// The bus the consumers consume from, and its namespace.
    pub fn bus(&self) -> Option<(&crate::bus::Bus, &str)> {
        self.inner
            .bus
            .as_ref()
            .map(|bus| (bus, self.inner.namespace.as_str()))
    }

    /// The durable names of every hosted consumer.
    pub fn consumer_names(&self) -> impl Iterator<Item = &str> {
        self.inner
            .services
            .iter()
            .flat_map(|service| service.consumers.iter())
            .map(|consumer| consumer.name.as_str())
    }

    /// Reads every service's figures, each read bounded by a timeout; what fails or times out is
    /// `None` in the snapshot and counts a failed scrape for its service.
    pub async fn snapshot(&self) -> Snapshot {
        let dead_letters = self.dead_letter_counts().await;
        let reads = self.inner.services.iter().map(|service| {
            let dead_letters = dead_letters.as_ref();
            async move {
                let (size, idle) = service.database.pool_connections();
                let outbox = bounded(
                    service.name,
                    "outbox",
                    crate::outbox::backlog(&service.database),
                )
                .await
                .map(|backlog| OutboxFigures {
                    unpublished: u64::try_from(backlog.unpublished).unwrap_or(0),
                    parked: u64::try_from(backlog.parked).unwrap_or(0),
                    oldest_unpublished_age_seconds: backlog.oldest_unpublished.map_or(
                        0.0,
                        |oldest| {
                            (time::OffsetDateTime::now_utc() - oldest.into_inner())
                                .as_seconds_f64()
                                .max(0.0)
                        },
                    ),
                });
                let consumers = service.consumers.iter().map(|consumer| async move {
                    let position = match &self.inner.bus {
                        Some(bus) => bounded(
                            service.name,
                            "consumer position",
                            bus.consumer_position(&consumer.stream, &consumer.name),
                        )
                        .await
                        .flatten(),
                        None => None,
                    };
                    let dead_letters = dead_letters.map(|counts| {
                        let subject = crate::consumer::dead_letter_subject(
                            &self.inner.namespace,
                            &consumer.name,
                        );
                        counts.get(&subject).copied().unwrap_or(0)
                    });
                    ConsumerSnapshot {
                        name: consumer.name.clone(),
                        stream: consumer.stream.clone(),
                        filter_subject: consumer.filter_subject.clone(),
                        position,
                        dead_letters,
                        deliveries: consumer.stats.counts(),
                    }
                });
                ServiceSnapshot {
                    name: service.name,
                    pool: PoolFigures {
                        idle,
                        in_use: size.saturating_sub(idle),
                        max: service.database.max_connections(),
                    },
                    outbox,
                    consumers: futures::future::join_all(consumers).await,
                }
            }
        });
        Snapshot {
            services: futures::future::join_all(reads).await,
        }
    }

    /// Reads every figure ([`ScrapeSources::snapshot`]) into the recorder's gauges; what could
    /// not be read keeps its last value.
    pub async fn collect(&self) {
        for service in self.snapshot().await.services {
            let name = service.name;
            ::metrics::gauge!("emporium_db_pool_connections", "service" => name, "state" => "idle")
                .set(f64::from(service.pool.idle));
            ::metrics::gauge!("emporium_db_pool_connections", "service" => name, "state" => "in_use")
                .set(f64::from(service.pool.in_use));
            ::metrics::gauge!("emporium_db_pool_max_connections", "service" => name)
                .set(f64::from(service.pool.max));
            if let Some(outbox) = service.outbox {
                ::metrics::gauge!("emporium_outbox_unpublished_events", "service" => name)
                    .set(outbox.unpublished as f64);
                ::metrics::gauge!("emporium_outbox_parked_events", "service" => name)
                    .set(outbox.parked as f64);
                ::metrics::gauge!("emporium_outbox_oldest_unpublished_age_seconds", "service" => name)
                    .set(outbox.oldest_unpublished_age_seconds);
            }
            for consumer in service.consumers {
                if let Some(position) = consumer.position {
                    ::metrics::gauge!("emporium_consumer_pending_messages", "consumer" => consumer.name.clone())
                        .set(position.pending as f64);
                    ::metrics::gauge!("emporium_consumer_ack_pending_messages", "consumer" => consumer.name.clone())
                        .set(position.ack_pending as f64);
                }
                if let Some(dead_letters) = consumer.dead_letters {
                    ::metrics::gauge!("emporium_consumer_dead_letters", "consumer" => consumer.name)
                        .set(dead_letters as f64);
                }
            }
        }
    }

    /// The dead letters waiting in the namespace's dead-letter stream, by subject; none when
    /// the process hosts no consumer or the stream cannot be read.
    async fn dead_letter_counts(&self) -> Option<std::collections::BTreeMap<String, u64>> {
        let bus = self.inner.bus.as_ref()?;
        let first = self
            .inner
            .services
            .iter()
            .find(|service| !service.consumers.is_empty())?;
        let stream = crate::consumer::dead_letter_stream(&self.inner.namespace);
        let filter = format!("{}.deadletter.>", self.inner.namespace);
        bounded(
            first.name,
            "dead letters",
            bus.count_by_subject(&stream.name, &filter),
        )
        .await
    }
}

/// Awaits `read` for at most [`SCRAPE_QUERY_TIMEOUT`]; a failure or timeout is logged, counted
/// against `service` and read as `None`.
async fn bounded<T, E: std::fmt::Display>(
    service: &'static str,
    what: &'static str,
    read: impl Future<Output = Result<T, E>>,
) -> Option<T> {
    let reason = match tokio::time::timeout(SCRAPE_QUERY_TIMEOUT, read).await {
        Ok(Ok(value)) => return Some(value),
        Ok(Err(error)) => error.to_string(),
        Err(_) => format!("no answer within {SCRAPE_QUERY_TIMEOUT:?}"),
    };
    tracing::debug!(
        service,
        what,
        reason,
        "Failed to read a figure for /metrics"
    );
    ::metrics::counter!("emporium_scrape_failures_total", "service" => service).increment(1);
    None
}

/// Drains the histograms every [`UPKEEP_PERIOD`] until `shutdown`.
pub async fn run_upkeep(shutdown: tokio_util::sync::CancellationToken) {
    let handle = handle();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(UPKEEP_PERIOD) => handle.run_upkeep(),
        }
    }
}

/// Counts and times every gRPC call, by service, method and status code:
/// `grpc_server_started_total`, `grpc_server_handled_total` (with `grpc_code`, the code's name
/// as gRPC spells it: `OK`, `InvalidArgument`, …) and `grpc_server_handling_seconds` (a
/// histogram, until the response's headers: a unary call's whole time). A path no served
/// service declares is counted as `grpc_service="unknown"`, `grpc_method="unknown"`.
#[derive(Clone, Debug)]
pub struct RpcMetricsLayer {
    methods: Arc<HashMap<String, MethodLabels>>,
}

#[derive(Clone, Debug)]
struct MethodLabels {
    service: String,
    method: String,
}

#[derive(Clone, Debug)]
pub struct RpcMetricsService<S> {
    inner: S,
    methods: Arc<HashMap<String, MethodLabels>>,
}

// === impl RpcMetricsLayer ===

impl RpcMetricsLayer {
    /// Names the methods at `paths` (`/<package>.<Service>/<Method>`), and those of the standard
    /// health and reflection services.
    pub fn new<'a>(paths: impl IntoIterator<Item = &'a str>) -> RpcMetricsLayer {
        let standard = [
            "/grpc.health.v1.Health/Check",
            "/grpc.health.v1.Health/Watch",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ];
        let methods = paths
            .into_iter()
            .chain(standard)
            .filter_map(|path| {
                let (service, method) = path.strip_prefix('/')?.split_once('/')?;
                let labels = MethodLabels {
                    service: service.to_owned(),
                    method: method.to_owned(),
                };
                Some((path.to_owned(), labels))
            })
            .collect();
        RpcMetricsLayer {
            methods: Arc::new(methods),
        }
    }
}

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcMetricsService {
            inner,
            methods: Arc::clone(&self.methods),
        }
    }
}

// === impl RpcMetricsService ===

impl<S, B, ResBody> tower::Service<http::Request<B>> for RpcMetricsService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<ResBody>> + Send,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let (service, method) = match self.methods.get(request.uri().path()) {
            Some(labels) => (labels.service.clone(), labels.method.clone()),
            None => ("unknown".to_owned(), "unknown".to_owned()),
        };
        ::metrics::counter!(
            "grpc_server_started_total",
            "grpc_service" => service.clone(),
            "grpc_method" => method.clone(),
        )
        .increment(1);
        let started = Instant::now();
        let future = self.inner.call(request);
        Box::pin(async move {
            let result = future.await;
            let code = match &result {
                // A call that failed before its body (every refusal and error of a unary call)
                // is a trailers-only response: its status is in the headers. Otherwise the
                // status comes in the trailers after the message, and a unary handler that
                // returned a message succeeded.
                Ok(response) => code_name(crate::telemetry::grpc_status_of(response.headers())),
                Err(_) => "Unknown",
            };
            ::metrics::histogram!(
                "grpc_server_handling_seconds",
                "grpc_service" => service.clone(),
                "grpc_method" => method.clone(),
            )
            .record(started.elapsed().as_secs_f64());
            ::metrics::counter!(
                "grpc_server_handled_total",
                "grpc_service" => service,
                "grpc_method" => method,
                "grpc_code" => code,
            )
            .increment(1);
            result
        })
    }
}

/// A status code's name as gRPC spells it (`codes.Code.String()` in grpc-go, which the
/// established dashboards match on).
fn code_name(code: i64) -> &'static str {
    match code {
        0 => "OK",
        1 => "Canceled",
        2 => "Unknown",
        3 => "InvalidArgument",
        4 => "DeadlineExceeded",
        5 => "NotFound",
        6 => "AlreadyExists",
        7 => "PermissionDenied",
        8 => "ResourceExhausted",
        9 => "FailedPrecondition",
        10 => "Aborted",
        11 => "OutOfRange",
        12 => "Unimplemented",
        13 => "Internal",
        14 => "Unavailable",
        15 => "DataLoss",
        16 => "Unauthenticated",
        _ => "Unknown",
    }
}
