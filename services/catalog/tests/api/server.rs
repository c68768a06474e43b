//! The standard gRPC health and reflection services, readiness, and graceful shutdown.

use std::time::Duration;

use emporium_proto::catalog::v1 as proto;
use futures::FutureExt as _;
use proto::catalog_service_client::CatalogServiceClient;
use test_support::{Backend, BearerToken, backend_independent, both_backends, eventually};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::{CatalogApp as _, spawn_app, valid_product};

both_backends!(
    health_reports_the_catalog_serving,
    health_reports_not_serving_while_the_database_does_not_answer,
    the_pool_size_comes_from_the_settings,
);

// What these check happens before storage or the bus is reached: once is enough.
backend_independent!(
    reflection_lists_exactly_the_services_the_port_serves,
    stopping_lets_an_in_flight_call_finish_and_refuses_new_ones,
    during_the_shutdown_delay_health_is_not_serving_and_new_calls_still_succeed,
);

async fn health_reports_the_catalog_serving(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut health = HealthClient::new(app.new_channel().await);

    let status = health
        .check(HealthCheckRequest {
            service: "emporium.catalog.v1.CatalogService".to_owned(),
        })
        .await
        .expect("the health service answers")
        .into_inner()
        .status;

    assert_eq!(status, ServingStatus::Serving as i32);
}

async fn reflection_lists_exactly_the_services_the_port_serves(backend: Backend) {
    let app = spawn_app(backend).await;

    let names = test_support::reflected_service_names(app.addr).await;

    assert_eq!(
        names,
        [
            "emporium.catalog.v1.CatalogService",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ],
        "identity's service is served on another port"
    );
}

async fn stopping_lets_an_in_flight_call_finish_and_refuses_new_ones(backend: Backend) {
    // Arrange: an update that blocks on a lock the test holds, so it is in flight for certain.
    let app = spawn_app(backend).await;
    let category = app.create_category("Tea").await;
    let product = app
        .create_product(&category.id, "TEA-1", "Sencha", 1299)
        .await;
    let database = app.database().await;
    let lock = hold_write_lock(&database, &product.id).await;
    let mut writer = app.client();
    let mut update = std::pin::pin!(writer.update_product(proto::UpdateProductRequest {
        id: product.id.clone(),
        expected_version: product.version,
        name: Some("Matcha".to_owned()),
        ..Default::default()
    }));
    // A read sent after the update on the same connection: once it is answered, the server has
    // read the update's request too (HTTP/2 frames arrive in order), and the update is waiting.
    let mut reader = app.client();
    let read = tokio::select! {
        biased;
        update = &mut update => panic!("the update finished while the test held the lock: {update:?}"),
        read = reader.get_product(proto::GetProductRequest { id: product.id.clone() }) => read,
    };
    read.expect("reads do not wait for the lock");

    // Act: stop while the update waits; then let it go.
    app.begin_stop();
    let addr = app.addr;
    eventually(
        Duration::from_secs(10),
        "the port to stop accepting",
        || async move {
            tokio::net::TcpStream::connect(addr)
                .await
                .is_err()
                .then_some(())
        },
    )
    .await;
    assert!(
        (&mut update).now_or_never().is_none(),
        "the update is still in flight when the port closes"
    );
    lock.rollback().await.expect("the lock is released");
    let updated = update.await;
    let (test_database, _test_bus) = app.stop().await;

    // Assert: the in-flight call was answered and committed.
    let updated = updated.expect("the in-flight update succeeds").into_inner();
    assert_eq!(updated.name, "Matcha");
    database.close().await;
    let database = chassis::storage::Database::open(test_database.url())
        .await
        .unwrap();
    let mut tx = database.begin_read().await.unwrap();
    let stored_name: String = chassis::on_backend!(tx, conn => {
        sqlx::query_scalar("SELECT name FROM products").fetch_one(conn).await
    })
    .unwrap();
    assert_eq!(stored_name, "Matcha");
}

async fn during_the_shutdown_delay_health_is_not_serving_and_new_calls_still_succeed(
    backend: Backend,
) {
    // Arrange: a delay far longer than the test, so the port is open throughout.
    let app = spawn_app(backend)
        .with_shutdown_delay(Duration::from_secs(600))
        .await;
    let category = app.create_category("Tea").await;

    // Act
    app.begin_stop();

    // Assert: health says NOT_SERVING at once, yet a new connection's call still succeeds.
    let health = HealthClient::new(app.new_channel().await);
    eventually(Duration::from_secs(10), "health to report NOT_SERVING", || {
        let mut health = health.clone();
        async move { (catalog_status(&mut health).await == ServingStatus::NotServing).then_some(()) }
    })
    .await;
    let mut client = CatalogServiceClient::with_interceptor(
        app.new_channel().await,
        BearerToken::new(&app.token),
    );
    client
        .create_product(valid_product(&category.id, "TEA-1", "Sencha", 1299))
        .await
        .expect("a call during the shutdown delay succeeds");
}

async fn health_reports_not_serving_while_the_database_does_not_answer(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let mut health = HealthClient::new(app.new_channel().await);
    assert_eq!(catalog_status(&mut health).await, ServingStatus::Serving);

    // Act: the service's pool can no longer reach its database.
    app.service_database.close().await;

    // Assert
    eventually(Duration::from_secs(10), "health to report NOT_SERVING", || {
        let mut health = health.clone();
        async move { (catalog_status(&mut health).await == ServingStatus::NotServing).then_some(()) }
    })
    .await;
}

async fn the_pool_size_comes_from_the_settings(backend: Backend) {
    // Arrange
    let test_database = test_support::TestDatabase::new(backend, "catalog").await;
    let test_bus = test_support::TestBus::new(backend).await;
    let bus = test_bus.connect().await;
    let variables = |pool_size: Option<&str>| {
        let mut variables = std::collections::HashMap::from([
            (
                "EMPORIUM_CATALOG_DATABASE_URL".to_owned(),
                test_database.url().to_owned(),
            ),
            (
                "EMPORIUM_CATALOG_GRPC_ADDR".to_owned(),
                "127.0.0.1:0".to_owned(),
            ),
            ("EMPORIUM_NAMESPACE".to_owned(), test_bus.namespace.clone()),
        ]);
        if let Some(pool_size) = pool_size {
            variables.insert(
                "EMPORIUM_DATABASE_MAX_CONNECTIONS".to_owned(),
                pool_size.to_owned(),
            );
        }
        chassis::settings::Settings::from_map(variables)
            .expect("the settings parse")
            .service(catalog::NAME, catalog::DEFAULT_PORT)
            .expect("the catalog's settings parse")
    };
    let build = |settings: chassis::settings::ServiceSettings| {
        let bus = bus.clone();
        async move {
            catalog::Application::build(
                &settings,
                bus,
                Duration::from_secs(5),
                test_support::TestIssuer::new().verifier(),
            )
            .await
            .expect("the catalog starts")
        }
    };

    // Act
    let configured = build(variables(Some("3"))).await;
    let default = build(variables(None)).await;

    // Assert
    assert_eq!(configured.database().max_connections(), 3);
    let expected_default = match backend {
        Backend::PostgresNats => {
            chassis::storage::default_max_connections(chassis::storage::Backend::Postgres)
        }
        Backend::SqliteEmbedded => {
            chassis::storage::default_max_connections(chassis::storage::Backend::Sqlite)
        }
    };
    assert_eq!(default.database().max_connections(), expected_default);
    configured.database().close().await;
    default.database().close().await;
}

/// Holds the product's row lock (PostgreSQL) or the database's write lock (SQLite) until the
/// returned transaction ends, so a write of that product waits.
async fn hold_write_lock(
    database: &chassis::storage::Database,
    product_id: &str,
) -> chassis::storage::Transaction {
    // `begin` is `BEGIN IMMEDIATE` on SQLite: the write lock is held from here.
    let mut tx = database.begin().await.expect("a transaction begins");
    if tx.backend() == chassis::storage::Backend::Postgres {
        let id = uuid::Uuid::parse_str(product_id).expect("a product id is a UUID");
        chassis::on_backend!(tx, conn => {
            sqlx::query_scalar::<_, i64>("SELECT version FROM products WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_one(conn)
                .await
        })
        .expect("the row is locked");
    }
    tx
}

async fn catalog_status(health: &mut HealthClient<tonic::transport::Channel>) -> ServingStatus {
    let status = health
        .check(HealthCheckRequest {
            service: "emporium.catalog.v1.CatalogService".to_owned(),
        })
        .await
        .expect("the health service answers")
        .into_inner()
        .status;
    ServingStatus::try_from(status).expect("a known status")
}

/// PostgreSQL ends the service's connections (a restart, an operator): the pool replaces them.
/// A connection idle past the ping window is pinged when acquired, found dead and replaced, so
/// the first call after the pause succeeds; one ended within the window fails at most one call
/// and is dropped (the pool may hold several, so a few calls may fail before one succeeds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_the_server_ended_are_replaced_on_postgres() {
    let app = spawn_app(Backend::PostgresNats).without_relay().await;
    let category = app.create_category("Tea").await;
    let get = || {
        let mut client = app.client();
        let id = category.id.clone();
        async move { client.get_category(proto::GetCategoryRequest { id }).await }
    };
    get().await.expect("the category is read");
    let other_session = app.database().await;

    let n_ended = end_other_sessions(&other_session).await;
    assert!(n_ended >= 1, "the service's connection is ended");
    // Not a wait for a result: the connection must sit idle past the window for the ping.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    get()
        .await
        .expect("a connection idle past the window is pinged and replaced");

    let n_ended = end_other_sessions(&other_session).await;
    // Used again at once, within the window: each ended connection the pool still holds may
    // fail one call (INTERNAL), and is then dropped.
    let mut n_failed = 0;
    while let Err(status) = get().await {
        n_failed += 1;
        assert!(
            n_failed <= n_ended,
            "{n_failed} calls failed after {n_ended} connections were ended: an ended connection \
             was used again; the last failure: {status:?}"
        );
    }
}

/// Ends every session on the database but `database`'s own; returns how many.
async fn end_other_sessions(database: &chassis::storage::Database) -> usize {
    let mut tx = database.begin().await.unwrap();
    let ended = chassis::on_backend!(tx, conn => {
        sqlx::query_scalar::<_, bool>(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_all(conn)
        .await
    })
    .unwrap();
    tx.commit().await.unwrap();
    ended.into_iter().filter(|ended| *ended).count()
}
