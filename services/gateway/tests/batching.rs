//! References are read in batches: fifty products with their categories cost one List call
//! and one BatchGet call, whatever the number of products or categories, and so do twenty
//! through the connection. The calls are counted
//! by the catalog's own `grpc_server_handled_total`, which is the process's, so this binary holds
//! one test and runs the backends one after the other.

mod common;

use common::Gateway;
use test_support::Backend;

#[tokio::test]
async fn fifty_products_with_their_categories_cost_one_list_and_one_batch_get() {
    for backend in [Backend::SqliteEmbedded, Backend::PostgresNats] {
        fifty_products_with_their_categories(backend).await;
    }
}

async fn fifty_products_with_their_categories(backend: Backend) {
    // Arrange: fifty products in three categories.
    let gateway = Gateway::spawn(backend).await;
    let mut categories = Vec::new();
    for name in ["Tea", "Coffee", "Cocoa"] {
        categories.push((gateway.create_category(name).await, name));
    }
    for index in 0..50 {
        let (category_id, _) = &categories[index % categories.len()];
        gateway
            .create_product(
                category_id,
                &format!("SKU-{index:02}"),
                &format!("Product {index:02}"),
            )
            .await;
    }
    let before = handled_calls();

    // Act
    let data = gateway
        .run("{ products(first: 50, orderBy: sku_ASC) { sku category { name } } }")
        .await;

    // Assert: every product with its category, from one List and one BatchGet.
    let products = data["products"].as_array().expect("a list");
    assert_eq!(products.len(), 50, "{backend:?}");
    for (index, product) in products.iter().enumerate() {
        assert_eq!(product["sku"], format!("SKU-{index:02}"));
        assert_eq!(
            product["category"]["name"],
            categories[index % categories.len()].1,
            "{product}"
        );
    }
    let after = handled_calls();
    let made = |method: &str| {
        after.get(method).copied().unwrap_or(0.0) - before.get(method).copied().unwrap_or(0.0)
    };
    assert_eq!(made("ListProducts"), 1.0, "{backend:?}");
    assert_eq!(made("BatchGetCategories"), 1.0, "{backend:?}");
    assert_eq!(made("GetCategory"), 0.0, "{backend:?}");

    // Act: a shorter page, through the connection (a level of fewer than 30 fields is polled
    // by another kind of `join_all` than a longer one).
    let before = handled_calls();
    let data = gateway
        .run(
            "{ productsConnection(first: 20, orderBy: sku_DESC) \
               { edges { node { sku category { name } } } } }",
        )
        .await;

    // Assert
    let edges = data["productsConnection"]["edges"]
        .as_array()
        .expect("a list");
    assert_eq!(edges.len(), 20, "{backend:?}");
    for (edge, index) in edges.iter().zip((30..50).rev()) {
        assert_eq!(edge["node"]["sku"], format!("SKU-{index:02}"));
        assert_eq!(
            edge["node"]["category"]["name"],
            categories[index % categories.len()].1,
            "{edge}"
        );
    }
    let after = handled_calls();
    let made = |method: &str| {
        after.get(method).copied().unwrap_or(0.0) - before.get(method).copied().unwrap_or(0.0)
    };
    assert_eq!(made("ListProducts"), 1.0, "{backend:?}");
    assert_eq!(made("BatchGetCategories"), 1.0, "{backend:?}");
    assert_eq!(made("GetCategory"), 0.0, "{backend:?}");
}

/// `grpc_server_handled_total` summed by method, as the process's `/metrics` has it.
fn handled_calls() -> std::collections::HashMap<String, f64> {
    let mut calls = std::collections::HashMap::new();
    for line in chassis::metrics::render().lines() {
        let Some(labels) = line.strip_prefix("grpc_server_handled_total{") else {
            continue;
        };
        let method = labels
            .split("grpc_method=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default()
            .to_owned();
        let value: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|value| value.parse().ok())
            .unwrap_or(0.0);
        *calls.entry(method).or_insert(0.0) += value;
    }
    calls
}
