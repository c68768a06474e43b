//! The one table of the services this binary runs: each row names a service's definition (name,
//! default port, migrations) and its builder. `up`, `serve` and `migrate` read only this table;
//! a new service is a new row. A builder builds the service over the process's bus and does what
//! its start needs beyond the chassis runtime (identity's key encryption key and first admin,
//! `setup.rs`).

use anyhow::Context as _;
use catalog::CatalogParts;
use chassis::bus::Bus;
use chassis::runtime::{Built, Service, ServiceDefinition, ServiceUnit};
use chassis::settings::Settings;
use futures::future::BoxFuture;
use identity::IdentityParts;

use crate::setup;

/// One row of [`SERVICES`].
pub(crate) struct ServiceEntry {
    pub(crate) definition: ServiceDefinition,
    /// Builds the service (database migrated, built-in data seeded, stream ensured), not yet
    /// listening.
    pub(crate) build: for<'a> fn(&'a Launch<'a>) -> BoxFuture<'a, anyhow::Result<Launched>>,
}

/// Every service, in start order: identity first, since the others verify tokens against its
/// keys (they stop in the reverse order).
pub(crate) const SERVICES: &[ServiceEntry] = &[
    ServiceEntry {
        definition: IdentityParts::DEFINITION,
        build: build_identity,
    },
    ServiceEntry {
        definition: CatalogParts::DEFINITION,
        build: build_plain::<CatalogParts>,
    },
];

/// How the process runs its services.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `up`: everything, embedded, first-start set-up, a banner.
    Up,
    /// `serve`: one service, production.
    Serve,
}

/// What a builder is given.
pub(crate) struct Launch<'a> {
    pub(crate) settings: &'a Settings,
    pub(crate) mode: Mode,
    pub(crate) bus: Bus,
}

/// What a builder returns: the service for the host, and what the `up` banner adds for it.
pub(crate) struct Launched {
    pub(crate) unit: ServiceUnit,
    /// Prints the service's lines under the banner (once, for the person at the terminal).
    pub(crate) print_banner_note: Option<Box<dyn FnOnce() + Send>>,
}

/// The row of the service called `name`.
pub(crate) fn by_name(name: &str) -> Option<&'static ServiceEntry> {
    SERVICES.iter().find(|entry| entry.definition.name == name)
}

pub(crate) fn names() -> impl Iterator<Item = &'static str> {
    SERVICES.iter().map(|entry| entry.definition.name)
}

// === impl Launch ===

impl Launch<'_> {
    /// Builds service `S` from its settings in the environment.
    async fn build<S: Service>(&self, options: S::Options) -> anyhow::Result<Built<S>> {
        let definition = S::DEFINITION;
        let service_settings = self
            .settings
            .service(definition.name, definition.default_port)?;
        Built::build(&service_settings, self.bus.clone(), options)
            .await
            .with_context(|| format!("Failed to start {}", definition.name))
    }

    /// The host's view of `built`, its HTTP routes for the suite's origin.
    fn unit<S: Service>(&self, built: Built<S>) -> ServiceUnit {
        built.into_unit(Some(&self.settings.http_origin()))
    }
}

/// A service that needs nothing beyond the chassis runtime.
fn build_plain<'a, S: Service<Options = ()>>(
    launch: &'a Launch<'a>,
) -> BoxFuture<'a, anyhow::Result<Launched>> {
    Box::pin(async move {
        let built = launch.build::<S>(()).await?;
        Ok(Launched {
            unit: launch.unit(built),
            print_banner_note: None,
        })
    })
}

/// Identity, with its key encryption key (from the environment, or in `up` from the data
/// directory) and, once built, the first admin account and the suite's clients.
fn build_identity<'a>(launch: &'a Launch<'a>) -> BoxFuture<'a, anyhow::Result<Launched>> {
    Box::pin(build_identity_now(launch))
}

async fn build_identity_now(launch: &Launch<'_>) -> anyhow::Result<Launched> {
    let options = setup::identity_options(launch.settings, launch.mode == Mode::Up)?;
    let built = launch.build::<IdentityParts>(options).await?;
    let print_banner_note: Option<Box<dyn FnOnce() + Send>> = match launch.mode {
        Mode::Up => {
            let first_start = setup::first_start(launch.settings, built.database()).await?;
            Some(Box::new(move || setup::print_first_start(&first_start)))
        }
        Mode::Serve => {
            setup::first_admin(launch.settings, built.database()).await?;
            None
        }
    };
    Ok(Launched {
        unit: launch.unit(built),
        print_banner_note,
    })
}
