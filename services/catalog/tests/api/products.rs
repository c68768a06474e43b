//! Product CRUD, validation, uniqueness, optimistic concurrency and batch reads.

use emporium_proto::catalog::v1 as proto;
use test_support::{
    Backend, backend_independent, both_backends, field_violations, violated_fields,
};
use tonic::Code;

use crate::helpers::{CatalogApp as _, spawn_app, valid_product};

both_backends!(
    a_created_product_can_be_read_back,
    a_product_needs_an_existing_category,
    skus_are_unique,
    an_update_changes_only_the_given_fields,
    an_update_with_a_stale_version_is_a_conflict_and_changes_nothing,
    a_deleted_product_is_gone,
    batch_get_answers_in_request_order_and_names_the_missing,
);

// What these check happens before storage or the bus is reached: once is enough.
backend_independent!(
    every_invalid_field_is_reported_and_nothing_changes,
    malformed_ids_are_invalid_arguments,
);

async fn a_created_product_can_be_read_back(backend: Backend) {
    let app = spawn_app(backend).await;
    let category = app.create_category("Tea").await;

    let created = app
        .create_product(&category.id, "TEA-1", "Sencha", 1299)
        .await;
    let read = app
        .client()
        .get_product(proto::GetProductRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();

    assert_eq!(read, created);
    assert_eq!(read.sku, "TEA-1");
    assert_eq!(
        read.price,
        Some(proto::Money {
            amount_minor: 1299,
            currency: "EUR".to_owned()
        })
    );
    assert_eq!(read.stock_on_hand, 10);
    assert_eq!(read.version, 1);
    assert_eq!(read.create_time, read.update_time);
}

async fn every_invalid_field_is_reported_and_nothing_changes(backend: Backend) {
    let app = spawn_app(backend).await;
    let category = app.create_category("Tea").await;
    let cases: Vec<(proto::CreateProductRequest, Vec<&str>)> = vec![
        (
            proto::CreateProductRequest {
                sku: String::new(),
                ..valid_product(&category.id, "X", "Tea", 1)
            },
            vec!["sku"],
        ),
        (
            proto::CreateProductRequest {
                sku: "has space".to_owned(),
                ..valid_product(&category.id, "X", "Tea", 1)
            },
            vec!["sku"],
        ),
        (
            proto::CreateProductRequest {
                name: " ".to_owned(),
                ..valid_product(&category.id, "X", "Tea", 1)
            },
            vec!["name"],
        ),
        (
            proto::CreateProductRequest {
                category_id: "nope".to_owned(),
                ..valid_product(&category.id, "X", "Tea", 1)
            },
            vec!["category_id"],
        ),
        (
            proto::CreateProductRequest {
                price: None,
                ..valid_product(&category.id, "X", "Tea", 1)
            },
            vec!["price"],
        ),
        (
            valid_product(&category.id, "X", "Tea", -1),
            vec!["price.amount_minor"],
        ),
        (
            proto::CreateProductRequest {
                price: Some(proto::Money {
                    amount_minor: 1,
                    currency: "euro".to_owned(),
                }),
                ..valid_product(&category.id, "X", "Tea", 1)
            },
            vec!["price.currency"],
        ),
        (
            proto::CreateProductRequest {
                stock_on_hand: -5,
                ..valid_product(&category.id, "X", "Tea", 1)
            },
            vec!["stock_on_hand"],
        ),
        (
            proto::CreateProductRequest {
                sku: String::new(),
                name: String::new(),
                category_id: String::new(),
                price: None,
                stock_on_hand: -1,
                description: String::new(),
            },
            vec!["category_id", "name", "price", "sku", "stock_on_hand"],
        ),
    ];

    for (request, expected_fields) in cases {
        let status = app
            .client()
            .create_product(request.clone())
            .await
            .unwrap_err();

        assert_eq!(status.code(), Code::InvalidArgument, "{request:?}");
        assert_eq!(violated_fields(&status), expected_fields, "{request:?}");
        for (field, reason) in field_violations(&status) {
            assert!(!reason.is_empty(), "{field} has no reason");
            assert!(
                status.message().contains(&field),
                "the message names {field}: {}",
                status.message()
            );
        }
    }
    assert_eq!(app.product_total().await, 0);
}

async fn a_product_needs_an_existing_category(backend: Backend) {
    let app = spawn_app(backend).await;

    let status = app
        .client()
        .create_product(valid_product(
            &uuid::Uuid::new_v4().to_string(),
            "TEA-1",
            "Sencha",
            1,
        ))
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["category_id"]);
    assert_eq!(app.product_total().await, 0);
}

async fn skus_are_unique(backend: Backend) {
    let app = spawn_app(backend).await;
    let category = app.create_category("Tea").await;
    let first = app
        .create_product(&category.id, "TEA-1", "Sencha", 1299)
        .await;

    let status = app
        .client()
        .create_product(valid_product(&category.id, "TEA-1", "Other", 5))
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(violated_fields(&status), ["sku"]);
    assert_eq!(app.product_total().await, 1);
    let second = app.create_product(&category.id, "TEA-2", "Other", 5).await;
    let status = app
        .client()
        .update_product(proto::UpdateProductRequest {
            id: second.id.clone(),
            expected_version: 1,
            sku: Some(first.sku.clone()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::AlreadyExists,
        "an update cannot take another product's sku"
    );
}

async fn an_update_changes_only_the_given_fields(backend: Backend) {
    let app = spawn_app(backend).await;
    let tea = app.create_category("Tea").await;
    let gifts = app.create_category("Gifts").await;
    let product = app.create_product(&tea.id, "TEA-1", "Sencha", 1299).await;

    let updated = app
        .client()
        .update_product(proto::UpdateProductRequest {
            id: product.id.clone(),
            expected_version: 1,
            name: Some("Sencha Superior".to_owned()),
            category_id: Some(gifts.id.clone()),
            price: Some(proto::Money {
                amount_minor: 1499,
                currency: "EUR".to_owned(),
            }),
            stock_on_hand: Some(0),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    assert_eq!(updated.name, "Sencha Superior");
    assert_eq!(updated.category_id, gifts.id);
    assert_eq!(
        updated.price.as_ref().map(|price| price.amount_minor),
        Some(1499)
    );
    assert_eq!(updated.stock_on_hand, 0);
    assert_eq!(updated.sku, product.sku);
    assert_eq!(updated.description, product.description);
    assert_eq!(updated.version, 2);
    assert_eq!(updated.create_time, product.create_time);
}

async fn an_update_with_a_stale_version_is_a_conflict_and_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let category = app.create_category("Tea").await;
    let product = app
        .create_product(&category.id, "TEA-1", "Sencha", 1299)
        .await;
    let first_writer = proto::UpdateProductRequest {
        id: product.id.clone(),
        expected_version: 1,
        name: Some("First".to_owned()),
        ..Default::default()
    };
    let second_writer = proto::UpdateProductRequest {
        name: Some("Second".to_owned()),
        ..first_writer.clone()
    };
    let after_first = app
        .client()
        .update_product(first_writer)
        .await
        .unwrap()
        .into_inner();

    let status = app
        .client()
        .update_product(second_writer)
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::Aborted);
    assert!(
        status.message().contains("version 2"),
        "{}",
        status.message()
    );
    let current = app
        .client()
        .get_product(proto::GetProductRequest {
            id: product.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(current, after_first);
    assert_eq!(
        app.events_of(&product.id).await.len(),
        2,
        "the refused update records no event"
    );
    let missing = app
        .client()
        .update_product(proto::UpdateProductRequest {
            id: uuid::Uuid::new_v4().to_string(),
            expected_version: 1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
}

async fn a_deleted_product_is_gone(backend: Backend) {
    let app = spawn_app(backend).await;
    let category = app.create_category("Tea").await;
    let product = app
        .create_product(&category.id, "TEA-1", "Sencha", 1299)
        .await;
    let stale = app
        .client()
        .delete_product(proto::DeleteProductRequest {
            id: product.id.clone(),
            expected_version: 7,
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);

    app.client()
        .delete_product(proto::DeleteProductRequest {
            id: product.id.clone(),
            expected_version: 1,
        })
        .await
        .unwrap();

    let status = app
        .client()
        .get_product(proto::GetProductRequest {
            id: product.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let again = app
        .client()
        .delete_product(proto::DeleteProductRequest {
            id: product.id.clone(),
            expected_version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound);
}

async fn batch_get_answers_in_request_order_and_names_the_missing(backend: Backend) {
    let app = spawn_app(backend).await;
    let category = app.create_category("Tea").await;
    let first = app.create_product(&category.id, "TEA-1", "Sencha", 1).await;
    let second = app.create_product(&category.id, "TEA-2", "Matcha", 2).await;
    let unknown = uuid::Uuid::new_v4().to_string();

    let response = app
        .client()
        .batch_get_products(proto::BatchGetProductsRequest {
            ids: vec![second.id.clone(), unknown.clone(), first.id.clone()],
        })
        .await
        .unwrap()
        .into_inner();

    assert_eq!(response.products, vec![second, first]);
    assert_eq!(response.missing_ids, vec![unknown]);
}

async fn malformed_ids_are_invalid_arguments(backend: Backend) {
    let app = spawn_app(backend).await;

    let get = app
        .client()
        .get_product(proto::GetProductRequest {
            id: "42".to_owned(),
        })
        .await
        .unwrap_err();
    let batch = app
        .client()
        .batch_get_products(proto::BatchGetProductsRequest {
            ids: vec![uuid::Uuid::new_v4().to_string(), "x".to_owned()],
        })
        .await
        .unwrap_err();

    assert_eq!(get.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&get), ["id"]);
    assert_eq!(batch.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&batch), ["ids[1]"]);
}
