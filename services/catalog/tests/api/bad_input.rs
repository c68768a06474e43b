//! Bad input from outside is refused the same way on both backends: INVALID_ARGUMENT naming the
//! field, no row written and no event recorded. The inputs are the ones a corpus run found
//! getting through or breaking: NUL bytes in text (PostgreSQL refuses them as "invalid byte
//! sequence", SQLite stores them and its `length()` stops counting there), terminal escape
//! sequences in names, currencies that only have the shape of one, and amounts near `i64::MAX`.
//! Valid non-ASCII text still goes through.

use emporium_proto::catalog::v1 as proto;
use test_support::{Backend, backend_independent, both_backends, field_violations};
use tonic::Code;

use crate::helpers::{CatalogApp as _, TestApp, spawn_app, valid_product};

both_backends!(
    nul_in_any_text_field_of_a_create_is_refused_and_nothing_changes,
    nul_in_any_text_field_of_an_update_is_refused_and_nothing_changes,
    the_bounds_themselves_are_accepted,
    nul_in_a_search_is_refused,
    non_ascii_text_is_stored_as_given,
    every_check_of_the_schema_names_its_column,
);

// What these check happens before storage or the bus is reached: once is enough.
backend_independent!(
    control_characters_in_names_are_refused,
    currencies_outside_iso_4217_are_refused,
    amounts_and_stock_above_their_bounds_are_refused,
);

const NUL: &str = "Tea\0; DROP";
/// Rings the bell and turns a terminal's text red.
const TERMINAL_ESCAPE: &str = "Tea\x07\x1b[31m";

async fn nul_in_any_text_field_of_a_create_is_refused_and_nothing_changes(backend: Backend) {
    let app = spawn_app(backend).without_relay().await;
    let category = app.create_category("Tea").await;
    let before = Snapshot::take(&app).await;
    let product = || valid_product(&category.id, "TEA-1", "Sencha", 1299);

    let category_cases = [
        (
            "name",
            proto::CreateCategoryRequest {
                name: NUL.to_owned(),
                description: String::new(),
            },
        ),
        (
            "description",
            proto::CreateCategoryRequest {
                name: "Coffee".to_owned(),
                description: NUL.to_owned(),
            },
        ),
    ];
    for (field, request) in category_cases {
        let status = app.client().create_category(request).await.unwrap_err();
        assert_refused(&status, field);
    }
    let product_cases = [
        (
            "sku",
            proto::CreateProductRequest {
                sku: "TEA\0".to_owned(),
                ..product()
            },
        ),
        (
            "name",
            proto::CreateProductRequest {
                name: NUL.to_owned(),
                ..product()
            },
        ),
        (
            "description",
            proto::CreateProductRequest {
                description: NUL.to_owned(),
                ..product()
            },
        ),
        (
            "category_id",
            proto::CreateProductRequest {
                category_id: format!("{}\0", category.id),
                ..product()
            },
        ),
        (
            "price.currency",
            proto::CreateProductRequest {
                price: Some(proto::Money {
                    amount_minor: 1299,
                    currency: "EU\0".to_owned(),
                }),
                ..product()
            },
        ),
    ];
    for (field, request) in product_cases {
        let status = app.client().create_product(request).await.unwrap_err();
        assert_refused(&status, field);
    }

    assert_eq!(Snapshot::take(&app).await, before);
}

async fn nul_in_any_text_field_of_an_update_is_refused_and_nothing_changes(backend: Backend) {
    let app = spawn_app(backend).without_relay().await;
    let category = app.create_category("Tea").await;
    let product = app
        .create_product(&category.id, "TEA-1", "Sencha", 1299)
        .await;
    let before = Snapshot::take(&app).await;
    let category_update = || proto::UpdateCategoryRequest {
        id: category.id.clone(),
        expected_version: category.version,
        name: None,
        description: None,
    };
    let product_update = || proto::UpdateProductRequest {
        id: product.id.clone(),
        expected_version: product.version,
        ..proto::UpdateProductRequest::default()
    };

    let category_cases = [
        (
            "name",
            proto::UpdateCategoryRequest {
                name: Some(NUL.to_owned()),
                ..category_update()
            },
        ),
        (
            "description",
            proto::UpdateCategoryRequest {
                description: Some(NUL.to_owned()),
                ..category_update()
            },
        ),
    ];
    for (field, request) in category_cases {
        let status = app.client().update_category(request).await.unwrap_err();
        assert_refused(&status, field);
    }
    let product_cases = [
        (
            "sku",
            proto::UpdateProductRequest {
                sku: Some("TEA\0".to_owned()),
                ..product_update()
            },
        ),
        (
            "name",
            proto::UpdateProductRequest {
                name: Some(NUL.to_owned()),
                ..product_update()
            },
        ),
        (
            "description",
            proto::UpdateProductRequest {
                description: Some(NUL.to_owned()),
                ..product_update()
            },
        ),
        (
            "category_id",
            proto::UpdateProductRequest {
                category_id: Some(format!("{}\0", category.id)),
                ..product_update()
            },
        ),
        (
            "price.currency",
            proto::UpdateProductRequest {
                price: Some(proto::Money {
                    amount_minor: 1299,
                    currency: "\0EU".to_owned(),
                }),
                ..product_update()
            },
        ),
    ];
    for (field, request) in product_cases {
        let status = app.client().update_product(request).await.unwrap_err();
        assert_refused(&status, field);
    }

    assert_eq!(Snapshot::take(&app).await, before);
}

async fn control_characters_in_names_are_refused(backend: Backend) {
    let app = spawn_app(backend).without_relay().await;
    let category = app.create_category("Tea").await;
    let product = app
        .create_product(&category.id, "TEA-1", "Sencha", 1299)
        .await;
    let before = Snapshot::take(&app).await;

    let create_category = app
        .client()
        .create_category(proto::CreateCategoryRequest {
            name: TERMINAL_ESCAPE.to_owned(),
            description: String::new(),
        })
        .await
        .unwrap_err();
    let update_category = app
        .client()
        .update_category(proto::UpdateCategoryRequest {
            id: category.id.clone(),
            expected_version: category.version,
            name: Some(TERMINAL_ESCAPE.to_owned()),
            description: None,
        })
        .await
        .unwrap_err();
    let create_product = app
        .client()
        .create_product(proto::CreateProductRequest {
            name: TERMINAL_ESCAPE.to_owned(),
            ..valid_product(&category.id, "TEA-2", "Gyokuro", 1)
        })
        .await
        .unwrap_err();
    let update_product = app
        .client()
        .update_product(proto::UpdateProductRequest {
            id: product.id.clone(),
            expected_version: product.version,
            name: Some("Sencha\u{202E}ahcneS".to_owned()),
            ..proto::UpdateProductRequest::default()
        })
        .await
        .unwrap_err();
    // A description may span lines, but an escape sequence is no line break.
    let escaped_description = app
        .client()
        .update_product(proto::UpdateProductRequest {
            id: product.id.clone(),
            expected_version: product.version,
            description: Some("Green\n\x1b[2Jtea".to_owned()),
            ..proto::UpdateProductRequest::default()
        })
        .await
        .unwrap_err();

    for status in [
        &create_category,
        &update_category,
        &create_product,
        &update_product,
    ] {
        assert_refused(status, "name");
    }
    assert_refused(&escaped_description, "description");
    assert_eq!(Snapshot::take(&app).await, before);
}

async fn currencies_outside_iso_4217_are_refused(backend: Backend) {
    let app = spawn_app(backend).without_relay().await;
    let category = app.create_category("Tea").await;
    let product = app
        .create_product(&category.id, "TEA-1", "Sencha", 1299)
        .await;
    let before = Snapshot::take(&app).await;

    for currency in ["QQQ", "XXX", "XTS", "HRK"] {
        let price = Some(proto::Money {
            amount_minor: 1299,
            currency: currency.to_owned(),
        });
        let create = app
            .client()
            .create_product(proto::CreateProductRequest {
                price: price.clone(),
                ..valid_product(&category.id, "TEA-2", "Gyokuro", 1)
            })
            .await
            .unwrap_err();
        let update = app
            .client()
            .update_product(proto::UpdateProductRequest {
                id: product.id.clone(),
                expected_version: product.version,
                price,
                ..proto::UpdateProductRequest::default()
            })
            .await
            .unwrap_err();

        assert_refused(&create, "price.currency");
        assert_refused(&update, "price.currency");
        let (_, reason) = &field_violations(&create)[0];
        assert!(reason.contains(currency), "{currency}: {reason}");
    }
    assert_eq!(Snapshot::take(&app).await, before);
}

async fn amounts_and_stock_above_their_bounds_are_refused(backend: Backend) {
    let app = spawn_app(backend).without_relay().await;
    let category = app.create_category("Tea").await;
    let product = app
        .create_product(&category.id, "TEA-1", "Sencha", 1299)
        .await;
    let before = Snapshot::take(&app).await;

    for amount_minor in [i64::MAX, MAX_AMOUNT_MINOR + 1] {
        let create = app
            .client()
            .create_product(valid_product(
                &category.id,
                "TEA-2",
                "Gyokuro",
                amount_minor,
            ))
            .await
            .unwrap_err();
        let update = app
            .client()
            .update_product(proto::UpdateProductRequest {
                id: product.id.clone(),
                expected_version: product.version,
                price: Some(proto::Money {
                    amount_minor,
                    currency: "EUR".to_owned(),
                }),
                ..proto::UpdateProductRequest::default()
            })
            .await
            .unwrap_err();
        assert_refused(&create, "price.amount_minor");
        assert_refused(&update, "price.amount_minor");
    }
    for stock_on_hand in [i64::MAX, MAX_STOCK + 1] {
        let create = app
            .client()
            .create_product(proto::CreateProductRequest {
                stock_on_hand,
                ..valid_product(&category.id, "TEA-2", "Gyokuro", 1)
            })
            .await
            .unwrap_err();
        let update = app
            .client()
            .update_product(proto::UpdateProductRequest {
                id: product.id.clone(),
                expected_version: product.version,
                stock_on_hand: Some(stock_on_hand),
                ..proto::UpdateProductRequest::default()
            })
            .await
            .unwrap_err();
        assert_refused(&create, "stock_on_hand");
        assert_refused(&update, "stock_on_hand");
    }
    assert_eq!(Snapshot::take(&app).await, before);
}

async fn the_bounds_themselves_are_accepted(backend: Backend) {
    let app = spawn_app(backend).without_relay().await;
    let category = app.create_category("Tea").await;

    let created = app
        .client()
        .create_product(proto::CreateProductRequest {
            stock_on_hand: MAX_STOCK,
            ..valid_product(&category.id, "TEA-1", "Sencha", MAX_AMOUNT_MINOR)
        })
        .await
        .unwrap()
        .into_inner();
    let read = app
        .client()
        .get_product(proto::GetProductRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();

    assert_eq!(
        read.price.map(|price| price.amount_minor),
        Some(MAX_AMOUNT_MINOR)
    );
    assert_eq!(read.stock_on_hand, MAX_STOCK);
}

async fn nul_in_a_search_is_refused(backend: Backend) {
    let app = spawn_app(backend).without_relay().await;

    let products = app
        .client()
        .list_products(proto::ListProductsRequest {
            query: NUL.to_owned(),
            ..proto::ListProductsRequest::default()
        })
        .await
        .unwrap_err();
    let categories = app
        .client()
        .list_categories(proto::ListCategoriesRequest {
            query: NUL.to_owned(),
            ..proto::ListCategoriesRequest::default()
        })
        .await
        .unwrap_err();

    assert_refused(&products, "query");
    assert_refused(&categories, "query");
}

async fn non_ascii_text_is_stored_as_given(backend: Backend) {
    let app = spawn_app(backend).without_relay().await;
    let category = app
        .client()
        .create_category(proto::CreateCategoryRequest {
            name: "東京".to_owned(),
            description: "Tokyo's teas\r\n\tand sweets".to_owned(),
        })
        .await
        .unwrap()
        .into_inner();

    let product = app
        .client()
        .create_product(proto::CreateProductRequest {
            description: "Caramel on top,\ncustard below.".to_owned(),
            ..valid_product(&category.id, "DESSERT-1", " Crème brûlée ", 850)
        })
        .await
        .unwrap()
        .into_inner();
    let found = app
        .client()
        .list_products(proto::ListProductsRequest {
            query: "BRÛLÉE".to_owned(),
            ..proto::ListProductsRequest::default()
        })
        .await
        .unwrap()
        .into_inner();

    assert_eq!(category.name, "東京");
    assert_eq!(category.description, "Tokyo's teas\n\tand sweets");
    assert_eq!(product.name, "Crème brûlée");
    assert_eq!(product.description, "Caramel on top,\ncustard below.");
    let read = app
        .client()
        .get_product(proto::GetProductRequest {
            id: product.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read, product);
    // The query is lower-cased in Rust; the stored accents are lower-case already, so both
    // backends' lower() (SQLite's knows only ASCII) agree.
    assert_eq!(found.products, [product]);
}

/// The domain refuses all of these first; should a value ever slip past it, the schema's own
/// checks are classified by column (so the store maps them to the request field), on both
/// backends' spelling of the error.
async fn every_check_of_the_schema_names_its_column(backend: Backend) {
    use chassis::storage::{ConstraintViolation, constraint_concerns, constraint_violation};

    let app = spawn_app(backend).without_relay().await;
    let category = app.create_category("Tea").await;
    let product = app
        .create_product(&category.id, "TEA-1", "Sencha", 1299)
        .await;
    let product_id = uuid::Uuid::parse_str(&product.id).unwrap();
    let database = app.database().await;
    let columns = ["sku", "name", "price_minor", "currency", "stock_on_hand"];
    let cases = [
        ("name", "''", ConstraintViolation::Check),
        ("price_minor", "-1", ConstraintViolation::Check),
        ("currency", "'eur'", ConstraintViolation::Check),
        ("stock_on_hand", "-1", ConstraintViolation::Check),
        ("name", "NULL", ConstraintViolation::NotNull),
    ];

    for (column, value, kind) in cases {
        let mut tx = database.begin().await.unwrap();
        let sql = format!("UPDATE products SET {column} = {value} WHERE id = $1");
        let error = chassis::on_backend!(tx, conn => {
            sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(product_id)
                .execute(conn)
                .await
                .map(|done| done.rows_affected())
        })
        .expect_err("the schema refuses the value");
        tx.rollback().await.unwrap();

        assert_eq!(constraint_violation(&error), Some(kind), "{sql}: {error}");
        for other in columns {
            assert_eq!(
                constraint_concerns(&error, "products", other),
                other == column,
                "{sql} concerns {other}? {error}"
            );
        }
    }
    let mut tx = database.begin().await.unwrap();
    let duplicate = chassis::on_backend!(tx, conn => {
        sqlx::query("INSERT INTO categories (id, name, description, version, created_at, updated_at) \
                     SELECT $1, name, description, 1, created_at, updated_at FROM categories")
            .bind(uuid::Uuid::new_v4())
            .execute(conn)
            .await
            .map(|done| done.rows_affected())
    })
    .expect_err("category names are unique");
    tx.rollback().await.unwrap();
    assert_eq!(
        constraint_violation(&duplicate),
        Some(ConstraintViolation::Unique)
    );
    assert!(constraint_concerns(&duplicate, "categories", "name"));
    database.close().await;
}

/// The documented bounds (`proto/emporium/catalog/v1/catalog.proto`).
const MAX_AMOUNT_MINOR: i64 = 1_000_000_000_000_000;
const MAX_STOCK: i64 = 1_000_000_000;

/// Everything a refused call must leave as it was: the records and the outbox.
#[derive(Debug, PartialEq)]
struct Snapshot {
    categories: Vec<proto::Category>,
    products: Vec<proto::Product>,
    n_events: i64,
}

impl Snapshot {
    async fn take(app: &TestApp) -> Snapshot {
        let categories = app
            .client()
            .list_categories(proto::ListCategoriesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .categories;
        let products = app
            .client()
            .list_products(proto::ListProductsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .products;
        let database = app.database().await;
        // The app runs without its relay, so every recorded event is still unpublished.
        let n_events = chassis::outbox::unpublished_count(&database)
            .await
            .expect("the outbox can be counted");
        database.close().await;
        Snapshot {
            categories,
            products,
            n_events,
        }
    }
}

/// INVALID_ARGUMENT with exactly one field violation, on `field`, with a reason.
fn assert_refused(status: &tonic::Status, field: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
    let violations = field_violations(status);
    assert_eq!(violations.len(), 1, "{field}: {violations:?}");
    assert_eq!(violations[0].0, field, "{violations:?}");
    assert!(!violations[0].1.is_empty(), "{field} has a reason");
}
