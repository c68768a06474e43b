//! The one harness every service's API tests start their service with: [`spawn_service`] builds
//! the real service (`chassis::runtime::Application`) on port 0 over a throwaway database and bus
//! namespace, trusting a fresh [`TestIssuer`], serves it, and hands back a [`TestApp`]: a channel
//! to it, a caller's token, the bus and the database to inspect, and a stop that drains the
//! service as Ctrl-C would. A service's own `tests/api/helpers.rs` adds only its typed client and
//! domain helpers on top.

use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::OnceLock;
use std::time::Duration;

use chassis::bus::{Bus, ConsumerSpec};
use chassis::cloudevents::CloudEvent;
use chassis::runtime::{Application, Service};
use chassis::settings::ServiceSettings;
use chassis::storage::Database;
use emporium_proto::audit::v1::{Event, ListEventsRequest, ListEventsResponse};
use prost::Message as _;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};
use tonic::transport::Channel;

use crate::contract_access::RawCodec;
use crate::{Backend, TestBus, TestDatabase, TestIssuer, with_token};

/// How long in-flight calls get to finish when a test stops its service.
const GRACE: Duration = Duration::from_secs(5);

/// Starts the service `S` for one test, built with `options`:
/// `spawn_service::<CatalogParts>(backend, ()).without_relay().await`. By default it gets a
/// fresh database, publishes its outbox, stops at once when told to, and the test's token is
/// `admin-1` holding `admin` ([`Spawn::with_caller`] changes it).
pub fn spawn_service<S: Service>(backend: Backend, options: S::Options) -> Spawn<S> {
    Spawn {
        backend,
        options,
        caller_subject: "admin-1".to_owned(),
        caller_roles: vec![chassis::auth::roles::ADMIN.to_owned()],
        relay: true,
        shutdown_delay: Duration::ZERO,
        test_database: None,
    }
}

/// The settings a test's service `S` runs on: port 0, `test_database`, `test_bus`'s namespace.
pub fn service_settings<S: Service>(
    test_database: &TestDatabase,
    test_bus: &TestBus,
) -> ServiceSettings {
    ServiceSettings {
        name: S::DEFINITION.name,
        grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        database_url: test_database.secret_url(),
        namespace: test_bus.namespace.clone(),
        database_max_connections: None,
    }
}

/// How a test's service starts; `.await` it (or [`Spawn::start_with`]) to start it.
#[must_use = "a service starts only once the spawn is awaited"]
pub struct Spawn<S: Service> {
    backend: Backend,
    options: S::Options,
    caller_subject: String,
    caller_roles: Vec<String>,
    relay: bool,
    shutdown_delay: Duration,
    /// The database to start on; a fresh one when `None`.
    test_database: Option<TestDatabase>,
}

/// A service serving on port 0 for one test, stopped when the test ends, however it ends.
pub struct TestApp<S> {
    /// Cancels the service when the test ends. First, so it is cancelled before the database and
    /// the bus namespace below are dropped.
    _stop_on_drop: DropGuard,
    /// Where its gRPC port listens.
    pub addr: SocketAddr,
    /// The only issuer the service trusts.
    pub issuer: TestIssuer,
    /// A valid token of the caller the spawn named ([`Spawn::with_caller`]).
    pub token: String,
    /// The bus, connected for the test's own inspection.
    pub bus: Bus,
    pub test_bus: TestBus,
    pub test_database: TestDatabase,
    /// The service's own pool (closing it makes the database unreachable to the service).
    pub service_database: Database,
    /// One connection to the service, shared by every client built on it.
    channel: Channel,
    /// The gRPC path of the service's `ListEvents`, looked up in the contract on first use.
    list_events_path: OnceLock<String>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    service: PhantomData<fn() -> S>,
}

// === impl Spawn ===

impl<S: Service> Spawn<S> {
    /// The caller [`TestApp::token`] is for (default `admin-1` holding `admin`).
    pub fn with_caller(mut self, subject: &str, roles: &[&str]) -> Spawn<S> {
        subject.clone_into(&mut self.caller_subject);
        self.caller_roles = roles.iter().map(|role| (*role).to_owned()).collect();
        self
    }

    /// Serves without publishing the outbox: the test drives a relay itself.
    pub fn without_relay(mut self) -> Spawn<S> {
        self.relay = false;
        self
    }

    /// Keeps serving for `delay` after reporting NOT_SERVING at shutdown.
    pub fn with_shutdown_delay(mut self, delay: Duration) -> Spawn<S> {
        self.shutdown_delay = delay;
        self
    }

    /// Starts on a database that already exists (e.g. one an older version left).
    pub fn on_database(mut self, test_database: TestDatabase) -> Spawn<S> {
        self.test_database = Some(test_database);
        self
    }

    /// Builds the service, lets `before_serving` use it (e.g. take HTTP routes from its state,
    /// which serving consumes), serves it, and returns what `before_serving` returned.
    pub async fn start_with<T>(
        self,
        before_serving: impl FnOnce(&Application<S>) -> T,
    ) -> (TestApp<S>, T) {
        let name = S::DEFINITION.name;
        let test_database = match self.test_database {
            Some(test_database) => test_database,
            None => TestDatabase::new(self.backend, name).await,
        };
        let test_bus = TestBus::new(self.backend).await;
        let bus = test_bus.connect().await;
        let issuer = TestIssuer::new();
        let roles: Vec<&str> = self.caller_roles.iter().map(String::as_str).collect();
        let token = issuer.token(&self.caller_subject, &roles);
        let application = Application::<S>::build_with(
            &service_settings::<S>(&test_database, &test_bus),
            bus.clone(),
            GRACE,
            issuer.verifier(),
            self.options,
        )
        .await
        .unwrap_or_else(|error| panic!("the {name} service starts: {error:#}"));
        let application = if self.relay {
            application
        } else {
            application.without_relay()
        };
        let application = application.with_shutdown_delay(self.shutdown_delay);
        let taken = before_serving(&application);
        let addr = application.local_addr();
        let service_database = application.database().clone();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(application.run_until_stopped(shutdown.clone()));
        let channel = connect(addr).await;
        let test_app = TestApp {
            _stop_on_drop: shutdown.clone().drop_guard(),
            addr,
            issuer,
            token,
            bus,
            test_bus,
            test_database,
            service_database,
            channel,
            list_events_path: OnceLock::new(),
            shutdown,
            task: Some(task),
            service: PhantomData,
        };
        (test_app, taken)
    }
}

impl<S: Service> IntoFuture for Spawn<S>
where
    S::Options: 'static,
{
    type Output = TestApp<S>;
    type IntoFuture = Pin<Box<dyn Future<Output = TestApp<S>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { self.start_with(|_| ()).await.0 })
    }
}

// === impl TestApp ===

impl<S: Service> TestApp<S> {
    /// The shared connection to the service, for its typed clients:
    /// `CatalogServiceClient::with_interceptor(app.channel(), BearerToken::new(&app.token))`.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// A connection of its own to the service (e.g. one opened after shutdown began).
    pub async fn new_channel(&self) -> Channel {
        connect(self.addr).await
    }

    /// `message` as a request carrying [`TestApp::token`].
    pub fn authorized<T>(&self, message: T) -> tonic::Request<T> {
        with_token(message, &self.token)
    }

    /// A second pool on the service's database, for checks the API cannot make.
    pub async fn database(&self) -> Database {
        Database::open(self.test_database.url())
            .await
            .expect("the test database opens")
    }

    /// The name of the service's stream on the bus.
    pub fn stream_name(&self) -> String {
        chassis::outbox::stream_name(&self.test_bus.namespace, S::DEFINITION.name)
    }

    /// The audit history of `aggregate_id`, oldest first, as the service's `ListEvents` answers
    /// it to [`TestApp::token`]'s caller (every event of a test's record fits one page).
    pub async fn events_of(&self, aggregate_id: &str) -> Vec<Event> {
        let path = self.list_events_path.get_or_init(list_events_path::<S>);
        let request = ListEventsRequest {
            aggregate_id: aggregate_id.to_owned(),
            page_size: 500,
            page_token: String::new(),
        };
        let mut grpc = tonic::client::Grpc::new(self.channel());
        grpc.ready().await.expect("the service accepts calls");
        let path = tonic::codegen::http::uri::PathAndQuery::try_from(path.as_str())
            .expect("a gRPC path is a valid URI path");
        let response = grpc
            .unary(self.authorized(request.encode_to_vec()), path, RawCodec)
            .await
            .expect("events are listed")
            .into_inner();
        let response = ListEventsResponse::decode(response.as_slice())
            .expect("ListEvents answers a ListEventsResponse");
        assert!(
            response.next_page_token.is_empty(),
            "the history of {aggregate_id} does not fit one page"
        );
        response.events
    }

    /// Reads the service's stream from the start with a fresh durable consumer until `expected`
    /// messages whose subject (after the namespace) matches `filter` arrived (or 20 s passed),
    /// then reads once more, so a duplicate or stray message shows up as one too many.
    pub async fn read_stream(&self, filter: &str, expected: usize) -> Vec<CloudEvent> {
        let mut consumer = self
            .bus
            .consumer(&ConsumerSpec {
                stream: self.stream_name(),
                durable_name: format!("test-reader-{}", uuid::Uuid::new_v4().simple()),
                filter_subject: format!("{}.{filter}", self.test_bus.namespace),
                ack_wait: Duration::from_secs(30),
            })
            .await
            .expect("a consumer is created");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut events = Vec::new();
        while events.len() < expected && tokio::time::Instant::now() < deadline {
            for delivery in consumer
                .fetch(256, Duration::from_millis(500))
                .await
                .expect("fetch works")
            {
                events.push(serde_json::from_slice(&delivery.payload).expect("a CloudEvent"));
                delivery.ack().await.expect("ack works");
            }
        }
        // Anything beyond `expected` would be a duplicate or a stray event.
        for delivery in consumer
            .fetch(256, Duration::from_millis(300))
            .await
            .expect("fetch works")
        {
            events.push(serde_json::from_slice(&delivery.payload).expect("a CloudEvent"));
            delivery.ack().await.expect("ack works");
        }
        events
    }

    /// Signals the service to stop, as Ctrl-C would, without waiting for it.
    pub fn begin_stop(&self) {
        self.shutdown.cancel();
    }

    /// Stops the service as Ctrl-C would, waits for it to drain and stop cleanly, and hands back
    /// its database and bus namespace (e.g. to start it again on them).
    pub async fn stop(mut self) -> (TestDatabase, TestBus) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await
                .expect("the service task completes")
                .expect("the service stops cleanly");
        }
        let TestApp {
            test_database,
            test_bus,
            ..
        } = self;
        (test_database, test_bus)
    }
}

/// The gRPC path of `S`'s `ListEvents`, from the contract: the one RPC of that name among the
/// gRPC services `S` serves.
fn list_events_path<S: Service>() -> String {
    let pool = contract::decode_pool(emporium_proto::FILE_DESCRIPTOR_SET)
        .expect("the descriptor set decodes");
    let paths: Vec<String> = contract::method_access(&pool)
        .into_iter()
        .filter(|method| {
            method.method == "ListEvents"
                && S::DEFINITION
                    .health_names
                    .contains(&method.service.as_str())
        })
        .map(|method| method.path)
        .collect();
    match <[String; 1]>::try_from(paths) {
        Ok([path]) => path,
        Err(paths) => panic!(
            "expected one ListEvents among {:?}, found {paths:?}",
            S::DEFINITION.health_names
        ),
    }
}

/// A channel on a new connection to `addr`.
async fn connect(addr: SocketAddr) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("a valid endpoint")
        .connect()
        .await
        .expect("the service accepts connections")
}
