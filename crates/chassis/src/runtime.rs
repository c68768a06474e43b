//! The one service runtime. A service's `lib.rs` declares its parts ([`Service`]: name, default
//! port, health names, migrations, seed step, gRPC routes, consumers, HTTP routes, whether the
//! relay runs); this module runs any of them, on a gRPC listener of their own ([`ServiceHost`]
//! with one service: `emporium serve`; [`Application`]: tests and the benchmark) or several on
//! one gRPC address ([`ServiceHost`], `emporium up`), always in the same order:
//!
//! 1. connect and migrate the database, seed built-in data ([`Service::assemble`]), ensure the
//!    service's stream on the bus;
//! 2. bind the port, start the relay and the consumers, serve gRPC (and the HTTP origin);
//! 3. on shutdown: report NOT_SERVING, keep serving for the shutdown delay, stop accepting and
//!    drain in-flight calls and requests (up to the grace period), then stop the consumers and
//!    the relay, and close the database last, so no answered call loses its commit and no
//!    in-flight call meets a closed pool.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use secrecy::ExposeSecret as _;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::service::RoutesBuilder;

use crate::auth::TokenVerifier;
use crate::bus::Bus;
use crate::consumer::{Consumer, EventHandler};
use crate::grpc::{GrpcListener, GrpcService, ServedService};
use crate::health::Readiness;
use crate::outbox::{EventRoute, Relay};
use crate::proxies::TrustedProxies;
use crate::settings::ServiceSettings;
use crate::storage::{Database, Migrations};

/// What a service is, as the runtime and the `emporium` binary need to know it.
#[derive(Clone, Copy, Debug)]
pub struct ServiceDefinition {
    /// The service's name in settings (`EMPORIUM_<NAME>_…`), events, logs and the command line.
    pub name: &'static str,
    /// Its gRPC port when it runs alone (`emporium serve <name>`).
    pub default_port: u16,
    /// Fully qualified names of its gRPC services (e.g. `emporium.catalog.v1.CatalogService`):
    /// what health reports on and reflection lists.
    pub health_names: &'static [&'static str],
    /// Its schema, per backend.
    pub migrations: Migrations,
    /// Whether it publishes its outbox (every service that records events does).
    pub relay: bool,
}

/// A service's parts, declared in its `lib.rs`; the runtime calls them in order. The value is
/// the service's own state, built once over its database by [`Service::assemble`].
pub trait Service: Sized + Send + Sync + 'static {
    /// What the service needs beyond the settings every service shares (`()` for most).
    type Options: Send;

    const DEFINITION: ServiceDefinition;

    /// Seeds built-in data and builds the service's state. Runs after migrations, before the
    /// stream is ensured and the port bound; an error stops the start.
    fn assemble(
        context: &ServiceContext,
        options: Self::Options,
    ) -> impl Future<Output = anyhow::Result<Self>> + Send;

    /// Adds the service's gRPC servers to the process's routes.
    fn add_grpc_routes(&self, context: &ServiceContext, routes: &mut RoutesBuilder);

    /// The consumers to run while the service serves (none by default).
    fn consumers(&self, _context: &ServiceContext) -> Vec<ConsumerTask> {
        Vec::new()
    }

    /// Routes the service serves on the suite's HTTP origin, if any (none by default).
    fn http_routes(&self, _context: &ServiceContext, _origin: &HttpOrigin) -> Option<axum::Router> {
        None
    }
}

/// What a service's parts are built over.
#[derive(Clone, Debug)]
pub struct ServiceContext {
    pub database: Database,
    pub bus: Bus,
    /// The bus namespace (for consumer and dead-letter names).
    pub namespace: String,
    /// Where the service's events go.
    pub route: EventRoute,
}

/// What HTTP routes need to know about the origin that serves them.
#[derive(Clone, Debug)]
pub struct HttpOrigin {
    /// The origin's public URL, as tokens name it in `iss` (`EMPORIUM_AUTH_ISSUER`).
    pub issuer: String,
    /// The `aud` of the tokens issued there (`EMPORIUM_AUTH_AUDIENCE`).
    pub audience: String,
    /// Whose `X-Forwarded-For` names the client (`EMPORIUM_TRUSTED_PROXIES`).
    pub trusted_proxies: TrustedProxies,
}

/// A consumer the runtime starts with its service and stops, before the pool closes, at shutdown.
pub struct ConsumerTask {
    hosted: crate::metrics::HostedConsumer,
    run: Box<dyn FnOnce(CancellationToken) -> BoxedTask + Send>,
}

type BoxedTask = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A service connected, migrated, seeded and with its stream in place; not yet listening.
#[derive(Debug)]
pub struct Built<S> {
    service: S,
    context: ServiceContext,
    run_relay: bool,
}

/// One service built and listening on its own port, as the tests and the benchmark run it; not
/// yet serving. (The `emporium` binary hosts its services on a [`ServiceHost`] directly.)
#[derive(Debug)]
pub struct Application<S> {
    built: Built<S>,
    listener: GrpcListener,
    verifier: Arc<TokenVerifier>,
    /// How long to keep serving after reporting NOT_SERVING at shutdown.
    shutdown_delay: Duration,
    grace: Duration,
}

/// A built service as the host runs it, whatever service it is.
pub struct ServiceUnit {
    definition: ServiceDefinition,
    context: ServiceContext,
    run_relay: bool,
    add_grpc_routes: Box<dyn FnOnce(&mut RoutesBuilder) + Send>,
    consumers: Vec<ConsumerTask>,
    http_routes: Option<axum::Router>,
}

/// Serves one or more services on one gRPC listener (and their HTTP routes, if any, on one HTTP
/// listener), then stops them in the runtime's order.
pub struct ServiceHost {
    listener: GrpcListener,
    verifier: Arc<TokenVerifier>,
    units: Vec<ServiceUnit>,
    http_listener: Option<TcpListener>,
    /// Routes of the origin that belong to no hosted service (the gateway's).
    http_routes: Vec<axum::Router>,
    /// Serves only the operations endpoints (`/metrics`, `/healthz`, `/readyz`), e.g. for a
    /// service with no HTTP origin.
    ops_listener: Option<TcpListener>,
    shutdown_delay: Duration,
    grace: Duration,
}

// === impl ConsumerTask ===

impl ConsumerTask {
    pub fn new<H: EventHandler>(consumer: Consumer<H>) -> ConsumerTask {
        let options = consumer.options();
        let hosted = crate::metrics::HostedConsumer {
            name: options.name.clone(),
            stream: options.stream.clone(),
            filter_subject: options.filter_subject.clone(),
            stats: consumer.stats(),
        };
        ConsumerTask {
            hosted,
            run: Box::new(move |shutdown| Box::pin(consumer.run(shutdown))),
        }
    }

    fn spawn(self, shutdown: CancellationToken) -> JoinHandle<()> {
        tokio::spawn((self.run)(shutdown))
    }
}

impl std::fmt::Debug for ConsumerTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerTask")
            .field("name", &self.hosted.name)
            .finish_non_exhaustive()
    }
}

// === impl Built ===

impl<S: Service> Built<S> {
    /// Connects and migrates the database, runs the service's seed step, and makes sure the bus
    /// has the service's stream.
    pub async fn build(
        settings: &ServiceSettings,
        bus: Bus,
        options: S::Options,
    ) -> anyhow::Result<Built<S>> {
        let definition = S::DEFINITION;
        let database = Database::connect_with(
            settings.database_url.expose_secret(),
            settings.database_max_connections,
            definition.migrations,
        )
        .await?
        .named(definition.name);
        let route = EventRoute::new(definition.name, &settings.namespace);
        let context = ServiceContext {
            database,
            bus,
            namespace: settings.namespace.clone(),
            route,
        };
        let service = S::assemble(&context, options).await?;
        context.bus.ensure_stream(&context.route.stream()).await?;
        Ok(Built {
            service,
            context,
            run_relay: definition.relay,
        })
    }

    /// Serves without publishing the outbox (tests drive a relay themselves).
    pub fn without_relay(mut self) -> Built<S> {
        self.run_relay = false;
        self
    }

    /// The service's own state.
    pub fn service(&self) -> &S {
        &self.service
    }

    pub fn database(&self) -> &Database {
        &self.context.database
    }

    /// The parts the host runs, the HTTP routes built for `origin` (none without one).
    pub fn into_unit(self, origin: Option<&HttpOrigin>) -> ServiceUnit {
        let service = Arc::new(self.service);
        let consumers = service.consumers(&self.context);
        let http_routes = origin.and_then(|origin| service.http_routes(&self.context, origin));
        let add_grpc_routes = {
            let context = self.context.clone();
            Box::new(move |routes: &mut RoutesBuilder| service.add_grpc_routes(&context, routes))
        };
        ServiceUnit {
            definition: S::DEFINITION,
            context: self.context,
            run_relay: self.run_relay,
            add_grpc_routes,
            consumers,
            http_routes,
        }
    }
}

// === impl Application ===

impl<S: Service<Options = ()>> Application<S> {
    /// [`Application::build_with`] for a service that needs no options.
    pub async fn build(
        settings: &ServiceSettings,
        bus: Bus,
        grace: Duration,
        verifier: Arc<TokenVerifier>,
    ) -> anyhow::Result<Application<S>> {
        Application::build_with(settings, bus, grace, verifier, ()).await
    }
}

impl<S: Service> Application<S> {
    /// Builds the service ([`Built::build`]) and binds its gRPC port. When this returns the
    /// service is ready to report SERVING. Every call must carry an access token that `verifier`
    /// accepts; in-flight calls get `grace` to finish at shutdown.
    pub async fn build_with(
        settings: &ServiceSettings,
        bus: Bus,
        grace: Duration,
        verifier: Arc<TokenVerifier>,
        options: S::Options,
    ) -> anyhow::Result<Application<S>> {
        let built = Built::build(settings, bus, options).await?;
        let listener = GrpcListener::bind(settings.grpc_addr).await?;
        Ok(Application {
            built,
            listener,
            verifier,
            shutdown_delay: Duration::ZERO,
            grace,
        })
    }

    /// Serves without publishing the outbox (tests drive a relay themselves).
    pub fn without_relay(mut self) -> Application<S> {
        self.built = self.built.without_relay();
        self
    }

    /// At shutdown, keeps serving for `delay` after reporting NOT_SERVING (default zero), so a
    /// load balancer polling health stops routing here before the port closes.
    pub fn with_shutdown_delay(mut self, delay: Duration) -> Application<S> {
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
        self.built.database()
    }

    /// The service's own state.
    pub fn service(&self) -> &S {
        self.built.service()
    }

    /// Serves gRPC until `shutdown` is cancelled, then drains, stops the consumers and the
    /// relay, and closes the database. (Its HTTP routes, if any, are not served: tests take them
    /// from the service's own state, with a clock of their own.)
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut host = ServiceHost::new(self.listener, self.verifier)
            .with_shutdown_delay(self.shutdown_delay)
            .with_grace(self.grace);
        host.add(self.built.into_unit(None));
        host.run_until_stopped(shutdown).await
    }
}

// === impl ServiceUnit ===

impl ServiceUnit {
    pub fn name(&self) -> &'static str {
        self.definition.name
    }

    /// Whether it has routes for the HTTP origin.
    pub fn has_http_routes(&self) -> bool {
        self.http_routes.is_some()
    }
}

impl std::fmt::Debug for ServiceUnit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceUnit")
            .field("name", &self.definition.name)
            .field("run_relay", &self.run_relay)
            .field("consumers", &self.consumers.len())
            .field("http_routes", &self.http_routes.is_some())
            .finish_non_exhaustive()
    }
}

// === impl ServiceHost ===

impl ServiceHost {
    /// A host serving on `listener`, every call's token checked by `verifier` (one key cache for
    /// every service it hosts). In-flight calls get 30 s to finish at shutdown unless
    /// [`ServiceHost::with_grace`] says otherwise.
    pub fn new(listener: GrpcListener, verifier: Arc<TokenVerifier>) -> ServiceHost {
        ServiceHost {
            listener,
            verifier,
            units: Vec::new(),
            http_listener: None,
            http_routes: Vec::new(),
            ops_listener: None,
            shutdown_delay: Duration::ZERO,
            grace: Duration::from_secs(30),
        }
    }

    /// Hosts `unit` too. Services stop in the reverse order of adding (so add identity, whose
    /// keys the others trust, first).
    pub fn add(&mut self, unit: ServiceUnit) {
        self.units.push(unit);
    }

    /// Serves the hosted services' HTTP routes on `listener`, and the health probes
    /// (`/healthz`, `/readyz`) and `/metrics` beside them.
    pub fn with_http_listener(mut self, listener: TcpListener) -> ServiceHost {
        self.http_listener = Some(listener);
        self
    }

    /// Serves `router` on the HTTP origin too, beside the hosted services' routes (the
    /// gateway's `/graphql`, which belongs to no service). Needs an HTTP listener.
    pub fn with_http_routes(mut self, router: axum::Router) -> ServiceHost {
        self.http_routes.push(router);
        self
    }

    /// Serves `/metrics`, `/healthz` and `/readyz` on `listener`, on their own.
    pub fn with_ops_listener(mut self, listener: TcpListener) -> ServiceHost {
        self.ops_listener = Some(listener);
        self
    }

    /// At shutdown, keeps serving for `delay` after reporting NOT_SERVING (default zero).
    pub fn with_shutdown_delay(mut self, delay: Duration) -> ServiceHost {
        self.shutdown_delay = delay;
        self
    }

    /// How long in-flight calls and requests may take to finish at shutdown, after the delay.
    pub fn with_grace(mut self, grace: Duration) -> ServiceHost {
        self.grace = grace;
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }

    /// Where the HTTP origin listens, when it was given one.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
    }

    /// Where the probes listen on their own, when given a listener for them.
    pub fn ops_addr(&self) -> Option<SocketAddr> {
        self.ops_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
    }

    /// Serves until `shutdown` is cancelled; then every service reports NOT_SERVING, the ports
    /// keep serving for the shutdown delay, stop accepting and drain (up to the grace period);
    /// then each service's consumers and relay stop and its database closes.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let ServiceHost {
            listener,
            verifier,
            units,
            http_listener,
            http_routes,
            ops_listener,
            shutdown_delay,
            grace,
        } = self;
        let Some(bus) = units.first().map(|unit| unit.context.bus.clone()) else {
            anyhow::bail!("a service host needs at least one service");
        };
        // Background work stops on its own token, only once calls have drained.
        let background_shutdown = CancellationToken::new();
        let metrics_upkeep = tokio::spawn(crate::metrics::run_upkeep(background_shutdown.clone()));
        let mut routes = RoutesBuilder::default();
        let mut served = Vec::with_capacity(units.len());
        let mut running = Vec::with_capacity(units.len());
        let readiness = Readiness::new();
        let namespace = units
            .first()
            .map(|unit| unit.context.namespace.clone())
            .unwrap_or_default();
        let sources = crate::metrics::ScrapeSources::new(
            units
                .iter()
                .map(|unit| crate::metrics::SourceService {
                    name: unit.definition.name,
                    database: unit.context.database.clone(),
                    consumers: unit
                        .consumers
                        .iter()
                        .map(|consumer| consumer.hosted.clone())
                        .collect(),
                })
                .collect(),
            bus.clone(),
            &namespace,
        );
        // The probes, /metrics and the ops API, on the origin and on the ops listener alike.
        let ops_router = readiness.router(sources.clone()).merge(
            crate::ops::OpsApi::new(sources.clone(), readiness.clone(), Arc::clone(&verifier))
                .router(),
        );
        let mut http_router = ops_router.clone();
        for router in http_routes {
            http_router = http_router.merge(router);
        }
        for unit in units {
            (unit.add_grpc_routes)(&mut routes);
            served.push(ServedService {
                name: unit.definition.name,
                health_names: unit.definition.health_names.to_vec(),
                database: unit.context.database.clone(),
            });
            if let Some(router) = unit.http_routes {
                http_router = http_router.merge(router);
            }
            let relay = unit.run_relay.then(|| {
                let relay = Relay::new(
                    unit.context.database.clone(),
                    unit.context.bus.clone(),
                    unit.context.route.clone(),
                );
                tokio::spawn(relay.run(background_shutdown.clone()))
            });
            let consumers = unit
                .consumers
                .into_iter()
                .map(|consumer| consumer.spawn(background_shutdown.clone()))
                .collect::<Vec<_>>();
            tracing::info!(
                service = unit.definition.name,
                addr = %listener.local_addr(),
                bus = bus.kind(),
                "Serving gRPC"
            );
            running.push(RunningUnit {
                name: unit.definition.name,
                database: unit.context.database,
                relay,
                consumers,
            });
        }
        let service = GrpcService {
            routes: routes.routes(),
            services: served,
            file_descriptor_set: emporium_proto::FILE_DESCRIPTOR_SET,
            bus,
            verifier: Some(verifier),
            readiness: readiness.clone(),
        };
        let http = [
            // The origin's requests are traced (a span per route, the probes left out).
            http_listener.map(|listener| {
                (
                    listener,
                    http_router.layer(crate::telemetry::HttpTraceLayer),
                )
            }),
            ops_listener.map(|listener| (listener, ops_router)),
        ]
        .into_iter()
        .flatten()
        .map(|(listener, router)| {
            tokio::spawn(serve_http(
                listener,
                router,
                shutdown.clone(),
                shutdown_delay,
                grace,
            ))
        })
        .collect::<Vec<_>>();
        let grpc_served = listener
            .serve(service, shutdown, shutdown_delay, grace)
            .await;
        // The HTTP side uses the pools too: it must drain before they close.
        let mut http_served = Ok(());
        for server in http {
            let served = server.await.unwrap_or_else(|join_error| {
                Err(anyhow::anyhow!(join_error).context("The HTTP server task panicked"))
            });
            http_served = http_served.and(served);
        }
        // Calls have drained, so no new events will be recorded: consumers and relays can stop.
        // Whatever a relay has not published yet stays in the outbox for the next start.
        background_shutdown.cancel();
        for unit in running.into_iter().rev() {
            unit.stop().await;
        }
        if let Err(error) = metrics_upkeep.await {
            tracing::error!(error.message = %error, "The metrics upkeep task panicked");
        }
        grpc_served.and(http_served)
    }
}

/// A hosted service's background tasks and pool, stopped after the drain.
struct RunningUnit {
    name: &'static str,
    database: Database,
    relay: Option<JoinHandle<()>>,
    consumers: Vec<JoinHandle<()>>,
}

impl RunningUnit {
    /// Waits for the consumers and the relay (already told to stop), then closes the pool.
    async fn stop(self) {
        for consumer in self.consumers {
            if let Err(error) = consumer.await {
                tracing::error!(service = self.name, error.message = %error, "Consumer task panicked");
            }
        }
        if let Some(relay) = self.relay
            && let Err(error) = relay.await
        {
            tracing::error!(service = self.name, error.message = %error, "Outbox relay task panicked");
        }
        self.database.close().await;
        tracing::info!(service = self.name, "Stopped");
    }
}

/// Serves `router` on `listener` until `shutdown`, then for `delay` more, then drains open
/// requests for up to `grace`. Connections get TCP_NODELAY, and handlers see the peer's address
/// (`ConnectInfo<SocketAddr>`). For a process that hosts no service (the gateway on its own).
pub async fn serve_http(
    listener: TcpListener,
    router: axum::Router,
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
        crate::net::http_listener(listener),
        router.into_make_service_with_connect_info::<SocketAddr>(),
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
