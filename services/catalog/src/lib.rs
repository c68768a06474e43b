//! The catalog service: categories and products, served over gRPC
//! (`emporium.catalog.v1.CatalogService`), stored in its own database, every change published as
//! an event through the outbox. This file only wires the parts together.

pub mod domain;
pub mod events;
pub mod grpc;
pub mod service;
pub mod store;
mod wire;

use chassis::runtime::{Service, ServiceContext, ServiceDefinition};
use chassis::storage::Migrations;
use emporium_proto::catalog::v1::catalog_service_server::CatalogServiceServer;
use tonic::service::RoutesBuilder;

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
/// `Application::build(settings, bus, grace, verifier)`, then `run_until_stopped`.
pub type Application = chassis::runtime::Application<CatalogParts>;

/// The catalog's parts, as the chassis runtime runs them: no seed data, no consumers, no HTTP
/// routes; the gRPC service and the relay.
#[derive(Debug)]
pub struct CatalogParts;

// === impl CatalogParts ===

impl Service for CatalogParts {
    type Options = ();

    const DEFINITION: ServiceDefinition = ServiceDefinition {
        name: NAME,
        default_port: DEFAULT_PORT,
        health_names: &[HEALTH_NAME],
        migrations: MIGRATIONS,
        relay: true,
    };

    async fn assemble(_context: &ServiceContext, (): ()) -> anyhow::Result<CatalogParts> {
        Ok(CatalogParts)
    }

    fn add_grpc_routes(&self, context: &ServiceContext, routes: &mut RoutesBuilder) {
        let catalog = Catalog::new(context.database.clone());
        routes.add_service(CatalogServiceServer::new(CatalogGrpc::new(catalog)));
    }
}
