//! The operator's view of consumers, on both backends: a service of the test's own hosted with
//! its HTTP origin, as `up` hosts services, whose one consumer is held back and then fed a
//! poison message. Its lag grows at `/metrics` and in the ops API while it is held and falls to
//! zero when released; the poison message shows as a dead letter at `/metrics`, in the ops API
//! and in `emporiumctl ops status`, and `emporiumctl ops redrive` brings it back to zero. Only
//! admins get the ops API.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chassis::auth::roles;
use chassis::bus::{Bus, OutgoingMessage};
use chassis::cloudevents::CloudEvent;
use chassis::consumer::{Consumer, ConsumerOptions, EventHandler};
use chassis::grpc::GrpcListener;
use chassis::runtime::{Built, ConsumerTask, Service, ServiceContext, ServiceDefinition};
use chassis::settings::ServiceSettings;
use chassis::storage::Transaction;
use emporium_proto::catalog::v1 as catalog_proto;
use test_support::{Backend, TestBus, TestDatabase, TestIssuer, both_backends, eventually};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

both_backends!(
    a_held_back_consumer_lags_and_a_poison_message_is_a_dead_letter_until_redriven,
    the_outbox_backlog_shows_until_a_relay_publishes_it,
    the_ops_api_is_for_admins_only,
);

const PATIENCE: Duration = Duration::from_secs(30);

async fn a_held_back_consumer_lags_and_a_poison_message_is_a_dead_letter_until_redriven(
    backend: Backend,
) {
    // Arrange: the consumer takes its first event and waits, as if its database were slow.
    let suite = Suite::start(backend).await;
    let admin = suite.issuer.token("admin-1", &[roles::ADMIN]);
    suite.gate.hold();
    suite
        .publish(crate::product_created(uuid::Uuid::new_v4()))
        .await;
    suite
        .until("the held consumer to take its first event", |consumer| {
            consumer["position"]["ack_pending"] == 1
        })
        .await;

    // Act and assert: its lag grows with every event published while it is held.
    let mut lags = Vec::new();
    for expected_lag in 1..=3 {
        suite
            .publish(crate::product_created(uuid::Uuid::new_v4()))
            .await;
        suite
            .until("the lag to grow", |consumer| {
                consumer["position"]["pending"] == expected_lag
            })
            .await;
        lags.push(suite.gauge("emporium_consumer_pending_messages").await);
    }
    assert_eq!(lags, [1.0, 2.0, 3.0], "the lag at /metrics grows too");

    // Released, it catches up: no lag, nothing unsettled, every event applied once.
    suite.gate.release();
    let caught_up = suite
        .until("the consumer to catch up", |consumer| {
            consumer["position"]["pending"] == 0
                && consumer["position"]["ack_pending"] == 0
                && consumer["deliveries"]["applied"] == 4
        })
        .await;
    assert_eq!(caught_up["dead_letters"], 0, "{caught_up}");
    assert_eq!(suite.gauge("emporium_consumer_pending_messages").await, 0.0);

    // A poison message: refused once (max_deliver 1), it is parked as a dead letter.
    let poison = crate::product_created(uuid::Uuid::new_v4());
    suite.gate.refuse(&poison.id);
    suite.publish(poison.clone()).await;
    suite
        .until("the poison message to be dead-lettered", |consumer| {
            consumer["dead_letters"] == 1
        })
        .await;
    assert_eq!(suite.gauge("emporium_consumer_dead_letters").await, 1.0);
    assert_eq!(
        suite
            .counter(r#"emporium_consumer_deliveries_total"#, "dead_lettered")
            .await,
        1.0
    );
    let status = suite
        .ctl(&admin, &["ops", "status"])
        .await
        .expect("ops status");
    let row = consumer_row(&status, &suite.consumer);
    assert_eq!(
        row.get(4).map(String::as_str),
        Some("1"),
        "DEAD LETTERS in:\n{status}"
    );
    let listed = suite
        .ctl(&admin, &["ops", "dead-letters", "-o", "json"])
        .await
        .expect("ops dead-letters");
    let listed: serde_json::Value = serde_json::from_str(&listed).expect("JSON");
    assert_eq!(listed[0]["event"]["id"], poison.id.as_str(), "{listed}");

    // Fixed and re-driven, it is applied, and no dead letter is left anywhere.
    suite.gate.accept_all();
    let redriven = suite
        .ctl(&admin, &["ops", "redrive", "--consumer", &suite.consumer])
        .await
        .expect("ops redrive");
    assert!(redriven.contains(&poison.id), "{redriven}");
    suite
        .until("the re-driven event to be applied", |consumer| {
            consumer["deliveries"]["applied"] == 5 && consumer["dead_letters"] == 0
        })
        .await;
    assert_eq!(suite.gauge("emporium_consumer_dead_letters").await, 0.0);
    let status = suite
        .ctl(&admin, &["ops", "status"])
        .await
        .expect("ops status");
    let row = consumer_row(&status, &suite.consumer);
    assert_eq!(
        row.get(2).map(String::as_str),
        Some("0"),
        "PENDING in:\n{status}"
    );
    assert_eq!(
        row.get(4).map(String::as_str),
        Some("0"),
        "DEAD LETTERS in:\n{status}"
    );
    let (_, metrics) = suite.get("/metrics", None).await;
    crate::assert_promtool_accepts(&metrics);
    suite.stop().await;
}

async fn the_outbox_backlog_shows_until_a_relay_publishes_it(backend: Backend) {
    // Arrange: the catalog beside the projection, without its relay.
    let suite = Suite::start_with_catalog(backend).await;
    let admin = suite.issuer.token("admin-1", &[roles::ADMIN]);
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", suite.grpc_addr))
        .expect("an endpoint")
        .connect()
        .await
        .expect("the host accepts connections");
    let mut catalog_client =
        catalog_proto::catalog_service_client::CatalogServiceClient::new(channel);

    // Act: two changes, recorded in the outbox and not published.
    for name in ["Tea", "Coffee"] {
        catalog_client
            .create_category(test_support::with_token(
                catalog_proto::CreateCategoryRequest {
                    name: name.to_owned(),
                    description: String::new(),
                },
                &admin,
            ))
            .await
            .expect("the category is created");
    }
    let waiting = suite.outbox(&admin).await;
    let relay = tokio::spawn(
        chassis::outbox::Relay::new(
            suite.catalog_database.clone().expect("the catalog runs"),
            suite.bus.clone(),
            chassis::outbox::EventRoute::new(catalog::NAME, &suite.namespace),
        )
        .run(suite.shutdown.clone()),
    );
    let drained = eventually(PATIENCE, "the relay to drain the outbox", || async {
        let outbox = suite.outbox(&admin).await;
        (outbox["unpublished"] == 0).then_some(outbox)
    })
    .await;

    // Assert
    assert_eq!(waiting["unpublished"], 2, "{waiting}");
    assert_eq!(waiting["parked"], 0, "{waiting}");
    assert!(
        waiting["oldest_unpublished_age_seconds"]
            .as_f64()
            .is_some_and(|age| age >= 0.0),
        "{waiting}"
    );
    assert_eq!(drained["oldest_unpublished_age_seconds"], 0.0, "{drained}");
    let (_, metrics) = suite.get("/metrics", None).await;
    assert!(
        metrics.contains(r#"emporium_outbox_unpublished_events{service="catalog"} "#),
        "{metrics}"
    );
    suite.stop().await;
    relay.await.expect("the relay stops");
}

async fn the_ops_api_is_for_admins_only(backend: Backend) {
    // Arrange
    let suite = Suite::start(backend).await;
    let manager = suite.issuer.token("manager-1", &[roles::CATALOG_MANAGER]);
    let admin = suite.issuer.token("admin-1", &[roles::ADMIN]);

    // Act
    let anonymous = suite.get("/ops/v1/status", None).await;
    let forged = suite.get("/ops/v1/status", Some("not-a-token")).await;
    let managers = suite.get("/ops/v1/status", Some(&manager)).await;
    let admins = eventually(PATIENCE, "the projection to serve", || async {
        let (code, body) = suite.get("/ops/v1/status", Some(&admin)).await;
        (code != 200 || body.contains("\"SERVING\"")).then_some((code, body))
    })
    .await;
    let by_manager = suite.ctl(&manager, &["ops", "status"]).await;
    let unknown_consumer = suite
        .ctl(&admin, &["ops", "redrive", "--consumer", "nobody"])
        .await;

    // Assert
    assert_eq!(anonymous.0, 401, "{anonymous:?}");
    assert_eq!(forged.0, 401, "{forged:?}");
    assert_eq!(managers.0, 403, "{managers:?}");
    assert_eq!(admins.0, 200, "{admins:?}");
    let admins: serde_json::Value = serde_json::from_str(&admins.1).expect("JSON");
    assert_eq!(admins["services"][0]["name"], "projection", "{admins}");
    assert_eq!(admins["services"][0]["status"], "SERVING", "{admins}");
    let refusal = by_manager.expect_err("a catalog manager is refused");
    assert!(refusal.contains("admin"), "{refusal}");
    let refusal = unknown_consumer.expect_err("an unknown consumer is refused");
    assert!(refusal.contains("nobody"), "{refusal}");
    // The forged token is counted by reason (the process's count: other tests refuse some too).
    let malformed = suite
        .series(r#"emporium_auth_tokens_refused_total{reason="malformed"} "#)
        .await;
    assert!(malformed >= 1.0, "{malformed} malformed tokens counted");
    suite.stop().await;
}

// === the suite ===

/// A projection service hosted with its HTTP origin; its consumer's handler obeys [`Gate`].
pub(crate) struct Suite {
    pub(crate) issuer: TestIssuer,
    bus: Bus,
    namespace: String,
    /// The consumer's durable name: unique per test, since the metrics are the process's.
    consumer: String,
    pub(crate) gate: Gate,
    pub(crate) http_addr: std::net::SocketAddr,
    grpc_addr: std::net::SocketAddr,
    /// The catalog's database, when it runs beside the projection (without its relay).
    catalog_database: Option<chassis::storage::Database>,
    shutdown: CancellationToken,
    served: tokio::task::JoinHandle<anyhow::Result<()>>,
    _databases: Vec<TestDatabase>,
    _test_bus: TestBus,
}

impl Suite {
    pub(crate) async fn start(backend: Backend) -> Suite {
        Suite::host(backend, false).await
    }

    async fn start_with_catalog(backend: Backend) -> Suite {
        Suite::host(backend, true).await
    }

    async fn host(backend: Backend, with_catalog: bool) -> Suite {
        let database = TestDatabase::new(backend, "projection").await;
        let test_bus = TestBus::new(backend).await;
        let bus = test_bus.connect().await;
        let issuer = TestIssuer::new();
        // The stream it consumes, which the catalog would create.
        bus.ensure_stream(
            &chassis::outbox::EventRoute::new(catalog::NAME, &test_bus.namespace).stream(),
        )
        .await
        .expect("the catalog's stream");
        let consumer = format!("ops-projection-{}", uuid::Uuid::new_v4().simple());
        let gate = Gate::new();
        let settings = ServiceSettings {
            name: "projection",
            grpc_addr: "127.0.0.1:0".parse().expect("a valid address"),
            database_url: database.secret_url(),
            namespace: test_bus.namespace.clone(),
            database_max_connections: None,
        };
        let built = Built::<Projection>::build(
            &settings,
            bus.clone(),
            Projection {
                consumer: consumer.clone(),
                gate: gate.clone(),
            },
        )
        .await
        .expect("the projection builds");
        let listener = GrpcListener::bind("127.0.0.1:0".parse().expect("an address"))
            .await
            .expect("a free port");
        let http = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let http_addr = http.local_addr().expect("an address");
        let mut host = chassis::runtime::ServiceHost::new(listener, issuer.verifier())
            .with_http_listener(http)
            .with_grace(Duration::from_secs(5));
        host.add(built.into_unit(None));
        let grpc_addr = host.local_addr();
        let mut databases = vec![database];
        let mut catalog_database = None;
        if with_catalog {
            let database = TestDatabase::new(backend, "catalog").await;
            let catalog = Built::<catalog::CatalogParts>::build(
                &ServiceSettings {
                    name: catalog::NAME,
                    database_url: database.secret_url(),
                    ..settings.clone()
                },
                bus.clone(),
                (),
            )
            .await
            .expect("the catalog builds")
            .without_relay();
            catalog_database = Some(catalog.database().clone());
            host.add(catalog.into_unit(None));
            databases.push(database);
        }
        let shutdown = CancellationToken::new();
        let served = tokio::spawn(host.run_until_stopped(shutdown.clone()));
        Suite {
            issuer,
            bus,
            namespace: test_bus.namespace.clone(),
            consumer,
            gate,
            http_addr,
            grpc_addr,
            catalog_database,
            shutdown,
            served,
            _databases: databases,
            _test_bus: test_bus,
        }
    }

    pub(crate) async fn publish(&self, event: CloudEvent) {
        self.bus
            .publish(OutgoingMessage {
                subject: format!("{}.catalog.product.created", self.namespace),
                id: event.id.clone(),
                headers: BTreeMap::new(),
                payload: serde_json::to_vec(&event).expect("JSON").into(),
            })
            .await
            .expect("the event is published");
    }

    /// Polls the ops API until the consumer's entry satisfies `condition`; returns that entry.
    pub(crate) async fn until(
        &self,
        what: &str,
        condition: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let admin = self.issuer.token("admin-1", &[roles::ADMIN]);
        eventually(PATIENCE, what, || async {
            let (code, body) = self.get("/ops/v1/status", Some(&admin)).await;
            assert_eq!(code, 200, "{body}");
            let status: serde_json::Value = serde_json::from_str(&body).expect("JSON");
            let consumer = status["services"][0]["consumers"][0].clone();
            assert_eq!(consumer["name"], self.consumer.as_str(), "{status}");
            condition(&consumer).then_some(consumer)
        })
        .await
    }

    /// The catalog's outbox figures in the ops API.
    async fn outbox(&self, admin: &str) -> serde_json::Value {
        let (code, body) = self.get("/ops/v1/status", Some(admin)).await;
        assert_eq!(code, 200, "{body}");
        let status: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        status["services"]
            .as_array()
            .and_then(|services| services.iter().find(|service| service["name"] == "catalog"))
            .map(|catalog| catalog["outbox"].clone())
            .unwrap_or_else(|| panic!("no catalog in {status}"))
    }

    /// The value of this consumer's series of `gauge` at a scrape of `/metrics`.
    async fn gauge(&self, gauge: &str) -> f64 {
        let series = format!(r#"{gauge}{{consumer="{}"}} "#, self.consumer);
        self.series(&series).await
    }

    async fn counter(&self, counter: &str, outcome: &str) -> f64 {
        let series = format!(
            r#"{counter}{{consumer="{}",outcome="{outcome}"}} "#,
            self.consumer
        );
        self.series(&series).await
    }

    async fn series(&self, series: &str) -> f64 {
        let (code, metrics) = self.get("/metrics", None).await;
        assert_eq!(code, 200);
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(series))
            .unwrap_or_else(|| panic!("no {series} in:\n{metrics}"))
            .parse()
            .expect("a number")
    }

    /// GET `path` on the HTTP origin, with a bearer token if given.
    async fn get(&self, path: &str, token: Option<&str>) -> (u16, String) {
        use http_body_util::BodyExt as _;
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Empty<bytes::Bytes>>();
        let mut request = http::Request::get(format!("http://{}{path}", self.http_addr));
        if let Some(token) = token {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(http_body_util::Empty::new())
            .expect("a request");
        let response = client.request(request).await.expect("the origin answers");
        let code = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("the body arrives")
            .to_bytes();
        (code, String::from_utf8_lossy(&body).into_owned())
    }

    /// Runs `emporiumctl --token <token> <args> --origin <this origin>`: its output, or its
    /// error message.
    async fn ctl(&self, token: &str, args: &[&str]) -> Result<String, String> {
        let mut argv = vec![
            "emporiumctl".to_owned(),
            "--token".to_owned(),
            token.to_owned(),
        ];
        argv.extend(args.iter().map(|arg| (*arg).to_owned()));
        argv.extend(["--origin".to_owned(), format!("http://{}", self.http_addr)]);
        let cli = emporiumctl::Cli::try_parse_from(argv).expect("a valid command line");
        let mut out = Vec::new();
        match emporiumctl::run(cli, &mut out).await {
            Ok(()) => Ok(String::from_utf8_lossy(&out).into_owned()),
            Err(error) => Err(error.to_string()),
        }
    }

    pub(crate) async fn stop(self) {
        self.gate.release();
        self.shutdown.cancel();
        tokio::time::timeout(PATIENCE, self.served)
            .await
            .expect("the host stops within its grace")
            .expect("the host task does not panic")
            .expect("a clean stop");
    }
}

/// The cells of `consumer`'s row in the consumers table of `emporiumctl ops status`.
fn consumer_row(status: &str, consumer: &str) -> Vec<String> {
    status
        .lines()
        .find(|line| line.starts_with(consumer))
        .unwrap_or_else(|| panic!("no row for {consumer} in:\n{status}"))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// A service of the test's own: no RPCs, one consumer of the catalog's product events.
struct Projection {
    consumer: String,
    gate: Gate,
}

impl Service for Projection {
    type Options = Projection;

    const DEFINITION: ServiceDefinition = ServiceDefinition {
        name: "projection",
        default_port: 0,
        health_names: &[],
        // Its inbox is the chassis's own table; the catalog's schema beside it is unused.
        migrations: catalog::MIGRATIONS,
        relay: false,
    };

    async fn assemble(
        _context: &ServiceContext,
        options: Projection,
    ) -> anyhow::Result<Projection> {
        Ok(options)
    }

    fn add_grpc_routes(
        &self,
        _context: &ServiceContext,
        _routes: &mut tonic::service::RoutesBuilder,
    ) {
    }

    fn consumers(&self, context: &ServiceContext) -> Vec<ConsumerTask> {
        let namespace = &context.namespace;
        let options = ConsumerOptions {
            // One delivery at a time, so what waits behind a held one is lag, not unsettled.
            batch_size: 1,
            max_deliver: 1,
            backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            ..ConsumerOptions::new(
                &self.consumer,
                &chassis::outbox::stream_name(namespace, catalog::NAME),
                &format!("{namespace}.catalog.product.>"),
                namespace,
            )
        };
        vec![ConsumerTask::new(Consumer::new(
            context.database.clone(),
            context.bus.clone(),
            options,
            self.gate.clone(),
        ))]
    }
}

/// What the consumer's handler does: wait while held, refuse the events named, apply the rest.
#[derive(Clone)]
pub(crate) struct Gate {
    held: Arc<watch::Sender<bool>>,
    refused: Arc<Mutex<HashSet<String>>>,
}

impl Gate {
    fn new() -> Gate {
        Gate {
            held: Arc::new(watch::Sender::new(false)),
            refused: Arc::default(),
        }
    }

    fn hold(&self) {
        self.held.send_replace(true);
    }

    fn release(&self) {
        self.held.send_replace(false);
    }

    pub(crate) fn refuse(&self, event_id: &str) {
        self.refused
            .lock()
            .expect("not poisoned")
            .insert(event_id.to_owned());
    }

    pub(crate) fn accept_all(&self) {
        self.refused.lock().expect("not poisoned").clear();
    }
}

impl EventHandler for Gate {
    async fn handle(&self, _tx: &mut Transaction, event: &CloudEvent) -> anyhow::Result<()> {
        let mut held = self.held.subscribe();
        // Released, or the sender gone (the test is over): either way, go on.
        let _ = held.wait_for(|held| !held).await;
        anyhow::ensure!(
            !self
                .refused
                .lock()
                .expect("not poisoned")
                .contains(&event.id),
            "the handler refused on purpose"
        );
        Ok(())
    }
}
