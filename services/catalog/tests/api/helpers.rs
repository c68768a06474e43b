//! `spawn_app` and the `TestApp` every test drives.

use std::net::SocketAddr;
use std::time::Duration;

use catalog::Application;
use chassis::auth::roles;
use chassis::bus::{Bus, ConsumerSpec};
use chassis::cloudevents::CloudEvent;
use chassis::settings::ServiceSettings;
use chassis::storage::Database;
use emporium_proto::catalog::v1 as proto;
use proto::catalog_service_client::CatalogServiceClient;
use test_support::{Backend, BearerToken, TestBus, TestDatabase, TestIssuer};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// A catalog client that sends the test's default token with every call.
pub(crate) type Client = CatalogServiceClient<InterceptedService<Channel, BearerToken>>;

pub(crate) struct TestApp {
    /// Sends [`TestApp::token`].
    pub(crate) client: Client,
    /// Without a token: tests add one per request with `test_support::with_token`.
    pub(crate) anonymous_client: CatalogServiceClient<Channel>,
    pub(crate) addr: SocketAddr,
    /// The only issuer the catalog trusts.
    pub(crate) issuer: TestIssuer,
    /// A valid catalog-manager token, sent by [`TestApp::client`].
    pub(crate) token: String,
    /// The bus, connected for the test's own inspection.
    pub(crate) bus: Bus,
    pub(crate) test_bus: TestBus,
    pub(crate) test_database: TestDatabase,
    /// The service's own pool (closing it makes the database unreachable to the service).
    pub(crate) service_database: Database,
    /// Cancels the service when the test ends, however it ends.
    _stop_on_drop: tokio_util::sync::DropGuard,
    shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

pub(crate) async fn spawn_app(backend: Backend) -> TestApp {
    let test_database = TestDatabase::new(backend, "catalog").await;
    let test_bus = TestBus::new(backend).await;
    start(backend, test_database, test_bus, true, Duration::ZERO).await
}

/// A catalog whose outbox is not relayed: tests drive the relay themselves.
pub(crate) async fn spawn_app_without_relay(backend: Backend) -> TestApp {
    let test_database = TestDatabase::new(backend, "catalog").await;
    let test_bus = TestBus::new(backend).await;
    start(backend, test_database, test_bus, false, Duration::ZERO).await
}

/// A catalog that keeps serving for `delay` after it reports NOT_SERVING at shutdown.
pub(crate) async fn spawn_app_with_shutdown_delay(backend: Backend, delay: Duration) -> TestApp {
    let test_database = TestDatabase::new(backend, "catalog").await;
    let test_bus = TestBus::new(backend).await;
    start(backend, test_database, test_bus, true, delay).await
}

async fn start(
    _backend: Backend,
    test_database: TestDatabase,
    test_bus: TestBus,
    relay: bool,
    shutdown_delay: Duration,
) -> TestApp {
    let bus = test_bus.connect().await;
    let issuer = TestIssuer::new();
    let token = issuer.token("catalog-manager-1", &[roles::CATALOG_MANAGER]);
    let settings = ServiceSettings {
        name: catalog::NAME,
        grpc_addr: "127.0.0.1:0".parse().expect("a valid address"),
        database_url: test_database.secret_url(),
        namespace: test_bus.namespace.clone(),
        database_max_connections: None,
    };
    let application = Application::build(
        &settings,
        bus.clone(),
        Duration::from_secs(5),
        issuer.verifier(),
    )
    .await
    .expect("the catalog starts");
    let application = if relay {
        application
    } else {
        application.without_relay()
    };
    let application = application.with_shutdown_delay(shutdown_delay);
    let addr = application.local_addr();
    let service_database = application.database().clone();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(application.run_until_stopped(shutdown.clone()));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("a valid endpoint")
        .connect()
        .await
        .expect("the catalog accepts connections");
    TestApp {
        client: CatalogServiceClient::with_interceptor(channel.clone(), BearerToken::new(&token)),
        anonymous_client: CatalogServiceClient::new(channel),
        addr,
        issuer,
        token,
        bus,
        test_bus,
        test_database,
        service_database,
        _stop_on_drop: shutdown.clone().drop_guard(),
        shutdown,
        task: Some(task),
    }
}

impl TestApp {
    /// A client sending the default catalog-manager token.
    pub(crate) fn client(&self) -> Client {
        self.client.clone()
    }

    /// A client sending no token of its own.
    pub(crate) fn anonymous_client(&self) -> CatalogServiceClient<Channel> {
        self.anonymous_client.clone()
    }

    /// A second pool on the service's database, for checks the API cannot make.
    pub(crate) async fn database(&self) -> Database {
        Database::open(self.test_database.url())
            .await
            .expect("the test database opens")
    }

    pub(crate) fn stream_name(&self) -> String {
        chassis::outbox::stream_name(&self.test_bus.namespace, "catalog")
    }

    pub(crate) async fn create_category(&self, name: &str) -> proto::Category {
        self.client()
            .create_category(proto::CreateCategoryRequest {
                name: name.to_owned(),
                description: format!("All about {name}"),
            })
            .await
            .expect("the category is created")
            .into_inner()
    }

    pub(crate) async fn create_product(
        &self,
        category_id: &str,
        sku: &str,
        name: &str,
        price_minor: i64,
    ) -> proto::Product {
        self.client()
            .create_product(valid_product(category_id, sku, name, price_minor))
            .await
            .expect("the product is created")
            .into_inner()
    }

    pub(crate) async fn events_of(
        &self,
        aggregate_id: &str,
    ) -> Vec<emporium_proto::audit::v1::Event> {
        self.client()
            .list_events(emporium_proto::audit::v1::ListEventsRequest {
                aggregate_id: aggregate_id.to_owned(),
                page_size: 500,
                page_token: String::new(),
            })
            .await
            .expect("events are listed")
            .into_inner()
            .events
    }

    pub(crate) async fn product_total(&self) -> i64 {
        self.client()
            .list_products(proto::ListProductsRequest::default())
            .await
            .expect("products are listed")
            .into_inner()
            .total_size
    }

    /// Reads the catalog's stream from the start with a fresh durable consumer until `expected`
    /// messages arrived (or the deadline passed), then checks nothing more follows.
    pub(crate) async fn read_stream(&self, filter: &str, expected: usize) -> Vec<CloudEvent> {
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
    pub(crate) fn begin_stop(&self) {
        self.shutdown.cancel();
    }

    /// Stops the service as Ctrl-C would, and waits for it to drain.
    pub(crate) async fn stop(mut self) -> (TestDatabase, TestBus) {
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

pub(crate) fn valid_product(
    category_id: &str,
    sku: &str,
    name: &str,
    price_minor: i64,
) -> proto::CreateProductRequest {
    proto::CreateProductRequest {
        sku: sku.to_owned(),
        name: name.to_owned(),
        description: format!("{name}, freshly stocked"),
        category_id: category_id.to_owned(),
        price: Some(proto::Money {
            amount_minor: price_minor,
            currency: "EUR".to_owned(),
        }),
        stock_on_hand: 10,
    }
}

/// The field violations of an INVALID_ARGUMENT (or ALREADY_EXISTS) status, as `(field, reason)`.
pub(crate) fn field_violations(status: &tonic::Status) -> Vec<(String, String)> {
    use tonic_types::StatusExt;
    status
        .get_details_bad_request()
        .map(|bad_request| {
            bad_request
                .field_violations
                .into_iter()
                .map(|violation| (violation.field, violation.description))
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn violated_fields(status: &tonic::Status) -> Vec<String> {
    let mut fields: Vec<String> = field_violations(status)
        .into_iter()
        .map(|(field, _)| field)
        .collect();
    fields.sort();
    fields
}
