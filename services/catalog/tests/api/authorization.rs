//! Who may do what: every call needs a valid token from the trusted issuer; reads are open to
//! any role, changes and the audit history need `admin` or `catalog-manager`. A refused call
//! changes nothing and records no event. The roles come from `catalog.proto`
//! (`(emporium.api.v1.access)`); the chassis enforces them, and one test calls every RPC of the
//! contract to prove the two agree.

use chassis::auth::{Claims, roles};
use emporium_proto::audit::v1 as audit;
use emporium_proto::catalog::v1 as proto;
use test_support::{
    Backend, TestIssuer, assert_access_matches_contract, backend_independent, both_backends,
    hs256_token, unsigned_token, with_token,
};
use tonic::Code;

use crate::helpers::{CatalogApp as _, TestApp, spawn_app, valid_product};

both_backends!(
    catalog_managers_and_admins_may_create_update_and_delete,
    every_rpc_admits_exactly_the_roles_its_contract_declares,
);

// What these check happens before storage or the bus is reached: once is enough.
backend_independent!(
    a_create_without_a_valid_token_or_role_is_refused_and_changes_nothing,
    an_update_or_delete_without_a_valid_token_or_role_is_refused_and_changes_nothing,
    reads_need_a_token_but_no_particular_role,
    the_audit_history_needs_a_catalog_role,
    the_role_is_checked_before_the_request_is_read,
    an_id_token_is_no_bearer_token,
);

async fn every_rpc_admits_exactly_the_roles_its_contract_declares(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).without_relay().await;
    let n_events_before = unpublished_events(&app).await;

    // Act and assert: every RPC of the descriptor set, each kind of caller.
    let n_rpcs =
        assert_access_matches_contract(app.addr, &app.issuer, "emporium.catalog.v1.CatalogService")
            .await;

    assert!(n_rpcs >= 13, "only {n_rpcs} RPCs were checked");
    assert_eq!(
        unpublished_events(&app).await,
        n_events_before,
        "no call changed anything"
    );
}

async fn a_create_without_a_valid_token_or_role_is_refused_and_changes_nothing(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).without_relay().await;
    let category = app.create_category("Tea").await;
    let n_events_before = unpublished_events(&app).await;

    for (what, token, expected) in refused_credentials(&app) {
        // Act
        let status = app
            .anonymous_client()
            .create_product(request_as(
                valid_product(&category.id, "TEA-1", "Sencha", 1299),
                token.as_deref(),
            ))
            .await
            .expect_err(what);

        // Assert
        assert_eq!(status.code(), expected, "{what}: {status:?}");
    }
    assert_eq!(app.product_total().await, 0, "the catalog holds no product");
    assert_eq!(unpublished_events(&app).await, n_events_before);
}

async fn an_update_or_delete_without_a_valid_token_or_role_is_refused_and_changes_nothing(
    backend: Backend,
) {
    // Arrange
    let app = spawn_app(backend).without_relay().await;
    let category = app.create_category("Tea").await;
    let product = app
        .create_product(&category.id, "TEA-1", "Sencha", 1299)
        .await;
    let n_events_before = unpublished_events(&app).await;

    for (what, token, expected) in refused_credentials(&app) {
        // Act
        let update = app
            .anonymous_client()
            .update_product(request_as(
                proto::UpdateProductRequest {
                    id: product.id.clone(),
                    expected_version: product.version,
                    name: Some("Changed".to_owned()),
                    ..Default::default()
                },
                token.as_deref(),
            ))
            .await
            .expect_err(what);
        let delete = app
            .anonymous_client()
            .delete_product(request_as(
                proto::DeleteProductRequest {
                    id: product.id.clone(),
                    expected_version: 0,
                },
                token.as_deref(),
            ))
            .await
            .expect_err(what);

        // Assert
        assert_eq!(update.code(), expected, "update, {what}: {update:?}");
        assert_eq!(delete.code(), expected, "delete, {what}: {delete:?}");
    }
    let read = app
        .client()
        .get_product(proto::GetProductRequest {
            id: product.id.clone(),
        })
        .await
        .expect("the product is still there")
        .into_inner();
    assert_eq!(read, product, "the product is unchanged");
    assert_eq!(unpublished_events(&app).await, n_events_before);
}

async fn catalog_managers_and_admins_may_create_update_and_delete(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let category = app.create_category("Tea").await;

    let admin = app.issuer.token("admin-1", &[roles::ADMIN]);

    for (role, token) in [(roles::CATALOG_MANAGER, &app.token), (roles::ADMIN, &admin)] {
        let sku = format!("TEA-{role}");

        // Act
        let created = app
            .anonymous_client()
            .create_product(with_token(
                valid_product(&category.id, &sku, "Sencha", 1299),
                token,
            ))
            .await
            .unwrap_or_else(|status| panic!("{role} creates: {status:?}"))
            .into_inner();
        let updated = app
            .anonymous_client()
            .update_product(with_token(
                proto::UpdateProductRequest {
                    id: created.id.clone(),
                    expected_version: created.version,
                    name: Some("Matcha".to_owned()),
                    ..Default::default()
                },
                token,
            ))
            .await
            .unwrap_or_else(|status| panic!("{role} updates: {status:?}"))
            .into_inner();
        app.anonymous_client()
            .delete_product(with_token(
                proto::DeleteProductRequest {
                    id: created.id.clone(),
                    expected_version: updated.version,
                },
                token,
            ))
            .await
            .unwrap_or_else(|status| panic!("{role} deletes: {status:?}"));

        // Assert
        assert_eq!(updated.name, "Matcha");
    }
    assert_eq!(app.product_total().await, 0);
}

async fn reads_need_a_token_but_no_particular_role(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let category = app.create_category("Tea").await;
    let product = app
        .create_product(&category.id, "TEA-1", "Sencha", 1299)
        .await;
    let customer = app.issuer.token("customer-1", &[roles::CUSTOMER]);

    for token in [None, Some(customer.as_str())] {
        // Act
        let mut client = app.anonymous_client();
        let outcomes: Vec<(&str, Result<(), tonic::Status>)> = vec![
            (
                "get category",
                client
                    .get_category(request_as(
                        proto::GetCategoryRequest {
                            id: category.id.clone(),
                        },
                        token,
                    ))
                    .await
                    .map(drop),
            ),
            (
                "batch get categories",
                client
                    .batch_get_categories(request_as(
                        proto::BatchGetCategoriesRequest {
                            ids: vec![category.id.clone()],
                        },
                        token,
                    ))
                    .await
                    .map(drop),
            ),
            (
                "list categories",
                client
                    .list_categories(request_as(proto::ListCategoriesRequest::default(), token))
                    .await
                    .map(drop),
            ),
            (
                "get product",
                client
                    .get_product(request_as(
                        proto::GetProductRequest {
                            id: product.id.clone(),
                        },
                        token,
                    ))
                    .await
                    .map(drop),
            ),
            (
                "batch get products",
                client
                    .batch_get_products(request_as(
                        proto::BatchGetProductsRequest {
                            ids: vec![product.id.clone()],
                        },
                        token,
                    ))
                    .await
                    .map(drop),
            ),
            (
                "list products",
                client
                    .list_products(request_as(proto::ListProductsRequest::default(), token))
                    .await
                    .map(drop),
            ),
        ];

        // Assert
        for (what, outcome) in outcomes {
            match token {
                None => assert_eq!(
                    outcome.expect_err(what).code(),
                    Code::Unauthenticated,
                    "{what} without a token"
                ),
                Some(_) => outcome.unwrap_or_else(|status| panic!("{what}: {status:?}")),
            }
        }
    }
}

async fn the_audit_history_needs_a_catalog_role(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let category = app.create_category("Tea").await;
    let request = || audit::ListEventsRequest {
        aggregate_id: category.id.clone(),
        page_size: 10,
        page_token: String::new(),
    };
    let customer = app.issuer.token("customer-1", &[roles::CUSTOMER]);
    let admin = app.issuer.token("admin-1", &[roles::ADMIN]);

    // Act
    let anonymous = app.anonymous_client().list_events(request()).await;
    let as_customer = app
        .anonymous_client()
        .list_events(with_token(request(), &customer))
        .await;
    let as_admin = app
        .anonymous_client()
        .list_events(with_token(request(), &admin))
        .await;

    // Assert
    assert_eq!(anonymous.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(as_customer.unwrap_err().code(), Code::PermissionDenied);
    assert_eq!(
        as_admin
            .expect("admins read the history")
            .into_inner()
            .events
            .len(),
        1
    );
}

async fn the_role_is_checked_before_the_request_is_read(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let customer = app.issuer.token("customer-1", &[roles::CUSTOMER]);
    let invalid_product = proto::CreateProductRequest::default();

    // Act
    let as_customer = app
        .anonymous_client()
        .create_product(with_token(invalid_product.clone(), &customer))
        .await;
    let anonymous = app.anonymous_client().create_product(invalid_product).await;
    let anonymous_get = app
        .anonymous_client()
        .get_product(proto::GetProductRequest {
            id: "not-a-uuid".to_owned(),
        })
        .await;

    // Assert: the refusal says nothing about the invalid fields.
    let as_customer = as_customer.unwrap_err();
    assert_eq!(
        as_customer.code(),
        Code::PermissionDenied,
        "{as_customer:?}"
    );
    assert!(test_support::field_violations(&as_customer).is_empty());
    assert_eq!(anonymous.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(anonymous_get.unwrap_err().code(), Code::Unauthenticated);
}

async fn an_id_token_is_no_bearer_token(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).without_relay().await;
    let category = app.create_category("Tea").await;
    let n_events_before = unpublished_events(&app).await;
    let claims = app.issuer.claims("manager-1", &[roles::CATALOG_MANAGER]);
    let id_token = app.issuer.id_token_with(&claims);
    let access_token = app.issuer.token_with(&claims);

    // Act
    let create = app
        .anonymous_client()
        .create_product(with_token(
            valid_product(&category.id, "TEA-1", "Sencha", 1299),
            &id_token,
        ))
        .await;
    let read = app
        .anonymous_client()
        .get_category(with_token(
            proto::GetCategoryRequest {
                id: category.id.clone(),
            },
            &id_token,
        ))
        .await;
    let same_claims_as_access_token = app
        .anonymous_client()
        .get_category(with_token(
            proto::GetCategoryRequest {
                id: category.id.clone(),
            },
            &access_token,
        ))
        .await;

    // Assert
    let create = create.expect_err("an ID token cannot create");
    assert_eq!(create.code(), Code::Unauthenticated, "{create:?}");
    assert!(
        create.message().contains("not an access token"),
        "{create:?}"
    );
    assert_eq!(
        read.expect_err("an ID token cannot read").code(),
        Code::Unauthenticated
    );
    same_claims_as_access_token.expect("the same claims in an access token are accepted");
    assert_eq!(app.product_total().await, 0, "the catalog holds no product");
    assert_eq!(unpublished_events(&app).await, n_events_before);
}

// === helpers ===

/// Every credential a write must refuse, what it is, and the code it must be refused with.
fn refused_credentials(app: &TestApp) -> Vec<(&'static str, Option<String>, Code)> {
    let issuer = &app.issuer;
    let manager = || issuer.claims("manager-1", &[roles::CATALOG_MANAGER]);
    let another_issuer = TestIssuer::new();
    vec![
        ("no token", None, Code::Unauthenticated),
        (
            "an expired token",
            Some(issuer.expired_token("manager-1", &[roles::CATALOG_MANAGER])),
            Code::Unauthenticated,
        ),
        (
            "a token signed by another key",
            Some(another_issuer.token("manager-1", &[roles::CATALOG_MANAGER])),
            Code::Unauthenticated,
        ),
        (
            "an unsigned token (alg: none)",
            Some(unsigned_token(&manager())),
            Code::Unauthenticated,
        ),
        (
            "an HS256 token keyed with the issuer's public key",
            Some(hs256_token(&manager(), &issuer.public_key_bytes())),
            Code::Unauthenticated,
        ),
        (
            "a token for another audience",
            Some(issuer.token_with(&Claims {
                aud: "someone-else".to_owned(),
                ..manager()
            })),
            Code::Unauthenticated,
        ),
        (
            "a catalog manager's ID token (typ: JWT)",
            Some(issuer.id_token_with(&manager())),
            Code::Unauthenticated,
        ),
        (
            "a customer's token",
            Some(issuer.token("customer-1", &[roles::CUSTOMER])),
            Code::PermissionDenied,
        ),
    ]
}

/// `message` with `authorization: Bearer <token>` if there is a token.
fn request_as<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    match token {
        Some(token) => with_token(message, token),
        None => tonic::Request::new(message),
    }
}

/// Events recorded in the outbox and not yet published (the tests that count them run without
/// the relay, so this is every event recorded).
async fn unpublished_events(app: &TestApp) -> i64 {
    let database = app.database().await;
    let n_events = chassis::outbox::unpublished_count(&database)
        .await
        .expect("the outbox can be counted");
    database.close().await;
    n_events
}
