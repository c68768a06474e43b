//! The catalog's SQL, one text per query for both backends, each function taking the caller's
//! transaction so that a change and its event commit together.

use chassis::error::Error;
use chassis::on_backend;
use chassis::outbox::NewEvent;
use chassis::pagination::{Cursor, PageRequest, SortKey};
use chassis::storage::{
    ConstraintViolation, Database, Filter, Table, Timestamp, Transaction, Value,
    constraint_violation,
};
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use crate::domain::{
    Category, CategoryChanges, CategoryListQuery, CategoryOrder, Page, Product, ProductChanges,
    ProductListQuery, ProductOrder,
};

const CATEGORY_COLUMNS: &str = CategoryRow::COLUMNS;
const PRODUCT_COLUMNS: &str = ProductRow::COLUMNS;

/// The categories table: its row's columns, and how a write's constraint violations read to the
/// caller. (`version`, `created_at` and `updated_at` are set by the SQL itself, so a violation
/// there is a bug, rightly INTERNAL.)
const CATEGORIES: Table = Table {
    name: "categories",
    columns: CATEGORY_COLUMNS,
    resource: "category",
    unique: &["name"],
    foreign_keys: &[],
    fields: &[("name", "name"), ("description", "description")],
};

/// The products table: its row's columns, and how a write's constraint violations read to the
/// caller.
const PRODUCTS: Table = Table {
    name: "products",
    columns: PRODUCT_COLUMNS,
    resource: "product",
    unique: &["sku"],
    foreign_keys: &[("category_id", "no category has this id")],
    fields: &[
        ("sku", "sku"),
        ("name", "name"),
        ("description", "description"),
        ("category_id", "category_id"),
        ("price_minor", "price.amount_minor"),
        ("currency", "price.currency"),
        ("stock_on_hand", "stock_on_hand"),
    ],
};

chassis::table_row! {
    struct CategoryRow {
        id: Uuid,
        name: String,
        description: String,
        version: i64,
        created_at: Timestamp,
        updated_at: Timestamp,
    }
}

chassis::table_row! {
    struct ProductRow {
        id: Uuid,
        sku: String,
        name: String,
        description: String,
        category_id: Uuid,
        price_minor: i64,
        currency: String,
        stock_on_hand: i64,
        version: i64,
        created_at: Timestamp,
        updated_at: Timestamp,
    }
}

// === categories ===

/// Inserts `category`, a new one, and records `event`, its creation, with it (in one statement
/// on PostgreSQL: [`Database::insert_with`]).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn insert_category(
    database: &Database,
    category: &Category,
    event: NewEvent,
) -> Result<(), Error> {
    database
        .insert_with(&CATEGORIES, &category_row(category), event)
        .await
}

#[tracing::instrument(level = "debug", skip_all, fields(category_id = %id))]
pub async fn get_category(tx: &mut Transaction, id: Uuid) -> Result<Option<Category>, Error> {
    Ok(get_categories(tx, &[id]).await?.pop())
}

#[tracing::instrument(level = "debug", skip_all, fields(n_ids = ids.len()))]
pub async fn get_categories(tx: &mut Transaction, ids: &[Uuid]) -> Result<Vec<Category>, Error> {
    let placeholders = chassis::storage::placeholders(1, ids.len());
    let sql = format!("SELECT {CATEGORY_COLUMNS} FROM categories WHERE id IN ({placeholders})");
    let rows = on_backend!(tx, conn => {
        let query = sqlx::query_as::<_, CategoryRow>(AssertSqlSafe(sql));
        chassis::storage::bind_all(query, ids.iter().copied()).fetch_all(conn).await
    })?;
    Ok(rows.into_iter().map(Category::from).collect())
}

#[tracing::instrument(level = "debug", skip_all)]
pub async fn list_categories(
    tx: &mut Transaction,
    query: &CategoryListQuery,
    page: &PageRequest,
) -> Result<Page<Category>, Error> {
    let column = match query.order {
        CategoryOrder::Name => "name",
        CategoryOrder::CreatedAt => "created_at",
        CategoryOrder::UpdatedAt => "updated_at",
    };
    let pattern = query.text.as_ref().map(|text| text.like_pattern());
    let filter = Filter::new().and(
        "lower(name) LIKE $ ESCAPE '\\' OR lower(description) LIKE $ ESCAPE '\\'",
        pattern.as_deref().map(Value::Text),
    );
    let (sql, count_sql) = CATEGORIES.keyset_sql(&filter, column, query.direction, page);
    let rows = on_backend!(tx, conn => {
        let select = sqlx::query_as::<_, CategoryRow>(AssertSqlSafe(sql));
        let count = sqlx::query_scalar(AssertSqlSafe(count_sql));
        chassis::storage::fetch_page(conn, select, count, &filter, page).await
    })?;
    Ok(rows.map(Category::from))
}

#[tracing::instrument(level = "debug", skip_all, fields(category_id = %id))]
pub async fn update_category(
    tx: &mut Transaction,
    id: Uuid,
    changes: &CategoryChanges,
) -> Result<Category, Error> {
    let sql = format!(
        "UPDATE categories SET name = COALESCE($3, name), description = COALESCE($4, description), \
         version = version + 1, updated_at = $5 \
         WHERE id = $1 AND version = $2 RETURNING {CATEGORY_COLUMNS}"
    );
    let row = on_backend!(tx, conn => {
        sqlx::query_as::<_, CategoryRow>(AssertSqlSafe(sql))
            .bind(id)
            .bind(changes.expected_version)
            .bind(changes.name.as_ref().map(|name| name.as_str()))
            .bind(changes.description.as_ref().map(|description| description.as_str()))
            .bind(Timestamp::now())
            .fetch_optional(conn)
            .await
    })
    .map_err(|error| CATEGORIES.error(error))?;
    let Some(row) = row else {
        let current = get_category(tx, id).await?.map(|category| category.version);
        return Err(CATEGORIES.missing_or_stale(current, id, changes.expected_version));
    };
    Ok(row.into())
}

/// Deletes the category if it has no products; returns it as it was.
#[tracing::instrument(level = "debug", skip_all, fields(category_id = %id))]
pub async fn delete_category(
    tx: &mut Transaction,
    id: Uuid,
    expected_version: i64,
) -> Result<Category, Error> {
    let n_products: i64 = on_backend!(tx, conn => {
        sqlx::query_scalar("SELECT count(*) FROM products WHERE category_id = $1")
            .bind(id)
            .fetch_one(conn)
            .await
    })?;
    if n_products > 0 {
        return Err(category_in_use(n_products));
    }
    let sql = format!(
        "DELETE FROM categories WHERE id = $1 AND ($2 = 0 OR version = $2) \
         RETURNING {CATEGORY_COLUMNS}"
    );
    let row = on_backend!(tx, conn => {
        sqlx::query_as::<_, CategoryRow>(AssertSqlSafe(sql))
            .bind(id)
            .bind(expected_version)
            .fetch_optional(conn)
            .await
    })
    .map_err(|error| match constraint_violation(&error) {
        // A product was added concurrently: the foreign key keeps the category.
        Some(ConstraintViolation::ForeignKey) => category_in_use(1),
        _ => Error::from(error),
    })?;
    let Some(row) = row else {
        let current = get_category(tx, id).await?.map(|category| category.version);
        return Err(CATEGORIES.missing_or_stale(current, id, expected_version));
    };
    Ok(row.into())
}

// === products ===

/// Inserts `product`, a new one, and records `event`, its creation, with it (in one statement
/// on PostgreSQL: [`Database::insert_with`]).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn insert_product(
    database: &Database,
    product: &Product,
    event: NewEvent,
) -> Result<(), Error> {
    database
        .insert_with(&PRODUCTS, &product_row(product), event)
        .await
}

/// Inserts `product`, a new one, in `tx`, without its event: for tests of how writes share a
/// transaction's commit.
pub async fn insert_product_in(tx: &mut Transaction, product: &Product) -> Result<(), Error> {
    tx.insert(&PRODUCTS, &product_row(product)).await
}

#[tracing::instrument(level = "debug", skip_all, fields(product_id = %id))]
pub async fn get_product(tx: &mut Transaction, id: Uuid) -> Result<Option<Product>, Error> {
    Ok(get_products(tx, &[id]).await?.pop())
}

#[tracing::instrument(level = "debug", skip_all, fields(n_ids = ids.len()))]
pub async fn get_products(tx: &mut Transaction, ids: &[Uuid]) -> Result<Vec<Product>, Error> {
    let placeholders = chassis::storage::placeholders(1, ids.len());
    let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE id IN ({placeholders})");
    let rows = on_backend!(tx, conn => {
        let query = sqlx::query_as::<_, ProductRow>(AssertSqlSafe(sql));
        chassis::storage::bind_all(query, ids.iter().copied()).fetch_all(conn).await
    })?;
    Ok(rows.into_iter().map(Product::from).collect())
}

#[tracing::instrument(level = "debug", skip_all)]
pub async fn list_products(
    tx: &mut Transaction,
    query: &ProductListQuery,
    page: &PageRequest,
) -> Result<Page<Product>, Error> {
    let column = match query.order {
        ProductOrder::Name => "name",
        ProductOrder::Sku => "sku",
        ProductOrder::Price => "price_minor",
        ProductOrder::CreatedAt => "created_at",
        ProductOrder::UpdatedAt => "updated_at",
    };
    let pattern = query.text.as_ref().map(|text| text.like_pattern());
    let filter = Filter::new()
        .and("category_id = $", query.category_id.map(Value::Uuid))
        .and(
            "lower(name) LIKE $ ESCAPE '\\' OR lower(description) LIKE $ ESCAPE '\\'",
            pattern.as_deref().map(Value::Text),
        )
        .and(
            "sku = $",
            query.sku.as_ref().map(|sku| Value::Text(sku.as_str())),
        );
    let (sql, count_sql) = PRODUCTS.keyset_sql(&filter, column, query.direction, page);
    let rows = on_backend!(tx, conn => {
        let select = sqlx::query_as::<_, ProductRow>(AssertSqlSafe(sql));
        let count = sqlx::query_scalar(AssertSqlSafe(count_sql));
        chassis::storage::fetch_page(conn, select, count, &filter, page).await
    })?;
    Ok(rows.map(Product::from))
}

#[tracing::instrument(level = "debug", skip_all, fields(product_id = %id))]
pub async fn update_product(
    tx: &mut Transaction,
    id: Uuid,
    changes: &ProductChanges,
) -> Result<Product, Error> {
    let sql = format!(
        "UPDATE products SET sku = COALESCE($3, sku), name = COALESCE($4, name), \
         description = COALESCE($5, description), category_id = COALESCE($6, category_id), \
         price_minor = COALESCE($7, price_minor), currency = COALESCE($8, currency), \
         stock_on_hand = COALESCE($9, stock_on_hand), version = version + 1, updated_at = $10 \
         WHERE id = $1 AND version = $2 RETURNING {PRODUCT_COLUMNS}"
    );
    let row = on_backend!(tx, conn => {
        sqlx::query_as::<_, ProductRow>(AssertSqlSafe(sql))
            .bind(id)
            .bind(changes.expected_version)
            .bind(changes.sku.as_ref().map(|sku| sku.as_str()))
            .bind(changes.name.as_ref().map(|name| name.as_str()))
            .bind(changes.description.as_ref().map(|description| description.as_str()))
            .bind(changes.category_id)
            .bind(changes.price.as_ref().map(|price| price.amount_minor))
            .bind(changes.price.as_ref().map(|price| price.currency.as_str()))
            .bind(changes.stock_on_hand.map(|stock| stock.units()))
            .bind(Timestamp::now())
            .fetch_optional(conn)
            .await
    })
    .map_err(|error| PRODUCTS.error(error))?;
    let Some(row) = row else {
        let current = get_product(tx, id).await?.map(|product| product.version);
        return Err(PRODUCTS.missing_or_stale(current, id, changes.expected_version));
    };
    Ok(row.into())
}

/// Deletes the product; returns it as it was.
#[tracing::instrument(level = "debug", skip_all, fields(product_id = %id))]
pub async fn delete_product(
    tx: &mut Transaction,
    id: Uuid,
    expected_version: i64,
) -> Result<Product, Error> {
    let sql = format!(
        "DELETE FROM products WHERE id = $1 AND ($2 = 0 OR version = $2) \
         RETURNING {PRODUCT_COLUMNS}"
    );
    let row = on_backend!(tx, conn => {
        sqlx::query_as::<_, ProductRow>(AssertSqlSafe(sql))
            .bind(id)
            .bind(expected_version)
            .fetch_optional(conn)
            .await
    })?;
    let Some(row) = row else {
        let current = get_product(tx, id).await?.map(|product| product.version);
        return Err(PRODUCTS.missing_or_stale(current, id, expected_version));
    };
    Ok(row.into())
}

/// The cursor that continues a list after `product`.
pub fn product_cursor(product: &Product, order: ProductOrder) -> Cursor {
    let key = match order {
        ProductOrder::Name => SortKey::Text(product.name.clone()),
        ProductOrder::Sku => SortKey::Text(product.sku.clone()),
        ProductOrder::Price => SortKey::Integer(product.price_minor),
        ProductOrder::CreatedAt => SortKey::time(product.created_at),
        ProductOrder::UpdatedAt => SortKey::time(product.updated_at),
    };
    Cursor::new(key, product.id)
}

/// The cursor that continues a list after `category`.
pub fn category_cursor(category: &Category, order: CategoryOrder) -> Cursor {
    let key = match order {
        CategoryOrder::Name => SortKey::Text(category.name.clone()),
        CategoryOrder::CreatedAt => SortKey::time(category.created_at),
        CategoryOrder::UpdatedAt => SortKey::time(category.updated_at),
    };
    Cursor::new(key, category.id)
}

// === helpers ===

/// `category`'s values in [`CATEGORY_COLUMNS`]' order.
fn category_row(category: &Category) -> [Value<'_>; 6] {
    [
        Value::Uuid(category.id),
        Value::Text(&category.name),
        Value::Text(&category.description),
        Value::Integer(category.version),
        Value::Time(category.created_at),
        Value::Time(category.updated_at),
    ]
}

/// `product`'s values in [`PRODUCT_COLUMNS`]' order.
fn product_row(product: &Product) -> [Value<'_>; 11] {
    [
        Value::Uuid(product.id),
        Value::Text(&product.sku),
        Value::Text(&product.name),
        Value::Text(&product.description),
        Value::Uuid(product.category_id),
        Value::Integer(product.price_minor),
        Value::Text(&product.currency),
        Value::Integer(product.stock_on_hand),
        Value::Integer(product.version),
        Value::Time(product.created_at),
        Value::Time(product.updated_at),
    ]
}

fn category_in_use(n_products: i64) -> Error {
    Error::FailedPrecondition(format!(
        "the category still has {n_products} product(s); move or delete them first"
    ))
}

impl From<CategoryRow> for Category {
    fn from(row: CategoryRow) -> Category {
        Category {
            id: row.id,
            name: row.name,
            description: row.description,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

impl From<ProductRow> for Product {
    fn from(row: ProductRow) -> Product {
        Product {
            id: row.id,
            sku: row.sku,
            name: row.name,
            description: row.description,
            category_id: row.category_id,
            price_minor: row.price_minor,
            currency: row.currency,
            stock_on_hand: row.stock_on_hand,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}
