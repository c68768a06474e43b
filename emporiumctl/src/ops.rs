//! `emporiumctl ops status|dead-letters|redrive`: the suite's ops API (`/ops/v1` on the HTTP
//! origin, admins only) printed for people, or passed through as JSON or YAML for scripts. The
//! origin is `--origin`, else the issuer of the stored login, else `emporium up`'s.

use std::io::Write;

use bytes::Bytes;
use clap::{Args, Subcommand};
use serde_json::Value;

use crate::error::CliError;
use crate::table::{Align, Table};
use crate::{OutputFormat, oauth};

/// What `emporiumctl ops` is asked for.
#[derive(Debug, Subcommand)]
pub enum OpsCommand {
    /// Each hosted service's health, pool and outbox backlog, and each consumer's lag,
    /// unsettled deliveries, dead letters and delivery counts.
    Status,
    /// The dead letters of the hosted consumers, oldest first.
    DeadLetters {
        /// Only this consumer's (its durable name).
        #[arg(long)]
        consumer: Option<String>,
        /// Only this event's.
        #[arg(long)]
        event_id: Option<String>,
    },
    /// Publish dead letters again to the subject they came from (fix what refused them first).
    Redrive(RedriveArgs),
    /// The most recent traces the suite kept in memory (when it exports none over OTLP), or one
    /// trace's spans as a tree.
    Traces {
        /// How many, most recent first.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print this trace's spans, each under its parent, with their durations.
        #[arg(long)]
        trace_id: Option<String>,
    },
}

/// Which dead letters to re-drive: at least one of these.
#[derive(Debug, Args)]
#[group(required = true, multiple = true)]
pub struct RedriveArgs {
    /// This consumer's dead letters.
    #[arg(long)]
    consumer: Option<String>,
    /// This event's dead letters.
    #[arg(long)]
    event_id: Option<String>,
    /// The dead letter with this sequence number, as `ops dead-letters` prints it.
    #[arg(long)]
    sequence: Option<u64>,
    /// Every dead letter of every hosted consumer.
    #[arg(long, conflicts_with_all = ["consumer", "event_id", "sequence"])]
    all: bool,
}

/// `emporiumctl ops …` as parsed.
#[derive(Debug)]
pub struct OpsCall {
    /// The suite's HTTP origin, when given.
    pub origin: Option<String>,
    pub command: OpsCommand,
}

/// The flags of `emporiumctl ops` itself.
#[derive(Debug, Args)]
pub(crate) struct OpsArgs {
    /// The suite's HTTP origin (default: the stored login's issuer, else http://localhost:8080).
    #[arg(long, global = true, value_name = "URL", env = "EMPORIUMCTL_ORIGIN")]
    pub(crate) origin: Option<String>,
}

/// Calls the ops API at `origin` with `token` and prints its answer.
pub(crate) async fn run(
    call: OpsCall,
    origin: &str,
    token: Option<&str>,
    output: OutputFormat,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let origin = origin.trim_end_matches('/');
    let answer = match &call.command {
        OpsCommand::Status => request(origin, "/ops/v1/status", None, token).await?,
        OpsCommand::DeadLetters { consumer, event_id } => {
            let mut query = form_urlencoded::Serializer::new(String::new());
            if let Some(consumer) = consumer {
                query.append_pair("consumer", consumer);
            }
            if let Some(event_id) = event_id {
                query.append_pair("event_id", event_id);
            }
            let query = query.finish();
            let path = if query.is_empty() {
                "/ops/v1/dead-letters".to_owned()
            } else {
                format!("/ops/v1/dead-letters?{query}")
            };
            request(origin, &path, None, token).await?
        }
        OpsCommand::Traces { limit, trace_id } => {
            // One trace is looked for among all that are kept.
            let path = match trace_id {
                Some(_) => "/ops/v1/traces".to_owned(),
                None => format!("/ops/v1/traces?limit={}", (*limit).max(1)),
            };
            let mut answer = request(origin, &path, None, token).await?;
            if let Some(trace_id) = trace_id {
                let found = answer["traces"].as_array().and_then(|traces| {
                    traces
                        .iter()
                        .find(|trace| trace["trace_id"].as_str() == Some(trace_id.as_str()))
                        .cloned()
                });
                answer = found.ok_or_else(|| {
                    CliError::from_status(
                        tonic::Status::not_found(format!(
                            "no trace {trace_id} is kept (see `emporiumctl ops traces`)"
                        )),
                        origin,
                        None,
                    )
                })?;
            }
            answer
        }
        OpsCommand::Redrive(selection) => {
            let body = serde_json::json!({
                "consumer": selection.consumer,
                "event_id": selection.event_id,
                "sequence": selection.sequence,
                "all": selection.all,
            });
            request(origin, "/ops/v1/dead-letters/redrive", Some(body), token).await?
        }
    };
    match output {
        OutputFormat::Json => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&answer).unwrap_or_default()
        )?,
        OutputFormat::Yaml => write!(out, "{}", crate::yaml::to_yaml(&answer))?,
        OutputFormat::Table => match &call.command {
            OpsCommand::Status => write_status(out, &answer)?,
            OpsCommand::DeadLetters { .. } => write_dead_letters(out, &answer)?,
            OpsCommand::Redrive(_) => write_redriven(out, &answer)?,
            OpsCommand::Traces { trace_id: None, .. } => write_traces(out, &answer)?,
            OpsCommand::Traces {
                trace_id: Some(_), ..
            } => write_trace(out, &answer)?,
        },
    }
    Ok(())
}

/// One call to the ops API: GET, or POST with a JSON body. A refusal becomes the error the
/// same refusal of a gRPC call would be.
async fn request(
    origin: &str,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> Result<Value, CliError> {
    let url = format!("{origin}{path}");
    let mut builder = match &body {
        Some(_) => http::Request::post(&url).header(http::header::CONTENT_TYPE, "application/json"),
        None => http::Request::get(&url),
    }
    .header(http::header::ACCEPT, "application/json");
    if let Some(token) = token {
        builder = builder.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let body = body.map_or_else(Bytes::new, |body| Bytes::from(body.to_string()));
    let (status, answer) =
        oauth::send(builder, body, &url)
            .await
            .map_err(|error| CliError::Unreachable {
                server: origin.to_owned(),
                reason: format!("{error:#}"),
            })?;
    let answer: Value = serde_json::from_slice(&answer).map_err(|error| {
        CliError::Other(anyhow::anyhow!(
            "{url} answered {status} with a body that is not JSON: {error}"
        ))
    })?;
    if status.is_success() {
        return Ok(answer);
    }
    let message = answer["message"]
        .as_str()
        .unwrap_or("no reason given")
        .to_owned();
    let status = match status {
        http::StatusCode::UNAUTHORIZED => tonic::Status::unauthenticated(message),
        http::StatusCode::FORBIDDEN => tonic::Status::permission_denied(message),
        http::StatusCode::NOT_FOUND => tonic::Status::not_found(message),
        http::StatusCode::BAD_REQUEST => tonic::Status::invalid_argument(message),
        http::StatusCode::SERVICE_UNAVAILABLE => tonic::Status::unavailable(message),
        _ => tonic::Status::internal(message),
    };
    Err(CliError::from_status(status, origin, None))
}

// === tables ===

fn write_status(out: &mut impl Write, status: &Value) -> std::io::Result<()> {
    let bus = &status["bus"];
    writeln!(
        out,
        "Bus: {} ({})",
        text(&bus["kind"]),
        if bus["connected"].as_bool() == Some(true) {
            "connected"
        } else {
            "not connected"
        }
    )?;
    writeln!(out)?;
    let mut services = Table::new(&columns(&[
        ("SERVICE", Align::Left),
        ("STATUS", Align::Left),
        ("POOL IN USE", Align::Right),
        ("POOL MAX", Align::Right),
        ("UNPUBLISHED", Align::Right),
        ("OLDEST (S)", Align::Right),
        ("PARKED", Align::Right),
    ]));
    let mut consumers = Table::new(&columns(&[
        ("CONSUMER", Align::Left),
        ("SERVICE", Align::Left),
        ("PENDING", Align::Right),
        ("UNACKED", Align::Right),
        ("DEAD LETTERS", Align::Right),
        ("APPLIED", Align::Right),
        ("DUPLICATE", Align::Right),
        ("RETRIED", Align::Right),
        ("DEAD-LETTERED", Align::Right),
    ]));
    let empty = Vec::new();
    for service in status["services"].as_array().unwrap_or(&empty) {
        let outbox = &service["outbox"];
        services.push(vec![
            text(&service["name"]),
            text(&service["status"]),
            text(&service["pool"]["in_use"]),
            text(&service["pool"]["max"]),
            text(&outbox["unpublished"]),
            outbox["oldest_unpublished_age_seconds"]
                .as_f64()
                .map_or_else(|| "-".to_owned(), |age| format!("{age:.1}")),
            text(&outbox["parked"]),
        ]);
        for consumer in service["consumers"].as_array().unwrap_or(&empty) {
            let deliveries = &consumer["deliveries"];
            consumers.push(vec![
                text(&consumer["name"]),
                text(&service["name"]),
                text(&consumer["position"]["pending"]),
                text(&consumer["position"]["ack_pending"]),
                text(&consumer["dead_letters"]),
                text(&deliveries["applied"]),
                text(&deliveries["duplicates"]),
                text(&deliveries["handler_failures"]),
                text(&deliveries["dead_lettered"]),
            ]);
        }
    }
    services.write(out)?;
    writeln!(out)?;
    if consumers.is_empty() {
        writeln!(out, "No consumers run here.")
    } else {
        consumers.write(out)
    }
}

fn write_dead_letters(out: &mut impl Write, dead_letters: &Value) -> std::io::Result<()> {
    let empty = Vec::new();
    let dead_letters = dead_letters.as_array().unwrap_or(&empty);
    if dead_letters.is_empty() {
        return writeln!(out, "No dead letters.");
    }
    let mut table = Table::new(&columns(&[
        ("SEQ", Align::Right),
        ("CONSUMER", Align::Left),
        ("EVENT ID", Align::Left),
        ("TYPE", Align::Left),
        ("FAILURES", Align::Right),
        ("PARKED AT", Align::Left),
        ("REASON", Align::Left),
    ]));
    for dead_letter in dead_letters {
        table.push(vec![
            text(&dead_letter["sequence"]),
            text(&dead_letter["consumer"]),
            text(&dead_letter["event"]["id"]),
            text(&dead_letter["event"]["type"]),
            text(&dead_letter["handler_failures"]),
            text(&dead_letter["dead_lettered_at"]),
            text(&dead_letter["reason"]),
        ]);
    }
    table.write(out)
}

fn write_redriven(out: &mut impl Write, redriven: &Value) -> std::io::Result<()> {
    let empty = Vec::new();
    let redriven = redriven.as_array().unwrap_or(&empty);
    if redriven.is_empty() {
        return writeln!(out, "No dead letters matched; nothing re-driven.");
    }
    let mut table = Table::new(&columns(&[
        ("SEQ", Align::Right),
        ("CONSUMER", Align::Left),
        ("EVENT ID", Align::Left),
        ("SUBJECT", Align::Left),
        ("NEW STREAM SEQ", Align::Right),
    ]));
    for one in redriven {
        table.push(vec![
            text(&one["sequence"]),
            text(&one["consumer"]),
            text(&one["event_id"]),
            text(&one["subject"]),
            text(&one["stream_sequence"]),
        ]);
    }
    table.write(out)
}

fn write_traces(out: &mut impl Write, answer: &Value) -> std::io::Result<()> {
    let empty = Vec::new();
    let traces = answer["traces"].as_array().unwrap_or(&empty);
    if answer["kept_in_memory"].as_bool() != Some(true) {
        return writeln!(
            out,
            "No traces are kept here: the suite exports them over OTLP (see its collector)."
        );
    }
    if traces.is_empty() {
        return writeln!(out, "No traces yet.");
    }
    let mut table = Table::new(&columns(&[
        ("TRACE ID", Align::Left),
        ("ROOT", Align::Left),
        ("START", Align::Left),
        ("MS", Align::Right),
        ("SPANS", Align::Right),
    ]));
    for trace in traces {
        table.push(vec![
            text(&trace["trace_id"]),
            text(&trace["root_span_name"]),
            text(&trace["start_time"]),
            milliseconds(&trace["duration_micros"]),
            trace["spans"]
                .as_array()
                .map_or_else(|| "-".to_owned(), |spans| spans.len().to_string()),
        ]);
    }
    table.write(out)
}

/// One trace's spans, each under its parent, earliest first, with kind, duration and status.
fn write_trace(out: &mut impl Write, trace: &Value) -> std::io::Result<()> {
    let empty = Vec::new();
    let mut spans: Vec<&Value> = trace["spans"].as_array().unwrap_or(&empty).iter().collect();
    spans.sort_by(|a, b| text(&a["start_time"]).cmp(&text(&b["start_time"])));
    writeln!(
        out,
        "Trace {} ({} ms)",
        text(&trace["trace_id"]),
        milliseconds(&trace["duration_micros"])
    )?;
    let ids: std::collections::HashSet<String> =
        spans.iter().map(|span| text(&span["span_id"])).collect();
    // Roots: no parent, or a parent in another process.
    let roots: Vec<&Value> = spans
        .iter()
        .copied()
        .filter(|span| !ids.contains(&text(&span["parent_span_id"])))
        .collect();
    for root in roots {
        write_span(out, root, &spans, 1)?;
    }
    Ok(())
}

fn write_span(
    out: &mut impl Write,
    span: &Value,
    all: &[&Value],
    depth: usize,
) -> std::io::Result<()> {
    let status = match span["status"].as_str() {
        Some("error") => format!("  ERROR {}", text(&span["status_message"])),
        _ => String::new(),
    };
    writeln!(
        out,
        "{:indent$}{}  [{}] {} ms{status}",
        "",
        text(&span["name"]),
        text(&span["kind"]),
        milliseconds(&span["duration_micros"]),
        indent = depth * 2
    )?;
    let id = text(&span["span_id"]);
    for child in all
        .iter()
        .filter(|child| text(&child["parent_span_id"]) == id)
    {
        write_span(out, child, all, depth + 1)?;
    }
    Ok(())
}

/// Microseconds as milliseconds with one decimal.
fn milliseconds(micros: &Value) -> String {
    micros.as_u64().map_or_else(
        || "-".to_owned(),
        |micros| format!("{:.1}", micros as f64 / 1000.0),
    )
}

fn columns(columns: &[(&str, Align)]) -> Vec<(String, Align)> {
    columns
        .iter()
        .map(|(header, align)| ((*header).to_owned(), *align))
        .collect()
}

/// A JSON value as a cell: strings bare, null as `-`.
fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}
