//! `up`'s wiring in the test's own process, on both backends: identity and the catalog hosted by
//! the chassis runtime on one listener, as `emporium up` hosts them. One address answers both
//! services' calls, health reports each by name, reflection lists both, and a stop drains and
//! closes both. A service's declared consumers run while it serves.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use catalog::CatalogParts;
use chassis::auth::roles;
use chassis::cloudevents::CloudEvent;
use chassis::consumer::{Consumer, ConsumerOptions, EventHandler};
use chassis::runtime::{Built, ConsumerTask, Service, ServiceContext, ServiceDefinition};
use chassis::settings::ServiceSettings;
use chassis::storage::Transaction;
use emporium_proto::catalog::v1 as catalog_proto;
use emporium_proto::identity::v1 as identity_proto;
use identity::keys::{KeyEncryptionKey, KeyPolicy};
use identity::{IdentityOptions, IdentityParts};
use test_support::{
    Backend, HostedServices, TestBus, TestDatabase, TestIssuer, host_on_one_port, with_token,
};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

test_support::both_backends!(
    one_address_answers_identity_and_the_catalog,
    a_declared_consumer_runs_while_its_service_is_hosted,
);

async fn one_address_answers_identity_and_the_catalog(backend: Backend) {
    // Arrange: both services built on one bus, each on its own database, hosted on one port.
    let identity_database = TestDatabase::new(backend, "identity").await;
    let catalog_database = TestDatabase::new(backend, "catalog").await;
    let test_bus = TestBus::new(backend).await;
    let bus = test_bus.connect().await;
    let issuer = TestIssuer::new();
    let identity = Built::<IdentityParts>::build(
        &settings(identity::NAME, &identity_database, &test_bus),
        bus.clone(),
        IdentityOptions {
            key_encryption_key: KeyEncryptionKey::generate().expect("a key"),
            key_policy: KeyPolicy::default(),
        },
    )
    .await
    .expect("identity builds");
    let catalog = Built::<CatalogParts>::build(
        &settings(catalog::NAME, &catalog_database, &test_bus),
        bus.clone(),
        (),
    )
    .await
    .expect("the catalog builds");
    let identity_pool = identity.database().clone();
    let catalog_pool = catalog.database().clone();
    let HostedServices {
        addr,
        channel,
        shutdown,
        served,
    } = host_on_one_port(&issuer, [identity.into_unit(None), catalog.into_unit(None)]).await;
    let token = issuer.token("admin-1", &[roles::ADMIN]);

    // Act
    let roles =
        identity_proto::identity_service_client::IdentityServiceClient::new(channel.clone())
            .list_roles(with_token(
                identity_proto::ListRolesRequest::default(),
                &token,
            ))
            .await;
    let category =
        catalog_proto::catalog_service_client::CatalogServiceClient::new(channel.clone())
            .create_category(with_token(
                catalog_proto::CreateCategoryRequest {
                    name: "Tea".to_owned(),
                    description: String::new(),
                },
                &token,
            ))
            .await;
    let mut health = HealthClient::new(channel);
    let mut statuses = Vec::new();
    for service in [identity::HEALTH_NAME, catalog::HEALTH_NAME, ""] {
        let status = health
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .map(|response| response.into_inner().status)
            .map_err(|status| status.code());
        statuses.push((service, status));
    }
    let names = test_support::reflected_service_names(addr).await;
    shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(30), served)
        .await
        .expect("the host stops within its grace")
        .expect("the host task does not panic");

    // Assert
    let roles = roles
        .expect("identity answers on the one address")
        .into_inner();
    assert!(
        roles.roles.iter().any(|role| role.name == roles::ADMIN),
        "the built-in roles were seeded: {roles:?}"
    );
    assert_eq!(
        category
            .expect("the catalog answers on the one address")
            .into_inner()
            .name,
        "Tea"
    );
    for (service, status) in statuses {
        assert_eq!(
            status,
            Ok(ServingStatus::Serving as i32),
            "health of {service:?}"
        );
    }
    assert_eq!(
        names,
        [
            catalog::HEALTH_NAME,
            identity::HEALTH_NAME,
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ]
    );
    assert!(stopped.is_ok(), "a clean stop: {stopped:?}");
    assert!(identity_pool.is_closed(), "identity's pool is closed");
    assert!(catalog_pool.is_closed(), "the catalog's pool is closed");
}

async fn a_declared_consumer_runs_while_its_service_is_hosted(backend: Backend) {
    // Arrange: the catalog, and beside it a service whose only part is a consumer of the
    // catalog's category events, each on its own database, hosted together.
    let catalog_database = TestDatabase::new(backend, "catalog").await;
    let counter_database = TestDatabase::new(backend, "counter").await;
    let test_bus = TestBus::new(backend).await;
    let bus = test_bus.connect().await;
    let issuer = TestIssuer::new();
    let catalog = Built::<CatalogParts>::build(
        &settings(catalog::NAME, &catalog_database, &test_bus),
        bus.clone(),
        (),
    )
    .await
    .expect("the catalog builds");
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = Built::<CategoryCounter>::build(
        &settings("counter", &counter_database, &test_bus),
        bus.clone(),
        Arc::clone(&seen),
    )
    .await
    .expect("the counter builds");
    let counter_pool = counter.database().clone();
    let HostedServices {
        channel,
        shutdown,
        served,
        ..
    } = host_on_one_port(&issuer, [catalog.into_unit(None), counter.into_unit(None)]).await;
    let token = issuer.token("admin-1", &[roles::ADMIN]);

    // Act: a change in the catalog, published by its relay, reaches the counter's consumer.
    catalog_proto::catalog_service_client::CatalogServiceClient::new(channel)
        .create_category(with_token(
            catalog_proto::CreateCategoryRequest {
                name: "Tea".to_owned(),
                description: String::new(),
            },
            &token,
        ))
        .await
        .expect("the category is created");
    let n_seen = test_support::eventually(
        Duration::from_secs(30),
        "the consumer to apply the category's event",
        || async { Some(seen.load(Ordering::SeqCst)).filter(|n_seen| *n_seen > 0) },
    )
    .await;
    shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(30), served)
        .await
        .expect("the host stops within its grace")
        .expect("the host task does not panic");

    // Assert
    assert_eq!(n_seen, 1, "one event, applied once");
    assert!(stopped.is_ok(), "a clean stop: {stopped:?}");
    assert!(counter_pool.is_closed(), "the counter's pool is closed");
}

/// A service of the test's own: no RPCs, one consumer counting the catalog's category events.
#[derive(Debug)]
struct CategoryCounter {
    seen: Arc<AtomicUsize>,
}

impl Service for CategoryCounter {
    type Options = Arc<AtomicUsize>;

    const DEFINITION: ServiceDefinition = ServiceDefinition {
        name: "counter",
        default_port: 0,
        health_names: &[],
        // Its inbox is the chassis's own table; the catalog's schema beside it is unused.
        migrations: catalog::MIGRATIONS,
        relay: false,
    };

    async fn assemble(
        _context: &ServiceContext,
        seen: Arc<AtomicUsize>,
    ) -> anyhow::Result<CategoryCounter> {
        Ok(CategoryCounter { seen })
    }

    fn add_grpc_routes(
        &self,
        _context: &ServiceContext,
        _routes: &mut tonic::service::RoutesBuilder,
    ) {
    }

    fn consumers(&self, context: &ServiceContext) -> Vec<ConsumerTask> {
        let namespace = &context.namespace;
        let options = ConsumerOptions::new(
            "category-counter",
            &chassis::outbox::stream_name(namespace, catalog::NAME),
            &format!("{namespace}.catalog.category.>"),
            namespace,
        );
        let handler = Counting {
            seen: Arc::clone(&self.seen),
        };
        vec![ConsumerTask::new(Consumer::new(
            context.database.clone(),
            context.bus.clone(),
            options,
            handler,
        ))]
    }
}

struct Counting {
    seen: Arc<AtomicUsize>,
}

impl EventHandler for Counting {
    async fn handle(&self, _tx: &mut Transaction, _event: &CloudEvent) -> anyhow::Result<()> {
        self.seen.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn settings(
    name: &'static str,
    test_database: &TestDatabase,
    test_bus: &TestBus,
) -> ServiceSettings {
    ServiceSettings {
        name,
        grpc_addr: "127.0.0.1:0".parse().expect("a valid address"),
        database_url: test_database.secret_url(),
        namespace: test_bus.namespace.clone(),
        database_max_connections: None,
    }
}
