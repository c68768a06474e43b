//! `emporium-bench`: the request-path benchmark. Starts the real catalog in-process on both
//! backends and a bare tonic server beside it, drives each with concurrent clients for fixed
//! windows, measures PostgreSQL's own insert rate with pgbench, the relay's backlog drain
//! beside the bus's own publish rate and GraphQL through the gateway beside a bare axum
//! handler, and prints every figure with its ratio to the baseline
//! measured in the same run, as Markdown ready to paste into BENCHMARKS.md. Run it with
//! `./scripts/bench` (a release build).

// The report is this command's output: it goes to stdout, the services' logs to stderr.
#![allow(clippy::print_stdout)]

mod bare;
mod cpu;
mod graphql;
mod load;
mod machine;
mod pgbench;
mod relay;
mod report;
mod under_test;
mod workloads;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chassis::auth::roles;
use chassis::settings::{LogFormat, TelemetrySettings, TraceSampler};
use clap::{Parser, ValueEnum};
use test_support::{Backend, TestIssuer};

use crate::load::Window;
use crate::report::{Goal, Ratio, Report, Row};
use crate::workloads::{CreateProduct, GetProduct, ListProducts};

/// The `emporium` binary's allocator, so the catalog is measured as it is deployed.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Measures the catalog's Get, List and Create on SQLite + embedded bus and on PostgreSQL + NATS
/// beside a bare tonic server, pgbench and JetStream, all in one run, and prints the figures
/// with their ratios as Markdown. PostgreSQL and NATS are found as the tests find them
/// (EMPORIUM_TEST_POSTGRES_URL, EMPORIUM_TEST_NATS_URL); everything it creates there is
/// throwaway and removed at the end.
#[derive(Debug, Parser)]
#[command(name = "emporium-bench")]
struct Cli {
    /// Length of each measured window, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Warm-up before each window, in seconds: calls completed in it are not counted.
    #[arg(long, default_value_t = 1)]
    warm_up_seconds: u64,
    /// Which backends to run the catalog on (the bare server runs in every case).
    #[arg(long, value_enum, default_value_t = Backends::Both)]
    backend: Backends,
    /// Which measurements to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Part::Get, Part::List, Part::Create, Part::Relay, Part::Gateway])]
    only: Vec<Part>,
    /// Products in the small table ListProducts pages through; the large one has ten times as
    /// many. GetProduct reads the small table's products.
    #[arg(long, default_value_t = 1500)]
    small_table: usize,
    /// Events in the backlog the relay drains.
    #[arg(long, default_value_t = 5000)]
    relay_backlog: usize,
    /// Log filter of the services under test; their logs go to stderr as in production.
    #[arg(long, env = "EMPORIUM_LOG", default_value = "info")]
    log: String,
    /// How `scripts/bench` was invoked, for the report.
    #[arg(long, env = "EMPORIUM_BENCH_INVOKED_AS", hide = true)]
    invoked_as: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Backends {
    Sqlite,
    Postgres,
    Both,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Part {
    Get,
    List,
    Create,
    Relay,
    /// GraphQL through the gateway in front of the catalog, beside a bare axum handler.
    Gateway,
}

/// Concurrencies measured per call.
const GET_CLIENTS: [usize; 2] = [16, 64];
const LIST_CLIENTS: usize = 16;
const CREATE_CLIENTS: [usize; 2] = [8, 16];
const PGBENCH_CLIENTS: usize = 8;
const GATEWAY_CLIENTS: usize = 16;
/// Products the gateway's single reads cycle through.
const GATEWAY_PRODUCTS: usize = 200;
/// How long a seeding burst's events may take to reach the bus before the next measurement.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(300);

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Traces as the `OTEL_*` variables say, as a service reads them: by default no OTLP
    // endpoint, so the services keep their recent traces in memory; `OTEL_SDK_DISABLED=true`
    // measures them without OpenTelemetry spans.
    let telemetry_settings = TelemetrySettings {
        filter: cli.log.clone(),
        format: LogFormat::Json,
        ..TelemetrySettings::from_env()?
    };
    let telemetry = chassis::telemetry::init(&telemetry_settings, "emporium-bench")?;
    // The servers get a runtime of their own, as they would in their own process; the clients
    // run on this one. Both have one worker per core, tokio's default.
    let servers = tokio::runtime::Builder::new_multi_thread()
        .thread_name("server")
        .enable_all()
        .build()
        .context("Failed to start the servers' runtime")?;
    let clients = tokio::runtime::Builder::new_multi_thread()
        .thread_name(cpu::CLIENT_THREAD_NAME)
        .enable_all()
        .build()
        .context("Failed to start the clients' runtime")?;
    let traces = traces_of(&telemetry_settings);
    let report = clients.block_on(run(&cli, traces, servers.handle()))?;
    println!("{}", report.render());
    servers.shutdown_timeout(Duration::from_secs(5));
    telemetry.shutdown()
}

async fn run(
    cli: &Cli,
    traces: String,
    servers: &tokio::runtime::Handle,
) -> anyhow::Result<Report> {
    let window = Window {
        warm_up: Duration::from_secs(cli.warm_up_seconds),
        measure: Duration::from_secs(cli.seconds.max(1)),
    };
    let backends: &[Backend] = match cli.backend {
        Backends::Sqlite => &[Backend::SqliteEmbedded],
        Backends::Postgres => &[Backend::PostgresNats],
        Backends::Both => &[Backend::SqliteEmbedded, Backend::PostgresNats],
    };
    let parts = &cli.only;
    let mut report = Report::new(
        machine::Machine::describe(),
        command_line(cli),
        traces,
        window,
    );
    if backends.contains(&Backend::PostgresNats) {
        report.servers = server_versions().await;
    }
    let issuer = TestIssuer::new();
    // Valid for the whole run (the identity service's own tokens last 10 minutes).
    let claims = issuer.claims("bench", &[roles::CATALOG_MANAGER]);
    let token = issuer.token_with(&chassis::auth::Claims {
        exp: claims.iat + 3600,
        ..claims
    });

    let bare = measure_bare(servers, &token, window, parts, &mut report).await?;
    let pgbench = if backends.contains(&Backend::PostgresNats) && parts.contains(&Part::Create) {
        progress("pgbench: durable single-row insert, 8 clients");
        let scratch = test_support::temp_dir("bench");
        let figures = pgbench::insert_rate(window.measure, PGBENCH_CLIENTS, &scratch).await?;
        let _ = std::fs::remove_dir_all(&scratch);
        Some(figures)
    } else {
        None
    };
    for &backend in backends {
        measure_catalog(
            servers,
            backend,
            &issuer,
            &token,
            cli,
            window,
            &bare,
            pgbench.as_ref(),
            &mut report,
        )
        .await
        .with_context(|| format!("The benchmark failed on {}", report::backend_name(backend)))?;
    }
    report.pgbench = pgbench;
    if parts.contains(&Part::Relay) {
        for &backend in backends {
            progress(&format!(
                "relay: {} events on {}",
                cli.relay_backlog,
                report::backend_name(backend)
            ));
            let figures = relay::measure(
                servers,
                backend,
                issuer.verifier(),
                &token,
                cli.relay_backlog,
            )
            .await?;
            report.relay.push((backend, figures));
        }
    }
    if parts.contains(&Part::Gateway) {
        measure_gateway(servers, backends, &issuer, &token, window, &mut report).await?;
    }
    report.load_average_at_end = machine::load_average();
    Ok(report)
}

/// The gateway on each backend beside a bare axum handler: a single product by id, and a page
/// of 20 products with their categories, at most calls/s and (paced, open loop) at half that.
async fn measure_gateway(
    servers: &tokio::runtime::Handle,
    backends: &[Backend],
    issuer: &TestIssuer,
    token: &str,
    window: Window,
    report: &mut Report,
) -> anyhow::Result<()> {
    use crate::graphql::{Query, body, connect};
    progress(&format!(
        "bare axum: POST /graphql, {GATEWAY_CLIENTS} clients"
    ));
    let bare_addr = graphql::start_bare(servers).await?;
    let canned = Arc::new(vec![body("{ product { id } }")]);
    let bare = load::run_clients(
        connect(bare_addr, token, GATEWAY_CLIENTS).await?,
        None,
        window,
        |index| Query {
            bodies: canned.clone(),
            next: index,
        },
    )
    .await?;
    let bare_rate = bare.calls_per_second();
    report.rows.push(Row::new(
        "POST /graphql, canned answer",
        GATEWAY_CLIENTS,
        report::BARE_AXUM,
        bare,
    ));
    for &backend in backends {
        let server = report::gateway_name(backend);
        let app = under_test::start(servers, backend, issuer.verifier(), true).await?;
        let category_id = app.create_category(token).await?;
        progress(&format!("{server}: seeding {GATEWAY_PRODUCTS} products"));
        let ids = app.seed(token, &category_id, GATEWAY_PRODUCTS).await?;
        app.wait_for_empty_outbox(DRAIN_TIMEOUT).await?;
        let gateway_addr = graphql::start_gateway(servers, app.addr).await?;

        let singles: Arc<Vec<bytes::Bytes>> = Arc::new(
            ids.iter()
                .map(|id| {
                    body(&format!(
                        r#"{{ product(where: {{ id: "{id}" }}) {{ id name price {{ amountMinor currency }} }} }}"#
                    ))
                })
                .collect(),
        );
        progress(&format!(
            "{server}: product(where: {{id}}), {GATEWAY_CLIENTS} clients"
        ));
        let single = load::run_clients(
            connect(gateway_addr, token, GATEWAY_CLIENTS).await?,
            None,
            window,
            |index| Query {
                bodies: singles.clone(),
                next: index * 13,
            },
        )
        .await?;
        let ratio = Ratio::new(single.calls_per_second(), bare_rate, "bare axum");
        let goal = Goal::ratio_at_least(&ratio, 0.25);
        report.rows.push(
            Row::new("product(where: {id})", GATEWAY_CLIENTS, server, single)
                .with(ratio, Some(goal)),
        );

        let page = Arc::new(vec![body(
            "{ products(first: 20) { name category { name } } }",
        )]);
        let list_label = "products(first: 20) { name category { name } }";
        progress(&format!(
            "{server}: {list_label}, {GATEWAY_CLIENTS} clients"
        ));
        let list = load::run_clients(
            connect(gateway_addr, token, GATEWAY_CLIENTS).await?,
            None,
            window,
            |_| Query {
                bodies: page.clone(),
                next: 0,
            },
        )
        .await?;
        let max_rate = list.calls_per_second();
        let ratio = Ratio::new(max_rate, bare_rate, "bare axum");
        report
            .rows
            .push(Row::new(list_label, GATEWAY_CLIENTS, server, list).with(ratio, None));
        progress(&format!(
            "{server}: {list_label} at {:.0}/s",
            max_rate / 2.0
        ));
        let paced = load::run_clients(
            connect(gateway_addr, token, GATEWAY_CLIENTS).await?,
            Some(max_rate / 2.0),
            window,
            |_| Query {
                bodies: page.clone(),
                next: 0,
            },
        )
        .await?;
        let ratio = Ratio::new(paced.calls_per_second(), max_rate, "its max");
        let goal = Goal::p99_within(&paced, Duration::from_millis(5));
        report.rows.push(
            Row::new(
                "… paced at half its max calls/s (open loop)",
                GATEWAY_CLIENTS,
                server,
                paced,
            )
            .with(ratio, Some(goal)),
        );
        app.stop().await?;
    }
    Ok(())
}

/// The bare server's calls/s per (call, clients), the catalog's baseline.
#[derive(Debug, Default)]
struct Bare {
    get: Vec<(usize, f64)>,
    list: Option<f64>,
    create: Vec<(usize, f64)>,
}

async fn measure_bare(
    servers: &tokio::runtime::Handle,
    token: &str,
    window: Window,
    parts: &[Part],
    report: &mut Report,
) -> anyhow::Result<Bare> {
    let server = bare::start(servers).await?;
    let mut bare = Bare::default();
    let ids = Arc::new(vec![uuid::Uuid::now_v7().to_string()]);
    if parts.contains(&Part::Get) {
        for n_clients in GET_CLIENTS {
            progress(&format!("bare: GetProduct, {n_clients} clients"));
            let measurement =
                load::run(server.addr, token, n_clients, window, |index| GetProduct {
                    ids: ids.clone(),
                    next: index,
                })
                .await?;
            bare.get.push((n_clients, measurement.calls_per_second()));
            report
                .rows
                .push(Row::new("GetProduct", n_clients, report::BARE, measurement));
        }
    }
    if parts.contains(&Part::List) {
        progress(&format!("bare: ListProducts, {LIST_CLIENTS} clients"));
        let measurement = load::run(server.addr, token, LIST_CLIENTS, window, |_| ListProducts {
            page_token: String::new(),
        })
        .await?;
        bare.list = Some(measurement.calls_per_second());
        report.rows.push(Row::new(
            "ListProducts (canned page)",
            LIST_CLIENTS,
            report::BARE,
            measurement,
        ));
    }
    if parts.contains(&Part::Create) {
        for n_clients in CREATE_CLIENTS {
            progress(&format!("bare: CreateProduct, {n_clients} clients"));
            let measurement = load::run(server.addr, token, n_clients, window, |index| {
                CreateProduct {
                    category_id: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".to_owned(),
                    sku_prefix: format!("BARE-{index}"),
                    n_created: 0,
                }
            })
            .await?;
            bare.create
                .push((n_clients, measurement.calls_per_second()));
            report.rows.push(Row::new(
                "CreateProduct",
                n_clients,
                report::BARE,
                measurement,
            ));
        }
    }
    Ok(bare)
}

#[allow(clippy::too_many_arguments)]
async fn measure_catalog(
    servers: &tokio::runtime::Handle,
    backend: Backend,
    issuer: &TestIssuer,
    token: &str,
    cli: &Cli,
    window: Window,
    bare: &Bare,
    pgbench: Option<&pgbench::PgbenchFigures>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let parts = &cli.only;
    if !parts
        .iter()
        .any(|part| matches!(part, Part::Get | Part::List | Part::Create))
    {
        return Ok(());
    }
    let server = report::backend_name(backend);
    let app = under_test::start(servers, backend, issuer.verifier(), true).await?;
    let category_id = app.create_category(token).await?;

    if parts.contains(&Part::Get) || parts.contains(&Part::List) {
        progress(&format!("{server}: seeding {} products", cli.small_table));
        let ids = Arc::new(app.seed(token, &category_id, cli.small_table).await?);
        app.wait_for_empty_outbox(DRAIN_TIMEOUT).await?;
        if parts.contains(&Part::Get) {
            for (n_clients, bare_rate) in bare.get.iter().copied() {
                progress(&format!("{server}: GetProduct, {n_clients} clients"));
                let measurement =
                    load::run(app.addr, token, n_clients, window, |index| GetProduct {
                        ids: ids.clone(),
                        next: index * 97,
                    })
                    .await?;
                let ratio = Ratio::new(measurement.calls_per_second(), bare_rate, "bare");
                let goal = match n_clients {
                    16 => Some(Goal::p99_within(&measurement, Duration::from_millis(5))),
                    64 => Some(Goal::ratio_at_least(&ratio, 0.5)),
                    _ => None,
                };
                report
                    .rows
                    .push(Row::new("GetProduct", n_clients, server, measurement).with(ratio, goal));
            }
        }
        if parts.contains(&Part::List) {
            let bare_rate = bare.list.unwrap_or(f64::NAN);
            let small_label = format!("ListProducts ({} rows)", cli.small_table);
            progress(&format!("{server}: {small_label}, {LIST_CLIENTS} clients"));
            let small = load::run(app.addr, token, LIST_CLIENTS, window, |_| ListProducts {
                page_token: String::new(),
            })
            .await?;
            let small_rate = small.calls_per_second();
            let ratio = Ratio::new(small_rate, bare_rate, "bare");
            let goal = Goal::p99_within(&small, Duration::from_millis(5));
            report
                .rows
                .push(Row::new(&small_label, LIST_CLIENTS, server, small).with(ratio, Some(goal)));

            let large_rows = cli.small_table * 10;
            progress(&format!("{server}: seeding to {large_rows} products"));
            app.seed(token, &category_id, large_rows - cli.small_table)
                .await?;
            app.wait_for_empty_outbox(DRAIN_TIMEOUT).await?;
            let large_label = format!("ListProducts ({large_rows} rows)");
            progress(&format!("{server}: {large_label}, {LIST_CLIENTS} clients"));
            let large = load::run(app.addr, token, LIST_CLIENTS, window, |_| ListProducts {
                page_token: String::new(),
            })
            .await?;
            let ratio = Ratio::new(large.calls_per_second(), bare_rate, "bare");
            let goal = Goal::list_keeps_up(&large, small_rate);
            report
                .rows
                .push(Row::new(&large_label, LIST_CLIENTS, server, large).with(ratio, Some(goal)));
        }
    }

    if parts.contains(&Part::Create) {
        for n_clients in CREATE_CLIENTS {
            progress(&format!("{server}: CreateProduct, {n_clients} clients"));
            let queue_before = app.database.write_queue_stats();
            let measurement =
                load::run(app.addr, token, n_clients, window, |index| CreateProduct {
                    category_id: category_id.clone(),
                    sku_prefix: format!("C{n_clients}-{index}"),
                    n_created: 0,
                })
                .await?;
            let (ratio, goal) = match backend {
                Backend::SqliteEmbedded => {
                    let bare_rate = bare
                        .create
                        .iter()
                        .find(|(clients, _)| *clients == n_clients)
                        .map_or(f64::NAN, |(_, rate)| *rate);
                    (
                        Ratio::new(measurement.calls_per_second(), bare_rate, "bare"),
                        Some(Goal::embedded_create(&measurement)),
                    )
                }
                Backend::PostgresNats => {
                    let pgbench_rate =
                        pgbench.map_or(f64::NAN, |figures| figures.transactions_per_second);
                    let ratio =
                        Ratio::new(measurement.calls_per_second(), pgbench_rate, "pgbench c8");
                    let goal =
                        (n_clients == PGBENCH_CLIENTS).then(|| Goal::ratio_at_least(&ratio, 0.3));
                    (ratio, goal)
                }
            };
            report
                .rows
                .push(Row::new("CreateProduct", n_clients, server, measurement).with(ratio, goal));
            if let (Some(before), Some(after)) = (queue_before, app.database.write_queue_stats()) {
                report.group_commits.push((
                    n_clients,
                    after.group_commits - before.group_commits,
                    after.writes_committed - before.writes_committed,
                ));
            }
            // The relay publishes what the window created before the next window starts.
            app.wait_for_empty_outbox(DRAIN_TIMEOUT).await?;
        }
    }
    app.stop().await
}

/// The PostgreSQL and NATS servers' versions, for the report.
async fn server_versions() -> Vec<String> {
    use sqlx::Connection;
    let mut versions = Vec::new();
    let postgres_url = test_support::postgres_admin_url();
    match sqlx::PgConnection::connect(&postgres_url).await {
        Ok(mut connection) => {
            let version: Result<String, _> = sqlx::query_scalar("SHOW server_version")
                .fetch_one(&mut connection)
                .await;
            let version = version.unwrap_or_else(|error| format!("unknown ({error})"));
            versions.push(format!("PostgreSQL {version} at {postgres_url}"));
        }
        Err(error) => versions.push(format!("PostgreSQL unreachable at {postgres_url}: {error}")),
    }
    let nats_url = test_support::nats_url();
    match async_nats::connect(nats_url.as_str()).await {
        Ok(client) => versions.push(format!(
            "nats-server {} at {nats_url}",
            client.server_info().version
        )),
        Err(error) => versions.push(format!("NATS unreachable at {nats_url}: {error}")),
    }
    versions
}

/// The command as typed (`./scripts/bench …`) and the binary it ran.
/// What the services do with their spans, as the `OTEL_*` variables set it.
fn traces_of(settings: &TelemetrySettings) -> String {
    if settings.sdk_disabled {
        return "no OpenTelemetry spans (`OTEL_SDK_DISABLED=true`)".to_owned();
    }
    let sampled = match settings.sampler {
        TraceSampler::AlwaysOff | TraceSampler::ParentBasedAlwaysOff => "none sampled",
        TraceSampler::TraceIdRatio(_) | TraceSampler::ParentBasedTraceIdRatio(_) => "some sampled",
        TraceSampler::AlwaysOn | TraceSampler::ParentBasedAlwaysOn => "every one sampled",
    };
    match &settings.otlp_endpoint {
        Some(endpoint) => format!("OpenTelemetry spans, {sampled}, exported to {endpoint}"),
        None => format!(
            "OpenTelemetry spans, {sampled}, the last {} traces kept in memory",
            settings.traces_kept
        ),
    }
}

fn command_line(cli: &Cli) -> String {
    let binary: Vec<String> = std::env::args().collect();
    match &cli.invoked_as {
        Some(invoked_as) => format!("`{invoked_as}` (ran `{}`)", binary.join(" ")),
        None => format!("`{}`", binary.join(" ")),
    }
}

/// Says what is being measured now (the report itself comes at the end).
fn progress(what: &str) {
    println!("… {what}");
}
