//! The standard gRPC health and reflection services, and graceful shutdown.

use test_support::{Backend, both_backends};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::spawn_app;

both_backends!(
    health_reports_the_catalog_serving,
    reflection_lists_exactly_the_services_the_port_serves,
    stopping_lets_an_in_flight_call_finish_and_refuses_new_ones,
);

async fn health_reports_the_catalog_serving(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut health = HealthClient::new(channel(&app).await);

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
    let app = spawn_app(backend).await;
    let category = app.create_category("Tea").await;
    let addr = app.addr;
    // Start a burst of writes, then stop while they are in flight.
    let mut client = app.client();
    let category_id = category.id.clone();
    let writes = tokio::spawn(async move {
        let mut n_created = 0;
        for index in 0..50 {
            let request =
                crate::helpers::valid_product(&category_id, &format!("SKU-{index}"), "Tea", 100);
            match client.create_product(request).await {
                Ok(_) => n_created += 1,
                Err(_) => break,
            }
        }
        n_created
    });

    let (test_database, _test_bus) = app.stop().await;
    let n_created = writes.await.unwrap();

    // Every write the service answered is committed; the port no longer accepts calls.
    let database = chassis::storage::Database::open(test_database.url())
        .await
        .unwrap();
    let mut tx = database.begin_read().await.unwrap();
    let n_stored: i64 = chassis::on_backend!(tx, conn => {
        sqlx::query_scalar("SELECT count(*) FROM products").fetch_one(conn).await
    })
    .unwrap();
    assert_eq!(n_stored, n_created);
    let refused =
        emporium_proto::catalog::v1::catalog_service_client::CatalogServiceClient::connect(
            format!("http://{addr}"),
        )
        .await;
    assert!(
        refused.is_err(),
        "the stopped service still accepts connections"
    );
}

async fn channel(app: &crate::helpers::TestApp) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{}", app.addr))
        .expect("a valid endpoint")
        .connect()
        .await
        .expect("the service accepts connections")
}
