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
    /// The suite's HTTP origin (sign-in, tokens, JWKS), when this process serves it.
    http_origin: Option<HttpOrigin>,
    run_relay: bool,
    /// How long to keep serving after reporting NOT_SERVING at shutdown.
    shutdown_delay: Duration,
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
        let database = Database::connect_with(
            settings.database_url.expose_secret(),
            settings.database_max_connections,
            MIGRATIONS,
        )
        .await?;
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
            http_origin: None,
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

    /// Also serves [`Self::http_router`] on `listener` (the issuer's origin), with the same
    /// shutdown as gRPC: it keeps serving through the shutdown delay, then drains, and the pool
    /// closes only after both have drained.
    pub fn with_http_origin(
        mut self,
        listener: tokio::net::TcpListener,
        settings: oauth::OAuthSettings,
        clock: oauth::Clock,
    ) -> Application {
        let router = self.http_router(settings, clock);
        self.http_origin = Some(HttpOrigin { listener, router });
        self
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
            database: self.database.clone(),
            verifier: Some(self.verifier),
        };
        tracing::info!(service = NAME, addr = %self.listener.local_addr(), bus = self.bus.kind(), "Serving gRPC");
        let http = self.http_origin.map(|origin| {
            tokio::spawn(origin.serve(shutdown.clone(), self.shutdown_delay, self.grace))
        });
        let served = self
            .listener
            .serve(service, shutdown, self.shutdown_delay, self.grace)
            .await;
        // The HTTP side uses the pool too: it must drain before the pool closes.
        let http_served = match http {
            Some(http) => http.await.unwrap_or_else(|join_error| {
                Err(anyhow::anyhow!(join_error).context("The HTTP server task panicked"))
            }),
            None => Ok(()),
        };
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
        served.and(http_served)
    }
}

/// The HTTP origin a process serves beside identity's gRPC port.
#[derive(Debug)]
struct HttpOrigin {
    listener: tokio::net::TcpListener,
    router: axum::Router,
}

// === impl HttpOrigin ===

impl HttpOrigin {
    /// Serves until `shutdown`, then for `delay` more, then drains open requests for up to
    /// `grace`.
    async fn serve(
        self,
        shutdown: CancellationToken,
        delay: Duration,
        grace: Duration,
    ) -> anyhow::Result<()> {
        use std::future::IntoFuture as _;
        let draining = CancellationToken::new();
        let stop_accepting = {
            let draining = draining.clone();
            async move {
                shutdown.cancelled().await;
                tokio::time::sleep(delay).await;
                draining.cancel();
            }
        };
        let server = axum::serve(
            chassis::net::http_listener(self.listener),
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(stop_accepting)
        .into_future();
        let mut server = std::pin::pin!(server);
        tokio::select! {
            result = &mut server => return result.context("The HTTP server failed"),
            () = draining.cancelled() => {}
        }
        match tokio::time::timeout(grace, server).await {
            Ok(result) => result.context("The HTTP server failed while draining"),
            Err(_) => {
                tracing::warn!(
                    grace_seconds = grace.as_secs(),
                    "In-flight HTTP requests did not finish within the grace period"
                );
                Ok(())
            }
        }
    }
}
