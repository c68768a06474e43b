//! Every record's history starts at its creation: over a populated database, each category and
//! product (deleted ones included) has a history that opens with its `.created` event at version 1
//! and counts up by one to the row's version (or to its `.deleted` event).

use emporium_proto::catalog::v1 as proto;
use test_support::{Backend, assert_history_starts_at_creation, both_backends};

use crate::helpers::{CatalogApp as _, spawn_app};

both_backends!(every_record_history_starts_with_its_creation_and_has_no_gap,);

async fn every_record_history_starts_with_its_creation_and_has_no_gap(backend: Backend) {
    let app = spawn_app(backend).await;
    let tea = app.create_category("Tea").await;
    let coffee = app.create_category("Coffee").await;
    let empty = app.create_category("Empty").await;
    app.client()
        .update_category(proto::UpdateCategoryRequest {
            id: tea.id.clone(),
            expected_version: tea.version,
            description: Some("Leaves".to_owned()),
            ..Default::default()
        })
        .await
        .unwrap();
    app.client()
        .delete_category(proto::DeleteCategoryRequest {
            id: empty.id.clone(),
            expected_version: empty.version,
        })
        .await
        .unwrap();
    let sencha = app.create_product(&tea.id, "TEA-1", "Sencha", 1299).await;
    let _mocha = app.create_product(&coffee.id, "COF-1", "Mocha", 899).await;
    let stale = app.create_product(&coffee.id, "COF-2", "Stale", 99).await;
    for stock_on_hand in [3, 7] {
        let current = app
            .client()
            .get_product(proto::GetProductRequest {
                id: sencha.id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        app.client()
            .update_product(proto::UpdateProductRequest {
                id: sencha.id.clone(),
                expected_version: current.version,
                stock_on_hand: Some(stock_on_hand),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    app.client()
        .delete_product(proto::DeleteProductRequest {
            id: stale.id.clone(),
            expected_version: stale.version,
        })
        .await
        .unwrap();

    let mut living: Vec<(String, i64)> = Vec::new();
    let categories = app
        .client()
        .list_categories(proto::ListCategoriesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .categories;
    living.extend(
        categories
            .into_iter()
            .map(|category| (category.id, category.version)),
    );
    let products = app
        .client()
        .list_products(proto::ListProductsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .products;
    living.extend(
        products
            .into_iter()
            .map(|product| (product.id, product.version)),
    );
    assert_eq!(living.len(), 2 + 2);

    for (id, version) in &living {
        let history = app.events_of(id).await;
        assert_history_starts_at_creation(&history, id);
        assert_eq!(history.last().unwrap().aggregate_version, *version, "{id}");
        assert!(
            !history.last().unwrap().r#type.ends_with(".deleted"),
            "{id}"
        );
    }
    for id in [&empty.id, &stale.id] {
        let history = app.events_of(id).await;
        assert_history_starts_at_creation(&history, id);
        assert!(history.last().unwrap().r#type.ends_with(".deleted"), "{id}");
    }
}
