//! Every event says who made the change: the subject of the verified token of the call that
//! made it and the OAuth client the token was issued to, whoever that was.

use chassis::auth::roles;
use emporium_proto::catalog::v1 as proto;
use test_support::{Backend, both_backends, with_token};

use crate::helpers::{CatalogApp as _, spawn_app};

both_backends!(every_change_event_names_the_caller_who_made_it);

async fn every_change_event_names_the_caller_who_made_it(backend: Backend) {
    let app = spawn_app(backend).without_relay().await;
    let admin_token = app.issuer.token_with(&chassis::auth::Claims {
        client_id: "backoffice".to_owned(),
        ..app.issuer.claims("admin-7", &[roles::ADMIN])
    });

    // The default client calls as `catalog-manager-1` through the client `test`.
    let category = app.create_category("Tea").await;
    let product = app
        .create_product(&category.id, "TEA-1", "Sencha", 1299)
        .await;
    let updated = app
        .anonymous_client()
        .update_product(with_token(
            proto::UpdateProductRequest {
                id: product.id.clone(),
                expected_version: product.version,
                stock_on_hand: Some(3),
                ..proto::UpdateProductRequest::default()
            },
            &admin_token,
        ))
        .await
        .unwrap()
        .into_inner();
    app.client()
        .delete_product(proto::DeleteProductRequest {
            id: product.id.clone(),
            expected_version: updated.version,
        })
        .await
        .unwrap();
    app.anonymous_client()
        .update_category(with_token(
            proto::UpdateCategoryRequest {
                id: category.id.clone(),
                expected_version: category.version,
                name: Some("Teas".to_owned()),
                description: None,
            },
            &admin_token,
        ))
        .await
        .unwrap();
    app.anonymous_client()
        .delete_category(with_token(
            proto::DeleteCategoryRequest {
                id: category.id.clone(),
                expected_version: 0,
            },
            &admin_token,
        ))
        .await
        .unwrap();

    let actors = |events: Vec<emporium_proto::audit::v1::Event>| {
        events
            .into_iter()
            .map(|event| (event.r#type, event.actor, event.actor_client_id))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        actors(app.events_of(&product.id).await),
        [
            (
                "emporium.catalog.product.created".to_owned(),
                "catalog-manager-1".to_owned(),
                "test".to_owned()
            ),
            (
                "emporium.catalog.product.updated".to_owned(),
                "admin-7".to_owned(),
                "backoffice".to_owned()
            ),
            (
                "emporium.catalog.product.deleted".to_owned(),
                "catalog-manager-1".to_owned(),
                "test".to_owned()
            ),
        ]
    );
    assert_eq!(
        actors(app.events_of(&category.id).await),
        [
            (
                "emporium.catalog.category.created".to_owned(),
                "catalog-manager-1".to_owned(),
                "test".to_owned()
            ),
            (
                "emporium.catalog.category.updated".to_owned(),
                "admin-7".to_owned(),
                "backoffice".to_owned()
            ),
            (
                "emporium.catalog.category.deleted".to_owned(),
                "admin-7".to_owned(),
                "backoffice".to_owned()
            ),
        ]
    );
}
