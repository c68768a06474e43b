//! Telemetry, initialised once per process: tracing with JSON or text logs (text when stderr is a
//! terminal, unless `EMPORIUM_LOG_FORMAT` says otherwise), and the W3C trace
//! context of the current request, which the outbox copies into each event.
//!
//! Seam for OpenTelemetry: [`init`] is the one place that builds the subscriber; an OTLP export
//! layer joins it there, and [`current_traceparent`] then reads the active OTel span instead of the
//! request's task-local context.

use std::future::Future;
use std::io::IsTerminal as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
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
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .try_init()?;
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr),
            )
            .try_init()?;
    }
    Ok(())
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
        Box::pin(TRACEPARENT.scope(traceparent, future))
    }
}

/// `00-<trace id>-<new span id>-<flags>`: continues a valid incoming context, else starts a trace.
fn continue_trace(incoming: Option<&str>) -> String {
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
    use super::continue_trace;

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
