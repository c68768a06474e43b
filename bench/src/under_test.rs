//! The real catalog, started in-process on port 0 the way its API tests start it: a throwaway
//! database and bus namespace, a token issuer it trusts, `Application::build` and
//! `run_until_stopped` on the servers' runtime.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chassis::auth::TokenVerifier;
use chassis::bus::Bus;
use chassis::settings::ServiceSettings;
use chassis::storage::Database;
use emporium_proto::catalog::v1 as proto;
use test_support::{Backend, TestBus, TestDatabase};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::load;
use crate::workloads::new_product;

/// A running catalog and what it runs on; [`CatalogUnderTest::stop`] stops it and removes its
/// database and streams.
pub(crate) struct CatalogUnderTest {
    pub(crate) addr: SocketAddr,
    /// The service's own pool.
    pub(crate) database: Database,
    /// The bus the service publishes to, connected on the servers' runtime.
    pub(crate) bus: Bus,
    pub(crate) namespace: String,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
    /// Dropped after the service stopped: removes the database file or drops the database.
    test_database: TestDatabase,
    /// Dropped after the service stopped: removes the bus file or the NATS streams.
    test_bus: TestBus,
}

/// Starts a catalog on `backend` that trusts `verifier`, on `runtime`; without its relay when
/// `relay` is false (the relay benchmark starts one itself).
pub(crate) async fn start(
    runtime: &tokio::runtime::Handle,
    backend: Backend,
    verifier: Arc<TokenVerifier>,
    relay: bool,
) -> anyhow::Result<CatalogUnderTest> {
    let test_database = TestDatabase::new(backend, "bench_catalog").await;
    let test_bus = TestBus::new(backend).await;
    let settings = ServiceSettings {
        name: catalog::NAME,
        grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        database_url: test_database.secret_url(),
        namespace: test_bus.namespace.clone(),
        database_max_connections: None,
    };
    let bus_settings = test_bus.settings.clone();
    let shutdown = CancellationToken::new();
    let stopped = shutdown.clone();
    // Built on the servers' runtime: its pool, listener and bus connection live there.
    let (addr, database, bus, task) = runtime
        .spawn(async move {
            let bus = Bus::connect(&bus_settings)
                .await
                .context("The bus is required")?;
            let application = catalog::Application::build(
                &settings,
                bus.clone(),
                Duration::from_secs(5),
                verifier,
            )
            .await
            .context("The catalog did not start")?;
            let application = if relay {
                application
            } else {
                application.without_relay()
            };
            let addr = application.local_addr();
            let database = application.database().clone();
            let task = tokio::spawn(application.run_until_stopped(stopped));
            anyhow::Ok((addr, database, bus, task))
        })
        .await
        .context("The catalog's start panicked")??;
    Ok(CatalogUnderTest {
        addr,
        database,
        bus,
        namespace: test_bus.namespace.clone(),
        shutdown,
        task,
        test_database,
        test_bus,
    })
}

// === impl CatalogUnderTest ===

impl CatalogUnderTest {
    /// Stops the service as Ctrl-C would, then removes its database and streams.
    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task
            .await
            .context("The catalog task panicked")?
            .context("The catalog did not stop cleanly")?;
        drop(self.test_database);
        drop(self.test_bus);
        Ok(())
    }

    /// Creates a category to put products in.
    pub(crate) async fn create_category(&self, token: &str) -> anyhow::Result<String> {
        let mut client = load::connect(self.addr, token).await?;
        let category = client
            .create_category(proto::CreateCategoryRequest {
                name: format!("Bench {}", uuid::Uuid::new_v4().simple()),
                description: "Products the benchmark creates".to_owned(),
            })
            .await
            .context("Failed to create a category")?
            .into_inner();
        Ok(category.id)
    }

    /// Creates `n_products` products in `category_id` through the API, 16 clients at a time,
    /// and returns their ids.
    pub(crate) async fn seed(
        &self,
        token: &str,
        category_id: &str,
        n_products: usize,
    ) -> anyhow::Result<Vec<String>> {
        const N_CLIENTS: usize = 16;
        let batch = uuid::Uuid::new_v4().simple().to_string();
        let mut tasks = Vec::with_capacity(N_CLIENTS);
        for client_index in 0..N_CLIENTS {
            let mut client = load::connect(self.addr, token).await?;
            let category_id = category_id.to_owned();
            let prefix = format!("SEED-{}-{client_index}", &batch[..8]);
            let share = n_products / N_CLIENTS + usize::from(client_index < n_products % N_CLIENTS);
            tasks.push(tokio::spawn(async move {
                let mut ids = Vec::with_capacity(share);
                for n in 0..share {
                    let product = client
                        .create_product(new_product(&category_id, format!("{prefix}-{n}")))
                        .await
                        .context("Failed to seed a product")?
                        .into_inner();
                    ids.push(product.id);
                }
                anyhow::Ok(ids)
            }));
        }
        let mut ids = Vec::with_capacity(n_products);
        for task in tasks {
            ids.extend(task.await.context("A seeding client panicked")??);
        }
        Ok(ids)
    }

    /// Waits until the relay published every recorded event, so a backlog from seeding does not
    /// load the next measurement.
    pub(crate) async fn wait_for_empty_outbox(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            // A look at the first unpublished event, not a count of them all: counting 20,000
            // rows every 20 ms took a third of a core from the relay it times.
            if chassis::outbox::oldest_unpublished(&self.database)
                .await?
                .is_none()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let n_unpublished = chassis::outbox::unpublished_count(&self.database).await?;
                anyhow::bail!(
                    "the relay left {n_unpublished} events unpublished after {timeout:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
