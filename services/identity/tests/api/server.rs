//! The standard gRPC services every port carries beside identity's own.

use test_support::Backend;

use crate::helpers::spawn_app;

// Reflection does not depend on storage or the bus: one backend is enough.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_exactly_the_services_the_port_serves() {
    let app = spawn_app(Backend::SqliteEmbedded).await;

    let names = test_support::reflected_service_names(app.addr).await;

    assert_eq!(
        names,
        [
            "emporium.identity.v1.IdentityService",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ],
        "the catalog's service is served on another port"
    );
}
