//! The identity service: accounts, their passwords (argon2id) and the roles they hold, served over
//! gRPC (`emporium.identity.v1.IdentityService`) to admins only, stored in its own database, every
//! change published as an event through the outbox. This file only wires the parts together.
//!
//! It also holds the token signing keys and serves their JWKS over HTTP ([`http::router`]).
//!
//! It is also the suite's OAuth2 / OpenID Connect provider ([`oauth`]): sign-in page, token
//! issuance, discovery, revocation and sign-out, served over HTTP next to the JWKS.

pub mod bootstrap;
pub mod domain;
pub mod events;
pub mod grpc;
pub mod http;
pub mod keys;
pub mod oauth;
pub mod service;
pub mod store;
mod wire;

use anyhow::Context as _;
use chassis::runtime::{HttpOrigin, Service, ServiceContext, ServiceDefinition};
use chassis::storage::{Database, Migrations};
use emporium_proto::identity::v1::identity_service_server::IdentityServiceServer;
use tonic::service::RoutesBuilder;

use crate::grpc::IdentityGrpc;
use crate::keys::{KeyEncryptionKey, KeyPolicy, SigningKeys};
use crate::service::Identity;

/// The service's name in settings, events and logs.
pub const NAME: &str = "identity";
/// Default gRPC port.
pub const DEFAULT_PORT: u16 = 50051;
/// The name a health client asks about.
pub const HEALTH_NAME: &str = "emporium.identity.v1.IdentityService";

static MIGRATIONS_POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
static MIGRATIONS_SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The identity schema, per backend.
pub const MIGRATIONS: Migrations = Migrations {
    postgres: &MIGRATIONS_POSTGRES,
    sqlite: &MIGRATIONS_SQLITE,
};

/// What the identity service needs beyond the settings every service shares.
#[derive(Clone, Debug)]
pub struct IdentityOptions {
    /// Encrypts the token signing keys at rest ([`keys::KEY_ENCRYPTION_KEY_VARIABLE`]).
    pub key_encryption_key: KeyEncryptionKey,
    pub key_policy: KeyPolicy,
}

/// A built identity service: migrated, built-in roles seeded, signing keys readable, bus stream
/// in place, listening; not yet serving.
/// `Application::build_with(settings, bus, grace, verifier, options)`, then `run_until_stopped`.
pub type Application = chassis::runtime::Application<IdentityParts>;

/// Identity's parts, as the chassis runtime runs them: the built-in roles as seed data, the
/// gRPC service, the relay, and the HTTP routes of the OAuth2/OIDC provider and the JWKS.
#[derive(Debug)]
pub struct IdentityParts {
    database: Database,
    keys: SigningKeys,
}

// === impl IdentityParts ===

impl Service for IdentityParts {
    type Options = IdentityOptions;

    const DEFINITION: ServiceDefinition = ServiceDefinition {
        name: NAME,
        default_port: DEFAULT_PORT,
        health_names: &[HEALTH_NAME],
        migrations: MIGRATIONS,
        relay: true,
    };

    /// Seeds the built-in roles (with their events) and opens the signing keys. Fails if the
    /// stored signing keys do not decrypt with `options.key_encryption_key`.
    async fn assemble(
        context: &ServiceContext,
        options: IdentityOptions,
    ) -> anyhow::Result<IdentityParts> {
        // Built-in data enters through the use case, with its events, like every other row.
        Identity::new(context.database.clone())
            .seed_builtin_roles()
            .await
            .context("Failed to seed the built-in roles")?;
        let keys = SigningKeys::new(
            context.database.clone(),
            options.key_encryption_key,
            options.key_policy,
        );
        keys.ensure_readable().await?;
        oauth::register_metrics();
        Ok(IdentityParts {
            database: context.database.clone(),
            keys,
        })
    }

    fn add_grpc_routes(&self, context: &ServiceContext, routes: &mut RoutesBuilder) {
        let identity = Identity::new(context.database.clone());
        routes.add_service(IdentityServiceServer::new(IdentityGrpc::new(identity)));
    }

    /// The provider and the JWKS, on the suite's origin, on the system clock.
    fn http_routes(&self, _context: &ServiceContext, origin: &HttpOrigin) -> Option<axum::Router> {
        let mut settings = oauth::OAuthSettings::new(&origin.issuer, &origin.audience);
        settings.trusted_proxies = origin.trusted_proxies.clone();
        Some(self.http_router(settings, oauth::Clock::system()))
    }
}

impl IdentityParts {
    /// The HTTP routes (OAuth2/OIDC provider and JWKS) over this service's database, with the
    /// provider's settings and clock given (tests pass a manual clock). Serve them with
    /// `into_make_service_with_connect_info::<SocketAddr>()`, so failed sign-ins are counted per
    /// client address.
    pub fn http_router(&self, settings: oauth::OAuthSettings, clock: oauth::Clock) -> axum::Router {
        let provider = oauth::Provider::new(
            self.database.clone(),
            self.keys.clone(),
            settings,
            clock.clone(),
        );
        http::router(self.keys.clone(), clock).merge(oauth::router(provider))
    }

    pub fn signing_keys(&self) -> &SigningKeys {
        &self.keys
    }
}
