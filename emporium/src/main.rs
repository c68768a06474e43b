//! `emporium`: the one binary. `up` runs every service in one process on embedded defaults,
//! `serve <service>` runs one service against the database and bus the environment names, and
//! `migrate` brings databases up to date and exits, and `deadletter` lists, shows and re-drives the
//! messages consumers gave up on. Where identity runs, the process also serves
//! the suite's HTTP origin (`EMPORIUM_HTTP_ADDR`): the sign-in pages, token endpoint and JWKS.

/// Prints a line for the person at the terminal (the banner, not a log line). A closed stdout
/// (`emporium up | head`) must not stop the suite, so write errors are ignored.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod deadletter;
mod setup;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chassis::bus::Bus;
use chassis::settings::{ServiceSettings, Settings};
use clap::{Parser, Subcommand, ValueEnum};
use secrecy::ExposeSecret;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

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
    /// Run every service in this process (embedded defaults: data under ./data, nothing to install).
    Up,
    /// Run one service against the database and bus given by the environment.
    Serve {
        /// Which service.
        service: Service,
    },
    /// Run pending database migrations and exit.
    Migrate {
        /// Only this service (default: all).
        service: Option<Service>,
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Service {
    Identity,
    Catalog,
}

/// Identity first: the others verify tokens against its keys.
const ALL_SERVICES: &[Service] = &[Service::Identity, Service::Catalog];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::from_env()?;
    chassis::telemetry::init(&settings.telemetry)?;
    let result = match cli.command {
        Command::Up => run(&settings, ALL_SERVICES, Mode::Up).await,
        Command::Serve { service } => run(&settings, &[service], Mode::Serve).await,
        Command::Migrate { service } => {
            let services = service.map_or(ALL_SERVICES.to_vec(), |service| vec![service]);
            migrate(&settings, &services).await
        }
        Command::Deadletter { command, output } => {
            deadletter::run(&settings, command, output).await
        }
    };
    if let Err(error) = &result {
        tracing::error!(error.cause_chain = ?error, error.message = %error, "emporium failed");
    }
    result
}

impl Service {
    fn settings(self, settings: &Settings) -> anyhow::Result<ServiceSettings> {
        Ok(match self {
            Service::Identity => settings.service(identity::NAME, identity::DEFAULT_PORT)?,
            Service::Catalog => settings.service(catalog::NAME, catalog::DEFAULT_PORT)?,
        })
    }
}

/// `up` (everything, first-start set-up, a banner) or `serve` (one service, production).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Up,
    Serve,
}

/// Builds the services (migrations run, streams exist, ports bound), reports where they listen,
/// and serves until Ctrl-C or SIGTERM; then drains them all.
async fn run(settings: &Settings, services: &[Service], mode: Mode) -> anyhow::Result<()> {
    let bus = Bus::connect(&settings.bus)
        .await
        .context("Failed to connect to the bus")?;
    // One verifier for every service in the process: they share the key cache.
    let verifier = settings.auth.verifier();
    let shutdown = CancellationToken::new();
    let mut running = JoinSet::new();
    let mut listening = Vec::new();
    let mut http_addr = None;
    let mut first_start = None;
    for service in services {
        let service_settings = service.settings(settings)?;
        match service {
            Service::Identity => {
                let options = setup::identity_options(settings, mode == Mode::Up)?;
                let application = identity::Application::build(
                    &service_settings,
                    bus.clone(),
                    settings.shutdown_grace,
                    Arc::clone(&verifier),
                    options,
                )
                .await
                .context("Failed to start identity")?;
                match mode {
                    Mode::Up => {
                        first_start = Some(setup::first_start(settings, &application).await?);
                    }
                    Mode::Serve => setup::first_admin(settings, &application).await?,
                }
                let mut oauth = identity::oauth::OAuthSettings::new(
                    &settings.auth.issuer,
                    &settings.auth.audience,
                );
                oauth.trusted_proxies = settings.trusted_proxies.clone();
                let http_listener = tokio::net::TcpListener::bind(settings.http_addr)
                    .await
                    .with_context(|| {
                        format!(
                            "Failed to listen on {} (EMPORIUM_HTTP_ADDR)",
                            settings.http_addr
                        )
                    })?;
                http_addr = Some(http_listener.local_addr()?);
                listening.push((identity::NAME, application.local_addr()));
                // The HTTP origin is served by identity's application, so that it keeps serving
                // through the shutdown delay and drains before identity's pool closes.
                let application = application
                    .with_http_origin(http_listener, oauth, identity::oauth::Clock::system())
                    .with_shutdown_delay(settings.shutdown_delay);
                running.spawn(application.run_until_stopped(shutdown.clone()));
            }
            Service::Catalog => {
                let application = catalog::Application::build(
                    &service_settings,
                    bus.clone(),
                    settings.shutdown_grace,
                    Arc::clone(&verifier),
                )
                .await
                .context("Failed to start the catalog")?
                .with_shutdown_delay(settings.shutdown_delay);
                listening.push((catalog::NAME, application.local_addr()));
                running.spawn(application.run_until_stopped(shutdown.clone()));
            }
        }
    }
    if mode == Mode::Up {
        print_banner(settings, &bus, &listening, http_addr, first_start.as_ref());
    }
    for (name, addr) in &listening {
        tracing::info!(service = name, %addr, "Listening");
    }
    if let Some(addr) = http_addr {
        tracing::info!(%addr, issuer = %settings.auth.issuer, "Serving HTTP");
    }
    tokio::select! {
        () = chassis::stop_signal() => tracing::info!("Stop signal received; draining"),
        Some(finished) = running.join_next() => {
            // A service stopped by itself: stop the others too.
            tracing::error!(?finished, "A service stopped unexpectedly; shutting down");
        }
    }
    // Each service reports NOT_SERVING, serves on through the shutdown delay, then drains.
    shutdown.cancel();
    let deadline = settings.shutdown_delay + settings.shutdown_grace + Duration::from_secs(5);
    let drained = tokio::time::timeout(deadline, async {
        let mut first_error = None;
        while let Some(finished) = running.join_next().await {
            match finished {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    first_error.get_or_insert(error);
                }
                Err(join_error) => {
                    first_error.get_or_insert(anyhow::anyhow!(join_error));
                }
            }
        }
        first_error
    })
    .await;
    match drained {
        Ok(None) => Ok(()),
        Ok(Some(error)) => Err(error),
        Err(_) => anyhow::bail!("services did not stop within {deadline:?}"),
    }
}

async fn migrate(settings: &Settings, services: &[Service]) -> anyhow::Result<()> {
    for service in services {
        let service_settings = service.settings(settings)?;
        let migrations = match service {
            Service::Identity => identity::MIGRATIONS,
            Service::Catalog => catalog::MIGRATIONS,
        };
        let database = chassis::storage::Database::connect_with(
            service_settings.database_url.expose_secret(),
            service_settings.database_max_connections,
            migrations,
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
    listening: &[(&str, SocketAddr)],
    http_addr: Option<SocketAddr>,
    first_start: Option<&setup::FirstStart>,
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
    }
    for (name, addr) in listening {
        say!("  {name:<10} gRPC  http://{addr}");
    }
    if let Some(first_start) = first_start {
        setup::print_first_start(first_start);
    }
    say!();
    let catalog = listening
        .iter()
        .find(|(name, _)| *name == catalog::NAME)
        .map_or_else(String::new, |(_, addr)| addr.to_string());
    say!("Try: emporiumctl login            (opens the sign-in page; sign in as the admin)");
    say!("     emporiumctl --server http://{catalog} product list");
    say!("Stop with Ctrl-C.");
    say!();
}
