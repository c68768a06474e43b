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

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chassis::auth::TokenVerifier;
use chassis::bus::Bus;
use chassis::grpc::{GrpcListener, GrpcService};
use chassis::outbox::{EventRoute, Relay};
use chassis::settings::ServiceSettings;
use chassis::storage::{Database, Migrations};
use emporium_proto::identity::v1::identity_service_server::IdentityServiceServer;
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

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

/// A built identity service: migrated, bus stream in place, listening; not yet serving.
#[derive(Debug)]
pub struct Application {
    listener: GrpcListener,
    database: Database,
    bus: Bus,
    route: EventRoute,
    verifier: Arc<TokenVerifier>,
    keys: SigningKeys,
    run_relay: bool,
    grace: Duration,
}

impl Application {
    /// Connects and migrates the database, seeds the built-in roles (with their events), makes
    /// sure the bus has the service's stream, and binds the gRPC port. When this returns the
    /// service is ready to report SERVING. Every RPC checks the caller's token with `verifier`. Fails if the stored signing keys do not decrypt with
    /// `options.key_encryption_key`.
    pub async fn build(
        settings: &ServiceSettings,
        bus: Bus,
        grace: Duration,
        verifier: Arc<TokenVerifier>,
        options: IdentityOptions,
    ) -> anyhow::Result<Application> {
        let database = Database::connect(settings.database_url.expose_secret(), MIGRATIONS).await?;
        // Built-in data enters through the use case, with its events, like every other row.
        Identity::new(database.clone())
            .seed_builtin_roles()
            .await
            .context("Failed to seed the built-in roles")?;
        let keys = SigningKeys::new(
            database.clone(),
            options.key_encryption_key,
            options.key_policy,
        );
        keys.ensure_readable().await?;
        let route = EventRoute::new(NAME, &settings.namespace);
        bus.ensure_stream(&route.stream()).await?;
        let listener = GrpcListener::bind(settings.grpc_addr).await?;
        Ok(Application {
            listener,
            database,
            bus,
            route,
            verifier,
            keys,
            run_relay: true,
            grace,
        })
    }

    /// Serves without publishing the outbox (tests drive a relay themselves).
    pub fn without_relay(mut self) -> Application {
        self.run_relay = false;
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// The HTTP routes (OAuth2/OIDC provider and JWKS) over this service's database, for the
    /// binary to serve on the issuer's origin. Serve them with
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
        let identity = Identity::new(self.database.clone());
        let service = GrpcService {
            routes: tonic::service::Routes::new(IdentityServiceServer::new(IdentityGrpc::new(
                identity,
            ))),
            health_names: vec![HEALTH_NAME],
            file_descriptor_set: emporium_proto::FILE_DESCRIPTOR_SET,
            bus: self.bus.clone(),
            verifier: Some(self.verifier),
        };
        tracing::info!(service = NAME, addr = %self.listener.local_addr(), bus = self.bus.kind(), "Serving gRPC");
        let served = self.listener.serve(service, shutdown, self.grace).await;
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
