//! The report: every figure beside its baseline and the goal, as Markdown.

use std::fmt::Write as _;
use std::time::Duration;

use test_support::Backend;

use crate::load::{Measurement, Window};
use crate::machine::Machine;
use crate::pgbench::PgbenchFigures;
use crate::relay::RelayFigures;

/// The baseline server's name in the tables.
pub(crate) const BARE: &str = "bare tonic";
/// The gateway's baseline: an axum handler answering a canned body.
pub(crate) const BARE_AXUM: &str = "bare axum";

/// Everything one run measured.
#[derive(Debug)]
pub(crate) struct Report {
    machine: Machine,
    command: String,
    /// What the services did with their OpenTelemetry spans.
    traces: String,
    window: Window,
    /// PostgreSQL's and NATS's versions, when they were used.
    pub(crate) servers: Vec<String>,
    pub(crate) rows: Vec<Row>,
    pub(crate) pgbench: Option<PgbenchFigures>,
    /// SQLite's group commits in each embedded CreateProduct window: (clients, commits, writes).
    pub(crate) group_commits: Vec<(usize, u64, u64)>,
    pub(crate) relay: Vec<(Backend, RelayFigures)>,
    pub(crate) load_average_at_end: String,
}

/// One measured window.
#[derive(Debug)]
pub(crate) struct Row {
    call: String,
    n_clients: usize,
    server: &'static str,
    measurement: Measurement,
    ratio: Option<Ratio>,
    goal: Option<Goal>,
}

/// A rate as a share of its baseline's.
#[derive(Debug)]
pub(crate) struct Ratio {
    value: f64,
    against: &'static str,
}

/// What the issue asks of a figure, and whether this run reached it.
#[derive(Debug)]
pub(crate) struct Goal {
    text: String,
    met: bool,
}

/// The gateway in front of the catalog on `backend`, in the tables.
pub(crate) fn gateway_name(backend: Backend) -> &'static str {
    match backend {
        Backend::SqliteEmbedded => "gateway → catalog on SQLite",
        Backend::PostgresNats => "gateway → catalog on PostgreSQL",
    }
}

pub(crate) fn backend_name(backend: Backend) -> &'static str {
    match backend {
        Backend::SqliteEmbedded => "SQLite + embedded bus",
        Backend::PostgresNats => "PostgreSQL + NATS",
    }
}

// === impl Report ===

impl Report {
    pub(crate) fn new(machine: Machine, command: String, traces: String, window: Window) -> Report {
        Report {
            machine,
            command,
            traces,
            window,
            servers: Vec::new(),
            rows: Vec::new(),
            pgbench: None,
            group_commits: Vec::new(),
            relay: Vec::new(),
            load_average_at_end: String::new(),
        }
    }

    pub(crate) fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = self.write(&mut text);
        text
    }

    fn write(&self, text: &mut String) -> std::fmt::Result {
        let machine = &self.machine;
        writeln!(text)?;
        writeln!(text, "## Run")?;
        writeln!(text)?;
        writeln!(
            text,
            "- machine: {} cores, {}, Linux {}",
            machine.n_cores, machine.cpu_model, machine.kernel
        )?;
        writeln!(
            text,
            "- load average (1, 5, 15 min): {} at the start, {} at the end",
            machine.load_average, self.load_average_at_end
        )?;
        writeln!(text, "- commit: {}", machine.commit)?;
        writeln!(text, "- command: {}", self.command)?;
        writeln!(text, "- traces: {}", self.traces)?;
        for server in &self.servers {
            writeln!(text, "- {server}")?;
        }
        writeln!(
            text,
            "- each figure: a {} s window after a {} s warm-up; every client on its own \
             connection (HTTP/2 for gRPC, HTTP/1.1 keep-alive for GraphQL), one call at a time \
             (or, paced, each at its turn of a fixed rate, its latency counted from that turn), \
             with a bearer token; clients and servers in one process on two tokio runtimes of \
             {} workers each; ListProducts pages through the table {} at a time from the first \
             page, following `next_page_token`; CPU µs/call is the CPU time of the process's \
             serving threads (all but the clients') in the window per call, without \
             PostgreSQL's and NATS's own processes",
            self.window.measure.as_secs(),
            self.window.warm_up.as_secs(),
            machine.n_cores,
            crate::workloads::PAGE_SIZE
        )?;
        writeln!(text)?;
        writeln!(text, "## Calls")?;
        writeln!(text)?;
        writeln!(
            text,
            "| call | clients | server | calls/s | p50 ms | p99 ms | CPU µs/call | errors | ratio | goal | met |"
        )?;
        writeln!(text, "|---|--:|---|--:|--:|--:|--:|--:|--:|---|---|")?;
        for row in &self.rows {
            let measurement = &row.measurement;
            let ratio = row.ratio.as_ref().map_or_else(String::new, |ratio| {
                format!("{:.2} of {}", ratio.value, ratio.against)
            });
            let (goal, met) = row.goal.as_ref().map_or((String::new(), ""), |goal| {
                (goal.text.clone(), if goal.met { "yes" } else { "**no**" })
            });
            writeln!(
                text,
                "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} |",
                row.call,
                row.n_clients,
                row.server,
                measurement.calls_per_second(),
                milliseconds(measurement.latency(0.50)),
                milliseconds(measurement.latency(0.99)),
                measurement
                    .serving_cpu_micros_per_call()
                    .map_or_else(|| "n/a".to_owned(), |micros| format!("{micros:.0}")),
                measurement.n_errors,
                ratio,
                goal,
                met,
            )?;
        }
        let errors: Vec<&Row> = self
            .rows
            .iter()
            .filter(|row| row.measurement.first_error.is_some())
            .collect();
        if !errors.is_empty() {
            writeln!(text)?;
            for row in errors {
                writeln!(
                    text,
                    "- first error of {} at {} clients on {}: {}",
                    row.call,
                    row.n_clients,
                    row.server,
                    row.measurement.first_error.as_deref().unwrap_or_default()
                )?;
            }
        }
        for (n_clients, n_commits, n_writes) in &self.group_commits {
            writeln!(text)?;
            writeln!(
                text,
                "SQLite group commit, CreateProduct at {n_clients} clients: {n_writes} write \
                 transactions (creates and the relay's marks) in {n_commits} commits, {:.1} per \
                 fsync",
                *n_writes as f64 / (*n_commits).max(1) as f64
            )?;
        }
        if let Some(pgbench) = &self.pgbench {
            writeln!(text)?;
            writeln!(
                text,
                "pgbench, durable single-row insert ({}): **{:.0} tps** at {} clients, latency \
                 average {} ms; command: `{}`",
                pgbench.durability,
                pgbench.transactions_per_second,
                pgbench.n_clients,
                milliseconds(pgbench.latency_average),
                pgbench.command
            )?;
        }
        if !self.relay.is_empty() {
            writeln!(text)?;
            writeln!(text, "## Relay backlog drain")?;
            writeln!(text)?;
            writeln!(
                text,
                "| backend | events | relay events/s | baseline | baseline events/s | ratio | goal | met |"
            )?;
            writeln!(text, "|---|--:|--:|---|--:|--:|---|---|")?;
            for (backend, figures) in &self.relay {
                let relay_rate = figures.n_events as f64 / figures.relay.as_secs_f64();
                let baseline_rate = figures.n_events as f64 / figures.baseline.as_secs_f64();
                let ratio = relay_rate / baseline_rate;
                writeln!(
                    text,
                    "| {} | {} | {:.0} | {} | {:.0} | {:.2} | ≥ 0.5 of baseline | {} |",
                    backend_name(*backend),
                    figures.n_events,
                    relay_rate,
                    figures.baseline_name,
                    baseline_rate,
                    ratio,
                    if ratio >= 0.5 { "yes" } else { "**no**" },
                )?;
            }
        }
        Ok(())
    }
}

// === impl Row ===

impl Row {
    pub(crate) fn new(
        call: &str,
        n_clients: usize,
        server: &'static str,
        measurement: Measurement,
    ) -> Row {
        Row {
            call: call.to_owned(),
            n_clients,
            server,
            measurement,
            ratio: None,
            goal: None,
        }
    }

    pub(crate) fn with(self, ratio: Ratio, goal: Option<Goal>) -> Row {
        Row {
            ratio: Some(ratio),
            goal,
            ..self
        }
    }
}

// === impl Ratio ===

impl Ratio {
    pub(crate) fn new(rate: f64, baseline_rate: f64, against: &'static str) -> Ratio {
        Ratio {
            value: rate / baseline_rate,
            against,
        }
    }
}

// === impl Goal ===

impl Goal {
    pub(crate) fn p99_within(measurement: &Measurement, limit: Duration) -> Goal {
        Goal {
            text: format!("p99 ≤ {} ms", limit.as_millis()),
            met: measurement.n_errors == 0 && measurement.latency(0.99) <= limit,
        }
    }

    pub(crate) fn ratio_at_least(ratio: &Ratio, share: f64) -> Goal {
        Goal {
            text: format!("≥ {share} of {}", ratio.against),
            met: ratio.value >= share,
        }
    }

    /// List at ten times the rows within 1.5× of the small table's rate, and no stall.
    pub(crate) fn list_keeps_up(large: &Measurement, small_rate: f64) -> Goal {
        let share = large.calls_per_second() / small_rate;
        Goal {
            text: format!("≥ 1/1.5 of the small table's (now {share:.2}), p99 ≤ 5 ms"),
            met: large.n_errors == 0
                && share >= 1.0 / 1.5
                && large.latency(0.99) <= Duration::from_millis(5),
        }
    }

    pub(crate) fn embedded_create(measurement: &Measurement) -> Goal {
        Goal {
            text: "≥ 3,000/s, p99 ≤ 20 ms".to_owned(),
            met: measurement.n_errors == 0
                && measurement.calls_per_second() >= 3000.0
                && measurement.latency(0.99) <= Duration::from_millis(20),
        }
    }
}

fn milliseconds(duration: Duration) -> String {
    let milliseconds = duration.as_secs_f64() * 1000.0;
    if milliseconds < 10.0 {
        format!("{milliseconds:.2}")
    } else {
        format!("{milliseconds:.1}")
    }
}
