//! Category CRUD, validation and the delete-with-products rule.

use emporium_proto::catalog::v1 as proto;
use test_support::{Backend, backend_independent, both_backends, violated_fields};
use tonic::Code;

use crate::helpers::{CatalogApp as _, spawn_app};

both_backends!(
    a_created_category_can_be_read_back,
    category_names_are_unique,
    a_category_with_products_cannot_be_deleted,
    updating_a_category_with_a_stale_version_is_a_conflict,
);

// What these check happens before storage or the bus is reached: once is enough.
backend_independent!(a_blank_category_name_is_invalid_and_changes_nothing,);

async fn a_created_category_can_be_read_back(backend: Backend) {
    let app = spawn_app(backend).await;

    let created = app.create_category("Tea").await;
    let read = app
        .client()
        .get_category(proto::GetCategoryRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();

    assert_eq!(read, created);
    assert_eq!(read.name, "Tea");
    assert_eq!(read.version, 1);
}

async fn a_blank_category_name_is_invalid_and_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;

    let status = app
        .client()
        .create_category(proto::CreateCategoryRequest {
            name: "   ".to_owned(),
            description: "x".repeat(5001),
        })
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["description", "name"]);
    let listed = app
        .client()
        .list_categories(proto::ListCategoriesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.total_size, 0);
}

async fn category_names_are_unique(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_category("Tea").await;

    let status = app
        .client()
        .create_category(proto::CreateCategoryRequest {
            name: "Tea".to_owned(),
            description: String::new(),
        })
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(violated_fields(&status), ["name"]);
}

async fn a_category_with_products_cannot_be_deleted(backend: Backend) {
    let app = spawn_app(backend).await;
    let category = app.create_category("Tea").await;
    let product = app
        .create_product(&category.id, "TEA-1", "Sencha", 1299)
        .await;

    let status = app
        .client()
        .delete_category(proto::DeleteCategoryRequest {
            id: category.id.clone(),
            expected_version: 0,
        })
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let still_there = app
        .client()
        .get_category(proto::GetCategoryRequest {
            id: category.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(still_there, category);
    assert_eq!(
        app.events_of(&category.id).await.len(),
        1,
        "a refused delete records no event"
    );

    app.client()
        .delete_product(proto::DeleteProductRequest {
            id: product.id.clone(),
            expected_version: product.version,
        })
        .await
        .unwrap();
    app.client()
        .delete_category(proto::DeleteCategoryRequest {
            id: category.id.clone(),
            expected_version: 1,
        })
        .await
        .expect("an empty category can be deleted");
    let gone = app
        .client()
        .get_category(proto::GetCategoryRequest {
            id: category.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
}

async fn updating_a_category_with_a_stale_version_is_a_conflict(backend: Backend) {
    let app = spawn_app(backend).await;
    let category = app.create_category("Tea").await;
    let renamed = app
        .client()
        .update_category(proto::UpdateCategoryRequest {
            id: category.id.clone(),
            expected_version: 1,
            name: Some("Teas".to_owned()),
            description: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((renamed.name.as_str(), renamed.version), ("Teas", 2));
    assert_eq!(
        renamed.description, category.description,
        "fields not given are kept"
    );

    let status = app
        .client()
        .update_category(proto::UpdateCategoryRequest {
            id: category.id.clone(),
            expected_version: 1,
            name: Some("Coffee".to_owned()),
            description: None,
        })
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::Aborted);
    let current = app
        .client()
        .get_category(proto::GetCategoryRequest {
            id: category.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(current, renamed);
}
