//! Telemetry, initialised once per process: tracing with JSON or text logs (text when stderr is a
//! terminal, unless `EMPORIUM_LOG_FORMAT` says otherwise), and OpenTelemetry traces: exported
//! over OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, else the last traces kept in
//! memory ([`recent_traces`]). Every log line written inside a trace carries its `trace_id` and
//! `span_id` ([`WithTraceIds`]), so a request's lines can be found beside its trace.
//!
//! One trace follows a request: the gRPC server span ([`grpc_server_span`], continuing the
//! caller's `traceparent`), the use case's spans, its write transaction (`transaction`), the
//! outbox `record` (whose context the event carries, in its CloudEvent and its bus message's
//! `traceparent` header), each consumer's `process <subject>` (a child of the event's context)
//! and the gRPC calls a handler makes ([`GrpcClientTraceLayer`]). The relay's `publish <subject>`
//! starts a trace of its own, linked to each event's context. Names and attributes follow
//! OpenTelemetry's semantic conventions for RPC, database and messaging spans.
//!
//! Without a subscriber (the services' own tests) the request's W3C context still travels, in a
//! task-local ([`TraceContextLayer`], [`with_traceparent`]), so events carry it all the same.

mod recent;

use std::fmt;
use std::future::Future;
use std::io::IsTerminal as _;
use std::pin::Pin;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::{Event, Metadata, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::{Filter, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

pub use recent::{SPANS_KEPT_PER_TRACE, SpanLink, SpanSummary, TraceSummary};

use crate::settings::{LogFormat, TelemetrySettings, TraceSampler};

tokio::task_local! {
    static TRACEPARENT: String;
}

/// The ring [`recent_traces`] reads, once [`init`] made one (no OTLP endpoint).
static RECENT_TRACES: OnceLock<recent::RecentTraces> = OnceLock::new();

/// Set by [`init`]: spans are OpenTelemetry spans, whose contexts the task-local need not carry.
static EXPORTS_SPANS: AtomicBool = AtomicBool::new(false);

/// The process's tracing, from [`init`]. Call [`Telemetry::shutdown`] before the process exits,
/// so the spans still queued for export are sent.
#[derive(Debug)]
pub struct Telemetry {
    /// None with `OTEL_SDK_DISABLED`.
    provider: Option<SdkTracerProvider>,
}

/// Installs the global subscriber: logs filtered by `EMPORIUM_LOG`, and spans at `info` and
/// above (whatever the log filter) as OpenTelemetry spans of `service.name` from
/// `OTEL_SERVICE_NAME`, or `service.name` in `OTEL_RESOURCE_ATTRIBUTES`, or
/// `default_service_name` (none with `OTEL_SDK_DISABLED`: logs and events still carry trace
/// ids). Call once, first thing in `main`; with an OTLP endpoint, inside the tokio runtime (the
/// exporter's connection runs on it).
pub fn init(settings: &TelemetrySettings, default_service_name: &str) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_new(&settings.filter)
        .map_err(|error| anyhow::anyhow!("invalid EMPORIUM_LOG filter: {error}"))?;
    let provider = (!settings.sdk_disabled)
        .then(|| tracer_provider(settings, default_service_name))
        .transpose()?;
    let spans = provider.as_ref().map(spans_layer);
    let json = match settings.format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let registry = tracing_subscriber::registry().with(spans);
    if json {
        registry
            .with(json_layer(std::io::stderr).with_filter(filter))
            .try_init()?;
    } else {
        registry
            .with(text_layer(std::io::stderr, std::io::stderr().is_terminal()).with_filter(filter))
            .try_init()?;
    }
    EXPORTS_SPANS.store(provider.is_some(), Ordering::Relaxed);
    Ok(Telemetry { provider })
}

/// The traces kept in memory, most recent first: the last `EMPORIUM_TRACES_KEPT` (default 100),
/// at most [`SPANS_KEPT_PER_TRACE`] spans each. Empty when traces are exported over OTLP
/// instead, and before [`init`].
pub fn recent_traces() -> Vec<TraceSummary> {
    RECENT_TRACES
        .get()
        .map(recent::RecentTraces::summaries)
        .unwrap_or_default()
}

// === impl Telemetry ===

impl Telemetry {
    /// Sends the spans queued for export now (waits for the collector, at most its timeout).
    /// Blocks the thread: from async code, call it in `spawn_blocking`.
    pub fn force_flush(&self) -> anyhow::Result<()> {
        match &self.provider {
            Some(provider) => provider
                .force_flush()
                .context("Failed to export the queued spans"),
            None => Ok(()),
        }
    }

    /// Exports the queued spans and stops the exporter. Blocks the thread, at most 5 s: from
    /// async code, call it in `spawn_blocking`.
    pub fn shutdown(self) -> anyhow::Result<()> {
        match self.provider {
            Some(provider) => provider
                .shutdown_with_timeout(Duration::from_secs(5))
                .context("Failed to export the last spans"),
            None => Ok(()),
        }
    }
}

/// The layer that makes `provider`'s OpenTelemetry spans of the [`ExportedSpans`], with only
/// what the semantic conventions name for them: no thread, target, busy/idle or code location
/// attributes (a span's name says what it is; its source line is noise).
fn spans_layer<S>(provider: &SdkTracerProvider) -> impl tracing_subscriber::Layer<S> + use<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("emporium"))
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_filter(ExportedSpans)
}

/// The SDK's provider: a batch exporter over OTLP/gRPC with an endpoint, else the in-memory
/// ring. The resource and sampler come from the settings alone (the SDK reads no variable).
fn tracer_provider(
    settings: &TelemetrySettings,
    default_service_name: &str,
) -> anyhow::Result<SdkTracerProvider> {
    let service_name = settings
        .service_name
        .clone()
        .or_else(|| {
            settings
                .resource_attributes
                .iter()
                .find(|(key, _)| key == "service.name")
                .map(|(_, value)| value.clone())
        })
        .unwrap_or_else(|| default_service_name.to_owned());
    let resource = opentelemetry_sdk::Resource::builder_empty()
        .with_attributes(
            settings
                .resource_attributes
                .iter()
                .map(|(key, value)| opentelemetry::KeyValue::new(key.clone(), value.clone())),
        )
        .with_service_name(service_name)
        .build();
    let builder = SdkTracerProvider::builder()
        .with_sampler(sampler_of(settings.sampler))
        .with_resource(resource);
    let builder = match &settings.otlp_endpoint {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .build()
                .with_context(|| format!("Failed to set up the OTLP exporter to {endpoint}"))?;
            builder.with_batch_exporter(exporter)
        }
        None => {
            let recent = RECENT_TRACES
                .get_or_init(|| recent::RecentTraces::new(settings.traces_kept))
                .clone();
            builder.with_span_processor(recent.processor())
        }
    };
    Ok(builder.build())
}

fn sampler_of(sampler: TraceSampler) -> Sampler {
    match sampler {
        TraceSampler::AlwaysOn => Sampler::AlwaysOn,
        TraceSampler::AlwaysOff => Sampler::AlwaysOff,
        TraceSampler::TraceIdRatio(ratio) => Sampler::TraceIdRatioBased(ratio),
        TraceSampler::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        TraceSampler::ParentBasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        TraceSampler::ParentBasedTraceIdRatio(ratio) => {
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio)))
        }
    }
}

/// Which spans (and events, which become span events) reach OpenTelemetry: `info` and above,
/// whatever the log filter says, so debug spans (the stores' functions, the relay's look at the
/// outbox every 500 ms) never become exported ones. Decided by the callsite alone, so tracing
/// caches it.
#[derive(Clone, Copy, Debug)]
struct ExportedSpans;

impl ExportedSpans {
    fn exports(metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= tracing::Level::INFO
    }
}

impl<S> Filter<S> for ExportedSpans {
    fn enabled(
        &self,
        metadata: &Metadata<'_>,
        _context: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        ExportedSpans::exports(metadata)
    }

    fn callsite_enabled(
        &self,
        metadata: &'static Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if ExportedSpans::exports(metadata) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::INFO)
    }
}

/// One JSON object per line: the event's fields flattened, the current span's fields under
/// `span`, and the request's `trace_id` and `span_id` when there is one.
fn json_layer<S, W>(writer: W) -> impl tracing_subscriber::Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let format = tracing_subscriber::fmt::format()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false);
    tracing_subscriber::fmt::layer()
        .json()
        .fmt_fields(AppendedJsonFields)
        .event_format(WithTraceIds {
            inner: format,
            json: true,
        })
        .with_writer(writer)
}

/// A span's fields as one JSON object, like tracing-subscriber's `JsonFields`, but a field
/// recorded later (a call's gRPC status, its caller) is appended to the object rather than
/// merged by parsing the object and writing it again: that merge cost about 18,000 instructions
/// per `record`, two per call, whether or not a line was ever logged inside the span. A field
/// recorded twice appears twice; the line's reader (`serde_json`, like most) keeps the last.
#[derive(Debug, Default)]
pub(crate) struct AppendedJsonFields;

impl<'writer> FormatFields<'writer> for AppendedJsonFields {
    /// Writes the fields straight to the line as JSON members (`JsonFields` builds a map of
    /// JSON values first, a few thousand instructions per span).
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        writer.write_char('{')?;
        let mut members = JsonMembers {
            writer: &mut writer,
            n_written: 0,
            result: Ok(()),
        };
        fields.record(&mut members);
        members.result?;
        writer.write_char('}')
    }

    fn add_fields(
        &self,
        current: &'writer mut tracing_subscriber::fmt::FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let mut added = String::new();
        self.format_fields(Writer::new(&mut added), fields)?;
        let Some(added_members) = added.strip_prefix('{').filter(|rest| *rest != "}") else {
            return Ok(());
        };
        match current.fields.strip_suffix('}') {
            Some("{") | None => current.fields = added,
            Some(_) => {
                current.fields.pop();
                current.fields.push(',');
                current.fields.push_str(added_members);
            }
        }
        Ok(())
    }
}

/// A [`tracing::field::Visit`] that writes each field as a member of a JSON object: strings
/// (and what only has a `Debug` form) as JSON strings, numbers and booleans as themselves, a
/// float that is not finite as `null` (as `serde_json` writes it).
struct JsonMembers<'a, 'writer> {
    writer: &'a mut Writer<'writer>,
    n_written: usize,
    result: fmt::Result,
}

impl JsonMembers<'_, '_> {
    fn member(
        &mut self,
        field: &tracing::field::Field,
        value: impl FnOnce(&mut Writer<'_>) -> fmt::Result,
    ) {
        if self.result.is_err() {
            return;
        }
        let name = field.name();
        let name = name.strip_prefix("r#").unwrap_or(name);
        let separator = if self.n_written == 0 { "" } else { "," };
        self.n_written += 1;
        self.result = write!(self.writer, "{separator}{}:", json_string(name))
            .and_then(|()| value(self.writer));
    }
}

impl tracing::field::Visit for JsonMembers<'_, '_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.member(field, |writer| writer.write_str(&json_string(value)));
    }

    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.member(field, |writer| write!(writer, "{value}"));
    }

    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.member(field, |writer| write!(writer, "{value}"));
    }

    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.member(field, |writer| write!(writer, "{value}"));
    }

    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.member(field, |writer| {
            if value.is_finite() {
                write!(writer, "{value}")
            } else {
                writer.write_str("null")
            }
        });
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        self.member(field, |writer| {
            writer.write_str(&json_string(&format!("{value:?}")))
        });
    }
}

/// `text` as a JSON string, quoted and escaped.
fn json_string(text: &str) -> String {
    // Serializing a string cannot fail.
    serde_json::to_string(text).unwrap_or_default()
}

/// One readable line per event, `trace_id=… span_id=…` first inside a request.
fn text_layer<S, W>(writer: W, ansi: bool) -> impl tracing_subscriber::Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let format = tracing_subscriber::fmt::format().with_ansi(ansi);
    tracing_subscriber::fmt::layer()
        .event_format(WithTraceIds {
            inner: format,
            json: false,
        })
        .with_ansi(ansi)
        .with_writer(writer)
}

/// An event format that adds the current trace context's ids to every line `inner` writes: as
/// `"trace_id"` and `"span_id"` members of a JSON line, as `trace_id=… span_id=…` before a
/// text one. The ids are those of [`current_traceparent`], the context the outbox also copies
/// into events (or, on a thread outside the request's task, those its span was given), so a
/// request's log lines, its events and its trace share one trace id.
#[derive(Debug)]
pub struct WithTraceIds<F> {
    inner: F,
    /// `inner` writes one JSON object per line.
    json: bool,
}

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let traceparent = current_traceparent().or_else(|| {
            ctx.event_scope()?.find_map(|span| {
                let extensions = span.extensions();
                extensions
                    .get::<SpanTraceContext>()
                    .map(|context| context.0.clone())
            })
        });
        let Some((trace_id, span_id)) = traceparent.as_deref().and_then(trace_ids) else {
            return self.inner.format_event(ctx, writer, event);
        };
        if !self.json {
            write!(writer, "trace_id={trace_id} span_id={span_id} ")?;
            return self.inner.format_event(ctx, writer, event);
        }
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        // A JSON line is one object: add the members before its closing brace. (The ids are
        // hexadecimal: nothing to escape.)
        match line.trim_end().strip_suffix('}') {
            Some(object) => {
                let separator = if object.trim_end().ends_with('{') {
                    ""
                } else {
                    ","
                };
                writeln!(
                    writer,
                    "{object}{separator}\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"}}"
                )
            }
            None => writer.write_str(&line),
        }
    }
}

/// The trace id and span id of a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`).
fn trace_ids(traceparent: &str) -> Option<(&str, &str)> {
    let mut parts = traceparent.split('-');
    let (_version, trace_id, span_id) = (parts.next()?, parts.next()?, parts.next()?);
    (trace_id.len() == 32 && span_id.len() == 16).then_some((trace_id, span_id))
}

/// The W3C `traceparent` of the current span: the innermost OpenTelemetry span entered on this
/// thread, or without one (no subscriber) the request's or event's context in the task-local.
pub fn current_traceparent() -> Option<String> {
    let context = opentelemetry::Context::current();
    let span_context = context.span().span_context().clone();
    if span_context.is_valid() {
        return Some(traceparent_of(&span_context));
    }
    TRACEPARENT.try_with(Clone::clone).ok()
}

/// Runs `future` with `traceparent` as the current trace context where there is no
/// OpenTelemetry span (see [`current_traceparent`]).
pub async fn with_traceparent<F: Future>(traceparent: String, future: F) -> F::Output {
    TRACEPARENT.scope(traceparent, future).await
}

/// The span of one incoming gRPC call, for tonic's `trace_fn`: named `<package>.<Service>/<Method>`
/// with `rpc.system`, `rpc.service` and `rpc.method` (and `rpc.grpc.status_code` once
/// [`TraceContextLayer`] saw the answer), a child of the caller's `traceparent` metadata, or a
/// new trace without one. `caller` is filled in by the auth layer once the token is verified.
pub fn grpc_server_span<B>(request: &http::Request<B>) -> tracing::Span {
    let path = request.uri().path();
    let name = path.strip_prefix('/').unwrap_or(path);
    let (service, method) = name.split_once('/').unwrap_or((name, ""));
    let span = tracing::info_span!(
        "grpc",
        otel.name = name,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
        rpc.grpc.status_code = tracing::field::Empty,
        caller = tracing::field::Empty,
    );
    set_parent_from(&span, traceparent_header(request.headers()));
    span
}

/// A tower layer on every gRPC server, inside the request span: it records the call's status
/// code on that span, and (for processes without an OpenTelemetry subscriber) keeps the request's
/// W3C context in a task-local: the caller's `traceparent` continued with a new span id, or a
/// new trace.
#[derive(Clone, Copy, Debug, Default)]
pub struct TraceContextLayer;

#[derive(Clone, Debug)]
pub struct TraceContextService<S> {
    inner: S,
}

impl<S> tower::Layer<S> for TraceContextLayer {
    type Service = TraceContextService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TraceContextService { inner }
    }
}

impl<S, B, ResBody> tower::Service<http::Request<B>> for TraceContextService<S>
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
        let traceparent =
            (!exports_spans()).then(|| continue_trace(traceparent_header(request.headers())));
        let future = self.inner.call(request);
        Box::pin(async move {
            // The request's span (tonic's `trace_fn`) is entered while this is polled.
            let span = tracing::Span::current();
            let result = match traceparent {
                Some(traceparent) => {
                    // Lines logged in the span on other threads (the SQLite driver's worker)
                    // find the ids there.
                    attach_trace_context(&span, traceparent.clone());
                    TRACEPARENT.scope(traceparent, future).await
                }
                None => future.await,
            };
            let code = match &result {
                Ok(response) => grpc_status_of(response.headers()),
                Err(_) => 2,
            };
            record_grpc_status(&span, code, SERVER_ERROR_CODES);
            result
        })
    }
}

/// A tower layer for outgoing gRPC calls: each call gets a client span
/// (`<package>.<Service>/<Method>`, `rpc.*`) in the current trace, and its context goes along
/// in the `traceparent` metadata, so the server continues the trace. Wrap a channel with it:
/// `tower::ServiceBuilder::new().layer(GrpcClientTraceLayer).service(channel)`, or
/// [`GrpcClientTraceLayer::wrap`].
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcClientTraceLayer;

#[derive(Clone, Debug)]
pub struct GrpcClientTraceService<S> {
    inner: S,
}

impl GrpcClientTraceLayer {
    /// `channel` (or any gRPC client service) with client spans and context propagation.
    pub fn wrap<S>(channel: S) -> GrpcClientTraceService<S> {
        GrpcClientTraceService { inner: channel }
    }
}

impl<S> tower::Layer<S> for GrpcClientTraceLayer {
    type Service = GrpcClientTraceService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcClientTraceService { inner }
    }
}

impl<S, B, ResBody> tower::Service<http::Request<B>> for GrpcClientTraceService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        let name = path.strip_prefix('/').unwrap_or(path);
        let (service, method) = name.split_once('/').unwrap_or((name, ""));
        let span = tracing::info_span!(
            "grpc client",
            otel.name = name,
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            rpc.system = "grpc",
            rpc.service = service,
            rpc.method = method,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        // The client span's own context, or (no OpenTelemetry subscriber) the current one.
        let traceparent = span_traceparent(&span).or_else(current_traceparent);
        if let Some(traceparent) = traceparent
            && let Ok(value) = http::HeaderValue::from_str(&traceparent)
        {
            request.headers_mut().insert("traceparent", value);
        }
        let future = tracing::Instrument::instrument(self.inner.call(request), span.clone());
        Box::pin(async move {
            let result = future.await;
            let code = match &result {
                Ok(response) => grpc_status_of(response.headers()),
                // The transport failed: no answer came.
                Err(_) => 14,
            };
            record_grpc_status(&span, code, CLIENT_ERROR_CODES);
            result
        })
    }
}

/// A tower layer for the HTTP origin (axum): a server span per request, named
/// `<method> <route>` (`http.request.method`, `http.route`, `url.path`,
/// `http.response.status_code`), a child of the caller's `traceparent`. What is polled all day
/// gets none: the probes and the metrics scrape (`/healthz`, `/readyz`, `/metrics`), the ops API
/// and the admin console's files and ops page (`/ops/…`, `/admin/…`), and the session's status
/// (`/auth/session`), so they do not push the traces worth reading out of the ones kept.
#[derive(Clone, Copy, Debug, Default)]
pub struct HttpTraceLayer;

#[derive(Clone, Debug)]
pub struct HttpTraceService<S> {
    inner: S,
}

impl<S> tower::Layer<S> for HttpTraceLayer {
    type Service = HttpTraceService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpTraceService { inner }
    }
}

impl<S, B, ResBody> tower::Service<http::Request<B>> for HttpTraceService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        if matches!(path, "/healthz" | "/readyz" | "/metrics" | "/auth/session")
            || path.starts_with("/ops/")
            || path.starts_with("/admin/")
        {
            return Box::pin(self.inner.call(request));
        }
        let method = request.method().as_str();
        let route = request
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .map(axum::extract::MatchedPath::as_str);
        let name = match route {
            Some(route) => format!("{method} {route}"),
            None => method.to_owned(),
        };
        let span = tracing::info_span!(
            "http",
            otel.name = %name,
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            http.request.method = method,
            http.route = route,
            url.path = path,
            http.response.status_code = tracing::field::Empty,
        );
        set_parent_from(&span, traceparent_header(request.headers()));
        let future = tracing::Instrument::instrument(self.inner.call(request), span.clone());
        Box::pin(async move {
            let result = future.await;
            if let Ok(response) = &result {
                let status = response.status();
                span.record("http.response.status_code", i64::from(status.as_u16()));
                if status.is_server_error() {
                    span.record("otel.status_code", "error");
                }
            }
            result
        })
    }
}

/// Whether this process keeps its recent traces in memory ([`init`] ran without an OTLP
/// endpoint); false when it exports them, or traces nothing.
pub fn keeps_traces() -> bool {
    RECENT_TRACES.get().is_some()
}

/// Whether this process's spans are OpenTelemetry spans ([`init`] ran), so that
/// [`current_traceparent`] reads their contexts and the task-local is not needed.
pub(crate) fn exports_spans() -> bool {
    EXPORTS_SPANS.load(Ordering::Relaxed)
}

/// Makes `span` a child of `traceparent`, the W3C context of another process's span (a caller,
/// an event's producer), or a new trace's root when there is none or it is malformed. Call it
/// before the span is first entered.
pub(crate) fn set_parent_from(span: &tracing::Span, traceparent: Option<&str>) {
    let parent = match traceparent.and_then(parse_traceparent) {
        Some(span_context) => opentelemetry::Context::new().with_remote_span_context(span_context),
        None => opentelemetry::Context::new(),
    };
    // Fails only without an OpenTelemetry subscriber, where there is nothing to parent.
    let _ = span.set_parent(parent);
}

/// Links `span` to the span `traceparent` names (the relay's publish to each event's producer).
pub(crate) fn add_link_to(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(span_context) = traceparent.and_then(parse_traceparent) {
        span.add_link(span_context);
    }
}

/// The `traceparent` of `span` itself, when OpenTelemetry records it.
fn span_traceparent(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| traceparent_of(&span_context))
}

/// `00-<trace id>-<span id>-<flags>`.
fn traceparent_of(span_context: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        span_context.trace_id(),
        span_context.span_id(),
        span_context.trace_flags().to_u8()
    )
}

/// A remote span context from a version-00 `traceparent`; `None` unless well formed, with a
/// non-zero trace id and span id.
fn parse_traceparent(traceparent: &str) -> Option<SpanContext> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace_id, span_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let is_hex = |text: &str, len: usize| {
        text.len() == len && text.bytes().all(|byte| byte.is_ascii_hexdigit())
    };
    if version != "00"
        || parts.next().is_some()
        || !is_hex(trace_id, 32)
        || !is_hex(span_id, 16)
        || !is_hex(flags, 2)
    {
        return None;
    }
    let trace_id = TraceId::from_hex(trace_id).ok()?;
    let span_id = SpanId::from_hex(span_id).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let span_context = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags & 0x01),
        true,
        TraceState::default(),
    );
    span_context.is_valid().then_some(span_context)
}

fn traceparent_header(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get("traceparent")
        .and_then(|value| value.to_str().ok())
}

/// The status of a gRPC answer from its headers: a call that failed before its body (every
/// refusal and error of a unary call) is a trailers-only response, its status in the headers;
/// otherwise the status comes in the trailers after the message, and a unary answer with a
/// message succeeded.
/// The `grpc-status` a response's headers carry; 0 (OK) when they carry none (a unary answer
/// whose status follows in the trailers).
pub(crate) fn grpc_status_of(headers: &http::HeaderMap) -> i64 {
    headers
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i64>().ok())
        .unwrap_or(0)
}

/// The codes that mark a server span as failed (the semantic conventions: the server's own
/// faults, not the caller's mistakes).
const SERVER_ERROR_CODES: &[i64] = &[2, 4, 12, 13, 14, 15];

/// The codes that mark a client span as failed: every one but OK.
const CLIENT_ERROR_CODES: &[i64] = &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];

fn record_grpc_status(span: &tracing::Span, code: i64, error_codes: &[i64]) {
    span.record("rpc.grpc.status_code", code);
    if error_codes.contains(&code) {
        span.record("otel.status_code", "error");
    }
}

/// A span's W3C trace context, kept in its extensions for [`WithTraceIds`] (without an
/// OpenTelemetry subscriber).
#[derive(Clone, Debug)]
struct SpanTraceContext(String);

/// Keeps `traceparent` with `span`, so that every line logged inside it, on whatever thread,
/// carries its ids (without an OpenTelemetry subscriber: with one, entering the span makes its
/// context current on that thread).
pub(crate) fn attach_trace_context(span: &tracing::Span, traceparent: String) {
    span.with_subscriber(|(id, dispatch)| {
        if let Some(registry) = dispatch.downcast_ref::<tracing_subscriber::Registry>()
            && let Some(span) = registry.span(id)
        {
            span.extensions_mut().insert(SpanTraceContext(traceparent));
        }
    });
}

/// `00-<trace id>-<new span id>-<flags>`: continues a valid incoming context, else starts a trace.
pub(crate) fn continue_trace(incoming: Option<&str>) -> String {
    let span_id = &uuid::Uuid::new_v4().simple().to_string()[..16];
    if let Some(parts) = incoming.map(|text| text.split('-').collect::<Vec<_>>())
        && parts.len() == 4
        && parts[0] == "00"
        && parts[1].len() == 32
        && parts[1].bytes().all(|b| b.is_ascii_hexdigit())
        && parts[1] != "00000000000000000000000000000000"
        && parts[3].len() == 2
    {
        return format!(
            "00-{}-{span_id}-{}",
            parts[1].to_ascii_lowercase(),
            parts[3]
        );
    }
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    format!("00-{trace_id}-{span_id}-01")
}

/// A subscriber making spans as [`init`] makes them, kept in a ring of ten traces as a process
/// without an OTLP endpoint keeps them (for tests: [`init`] sets the global one).
#[cfg(test)]
pub(crate) fn kept_in_a_ring() -> (recent::RecentTraces, impl Subscriber + Send + Sync) {
    let recent = recent::RecentTraces::new(10);
    let provider = SdkTracerProvider::builder()
        .with_span_processor(recent.processor())
        .build();
    let subscriber = tracing_subscriber::registry().with(spans_layer(&provider));
    (recent, subscriber)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt as _;

    use super::{attach_trace_context, continue_trace, json_layer, text_layer, with_traceparent};

    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    /// What the layer wrote, one line per event.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn lines(&self) -> Vec<String> {
            let bytes = self.0.lock().unwrap().clone();
            String::from_utf8(bytes)
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    /// Logs one line inside a request's trace context (and a span) and one outside any.
    fn log_inside_and_outside_a_request(subscriber: impl tracing::Subscriber + Send + Sync) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        tracing::subscriber::with_default(subscriber, || {
            runtime.block_on(with_traceparent(TRACEPARENT.to_owned(), async {
                let span = tracing::info_span!("grpc", rpc = "/a.v1.A/Get");
                let _entered = span.enter();
                tracing::info!(n_rows = 3, "Inside");
            }));
            tracing::info!("Outside");
        });
    }

    #[test]
    fn json_lines_inside_a_request_carry_its_trace_and_span_ids() {
        let captured = Captured::default();
        let writer = captured.clone();
        log_inside_and_outside_a_request(
            tracing_subscriber::registry().with(json_layer(move || writer.clone())),
        );

        let lines = captured.lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        let inside: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(inside["message"], "Inside");
        assert_eq!(inside["n_rows"], 3);
        assert_eq!(inside["span"]["rpc"], "/a.v1.A/Get");
        assert_eq!(inside["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(inside["span_id"], "00f067aa0ba902b7");
        let outside: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(outside["message"], "Outside");
        assert_eq!(outside.get("trace_id"), None);
        assert_eq!(outside.get("span_id"), None);
    }

    #[test]
    fn fields_recorded_after_a_span_starts_are_in_its_json_lines() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::registry().with(json_layer(move || writer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "grpc",
                rpc = "/a.v1.A/Get",
                caller = tracing::field::Empty,
                code = tracing::field::Empty,
                outcome = tracing::field::Empty,
                r#type = "unary",
                detail = ?Some("line\none"),
                ratio = 0.5,
                nan = f64::NAN,
                n = 3_u64,
            );
            span.in_scope(|| tracing::info!("Before"));
            span.record("caller", "account \"7\"");
            span.record("code", 5);
            span.record("code", 0);
            span.in_scope(|| tracing::info!("After"));
            let empty = tracing::info_span!("empty", later = tracing::field::Empty);
            empty.record("later", true);
            empty.in_scope(|| tracing::info!("In a span recorded later"));
        });

        let lines: Vec<serde_json::Value> = captured
            .lines()
            .iter()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        let mut span = serde_json::json!({
            "name": "grpc",
            "rpc": "/a.v1.A/Get",
            "type": "unary",
            "detail": "Some(\"line\\none\")",
            "ratio": 0.5,
            "nan": null,
            "n": 3,
        });
        assert_eq!(lines[0]["span"], span);
        span["caller"] = "account \"7\"".into();
        span["code"] = 0.into();
        assert_eq!(lines[1]["span"], span);
        assert_eq!(
            lines[2]["span"],
            serde_json::json!({"name": "empty", "later": true})
        );
    }

    #[test]
    fn lines_outside_the_request_task_but_inside_its_span_carry_its_ids() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::registry().with(json_layer(move || writer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("grpc");
            attach_trace_context(&span, TRACEPARENT.to_owned());
            // As the SQLite driver's worker thread does: the span entered, no task-local.
            let statement = span.in_scope(|| tracing::info_span!("statement"));
            statement.in_scope(|| tracing::info!("In a nested span"));
        });

        let line: serde_json::Value = serde_json::from_str(&captured.lines()[0]).unwrap();
        assert_eq!(line["message"], "In a nested span");
        assert_eq!(line["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(line["span_id"], "00f067aa0ba902b7");
    }

    #[test]
    fn text_lines_inside_a_request_start_with_its_trace_and_span_ids() {
        let captured = Captured::default();
        let writer = captured.clone();
        log_inside_and_outside_a_request(
            tracing_subscriber::registry().with(text_layer(move || writer.clone(), false)),
        );

        let lines = captured.lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0]
                .starts_with("trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=00f067aa0ba902b7 "),
            "{}",
            lines[0]
        );
        assert!(lines[0].contains("Inside"), "{}", lines[0]);
        assert!(!lines[1].contains("trace_id"), "{}", lines[1]);
        assert!(lines[1].contains("Outside"), "{}", lines[1]);
    }

    #[test]
    fn debug_spans_are_not_exported_and_their_info_children_keep_the_trace() {
        // Arrange: spans kept in a ring, as `init` keeps them without an OTLP endpoint.
        let (recent, subscriber) = super::kept_in_a_ring();

        // Act: a call's span, a store function's debug span in it, a transaction in that.
        tracing::subscriber::with_default(subscriber, || {
            let call = tracing::info_span!("grpc", otel.name = "a.v1.A/Get");
            call.in_scope(|| {
                let store = tracing::debug_span!("get_product");
                store.in_scope(|| {
                    let _transaction = tracing::info_span!("transaction").entered();
                });
            });
        });

        // Assert: the call and its transaction, the transaction the call's child.
        let traces = recent.summaries();
        assert_eq!(traces.len(), 1, "{traces:#?}");
        let spans = &traces[0].spans;
        let names: Vec<&str> = spans.iter().map(|span| span.name.as_str()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        let call = spans.iter().find(|span| span.name == "a.v1.A/Get").unwrap();
        let transaction = spans
            .iter()
            .find(|span| span.name == "transaction")
            .unwrap();
        assert_eq!(transaction.parent_span_id.as_ref(), Some(&call.span_id));
    }

    #[tokio::test]
    async fn the_http_origin_traces_its_routes_in_the_callers_trace_but_not_what_is_polled() {
        // Arrange: spans kept in a ring, as a process without an OTLP endpoint keeps them.
        let (recent, subscriber) = super::kept_in_a_ring();
        let _default = tracing::subscriber::set_default(subscriber);
        let mut router = axum::Router::new()
            .route("/oauth2/token", axum::routing::post(|| async { "token" }))
            .route("/healthz", axum::routing::get(|| async { "live" }))
            .route("/ops/v1/status", axum::routing::get(|| async { "{}" }))
            .layer(super::HttpTraceLayer);
        let request = |method: &str, path: &str| {
            http::Request::builder()
                .method(method)
                .uri(path)
                .header("traceparent", TRACEPARENT)
                .body(axum::body::Body::empty())
                .unwrap()
        };

        // Act
        for (method, path) in [
            ("POST", "/oauth2/token"),
            ("GET", "/healthz"),
            ("GET", "/ops/v1/status"),
        ] {
            let response = tower::Service::call(&mut router, request(method, path))
                .await
                .unwrap();
            assert_eq!(response.status(), http::StatusCode::OK, "{path}");
        }

        // Assert: one span, the token request's, a child of the caller's span.
        let traces = recent.summaries();
        assert_eq!(traces.len(), 1, "{traces:#?}");
        assert_eq!(traces[0].trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        let spans = &traces[0].spans;
        assert_eq!(spans.len(), 1, "{spans:#?}");
        assert_eq!(spans[0].name, "POST /oauth2/token");
        assert_eq!(spans[0].kind, "server");
        assert_eq!(spans[0].parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert_eq!(spans[0].attributes["http.route"], "/oauth2/token");
        assert_eq!(spans[0].attributes["http.response.status_code"], 200);
    }

    #[test]
    fn parses_only_well_formed_traceparents() {
        let parsed = super::parse_traceparent(TRACEPARENT).expect("a valid traceparent");
        assert_eq!(super::traceparent_of(&parsed), TRACEPARENT);
        for malformed in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(super::parse_traceparent(malformed).is_none(), "{malformed}");
        }
    }

    #[test]
    fn continues_a_valid_incoming_trace() {
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let continued = continue_trace(Some(incoming));
        assert!(continued.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(continued.ends_with("-01"));
        assert_ne!(continued, incoming);
    }

    #[test]
    fn starts_a_new_trace_for_garbage() {
        let started = continue_trace(Some("nonsense"));
        let parts: Vec<_> = started.split('-').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!(parts[1].len(), 32);
        assert_eq!(parts[2].len(), 16);
    }
}
