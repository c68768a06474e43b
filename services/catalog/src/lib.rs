//! The catalog service: categories and products, served over gRPC
//! (`emporium.catalog.v1.CatalogService`), stored in its own database, every change published as
//! an event through the outbox. This file only wires the parts together.

pub mod domain;
pub mod events;
pub mod grpc;
pub mod service;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chassis::auth::TokenVerifier;
use chassis::bus::Bus;
use chassis::grpc::{GrpcListener, GrpcService};
use chassis::outbox::{EventRoute, Relay};
use chassis::settings::ServiceSettings;
use chassis::storage::{Database, Migrations};
use emporium_proto::catalog::v1::catalog_service_server::CatalogServiceServer;
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

use crate::grpc::CatalogGrpc;
use crate::service::Catalog;

/// The service's name in settings, events and logs.
pub const NAME: &str = "catalog";
/// Default gRPC port.
pub const DEFAULT_PORT: u16 = 50052;
/// The name a health client asks about.
pub const HEALTH_NAME: &str = "emporium.catalog.v1.CatalogService";

static MIGRATIONS_POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
static MIGRATIONS_SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The catalog's schema, per backend.
pub const MIGRATIONS: Migrations = Migrations {
    postgres: &MIGRATIONS_POSTGRES,
    sqlite: &MIGRATIONS_SQLITE,
};

/// A built catalog: migrated, bus stream in place, listening; not yet serving.
#[derive(Debug)]
pub struct Application {
    listener: GrpcListener,
    database: Database,
    bus: Bus,
    route: EventRoute,
    verifier: Arc<TokenVerifier>,
    run_relay: bool,
    /// How long to keep serving after reporting NOT_SERVING at shutdown.
    shutdown_delay: Duration,
    grace: Duration,
}

impl Application {
    /// Connects and migrates the database, makes sure the bus has the catalog's stream, and binds
    /// the gRPC port. When this returns the service is ready to report SERVING. Every call must
    /// carry an access token that `verifier` accepts.
    pub async fn build(
        settings: &ServiceSettings,
        bus: Bus,
        grace: Duration,
        verifier: Arc<TokenVerifier>,
    ) -> anyhow::Result<Application> {
        let database = Database::connect_with(
            settings.database_url.expose_secret(),
            settings.database_max_connections,
            MIGRATIONS,
        )
        .await?;
        let route = EventRoute::new(NAME, &settings.namespace);
        bus.ensure_stream(&route.stream()).await?;
        let listener = GrpcListener::bind(settings.grpc_addr).await?;
        Ok(Application {
            listener,
            database,
            bus,
            route,
            verifier,
            run_relay: true,
            shutdown_delay: Duration::ZERO,
            grace,
        })
    }

    /// Serves without publishing the outbox (tests drive a relay themselves).
    pub fn without_relay(mut self) -> Application {
        self.run_relay = false;
        self
    }

    /// At shutdown, keeps serving for `delay` after reporting NOT_SERVING (default zero), so a
    /// load balancer polling health stops routing here before the port closes.
    pub fn with_shutdown_delay(mut self, delay: Duration) -> Application {
        self.shutdown_delay = delay;
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    pub fn database(&self) -> &Database {
        &self.database
    }

    /// Serves until `shutdown` is cancelled, then drains in-flight calls, stops the relay and
    /// closes the database.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let relay_shutdown = CancellationToken::new();
        let relay = self.run_relay.then(|| {
            let relay = Relay::new(self.database.clone(), self.bus.clone(), self.route.clone());
            tokio::spawn(relay.run(relay_shutdown.clone()))
        });
        let catalog = Catalog::new(self.database.clone());
        let service = GrpcService {
            routes: tonic::service::Routes::new(CatalogServiceServer::new(CatalogGrpc::new(
                catalog,
            ))),
            health_names: vec![HEALTH_NAME],
            file_descriptor_set: emporium_proto::FILE_DESCRIPTOR_SET,
            bus: self.bus.clone(),
            database: self.database.clone(),
            verifier: Some(self.verifier),
        };
        tracing::info!(service = NAME, addr = %self.listener.local_addr(), bus = self.bus.kind(), "Serving gRPC");
        let served = self
            .listener
            .serve(service, shutdown, self.shutdown_delay, self.grace)
            .await;
        // Calls have drained, so no new events will be recorded: the relay can stop. Whatever it
        // has not published yet stays in the outbox for the next start.
        relay_shutdown.cancel();
        if let Some(relay) = relay
            && let Err(error) = relay.await
        {
            tracing::error!(error.message = %error, "Outbox relay task panicked");
        }
        self.database.close().await;
        tracing::info!(service = NAME, "Stopped");
        served
    }
}
