//! Telemetry, initialised once per process: tracing with JSON or text logs (text when stderr is a
//! terminal, unless `EMPORIUM_LOG_FORMAT` says otherwise), and the W3C trace
//! context of the current request, which the outbox copies into each event. Every log line
//! written inside a request's trace context carries its `trace_id` and `span_id`
//! ([`WithTraceIds`]), so a request's lines can be found together and beside its trace.
//!
//! Seam for OpenTelemetry: [`init`] is the one place that builds the subscriber; an OTLP export
//! layer joins it there, and [`current_traceparent`] then reads the active OTel span instead of the
//! request's task-local context.

use std::future::Future;
use std::io::IsTerminal as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::settings::{LogFormat, TelemetrySettings};

tokio::task_local! {
    static TRACEPARENT: String;
}

/// Installs the global subscriber. Call once, first thing in `main`.
pub fn init(settings: &TelemetrySettings) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&settings.filter)
        .map_err(|error| anyhow::anyhow!("invalid EMPORIUM_LOG filter: {error}"))?;
    let registry = tracing_subscriber::registry().with(filter);
    let json = match settings.format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    if json {
        registry.with(json_layer(std::io::stderr)).try_init()?;
    } else {
        registry
            .with(text_layer(std::io::stderr, std::io::stderr().is_terminal()))
            .try_init()?;
    }
    Ok(())
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
        .event_format(WithTraceIds {
            inner: format,
            json: true,
        })
        .with_writer(writer)
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

/// The W3C `traceparent` of the request being handled, if any.
pub fn current_traceparent() -> Option<String> {
    TRACEPARENT.try_with(Clone::clone).ok()
}

/// Runs `future` with `traceparent` as the current trace context.
pub async fn with_traceparent<F: Future>(traceparent: String, future: F) -> F::Output {
    TRACEPARENT.scope(traceparent, future).await
}

/// A tower layer giving each incoming request a trace context: the caller's `traceparent`
/// continued with a new span id, or a new trace.
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

impl<S, B> tower::Service<http::Request<B>> for TraceContextService<S>
where
    S: tower::Service<http::Request<B>> + Send,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let incoming = request
            .headers()
            .get("traceparent")
            .and_then(|value| value.to_str().ok());
        let traceparent = continue_trace(incoming);
        let future = self.inner.call(request);
        Box::pin(TRACEPARENT.scope(traceparent.clone(), async move {
            // The request's span (tonic's `trace_fn`) is entered while this is polled: lines
            // logged in it on other threads (the SQLite driver's worker) find the ids there.
            attach_trace_context(&tracing::Span::current(), traceparent);
            future.await
        }))
    }
}

/// A span's W3C trace context, kept in its extensions for [`WithTraceIds`].
#[derive(Clone, Debug)]
struct SpanTraceContext(String);

/// Keeps `traceparent` with `span`, so that every line logged inside it, on whatever thread,
/// carries its ids.
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
