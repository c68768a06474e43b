//! One user request is one trace, seen by an OTLP collector: a gRPC call into the catalog, its
//! transaction and outbox record, the relay's publish (linked to the record) and a consumer
//! applying the event (a child of the record), on both backends. Its own test binary: tracing's
//! subscriber is global to the process, and this one exports to an in-process collector (a tonic
//! server implementing the collector's trace service from the opentelemetry-proto definitions).

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use catalog::CatalogParts;
use chassis::auth::roles;
use chassis::cloudevents::CloudEvent;
use chassis::consumer::{Consumer, ConsumerOptions, EventHandler};
use chassis::runtime::{Built, ConsumerTask, Service, ServiceContext, ServiceDefinition};
use chassis::settings::{ServiceSettings, TelemetrySettings};
use chassis::storage::Transaction;
use chassis::telemetry::{GrpcClientTraceLayer, Telemetry};
use emporium_proto::catalog::v1 as catalog_proto;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use test_support::{
    Backend, HostedServices, TestBus, TestDatabase, TestIssuer, host_on_one_port, with_token,
};
use tracing::Instrument as _;

test_support::both_backends!(one_trace_spans_a_call_its_event_the_relay_and_a_consumer);

async fn one_trace_spans_a_call_its_event_the_relay_and_a_consumer(backend: Backend) {
    // Arrange: the catalog and a consumer of its category events, hosted together, exporting
    // their spans to the collector.
    let harness = harness();
    let catalog_database = TestDatabase::new(backend, "catalog").await;
    let counter_database = TestDatabase::new(backend, "counter").await;
    let test_bus = TestBus::new(backend).await;
    let bus = test_bus.connect().await;
    let issuer = TestIssuer::new();
    let catalog = Built::<CatalogParts>::build(
        &settings(catalog::NAME, &catalog_database, &test_bus),
        bus.clone(),
        (),
    )
    .await
    .expect("the catalog builds");
    let counter = Built::<CategoryCounter>::build(
        &settings("counter", &counter_database, &test_bus),
        bus.clone(),
        (),
    )
    .await
    .expect("the counter builds");
    let HostedServices {
        channel,
        shutdown,
        served,
        ..
    } = host_on_one_port(&issuer, [catalog.into_unit(None), counter.into_unit(None)]).await;
    let token = issuer.token("admin-1", &[roles::ADMIN]);
    let subject = format!("{}.catalog.category.created", test_bus.namespace);

    // Act: a create call made inside a span of the test's own, through a traced client.
    let request_span = tracing::info_span!("test request");
    let traceparent = request_span
        .in_scope(chassis::telemetry::current_traceparent)
        .expect("the test's span has a trace context");
    let (trace_id, request_span_id) = ids_of(&traceparent);
    catalog_proto::catalog_service_client::CatalogServiceClient::new(GrpcClientTraceLayer::wrap(
        channel,
    ))
    .create_category(with_token(
        catalog_proto::CreateCategoryRequest {
            name: "Tea".to_owned(),
            description: String::new(),
        },
        &token,
    ))
    .instrument(request_span.clone())
    .await
    .expect("the category is created");
    drop(request_span);
    let (spans, publish) = test_support::eventually(
        Duration::from_secs(60),
        "the collector to receive the consumer's and the relay's spans",
        || async {
            harness.flush().await;
            let spans = harness.spans_of_trace(&trace_id);
            let publish = harness.span_linked_to(&trace_id)?;
            spans
                .iter()
                .any(|span| span.name == format!("process {subject}"))
                .then_some((spans, publish))
        },
    )
    .await;
    shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(30), served)
        .await
        .expect("the host stops within its grace")
        .expect("the host task does not panic");

    // Assert: client → server → use case → transaction → record → process, one trace.
    let method = "emporium.catalog.v1.CatalogService/CreateCategory";
    let client = only(&spans, |span| {
        span.name == method && span.kind == SpanKind::Client
    });
    assert_eq!(
        client.parent_span_id, request_span_id,
        "the client span is the test span's child"
    );
    let server = only(&spans, |span| {
        span.name == method && span.kind == SpanKind::Server
    });
    assert_eq!(
        server.parent_span_id, client.span_id,
        "the server continues the caller's context"
    );
    assert_eq!(
        server.attribute("rpc.system"),
        Some(Value::StringValue("grpc".to_owned()))
    );
    assert_eq!(
        server.attribute("rpc.service"),
        Some(Value::StringValue(
            "emporium.catalog.v1.CatalogService".to_owned()
        ))
    );
    assert_eq!(
        server.attribute("rpc.method"),
        Some(Value::StringValue("CreateCategory".to_owned()))
    );
    assert_eq!(
        server.attribute("rpc.grpc.status_code"),
        Some(Value::IntValue(0))
    );
    assert_eq!(server.service_name, "emporium-traces-test");
    let record = only(&spans, |span| span.name == "record");
    assert_eq!(record.kind, SpanKind::Producer);
    let transaction = spans
        .iter()
        .find(|span| span.span_id == record.parent_span_id)
        .expect("the record's parent is in the trace");
    assert_eq!(transaction.name, "transaction");
    let system_name = match backend {
        Backend::SqliteEmbedded => "sqlite",
        Backend::PostgresNats => "postgresql",
    };
    assert_eq!(
        transaction.attribute("db.system.name"),
        Some(Value::StringValue(system_name.to_owned()))
    );
    let use_case = spans
        .iter()
        .find(|span| span.span_id == transaction.parent_span_id)
        .expect("the transaction's parent is in the trace");
    assert_eq!(use_case.name, "create_category", "{spans:#?}");
    assert_eq!(
        use_case.parent_span_id, server.span_id,
        "the use case runs in the call: {spans:#?}"
    );
    let process = only(&spans, |span| span.name == format!("process {subject}"));
    assert_eq!(process.kind, SpanKind::Consumer);
    assert_eq!(
        process.parent_span_id, record.span_id,
        "the consumer continues the event's context"
    );
    assert_eq!(
        process.attribute("messaging.destination.name"),
        Some(Value::StringValue(subject.clone()))
    );
    assert!(
        spans
            .iter()
            .any(|span| span.name == "transaction" && span.parent_span_id == process.span_id),
        "the consumer's transaction is within its handling: {spans:#?}"
    );
    assert_eq!(publish.name, format!("publish {subject}"));
    assert_eq!(publish.kind, SpanKind::Producer);
    assert_ne!(
        publish.trace_id, trace_id,
        "the relay's publish is a trace of its own"
    );
    assert!(
        publish
            .links
            .contains(&(trace_id.clone(), record.span_id.clone())),
        "the publish is linked to the record: {publish:#?}"
    );
    assert!(stopped.is_ok(), "a clean stop: {stopped:?}");
}

// === the collector ===

/// The test process's tracing: its subscriber exports to `collector`, which keeps every span.
struct Harness {
    collector: Collector,
    telemetry: Telemetry,
}

/// One exported span, with hexadecimal ids as in a `traceparent`.
#[derive(Clone, Debug)]
struct ExportedSpan {
    trace_id: String,
    span_id: String,
    /// Empty for a root span.
    parent_span_id: String,
    name: String,
    kind: SpanKind,
    attributes: Vec<KeyValue>,
    /// (trace id, span id) of each linked span.
    links: Vec<(String, String)>,
    service_name: String,
}

/// The OTLP trace service, keeping what it receives.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<ExportedSpan>>>,
}

/// Installs the subscriber once for the whole binary. The collector and the exporter's
/// connection run on a runtime of their own, which outlives every test's.
fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let (started, harness) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("a runtime for the collector");
            runtime.block_on(async move {
                let collector = Collector::default();
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("a port for the collector");
                let addr = listener.local_addr().expect("a bound address");
                tokio::spawn(
                    tonic::transport::Server::builder()
                        .add_service(TraceServiceServer::new(collector.clone()))
                        .serve_with_incoming(chassis::net::grpc_incoming(listener)),
                );
                let telemetry = chassis::telemetry::init(
                    &TelemetrySettings {
                        // Logs only what went wrong; spans are exported at info whatever it says.
                        filter: "warn".to_owned(),
                        otlp_endpoint: Some(format!("http://{addr}")),
                        service_name: Some("emporium-traces-test".to_owned()),
                        ..TelemetrySettings::default()
                    },
                    "emporium",
                )
                .expect("telemetry starts");
                started
                    .send(Harness {
                        collector,
                        telemetry,
                    })
                    .expect("the test waits for the harness");
                std::future::pending::<()>().await
            });
        });
        harness.recv().expect("the harness starts")
    })
}

impl Harness {
    /// Exports the spans queued so far.
    async fn flush(&'static self) {
        tokio::task::spawn_blocking(|| self.telemetry.force_flush())
            .await
            .expect("the flush does not panic")
            .expect("the collector takes the spans");
    }

    fn spans_of_trace(&self, trace_id: &str) -> Vec<ExportedSpan> {
        let spans = self.collector.spans.lock().unwrap();
        spans
            .iter()
            .filter(|span| span.trace_id == trace_id)
            .cloned()
            .collect()
    }

    /// A span of another trace linked to a span of `trace_id`.
    fn span_linked_to(&self, trace_id: &str) -> Option<ExportedSpan> {
        let spans = self.collector.spans.lock().unwrap();
        spans
            .iter()
            .find(|span| {
                span.trace_id != trace_id
                    && span
                        .links
                        .iter()
                        .any(|(linked_trace, _)| linked_trace == trace_id)
            })
            .cloned()
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut kept = self.spans.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let service_name = resource_spans
                .resource
                .iter()
                .flat_map(|resource| &resource.attributes)
                .find(|attribute| attribute.key == "service.name")
                .and_then(
                    |attribute| match attribute.value.as_ref()?.value.as_ref()? {
                        Value::StringValue(name) => Some(name.clone()),
                        _ => None,
                    },
                )
                .unwrap_or_default();
            for span in resource_spans
                .scope_spans
                .into_iter()
                .flat_map(|scope| scope.spans)
            {
                kept.push(ExportedSpan {
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    kind: SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified),
                    name: span.name,
                    attributes: span.attributes,
                    links: span
                        .links
                        .iter()
                        .map(|link| (hex(&link.trace_id), hex(&link.span_id)))
                        .collect(),
                    service_name: service_name.clone(),
                });
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl ExportedSpan {
    fn attribute(&self, key: &str) -> Option<Value> {
        self.attributes
            .iter()
            .find(|attribute| attribute.key == key)
            .and_then(|attribute| attribute.value.clone()?.value)
    }
}

// === helpers ===

/// A service of the test's own: no RPCs, one consumer of the catalog's category events.
#[derive(Debug)]
struct CategoryCounter;

impl Service for CategoryCounter {
    type Options = ();

    const DEFINITION: ServiceDefinition = ServiceDefinition {
        name: "counter",
        default_port: 0,
        health_names: &[],
        // Its inbox is the chassis's own table; the catalog's schema beside it is unused.
        migrations: catalog::MIGRATIONS,
        relay: false,
    };

    async fn assemble(_context: &ServiceContext, (): ()) -> anyhow::Result<CategoryCounter> {
        Ok(CategoryCounter)
    }

    fn add_grpc_routes(
        &self,
        _context: &ServiceContext,
        _routes: &mut tonic::service::RoutesBuilder,
    ) {
    }

    fn consumers(&self, context: &ServiceContext) -> Vec<ConsumerTask> {
        let namespace = &context.namespace;
        let options = ConsumerOptions::new(
            "category-counter",
            &chassis::outbox::stream_name(namespace, catalog::NAME),
            &format!("{namespace}.catalog.category.>"),
            namespace,
        );
        vec![ConsumerTask::new(Consumer::new(
            context.database.clone(),
            context.bus.clone(),
            options,
            Applying,
        ))]
    }
}

struct Applying;

impl EventHandler for Applying {
    async fn handle(&self, _tx: &mut Transaction, _event: &CloudEvent) -> anyhow::Result<()> {
        Ok(())
    }
}

fn settings(
    name: &'static str,
    test_database: &TestDatabase,
    test_bus: &TestBus,
) -> ServiceSettings {
    ServiceSettings {
        name,
        grpc_addr: "127.0.0.1:0".parse().expect("a valid address"),
        database_url: test_database.secret_url(),
        namespace: test_bus.namespace.clone(),
        database_max_connections: None,
    }
}

/// The trace id and span id of a `traceparent`.
fn ids_of(traceparent: &str) -> (String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    (parts[1].to_owned(), parts[2].to_owned())
}

/// The one span `matches`, failing the test when there are none or several.
fn only(spans: &[ExportedSpan], matches: impl Fn(&ExportedSpan) -> bool) -> &ExportedSpan {
    let found: Vec<&ExportedSpan> = spans.iter().filter(|span| matches(span)).collect();
    assert_eq!(found.len(), 1, "one such span expected among {spans:#?}");
    found[0]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
