//! PostgreSQL's own write rate: `pgbench` running a durable single-row insert (one transaction,
//! committed with the server's `synchronous_commit`) from 8 clients on a throwaway database,
//! the baseline for the catalog's CreateProduct on PostgreSQL.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use sqlx::Connection;
use test_support::{Backend, TestDatabase};

/// What pgbench measured.
#[derive(Debug)]
pub(crate) struct PgbenchFigures {
    pub(crate) transactions_per_second: f64,
    pub(crate) latency_average: Duration,
    pub(crate) n_clients: usize,
    /// The command that ran (the database URL included).
    pub(crate) command: String,
    /// The server's `synchronous_commit` and `fsync`: whether each insert waited for the disk.
    pub(crate) durability: String,
}

/// The program run; Debian's postgresql-client puts it here.
const PGBENCH: &str = "/usr/bin/pgbench";

const SCHEMA: &str = "CREATE TABLE bench_insert (id bigserial PRIMARY KEY, sku text NOT NULL, \
                      name text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())";

/// pgbench variables: `:client_id` is set by pgbench itself.
const SCRIPT: &str = "\\set n random(1, 1000000000)\n\
INSERT INTO bench_insert (sku, name) VALUES ('BN-' || :client_id || '-' || :n, 'Tea, freshly stocked');\n";

/// Runs the insert for a one-second warm-up, then for `window`, with `n_clients` clients.
pub(crate) async fn insert_rate(
    window: Duration,
    n_clients: usize,
    scratch: &Path,
) -> anyhow::Result<PgbenchFigures> {
    let database = TestDatabase::new(Backend::PostgresNats, "bench_pgbench").await;
    let mut connection = sqlx::PgConnection::connect(database.url())
        .await
        .context("PostgreSQL is required")?;
    sqlx::query(SCHEMA).execute(&mut connection).await?;
    let synchronous_commit: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(&mut connection)
        .await?;
    let fsync: String = sqlx::query_scalar("SHOW fsync")
        .fetch_one(&mut connection)
        .await?;
    connection.close().await?;

    let script = scratch.join("insert.sql");
    std::fs::write(&script, SCRIPT).context("Failed to write the pgbench script")?;
    run_pgbench(database.url(), &script, n_clients, Duration::from_secs(1)).await?;
    let (output, command) = run_pgbench(database.url(), &script, n_clients, window).await?;
    let transactions_per_second = figure_after(&output, "tps = ")
        .with_context(|| format!("pgbench printed no tps:\n{output}"))?;
    let latency_ms = figure_after(&output, "latency average = ").unwrap_or(0.0);
    Ok(PgbenchFigures {
        transactions_per_second,
        latency_average: Duration::from_secs_f64(latency_ms / 1000.0),
        n_clients,
        command,
        durability: format!("synchronous_commit={synchronous_commit}, fsync={fsync}"),
    })
}

/// Runs pgbench; returns its standard output and the command line.
async fn run_pgbench(
    url: &str,
    script: &Path,
    n_clients: usize,
    window: Duration,
) -> anyhow::Result<(String, String)> {
    let arguments = vec![
        "--no-vacuum".to_owned(),
        "--protocol=prepared".to_owned(),
        format!("--client={n_clients}"),
        "--jobs=2".to_owned(),
        format!("--time={}", window.as_secs().max(1)),
        format!("--file={}", script.display()),
        url.to_owned(),
    ];
    let command = format!("{PGBENCH} {}", arguments.join(" "));
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(PGBENCH)
            .args(&arguments)
            .output()
    })
    .await
    .context("pgbench's runner panicked")?
    .with_context(|| format!("Failed to run {PGBENCH}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    anyhow::ensure!(
        output.status.success(),
        "{command} failed ({}):\n{stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((stdout, command))
}

/// The number following `label` on the first line holding it (`tps = 1234.5 (without …)`).
fn figure_after(output: &str, label: &str) -> Option<f64> {
    let line = output.lines().find(|line| line.contains(label))?;
    let rest = &line[line.find(label)? + label.len()..];
    rest.split_whitespace().next()?.parse().ok()
}
