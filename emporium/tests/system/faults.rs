//! Fault tests: the real `emporium serve catalog` process, and for the NATS half its own
//! `nats-server`, killed with SIGKILL while they work. Whatever dies, every committed change
//! reaches the bus exactly once. These tests never touch the shared NATS server on 4222.

use std::collections::HashSet;
use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chassis::bus::{Bus, BusSettings, ConsumerSpec, NatsStreamSettings};
use chassis::cloudevents::CloudEvent;
use chassis::on_backend;
use chassis::outbox;
use chassis::storage::Database;
use emporium_proto::catalog::v1 as proto;
use proto::catalog_service_client::CatalogServiceClient;
use test_support::{
    Backend, BearerToken, JwksServer, TestDatabase, TestIssuer, both_backends, eventually,
};
use tokio::task::JoinSet;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use uuid::Uuid;

/// A catalog client sending a catalog-manager token.
type Client = CatalogServiceClient<InterceptedService<Channel, BearerToken>>;

/// The name the catalog reports to the health service.
const CATALOG_HEALTH_NAME: &str = "emporium.catalog.v1.CatalogService";

both_backends!(killing_the_service_mid_stream_loses_and_duplicates_no_event);

async fn killing_the_service_mid_stream_loses_and_duplicates_no_event(backend: Backend) {
    let scratch = Scratch::new("faults-kill-service");
    let test_database = TestDatabase::new(backend, "catalog").await;
    let isolated_bus = IsolatedBus::start(backend, &scratch).await;
    let environment = ServiceEnvironment::new(&test_database, &isolated_bus).await;
    let mut catalog = CatalogProcess::start(&environment, &scratch.path("catalog-1.log")).await;
    let category = create_category(&mut catalog.client().await, "Tea").await;
    let n_products = 300;

    // Eight callers share the work; the service dies under them once 100 creates succeeded.
    let creates = ProductCreates::start(catalog.client().await, &category.id, n_products, 8);
    eventually(
        Duration::from_secs(60),
        "100 products to be created",
        || async { (creates.n_succeeded() >= 100).then_some(()) },
    )
    .await;
    catalog.kill();
    let n_succeeded_at_kill = creates.n_succeeded();
    let n_succeeded = creates.finish().await;
    assert!(
        n_succeeded_at_kill < n_products,
        "the kill came after every create had finished, so it interrupted nothing"
    );

    // Each success committed exactly one event; a call cut off by the kill may or may not have.
    wait_for_orphaned_sessions(test_database.url()).await;
    let database = Database::open(test_database.url())
        .await
        .expect("the database opens after the kill");
    let (outbox_ids, n_products_stored) = committed_events_and_products(&database).await;
    let n_events = outbox_ids.len();
    assert!(
        n_events > n_succeeded,
        "{n_events} events for a category and {n_succeeded} acknowledged products"
    );
    assert_eq!(
        n_events,
        n_products_stored + 1,
        "one event per committed product, plus the category's"
    );

    // The restarted service publishes what the killed one had not.
    let catalog = CatalogProcess::start(&environment, &scratch.path("catalog-2.log")).await;
    wait_for_outbox_to_drain(&database, Duration::from_secs(60)).await;
    let events = read_stream(&isolated_bus, n_events).await;

    assert_each_event_published_once(&outbox_ids, &events);
    database.close().await;
    let status = catalog.stop_gracefully(Duration::from_secs(20)).await;
    assert!(status.success(), "the catalog stopped with {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_catches_up_after_nats_restarts() {
    let scratch = Scratch::new("faults-restart-nats");
    let test_database = TestDatabase::new(Backend::PostgresNats, "catalog").await;
    let mut isolated_bus = IsolatedBus::start(Backend::PostgresNats, &scratch).await;
    let environment = ServiceEnvironment::new(&test_database, &isolated_bus).await;
    let catalog = CatalogProcess::start(&environment, &scratch.path("catalog.log")).await;
    let mut client = catalog.client().await;
    let database = Database::open(test_database.url())
        .await
        .expect("the test database opens");
    let category = create_category(&mut client, "Tea").await;
    let n_created_before = 20;
    for index in 0..n_created_before {
        create_product(&mut client, &category.id, &format!("BEFORE-{index:02}")).await;
    }
    wait_for_outbox_to_drain(&database, Duration::from_secs(30)).await;

    isolated_bus.kill_nats_server();
    let n_created_while_down = 20;
    for index in 0..n_created_while_down {
        create_product(&mut client, &category.id, &format!("DURING-{index:02}")).await;
    }
    catalog
        .wait_for_health(ServingStatus::NotServing, Duration::from_secs(15))
        .await;
    // The HTTP probes read what gRPC health reports, set before it: they agree at once.
    assert_eq!(
        catalog.probe("/readyz").await,
        (
            503,
            serde_json::json!({
                "status": "NOT_SERVING",
                "services": {CATALOG_HEALTH_NAME: "NOT_SERVING"},
            })
        ),
        "/readyz while NATS is down"
    );
    assert_eq!(
        catalog.probe("/healthz").await,
        (200, serde_json::json!({"status": "SERVING"})),
        "a process that cannot reach the bus is still live"
    );
    assert_eq!(
        outbox::unpublished_count(&database).await.unwrap(),
        i64::try_from(n_created_while_down).unwrap(),
        "the outbox keeps what NATS could not take"
    );
    // Hold the outage until a publish has failed (the ack times out after 5 s): otherwise the
    // client's reconnect buffer alone can carry the events through, and the relay's retry path is
    // never exercised. The log line is the only place that failure is observable.
    eventually(
        Duration::from_secs(30),
        "the relay to fail a publish",
        || async {
            catalog
                .log_contains("Outbox relay failed; retrying")
                .then_some(())
        },
    )
    .await;

    isolated_bus.restart_nats_server().await;
    catalog
        .wait_for_health(ServingStatus::Serving, Duration::from_secs(30))
        .await;
    assert_eq!(
        catalog.probe("/readyz").await,
        (
            200,
            serde_json::json!({
                "status": "SERVING",
                "services": {CATALOG_HEALTH_NAME: "SERVING"},
            })
        ),
        "/readyz once NATS is back"
    );
    crate::assert_promtool_accepts(&catalog.metrics().await);
    wait_for_outbox_to_drain(&database, Duration::from_secs(60)).await;
    let (outbox_ids, _) = committed_events_and_products(&database).await;
    let n_events = 1 + n_created_before + n_created_while_down; // and the category's
    assert_eq!(outbox_ids.len(), n_events);
    let events = read_stream(&isolated_bus, n_events).await;

    assert_each_event_published_once(&outbox_ids, &events);
    database.close().await;
    let status = catalog.stop_gracefully(Duration::from_secs(20)).await;
    assert!(status.success(), "the catalog stopped with {status}");
}

// === fixtures ===

/// A directory for one test's bus files and process logs. Kept when the test fails, so the logs
/// can be read; removed otherwise.
struct Scratch {
    directory: PathBuf,
}

/// A bus only this test uses: the embedded bus in the scratch directory, or a `nats-server` of
/// its own on a spare port, with its store in the scratch directory.
struct IsolatedBus {
    settings: BusSettings,
    /// Subjects are `<namespace>.catalog.…`, the stream `<NAMESPACE>_CATALOG`.
    namespace: String,
    /// `EMPORIUM_DATA_DIR` for the service (the embedded bus lives in `bus.db` inside it).
    data_dir: PathBuf,
    nats_server: Option<NatsServer>,
}

/// A `nats-server` with JetStream, restartable on the same port and store.
struct NatsServer {
    port: u16,
    store_dir: PathBuf,
    log_dir: PathBuf,
    process: Option<ChildProcess>,
    n_starts: usize,
}

/// What a catalog process is started with; the same for every restart.
struct ServiceEnvironment {
    variables: Vec<(&'static str, String)>,
    /// A catalog-manager token of the issuer the catalog trusts.
    token: String,
    /// Serves the issuer's keys to the catalog process for as long as the test runs.
    _jwks_server: JwksServer,
}

/// A running `emporium serve catalog`.
struct CatalogProcess {
    process: ChildProcess,
    addr: SocketAddr,
    /// Where `/healthz` and `/readyz` are served (`EMPORIUM_METRICS_ADDR`).
    probes_addr: SocketAddr,
    token: String,
}

/// A child process that is killed when this is dropped, so that a failing test leaves nothing
/// running behind it.
struct ChildProcess {
    child: Child,
    /// Where its stdout and stderr go.
    log: PathBuf,
}

/// CreateProduct calls running on several tasks at once.
struct ProductCreates {
    workers: JoinSet<()>,
    n_succeeded: Arc<AtomicUsize>,
}

// === impl Scratch ===

impl Scratch {
    fn new(prefix: &str) -> Scratch {
        Scratch {
            directory: test_support::temp_dir(prefix),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.directory.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.directory);
        }
    }
}

// === impl IsolatedBus ===

impl IsolatedBus {
    async fn start(backend: Backend, scratch: &Scratch) -> IsolatedBus {
        let namespace = format!("t{}", &Uuid::new_v4().simple().to_string()[..12]);
        let data_dir = scratch.path("data");
        match backend {
            Backend::SqliteEmbedded => IsolatedBus {
                settings: BusSettings::Embedded {
                    path: data_dir.join("bus.db"),
                },
                namespace,
                data_dir,
                nats_server: None,
            },
            Backend::PostgresNats => {
                let nats_server = NatsServer::start(scratch).await;
                IsolatedBus {
                    settings: BusSettings::Nats {
                        url: nats_server.url(),
                        streams: NatsStreamSettings::default(),
                    },
                    namespace,
                    data_dir,
                    nats_server: Some(nats_server),
                }
            }
        }
    }

    fn url(&self) -> String {
        match &self.settings {
            BusSettings::Embedded { .. } => "embedded".to_owned(),
            BusSettings::Nats { url, .. } => url.clone(),
        }
    }

    fn kill_nats_server(&mut self) {
        self.nats_server_mut().kill();
    }

    async fn restart_nats_server(&mut self) {
        self.nats_server_mut().restart().await;
    }

    fn nats_server_mut(&mut self) -> &mut NatsServer {
        self.nats_server
            .as_mut()
            .expect("only the NATS bus has a server to kill")
    }
}

// === impl NatsServer ===

impl NatsServer {
    async fn start(scratch: &Scratch) -> NatsServer {
        let mut nats_server = NatsServer {
            port: spare_port(),
            store_dir: scratch.path("nats"),
            log_dir: scratch.directory.clone(),
            process: None,
            n_starts: 0,
        };
        nats_server.restart().await;
        nats_server
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: no chance to flush or say goodbye to clients.
    fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// Starts the server (again) on the same port and store, and waits until it accepts.
    async fn restart(&mut self) {
        assert!(self.process.is_none(), "nats-server is already running");
        self.n_starts += 1;
        let log = self
            .log_dir
            .join(format!("nats-server-{}.log", self.n_starts));
        let mut command = Command::new("/usr/sbin/nats-server");
        command
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store_dir);
        let mut process = ChildProcess::spawn(&mut command, log);
        wait_for_port(self.port, &mut process, Duration::from_secs(20)).await;
        self.process = Some(process);
    }
}

// === impl ServiceEnvironment ===

impl ServiceEnvironment {
    async fn new(test_database: &TestDatabase, isolated_bus: &IsolatedBus) -> ServiceEnvironment {
        let issuer = TestIssuer::new();
        let jwks_server = issuer.serve_jwks().await;
        ServiceEnvironment {
            token: issuer.token(
                "catalog-manager-1",
                &[chassis::auth::roles::CATALOG_MANAGER],
            ),
            variables: vec![
                ("EMPORIUM_AUTH_ISSUER", TestIssuer::ISSUER.to_owned()),
                ("EMPORIUM_AUTH_AUDIENCE", TestIssuer::AUDIENCE.to_owned()),
                ("EMPORIUM_AUTH_JWKS_URL", jwks_server.url.clone()),
                (
                    "EMPORIUM_CATALOG_DATABASE_URL",
                    test_database.url().to_owned(),
                ),
                ("EMPORIUM_BUS_URL", isolated_bus.url()),
                (
                    "EMPORIUM_DATA_DIR",
                    isolated_bus.data_dir.display().to_string(),
                ),
                ("EMPORIUM_NAMESPACE", isolated_bus.namespace.clone()),
                ("EMPORIUM_LOG_FORMAT", "json".to_owned()),
                ("EMPORIUM_LOG", "info".to_owned()),
                ("EMPORIUM_SHUTDOWN_GRACE_SECONDS", "5".to_owned()),
            ],
            _jwks_server: jwks_server,
        }
    }
}

// === impl CatalogProcess ===

impl CatalogProcess {
    /// Starts `emporium serve catalog` on a spare port (and its HTTP probes on another) and waits
    /// until it reports SERVING.
    async fn start(environment: &ServiceEnvironment, log: &Path) -> CatalogProcess {
        let addr = SocketAddr::from(([127, 0, 0, 1], spare_port()));
        let probes_addr = SocketAddr::from(([127, 0, 0, 1], spare_port()));
        let mut command = Command::new(env!("CARGO_BIN_EXE_emporium"));
        command.args(["serve", "catalog"]);
        // Nothing from the environment the tests run in may change what the service talks to.
        for (name, _) in std::env::vars() {
            if name.starts_with("EMPORIUM_") || name == "RUST_LOG" {
                command.env_remove(name);
            }
        }
        command
            .envs(
                environment
                    .variables
                    .iter()
                    .map(|(name, value)| (name, value)),
            )
            .env("EMPORIUM_CATALOG_GRPC_ADDR", addr.to_string())
            .env("EMPORIUM_METRICS_ADDR", probes_addr.to_string());
        let mut process = ChildProcess::spawn(&mut command, log.to_owned());
        wait_for_port(addr.port(), &mut process, Duration::from_secs(30)).await;
        let catalog = CatalogProcess {
            process,
            addr,
            probes_addr,
            token: environment.token.clone(),
        };
        catalog
            .wait_for_health(ServingStatus::Serving, Duration::from_secs(30))
            .await;
        catalog
    }

    async fn channel(&self) -> Channel {
        Endpoint::from_shared(format!("http://{}", self.addr))
            .expect("a valid URI")
            .timeout(Duration::from_secs(10))
            .connect()
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "the catalog accepts connections ({error}); see {}",
                    self.process.log.display()
                )
            })
    }

    async fn client(&self) -> Client {
        CatalogServiceClient::with_interceptor(self.channel().await, BearerToken::new(&self.token))
    }

    /// Polls the health service until it reports `expected` for the catalog.
    async fn wait_for_health(&self, expected: ServingStatus, timeout: Duration) {
        let health = HealthClient::new(self.channel().await);
        let what = format!(
            "the catalog to report {expected:?} (log: {})",
            self.process.log.display()
        );
        eventually(timeout, &what, || {
            let mut health = health.clone();
            async move {
                let response = health
                    .check(HealthCheckRequest {
                        service: CATALOG_HEALTH_NAME.to_owned(),
                    })
                    .await
                    .ok()?;
                (response.into_inner().status() == expected).then_some(())
            }
        })
        .await;
    }

    /// `GET /metrics` on the probes' address.
    async fn metrics(&self) -> String {
        let (code, body) = self.get("/metrics").await;
        assert_eq!(code, 200, "/metrics");
        String::from_utf8(body).expect("the metrics are text")
    }

    /// `GET path` on the probes' address: the status code and the JSON body.
    async fn probe(&self, path: &str) -> (u16, serde_json::Value) {
        let (code, body) = self.get(path).await;
        let body = serde_json::from_slice(&body).unwrap_or_else(|error| {
            panic!(
                "{path} answers JSON ({error}): {}",
                String::from_utf8_lossy(&body)
            )
        });
        (code, body)
    }

    /// `GET path` on the probes' address: the status code and the body.
    async fn get(&self, path: &str) -> (u16, Vec<u8>) {
        use http_body_util::BodyExt as _;
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Empty<bytes::Bytes>>();
        let uri = format!("http://{}{path}", self.probes_addr)
            .parse()
            .expect("a valid URI");
        let response = client.get(uri).await.unwrap_or_else(|error| {
            panic!(
                "the probes answer on {} ({error}); see {}",
                self.probes_addr,
                self.process.log.display()
            )
        });
        let code = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("the body arrives")
            .to_bytes();
        (code, body.to_vec())
    }

    fn kill(&mut self) {
        self.process.kill();
    }

    fn log_contains(&self, text: &str) -> bool {
        std::fs::read_to_string(&self.process.log).is_ok_and(|log| log.contains(text))
    }

    /// Sends SIGTERM and waits for the process to exit on its own.
    async fn stop_gracefully(mut self, timeout: Duration) -> ExitStatus {
        assert!(
            !self.log_contains("Stop signal received"),
            "something outside this test stopped the catalog; see {}",
            self.process.log.display()
        );
        let pid = self.process.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill(1) runs");
        assert!(sent.success(), "kill -TERM {pid} failed");
        self.process.wait_for_exit(timeout).await
    }
}

// === impl ChildProcess ===

impl ChildProcess {
    fn spawn(command: &mut Command, log: PathBuf) -> ChildProcess {
        let stdout = File::create(&log).expect("the log file can be created");
        let stderr = stdout
            .try_clone()
            .expect("the log file handle can be cloned");
        let child = command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|error| panic!("{command:?} starts: {error}"));
        ChildProcess { child, log }
    }

    /// SIGKILL, then reap.
    fn kill(&mut self) {
        // Fails only if the process has already exited and been reaped; either way it is gone.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child
            .try_wait()
            .expect("the child's status can be read")
    }

    async fn wait_for_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the process did not exit within {timeout:?}; see {}",
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}

// === impl ProductCreates ===

impl ProductCreates {
    /// Creates products `0..n_products` on `n_workers` tasks; a worker stops at its first failure.
    fn start(
        client: Client,
        category_id: &str,
        n_products: usize,
        n_workers: usize,
    ) -> ProductCreates {
        let next_index = Arc::new(AtomicUsize::new(0));
        let n_succeeded = Arc::new(AtomicUsize::new(0));
        let mut workers = JoinSet::new();
        for _ in 0..n_workers {
            let mut client = client.clone();
            let category_id = category_id.to_owned();
            let next_index = Arc::clone(&next_index);
            let n_succeeded = Arc::clone(&n_succeeded);
            workers.spawn(async move {
                loop {
                    let index = next_index.fetch_add(1, Ordering::SeqCst);
                    if index >= n_products {
                        return;
                    }
                    let request = product_request(&category_id, &format!("SKU-{index:04}"));
                    if client.create_product(request).await.is_err() {
                        return;
                    }
                    n_succeeded.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        ProductCreates {
            workers,
            n_succeeded,
        }
    }

    fn n_succeeded(&self) -> usize {
        self.n_succeeded.load(Ordering::SeqCst)
    }

    /// Waits for every worker to stop; returns how many creates succeeded.
    async fn finish(mut self) -> usize {
        tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(joined) = self.workers.join_next().await {
                joined.expect("a create worker does not panic");
            }
        })
        .await
        .expect("every create call ends once the service is dead");
        self.n_succeeded()
    }
}

// === helpers ===

/// A port nothing listens on right now: bind port 0, read the port, let it go.
fn spare_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a local port can be bound");
    listener
        .local_addr()
        .expect("a bound listener has an address")
        .port()
}

/// Waits until `port` accepts connections, failing early if `process` exits.
async fn wait_for_port(port: u16, process: &mut ChildProcess, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        if let Some(status) = process.exit_status() {
            panic!(
                "the process exited with {status} before listening on {port}; see {}",
                process.log.display()
            );
        }
        assert!(
            Instant::now() < deadline,
            "nothing listened on port {port} within {timeout:?}; see {}",
            process.log.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_for_outbox_to_drain(database: &Database, timeout: Duration) {
    eventually(timeout, "the outbox to drain", || async {
        let n_unpublished = outbox::unpublished_count(database).await.ok()?;
        (n_unpublished == 0).then_some(())
    })
    .await;
}

async fn create_category(client: &mut Client, name: &str) -> proto::Category {
    client
        .create_category(proto::CreateCategoryRequest {
            name: name.to_owned(),
            description: format!("All about {name}"),
        })
        .await
        .expect("the category is created")
        .into_inner()
}

async fn create_product(client: &mut Client, category_id: &str, sku: &str) -> proto::Product {
    client
        .create_product(product_request(category_id, sku))
        .await
        .unwrap_or_else(|status| panic!("product {sku} is created: {status}"))
        .into_inner()
}

fn product_request(category_id: &str, sku: &str) -> proto::CreateProductRequest {
    proto::CreateProductRequest {
        sku: sku.to_owned(),
        name: format!("Tea {sku}"),
        description: "Freshly stocked".to_owned(),
        category_id: category_id.to_owned(),
        price: Some(proto::Money {
            amount_minor: 1299,
            currency: "EUR".to_owned(),
        }),
        stock_on_hand: 10,
    }
}

/// After a SIGKILL, PostgreSQL may still be committing what the dead process had sent; each of
/// its sessions ends once it finds the socket closed. Waits for that, so what is read next is
/// final. (SQLite has no server: a dead process's transaction is committed or it is not.)
async fn wait_for_orphaned_sessions(database_url: &str) {
    use sqlx::Connection;
    if !database_url.starts_with("postgres") {
        return;
    }
    let mut connection = sqlx::PgConnection::connect(database_url)
        .await
        .expect("the test database accepts connections");
    let timeout = Duration::from_secs(20);
    let deadline = Instant::now() + timeout;
    loop {
        let n_sessions: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND backend_type = 'client backend' \
             AND pid <> pg_backend_pid()",
        )
        .fetch_one(&mut connection)
        .await
        .expect("pg_stat_activity can be read");
        if n_sessions == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the killed service's sessions did not end within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = connection.close().await;
}

/// Every event id in the outbox, published or not, in the bus's text form, and the number of
/// products: one snapshot.
async fn committed_events_and_products(database: &Database) -> (Vec<String>, usize) {
    let mut tx = database.begin_read().await.unwrap();
    let ids: Vec<Uuid> = on_backend!(tx, conn => {
        sqlx::query_scalar("SELECT id FROM outbox_events ORDER BY sequence")
            .fetch_all(conn)
            .await
    })
    .expect("the outbox can be read");
    let n_products: i64 = on_backend!(tx, conn => {
        sqlx::query_scalar("SELECT count(*) FROM products")
            .fetch_one(conn)
            .await
    })
    .expect("the products can be counted");
    tx.commit().await.unwrap();
    let ids = ids.iter().map(Uuid::to_string).collect();
    (
        ids,
        usize::try_from(n_products).expect("a count is never negative"),
    )
}

/// The stream holds every event of the outbox, each exactly once.
fn assert_each_event_published_once(outbox_ids: &[String], events: &[CloudEvent]) {
    let distinct_ids: HashSet<&str> = events.iter().map(|event| event.id.as_str()).collect();
    assert_eq!(
        distinct_ids.len(),
        events.len(),
        "an event was published twice"
    );
    let missing: Vec<&String> = outbox_ids
        .iter()
        .filter(|id| !distinct_ids.contains(id.as_str()))
        .collect();
    assert!(missing.is_empty(), "events never published: {missing:?}");
    assert_eq!(
        events.len(),
        outbox_ids.len(),
        "as many messages as events, and nothing else"
    );
}

/// Reads the catalog's stream from the start with a fresh durable consumer until `expected`
/// messages arrived (or 30 s passed), then checks that nothing more follows.
async fn read_stream(isolated_bus: &IsolatedBus, expected: usize) -> Vec<CloudEvent> {
    let bus = Bus::connect(&isolated_bus.settings)
        .await
        .expect("the test connects to the bus");
    let mut consumer = bus
        .consumer(&ConsumerSpec {
            stream: outbox::stream_name(&isolated_bus.namespace, "catalog"),
            durable_name: format!("fault-reader-{}", Uuid::new_v4().simple()),
            filter_subject: format!("{}.catalog.>", isolated_bus.namespace),
            ack_wait: Duration::from_secs(60),
        })
        .await
        .expect("a consumer is created");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut events = Vec::new();
    let mut done = false;
    while !done {
        // Once `expected` arrived, one more fetch shows any duplicate or stray message.
        done = events.len() >= expected || Instant::now() >= deadline;
        let wait = if done {
            Duration::from_millis(1500)
        } else {
            Duration::from_millis(500)
        };
        for delivery in consumer.fetch(256, wait).await.expect("fetch works") {
            let event: CloudEvent =
                serde_json::from_slice(&delivery.payload).expect("a CloudEvent");
            events.push(event);
            delivery.ack().await.expect("ack works");
        }
    }
    events
}
