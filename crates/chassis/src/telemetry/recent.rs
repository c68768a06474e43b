//! The traces a process keeps in memory when it exports none: the spans of the last N traces
//! (`EMPORIUM_TRACES_KEPT`), at most [`SPANS_KEPT_PER_TRACE`] each, fed by a span processor and
//! read back as [`TraceSummary`]s. Memory stays bounded whatever the traffic: a new trace pushes
//! out the oldest, and a trace's spans past the bound are only counted.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{SpanId, SpanKind, Status, TraceId};
use opentelemetry::{Array, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};

/// The most spans kept of one trace; later ones are counted in
/// [`TraceSummary::n_spans_dropped`].
pub const SPANS_KEPT_PER_TRACE: usize = 256;

/// One recent trace, as [`crate::telemetry::recent_traces`] reports it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TraceSummary {
    /// 32 lower-case hexadecimal digits, as in a `traceparent`.
    pub trace_id: String,
    /// The name of the trace's root span: the earliest of its kept spans whose parent is not
    /// among them (a trace continued from another process has its caller's span as parent).
    pub root_span_name: String,
    /// The `service.name` of the process that recorded it.
    pub service: String,
    /// When its earliest kept span started (RFC 3339, UTC).
    pub start_time: String,
    /// From the earliest start to the latest end among its kept spans.
    pub duration_micros: u64,
    /// Its kept spans, in the order they ended (children before their parents).
    pub spans: Vec<SpanSummary>,
    /// Spans of the trace that ended after [`SPANS_KEPT_PER_TRACE`] were kept, and were not.
    pub n_spans_dropped: usize,
}

/// One span of a [`TraceSummary`].
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SpanSummary {
    /// 16 lower-case hexadecimal digits.
    pub span_id: String,
    /// The parent's span id; `None` for a root span.
    pub parent_span_id: Option<String>,
    /// e.g. `emporium.catalog.v1.CatalogService/CreateProduct`, `transaction`,
    /// `publish emporium.catalog.product.created`.
    pub name: String,
    /// `server`, `client`, `producer`, `consumer` or `internal`.
    pub kind: String,
    /// RFC 3339, UTC.
    pub start_time: String,
    pub duration_micros: u64,
    /// `unset`, `ok` or `error`.
    pub status: String,
    /// The error's description when `status` is `error` (may be empty).
    pub status_message: Option<String>,
    /// The span's attributes, e.g. `rpc.method`, `db.system.name`, `messaging.destination.name`.
    pub attributes: BTreeMap<String, serde_json::Value>,
    /// The spans it is linked to (the relay's publish span links each event's context).
    pub links: Vec<SpanLink>,
}

/// A link from a span to another trace's span.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SpanLink {
    pub trace_id: String,
    pub span_id: String,
}

/// The ring the span processor fills. Cheap to clone; every clone is the same ring.
#[derive(Clone, Debug)]
pub(crate) struct RecentTraces {
    ring: Arc<Mutex<Ring>>,
}

#[derive(Debug)]
struct Ring {
    /// At most this many traces are kept.
    capacity: usize,
    /// Oldest first: the front is the next to go.
    traces: VecDeque<KeptTrace>,
    /// The resource's `service.name`.
    service: String,
}

#[derive(Debug)]
struct KeptTrace {
    trace_id: TraceId,
    /// At most [`SPANS_KEPT_PER_TRACE`], in the order they ended.
    spans: Vec<SpanData>,
    n_spans_dropped: usize,
}

/// The span processor that feeds a [`RecentTraces`] ring: it keeps each ended span (the SDK hands
/// it over whole, so keeping it costs a lock and a push; summaries are made only when read).
#[derive(Debug)]
pub(crate) struct RecentTracesProcessor {
    recent: RecentTraces,
}

// === impl RecentTraces ===

impl RecentTraces {
    /// A ring of the last `capacity` traces.
    pub(crate) fn new(capacity: usize) -> RecentTraces {
        RecentTraces {
            ring: Arc::new(Mutex::new(Ring {
                capacity,
                traces: VecDeque::with_capacity(capacity),
                service: String::new(),
            })),
        }
    }

    /// The processor feeding this ring.
    pub(crate) fn processor(&self) -> RecentTracesProcessor {
        RecentTracesProcessor {
            recent: self.clone(),
        }
    }

    /// The kept traces, most recent first.
    pub(crate) fn summaries(&self) -> Vec<TraceSummary> {
        let ring = self.lock();
        ring.traces
            .iter()
            .rev()
            .map(|trace| summary_of(trace, &ring.service))
            .collect()
    }

    fn keep(&self, span: SpanData) {
        let mut ring = self.lock();
        if ring.capacity == 0 {
            return;
        }
        let trace_id = span.span_context.trace_id();
        // The trace a span belongs to is nearly always among the most recent ones.
        if let Some(trace) = ring
            .traces
            .iter_mut()
            .rev()
            .find(|trace| trace.trace_id == trace_id)
        {
            if trace.spans.len() < SPANS_KEPT_PER_TRACE {
                trace.spans.push(span);
            } else {
                trace.n_spans_dropped += 1;
            }
            return;
        }
        if ring.traces.len() == ring.capacity {
            ring.traces.pop_front();
        }
        ring.traces.push_back(KeptTrace {
            trace_id,
            spans: vec![span],
            n_spans_dropped: 0,
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        // Every operation leaves the ring whole, whatever panicked while holding it.
        self.ring.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

// === impl RecentTracesProcessor ===

impl SpanProcessor for RecentTracesProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        self.recent.keep(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }

    fn set_resource(&mut self, resource: &Resource) {
        let service = resource
            .get(&opentelemetry::Key::from_static_str("service.name"))
            .map(|name| name.to_string())
            .unwrap_or_default();
        self.recent.lock().service = service;
    }
}

// === summaries ===

fn summary_of(trace: &KeptTrace, service: &str) -> TraceSummary {
    let start = trace
        .spans
        .iter()
        .map(|span| span.start_time)
        .min()
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let end = trace
        .spans
        .iter()
        .map(|span| span.end_time)
        .max()
        .unwrap_or(start);
    let is_kept = |span_id: SpanId| {
        trace
            .spans
            .iter()
            .any(|span| span.span_context.span_id() == span_id)
    };
    let root_span_name = trace
        .spans
        .iter()
        .filter(|span| span.parent_span_id == SpanId::INVALID || !is_kept(span.parent_span_id))
        .min_by_key(|span| span.start_time)
        .map(|span| span.name.to_string())
        .unwrap_or_default();
    TraceSummary {
        trace_id: trace.trace_id.to_string(),
        root_span_name,
        service: service.to_owned(),
        start_time: rfc3339(start),
        duration_micros: micros_between(start, end),
        spans: trace.spans.iter().map(span_summary_of).collect(),
        n_spans_dropped: trace.n_spans_dropped,
    }
}

fn span_summary_of(span: &SpanData) -> SpanSummary {
    let (status, status_message) = match &span.status {
        Status::Unset => ("unset", None),
        Status::Ok => ("ok", None),
        Status::Error { description } => ("error", Some(description.to_string())),
    };
    SpanSummary {
        span_id: span.span_context.span_id().to_string(),
        parent_span_id: (span.parent_span_id != SpanId::INVALID)
            .then(|| span.parent_span_id.to_string()),
        name: span.name.to_string(),
        kind: kind_name(&span.span_kind).to_owned(),
        start_time: rfc3339(span.start_time),
        duration_micros: micros_between(span.start_time, span.end_time),
        status: status.to_owned(),
        status_message,
        attributes: span
            .attributes
            .iter()
            .map(|attribute| (attribute.key.to_string(), json_of(&attribute.value)))
            .collect(),
        links: span
            .links
            .iter()
            .map(|link| SpanLink {
                trace_id: link.span_context.trace_id().to_string(),
                span_id: link.span_context.span_id().to_string(),
            })
            .collect(),
    }
}

fn kind_name(kind: &SpanKind) -> &'static str {
    match kind {
        SpanKind::Server => "server",
        SpanKind::Client => "client",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
        SpanKind::Internal => "internal",
    }
}

fn json_of(value: &Value) -> serde_json::Value {
    match value {
        Value::Bool(value) => serde_json::Value::from(*value),
        Value::I64(value) => serde_json::Value::from(*value),
        Value::F64(value) => serde_json::Value::from(*value),
        Value::String(value) => serde_json::Value::from(value.as_str()),
        Value::Array(Array::Bool(values)) => serde_json::Value::from(values.clone()),
        Value::Array(Array::I64(values)) => serde_json::Value::from(values.clone()),
        Value::Array(Array::F64(values)) => serde_json::Value::from(values.clone()),
        Value::Array(Array::String(values)) => values.iter().map(|value| value.as_str()).collect(),
        // Kinds newer than this code: their text form.
        other => serde_json::Value::from(other.to_string()),
    }
}

fn rfc3339(time: SystemTime) -> String {
    time::OffsetDateTime::from(time)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn micros_between(start: SystemTime, end: SystemTime) -> u64 {
    let micros = end.duration_since(start).unwrap_or_default().as_micros();
    u64::try_from(micros).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::time::{Duration, SystemTime};

    use opentelemetry::trace::{
        SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
    };
    use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

    use super::{RecentTraces, SPANS_KEPT_PER_TRACE};

    fn span(trace: u128, span: u64, parent: u64, name: &'static str) -> SpanData {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + span);
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(trace),
                SpanId::from(span),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::from(parent),
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: Cow::Borrowed(name),
            start_time: start,
            end_time: start + Duration::from_millis(3),
            attributes: vec![opentelemetry::KeyValue::new("db.system.name", "sqlite")],
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: Default::default(),
        }
    }

    #[test]
    fn keeps_only_the_most_recent_traces() {
        let recent = RecentTraces::new(3);
        for trace in 1..=5 {
            recent.keep(span(trace, 1, 0, "root"));
        }

        let trace_ids: Vec<String> = recent
            .summaries()
            .into_iter()
            .map(|trace| trace.trace_id)
            .collect();

        assert_eq!(
            trace_ids,
            [5u128, 4, 3].map(|trace| TraceId::from(trace).to_string()),
            "the last three, most recent first"
        );
    }

    #[test]
    fn keeps_at_most_the_span_bound_of_one_trace_and_counts_the_rest() {
        let recent = RecentTraces::new(2);
        for span_id in 1..=(SPANS_KEPT_PER_TRACE as u64 + 10) {
            recent.keep(span(7, span_id, 0, "span"));
        }

        let traces = recent.summaries();

        assert_eq!(traces.len(), 1);
        assert_eq!(traces[0].spans.len(), SPANS_KEPT_PER_TRACE);
        assert_eq!(traces[0].n_spans_dropped, 10);
    }

    #[test]
    fn a_summary_names_its_root_and_spans_its_whole_duration() {
        let recent = RecentTraces::new(10);
        // Children end before their parents; the root's parent is another process's span.
        recent.keep(span(9, 3, 2, "transaction"));
        recent.keep(span(
            9,
            2,
            0xdead,
            "emporium.catalog.v1.CatalogService/CreateProduct",
        ));

        let trace = &recent.summaries()[0];

        assert_eq!(
            trace.root_span_name,
            "emporium.catalog.v1.CatalogService/CreateProduct"
        );
        assert_eq!(trace.start_time, "2027-01-15T08:00:02Z");
        // From the root's start (second 2) to the child's end (second 3 + 3 ms).
        assert_eq!(trace.duration_micros, 1_003_000);
        let transaction = &trace.spans[0];
        assert_eq!(transaction.name, "transaction");
        assert_eq!(
            transaction.parent_span_id.as_deref(),
            Some("0000000000000002")
        );
        assert_eq!(transaction.kind, "internal");
        assert_eq!(transaction.status, "unset");
        assert_eq!(transaction.attributes["db.system.name"], "sqlite");
        assert_eq!(transaction.duration_micros, 3_000);
    }

    #[test]
    fn keeping_no_traces_keeps_none() {
        let recent = RecentTraces::new(0);
        recent.keep(span(1, 1, 0, "root"));

        assert!(recent.summaries().is_empty());
    }
}
