//! `emporium`: the one binary. `up` runs every service in one process on embedded defaults, all
//! on one gRPC address (`EMPORIUM_GRPC_ADDR`); `serve <service>` runs one service against the
//! database and bus the environment names, on its own address; `migrate` brings databases up to
//! date and exits; and `deadletter` lists, shows and re-drives the messages consumers gave up on.
//! The services come from one table (`services.rs`) and run on the chassis runtime. Where a
//! service with HTTP routes runs (identity), the process also serves the suite's HTTP origin
//! (`EMPORIUM_HTTP_ADDR`): the sign-in pages, token endpoint and JWKS, beside the health probes
//! (`/healthz`, `/readyz`) and `/metrics`, which `EMPORIUM_METRICS_ADDR` also serves on their own.

/// Prints a line for the person at the terminal (the banner, not a log line). A closed stdout
/// (`emporium up | head`) must not stop the suite, so write errors are ignored.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod deadletter;
mod services;
mod setup;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chassis::bus::Bus;
use chassis::grpc::GrpcListener;
use chassis::runtime::ServiceHost;
use chassis::settings::Settings;
use clap::builder::PossibleValuesParser;
use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

use crate::services::{Launch, Mode, SERVICES, ServiceEntry};

/// Emporium: a microservices stack for business applications.
///
/// Configuration comes from EMPORIUM_* environment variables (see README.md); the defaults run
/// everything on one machine with SQLite files and an embedded bus under ./data.
#[derive(Debug, Parser)]
#[command(name = "emporium", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every service in this process on one gRPC address (EMPORIUM_GRPC_ADDR; embedded
    /// defaults: data under ./data, nothing to install).
    Up,
    /// Run one service against the database and bus given by the environment, on its own
    /// address (EMPORIUM_<SERVICE>_GRPC_ADDR).
    Serve {
        /// Which service, or `gateway`: the GraphQL gateway alone, on EMPORIUM_HTTP_ADDR, calling
        /// each service at EMPORIUM_<SERVICE>_URL.
        #[arg(value_parser = PossibleValuesParser::new(services::names().chain([GATEWAY])))]
        service: String,
    },
    /// Run pending database migrations and exit.
    Migrate {
        /// Only this service (default: all).
        #[arg(value_parser = PossibleValuesParser::new(services::names()))]
        service: Option<String>,
    },
    /// Inspect and re-drive dead letters: the messages consumers gave up on.
    ///
    /// Connects to the bus the environment names (EMPORIUM_BUS_URL, EMPORIUM_DATA_DIR,
    /// EMPORIUM_NAMESPACE), as `serve` does.
    Deadletter {
        #[command(subcommand)]
        command: deadletter::DeadletterCommand,
        /// How to print the result.
        #[arg(short, long, global = true, value_enum, default_value_t = deadletter::OutputFormat::Table)]
        output: deadletter::OutputFormat,
    },
}

/// mimalloc for every allocation of the process, SQLite's included (its `override` feature
/// replaces `malloc` and `free`). With glibc's allocator, allocating and freeing was about a
/// quarter of the instructions of a ListProducts page on SQLite: rows are allocated value by
/// value on the driver's worker thread and freed on the runtime's. See BENCHMARKS.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::from_env()?;
    // Spans name the service a process runs (unless OTEL_SERVICE_NAME says otherwise).
    let service_name = match &cli.command {
        Command::Serve { service } => format!("emporium-{service}"),
        _ => "emporium".to_owned(),
    };
    let telemetry = chassis::telemetry::init(&settings.telemetry, &service_name)?;
    let all_services: Vec<&ServiceEntry> = SERVICES.iter().collect();
    let result = match cli.command {
        Command::Up => run(&settings, &all_services, Mode::Up).await,
        Command::Serve { service } if service == GATEWAY => serve_gateway(&settings).await,
        Command::Serve { service } => run(&settings, &[entry(&service)?], Mode::Serve).await,
        Command::Migrate { service } => match service {
            Some(service) => migrate(&settings, &[entry(&service)?]).await,
            None => migrate(&settings, &all_services).await,
        },
        Command::Deadletter { command, output } => {
            deadletter::run(&settings, command, output).await
        }
    };
    if let Err(error) = &result {
        tracing::error!(error.cause_chain = ?error, error.message = %error, "emporium failed");
    }
    // The spans still queued for the collector go out before the process ends.
    match tokio::task::spawn_blocking(move || telemetry.shutdown()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::warn!(error.cause_chain = ?error, error.message = %error, "Failed to export the last spans");
        }
        Err(error) => {
            tracing::warn!(error.message = %error, "The span exporter's shutdown panicked")
        }
    }
    result
}

/// The suite's HTTP origin's listener, on EMPORIUM_HTTP_ADDR.
async fn bind_http(settings: &Settings) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(settings.http_addr)
        .await
        .with_context(|| {
            format!(
                "Failed to listen on {} (EMPORIUM_HTTP_ADDR)",
                settings.http_addr
            )
        })
}

/// `serve`'s name for the GraphQL gateway, which hosts no service of the table.
const GATEWAY: &str = "gateway";

/// The gateway on its own: `/graphql`, `/healthz`, `/readyz` and `/metrics` on
/// EMPORIUM_HTTP_ADDR until Ctrl-C or SIGTERM, then the shutdown delay (`/readyz` answering
/// 503) and the drain.
async fn serve_gateway(settings: &Settings) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let router = gateway::standalone_router(settings, &shutdown)
        .await?
        .layer(chassis::telemetry::HttpTraceLayer);
    let listener = bind_http(settings).await?;
    tracing::info!(addr = %listener.local_addr()?, "Serving GraphQL at /graphql");
    let stop = shutdown.clone();
    tokio::spawn(async move {
        chassis::stop_signal().await;
        tracing::info!("Stop signal received; draining");
        stop.cancel();
    });
    chassis::runtime::serve_http(
        listener,
        router,
        shutdown,
        settings.shutdown_delay,
        settings.shutdown_grace,
    )
    .await
}

/// The table's row for a name clap already checked.
fn entry(name: &str) -> anyhow::Result<&'static ServiceEntry> {
    services::by_name(name).with_context(|| format!("no service is called {name}"))
}

/// Builds the services (migrations run, built-in data seeded, streams exist), binds one gRPC
/// address for them all (and the HTTP origin when one of them has HTTP routes), reports where
/// they listen, and serves until Ctrl-C or SIGTERM; then drains and stops them.
async fn run(settings: &Settings, entries: &[&ServiceEntry], mode: Mode) -> anyhow::Result<()> {
    let bus = Bus::connect(&settings.bus)
        .await
        .context("Failed to connect to the bus")?;
    let launch = Launch {
        settings,
        mode,
        bus: bus.clone(),
    };
    let mut units = Vec::with_capacity(entries.len());
    let mut banner_notes = Vec::new();
    for entry in entries {
        let launched = (entry.build)(&launch).await?;
        units.push(launched.unit);
        banner_notes.extend(launched.print_banner_note);
    }
    let grpc_addr = match (mode, entries) {
        (Mode::Serve, [entry]) => {
            settings
                .service(entry.definition.name, entry.definition.default_port)?
                .grpc_addr
        }
        _ => {
            warn_about_ignored_addresses(settings, entries);
            settings.grpc_addr
        }
    };
    let listener = GrpcListener::bind(grpc_addr).await?;
    // One verifier for every service in the process (and the gateway's subscriptions): they
    // share the key cache.
    let verifier = settings.auth.verifier();
    let mut host = ServiceHost::new(listener, Arc::clone(&verifier))
        .with_shutdown_delay(settings.shutdown_delay)
        .with_grace(settings.shutdown_grace);
    if units
        .iter()
        .any(chassis::runtime::ServiceUnit::has_http_routes)
    {
        let http_listener = bind_http(settings).await?;
        host = host.with_http_listener(http_listener);
    }
    if let Some(metrics_addr) = settings.metrics_addr {
        let ops_listener = tokio::net::TcpListener::bind(metrics_addr)
            .await
            .with_context(|| {
                format!("Failed to listen on {metrics_addr} (EMPORIUM_METRICS_ADDR)")
            })?;
        host = host.with_ops_listener(ops_listener);
    }
    let names: Vec<&str> = units
        .iter()
        .map(chassis::runtime::ServiceUnit::name)
        .collect();
    for unit in units {
        host.add(unit);
    }
    if mode == Mode::Up {
        // The gateway is the suite's own client of its services, on their shared address.
        let changes = gateway::ChangeSource {
            bus: bus.clone(),
            namespace: settings.namespace.clone(),
            verifier,
        };
        // Browsers sign in through the gateway as the client identity's set-up registered.
        let sign_in = match setup::gateway_client_secret(settings)? {
            Some(client_secret) => Some(gateway::BrowserSignIn {
                issuer: settings.auth.issuer.clone(),
                client_id: identity::bootstrap::GATEWAY_CLIENT_ID.to_owned(),
                client_secret,
                public_origin: settings.auth.issuer.clone(),
                http: chassis::http_client::HttpClient::new(
                    &settings.auth.jwks_trusted_certificates,
                )?,
            }),
            None => None,
        };
        let routes = gateway::suite_router(
            host.local_addr(),
            changes,
            sign_in,
            &settings.graphql,
            settings.admin_dir.as_deref(),
        )?;
        host = host.with_http_routes(routes);
    }
    let grpc_addr = host.local_addr();
    let http_addr = host.http_addr();
    if mode == Mode::Up {
        print_banner(settings, &bus, grpc_addr, &names, http_addr, banner_notes);
    }
    tracing::info!(services = ?names, addr = %grpc_addr, "Listening");
    if let Some(addr) = http_addr {
        tracing::info!(%addr, issuer = %settings.auth.issuer, "Serving HTTP");
    }
    if let Some(addr) = host.ops_addr() {
        tracing::info!(%addr, "Serving /metrics, /healthz and /readyz");
    }
    let shutdown = CancellationToken::new();
    let mut served = tokio::spawn(host.run_until_stopped(shutdown.clone()));
    tokio::select! {
        () = chassis::stop_signal() => tracing::info!("Stop signal received; draining"),
        finished = &mut served => {
            // The host stopped by itself (a server failed): nothing is left to drain.
            tracing::error!("The services stopped without a stop signal");
            return match finished {
                Ok(Ok(())) => Err(anyhow::anyhow!("the services stopped without a stop signal")),
                Ok(Err(error)) => Err(error),
                Err(join_error) => Err(anyhow::anyhow!(join_error)),
            };
        }
    }
    // Every service reports NOT_SERVING, serves on through the shutdown delay, then drains.
    shutdown.cancel();
    let deadline = settings.shutdown_delay + settings.shutdown_grace + Duration::from_secs(5);
    match tokio::time::timeout(deadline, served).await {
        Ok(finished) => finished.unwrap_or_else(|join_error| Err(anyhow::anyhow!(join_error))),
        Err(_) => anyhow::bail!("services did not stop within {deadline:?}"),
    }
}

/// `up` serves everything on `EMPORIUM_GRPC_ADDR`: say so when a service's own address is set.
fn warn_about_ignored_addresses(settings: &Settings, entries: &[&ServiceEntry]) {
    for entry in entries {
        let variable = format!(
            "EMPORIUM_{}_GRPC_ADDR",
            entry.definition.name.to_uppercase()
        );
        if settings.value(&variable).is_some() {
            tracing::warn!(
                variable,
                grpc_addr = %settings.grpc_addr,
                "Ignored: every service in this process serves on EMPORIUM_GRPC_ADDR"
            );
        }
    }
}

async fn migrate(settings: &Settings, entries: &[&ServiceEntry]) -> anyhow::Result<()> {
    for entry in entries {
        let definition = &entry.definition;
        let service_settings = settings.service(definition.name, definition.default_port)?;
        let database = chassis::storage::Database::connect_with(
            service_settings.database_url.expose_secret(),
            service_settings.database_max_connections,
            definition.migrations,
        )
        .await
        .with_context(|| format!("Failed to migrate {}", service_settings.name))?;
        database.close().await;
        tracing::info!(service = service_settings.name, "Migrated");
    }
    Ok(())
}

fn print_banner(
    settings: &Settings,
    bus: &Bus,
    grpc_addr: SocketAddr,
    names: &[&str],
    http_addr: Option<SocketAddr>,
    banner_notes: Vec<Box<dyn FnOnce() + Send>>,
) {
    say!();
    say!(
        "Emporium is up (data in {}, bus: {}).",
        settings.data_dir.display(),
        bus.kind()
    );
    if let Some(addr) = http_addr {
        say!(
            "  {:<10} HTTP  http://{addr}  (issuer {})",
            "sign-in",
            settings.auth.issuer
        );
        say!("  {:<10} HTTP  http://{addr}/graphql  (POST)", "GraphQL");
        if settings.admin_dir.is_some() {
            // Browsers sign in on the issuer's origin, so the console is opened there.
            say!(
                "  {:<10} HTTP  {}{}",
                "admin",
                settings.auth.issuer.trim_end_matches('/'),
                gateway::admin::PATH
            );
        }
    }
    say!(
        "  {:<10} gRPC  http://{grpc_addr}  ({})",
        "services",
        names.join(", ")
    );
    for print_banner_note in banner_notes {
        print_banner_note();
    }
    say!();
    say!("Try: emporiumctl login            (opens the sign-in page; sign in as the admin)");
    say!("     emporiumctl --server http://{grpc_addr} product list");
    say!("Stop with Ctrl-C.");
    say!();
}
