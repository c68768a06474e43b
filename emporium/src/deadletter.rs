//! `emporium deadletter list|show|redrive`: the operator's view of the messages consumers gave up
//! on. Connects to the bus the environment names, as `serve` does (the embedded bus file under
//! `EMPORIUM_DATA_DIR` by default, NATS when `EMPORIUM_BUS_URL` says so), in the namespace
//! `EMPORIUM_NAMESPACE`. The work is done by `chassis::deadletter`; this module parses the
//! arguments and prints a table or JSON.

use std::io::Write;

use anyhow::Context;
use chassis::bus::Bus;
use chassis::deadletter::{self, DeadLetter, DeadLetterFilter, Redriven};
use chassis::settings::Settings;
use clap::{Args, Subcommand, ValueEnum};

#[derive(Debug, Subcommand)]
pub(crate) enum DeadletterCommand {
    /// List the dead letters waiting, oldest first: all of them, or one consumer's or one event's.
    List {
        #[command(flatten)]
        selection: Selection,
    },
    /// Print one dead letter in full: why it was parked, its headers and its payload.
    Show {
        /// The dead letter's sequence number, as `list` prints it.
        sequence: u64,
    },
    /// Publish dead letters again to the subject they came from, and remove them from the list.
    ///
    /// Oldest first. The consumer that parked one applies it once (fix what made it refuse the
    /// event first); the other consumers of the subject recognise the event id and skip it.
    Redrive {
        #[command(flatten)]
        selection: RedriveSelection,
    },
}

#[derive(Debug, Args)]
pub(crate) struct Selection {
    /// Only the dead letters of this consumer (its durable name).
    #[arg(long)]
    consumer: Option<String>,
    /// Only the dead letters of this event id.
    #[arg(long)]
    event_id: Option<String>,
}

/// Say which dead letters to re-drive: at least one of these.
#[derive(Debug, Args)]
#[group(required = true, multiple = true)]
pub(crate) struct RedriveSelection {
    /// The dead letters of this consumer (its durable name).
    #[arg(long)]
    consumer: Option<String>,
    /// The dead letters of this event id.
    #[arg(long)]
    event_id: Option<String>,
    /// The dead letter with this sequence number, as `list` prints it.
    #[arg(long)]
    sequence: Option<u64>,
    /// Every dead letter.
    #[arg(long, conflicts_with_all = ["consumer", "event_id", "sequence"])]
    all: bool,
}

/// How results are printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputFormat {
    /// Aligned columns for people.
    #[default]
    Table,
    /// JSON for scripts.
    Json,
}

/// Longest reason shown in a table cell; `show` prints it whole.
const REASON_WIDTH: usize = 60;

/// Runs the subcommand, printing its result to stdout.
pub(crate) async fn run(
    settings: &Settings,
    command: DeadletterCommand,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let bus = Bus::connect(&settings.bus)
        .await
        .context("Failed to connect to the bus")?;
    let namespace = settings.namespace.as_str();
    let mut stdout = std::io::stdout().lock();
    match command {
        DeadletterCommand::List { selection } => {
            let filter = DeadLetterFilter {
                consumer: selection.consumer,
                event_id: selection.event_id,
                sequence: None,
            };
            let dead_letters = deadletter::list(&bus, namespace, &filter).await?;
            match output {
                OutputFormat::Json => {
                    let json: Vec<serde_json::Value> =
                        dead_letters.iter().map(DeadLetter::to_json).collect();
                    writeln!(stdout, "{}", serde_json::to_string_pretty(&json)?)?;
                }
                OutputFormat::Table if dead_letters.is_empty() => {
                    writeln!(stdout, "No dead letters.")?;
                }
                OutputFormat::Table => write_list(&mut stdout, &dead_letters)?,
            }
        }
        DeadletterCommand::Show { sequence } => {
            let Some(dead_letter) = deadletter::show(&bus, namespace, sequence).await? else {
                anyhow::bail!(
                    "no dead letter with sequence {sequence} in {} (see `emporium deadletter list`)",
                    chassis::consumer::dead_letter_stream(namespace).name
                );
            };
            match output {
                OutputFormat::Json => writeln!(
                    stdout,
                    "{}",
                    serde_json::to_string_pretty(&dead_letter.to_json())?
                )?,
                OutputFormat::Table => write_one(&mut stdout, &dead_letter)?,
            }
        }
        DeadletterCommand::Redrive { selection } => {
            let filter = if selection.all {
                DeadLetterFilter::all()
            } else {
                DeadLetterFilter {
                    consumer: selection.consumer,
                    event_id: selection.event_id,
                    sequence: selection.sequence,
                }
            };
            let redriven = deadletter::redrive(&bus, namespace, &filter).await?;
            match output {
                OutputFormat::Json => {
                    let json: Vec<serde_json::Value> =
                        redriven.iter().map(Redriven::to_json).collect();
                    writeln!(stdout, "{}", serde_json::to_string_pretty(&json)?)?;
                }
                OutputFormat::Table if redriven.is_empty() => {
                    writeln!(stdout, "No dead letters matched; nothing re-driven.")?;
                }
                OutputFormat::Table => write_redriven(&mut stdout, &redriven)?,
            }
        }
    }
    Ok(())
}

// === output ===

fn write_list(out: &mut impl Write, dead_letters: &[DeadLetter]) -> std::io::Result<()> {
    let headers = [
        "SEQ",
        "CONSUMER",
        "EVENT ID",
        "TYPE",
        "RECORD",
        "VERSION",
        "FAILURES",
        "PARKED AT",
        "REASON",
    ];
    let rows: Vec<Vec<String>> = dead_letters
        .iter()
        .map(|dead_letter| {
            let event = dead_letter.event.as_ref();
            vec![
                dead_letter.sequence.to_string(),
                dead_letter.consumer.clone(),
                event.map_or_else(|| "-".to_owned(), |event| event.id.clone()),
                event.map_or_else(|| "-".to_owned(), |event| event.event_type.clone()),
                event.map_or_else(|| "-".to_owned(), |event| event.subject.clone()),
                event.map_or_else(
                    || "-".to_owned(),
                    |event| event.aggregate_version.to_string(),
                ),
                dead_letter
                    .handler_failures
                    .map_or_else(|| "-".to_owned(), |n| n.to_string()),
                deadletter::rfc3339(dead_letter.dead_lettered_at),
                shorten(&single_line(&dead_letter.reason), REASON_WIDTH),
            ]
        })
        .collect();
    write_table(out, &headers, &rows)
}

fn write_redriven(out: &mut impl Write, redriven: &[Redriven]) -> std::io::Result<()> {
    let headers = ["SEQ", "CONSUMER", "EVENT ID", "SUBJECT", "NEW STREAM SEQ"];
    let rows: Vec<Vec<String>> = redriven
        .iter()
        .map(|redriven| {
            vec![
                redriven.dead_letter.sequence.to_string(),
                redriven.dead_letter.consumer.clone(),
                redriven
                    .dead_letter
                    .event
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |event| event.id.clone()),
                redriven.subject.clone(),
                redriven.stream_sequence.to_string(),
            ]
        })
        .collect();
    write_table(out, &headers, &rows)
}

fn write_one(out: &mut impl Write, dead_letter: &DeadLetter) -> std::io::Result<()> {
    let mut fields: Vec<(&str, String)> = vec![
        ("sequence", dead_letter.sequence.to_string()),
        ("consumer", dead_letter.consumer.clone()),
        (
            "original subject",
            dead_letter.original_subject.clone().unwrap_or_default(),
        ),
        (
            "parked at",
            deadletter::rfc3339(dead_letter.dead_lettered_at),
        ),
        ("reason", single_line(&dead_letter.reason)),
        (
            "handler failures",
            dead_letter
                .handler_failures
                .map_or_else(|| "-".to_owned(), |n| n.to_string()),
        ),
        (
            "delivery count",
            dead_letter
                .delivery_count
                .map_or_else(|| "-".to_owned(), |n| n.to_string()),
        ),
    ];
    if let Some(event) = &dead_letter.event {
        fields.push(("event id", event.id.clone()));
        fields.push(("event type", event.event_type.clone()));
        fields.push(("record", event.subject.clone()));
        fields.push(("version", event.aggregate_version.to_string()));
    }
    let width = fields.iter().map(|(key, _)| key.len()).max().unwrap_or(0);
    for (key, value) in &fields {
        writeln!(out, "{key:<width$}  {value}")?;
    }
    writeln!(out, "headers:")?;
    for (name, value) in &dead_letter.headers {
        writeln!(out, "  {name}: {}", single_line(value))?;
    }
    writeln!(out, "payload:")?;
    let payload = match serde_json::from_slice::<serde_json::Value>(&dead_letter.payload) {
        Ok(json) => serde_json::to_string_pretty(&json).unwrap_or_default(),
        Err(_) => String::from_utf8_lossy(&dead_letter.payload).into_owned(),
    };
    for line in payload.lines() {
        writeln!(out, "  {line}")?;
    }
    Ok(())
}

/// Columns padded to their widest cell, two spaces apart, no trailing whitespace.
fn write_table(
    out: &mut impl Write,
    headers: &[&str],
    rows: &[Vec<String>],
) -> std::io::Result<()> {
    let mut widths: Vec<usize> = headers
        .iter()
        .map(|header| header.chars().count())
        .collect();
    for row in rows {
        for (column, cell) in row.iter().enumerate() {
            widths[column] = widths[column].max(cell.chars().count());
        }
    }
    let header_row: Vec<String> = headers.iter().map(|header| (*header).to_owned()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            if column > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            let padding = widths[column].saturating_sub(cell.chars().count());
            line.extend(std::iter::repeat_n(' ', padding));
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// Control characters would break the table's lines.
fn single_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn shorten(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_owned();
    }
    let mut shortened: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    shortened.push('…');
    shortened
}
