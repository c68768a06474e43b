//! Listing: filters, ordering, keyset pagination with totals, stable under concurrent inserts.

use std::collections::HashSet;

use emporium_proto::catalog::v1 as proto;
use test_support::{Backend, both_backends, violated_fields};
use tonic::Code;

use crate::helpers::{CatalogApp as _, spawn_app, valid_product};

both_backends!(
    lists_filter_by_category_text_and_sku,
    lists_sort_by_price_descending,
    pages_cover_every_product_once_with_a_total,
    pagination_is_stable_under_concurrent_inserts,
    a_page_token_only_works_with_its_own_query,
    later_pages_report_the_count_taken_by_the_first,
);

async fn lists_filter_by_category_text_and_sku(backend: Backend) {
    let app = spawn_app(backend).await;
    let tea = app.create_category("Tea").await;
    let coffee = app.create_category("Coffee").await;
    app.create_product(&tea.id, "TEA-1", "Green Sencha", 1)
        .await;
    app.create_product(&tea.id, "TEA-2", "Black Assam", 2).await;
    app.create_product(&coffee.id, "COF-1", "Green Beans", 3)
        .await;

    let list = |request: proto::ListProductsRequest| {
        let mut client = app.client();
        async move {
            let response = client.list_products(request).await.unwrap().into_inner();
            let mut skus: Vec<String> = response
                .products
                .into_iter()
                .map(|product| product.sku)
                .collect();
            skus.sort();
            (skus, response.total_size)
        }
    };

    let by_category = list(proto::ListProductsRequest {
        category_id: tea.id.clone(),
        ..Default::default()
    })
    .await;
    let by_text = list(proto::ListProductsRequest {
        query: "green".to_owned(),
        ..Default::default()
    })
    .await;
    let by_text_and_category = list(proto::ListProductsRequest {
        query: "GREEN".to_owned(),
        category_id: coffee.id.clone(),
        ..Default::default()
    })
    .await;
    let by_sku = list(proto::ListProductsRequest {
        sku: "TEA-2".to_owned(),
        ..Default::default()
    })
    .await;
    let wildcard_is_literal = list(proto::ListProductsRequest {
        query: "%".to_owned(),
        ..Default::default()
    })
    .await;

    assert_eq!(
        by_category,
        (vec!["TEA-1".to_owned(), "TEA-2".to_owned()], 2)
    );
    assert_eq!(by_text, (vec!["COF-1".to_owned(), "TEA-1".to_owned()], 2));
    assert_eq!(by_text_and_category, (vec!["COF-1".to_owned()], 1));
    assert_eq!(by_sku, (vec!["TEA-2".to_owned()], 1));
    assert_eq!(wildcard_is_literal, (vec![], 0));
}

async fn lists_sort_by_price_descending(backend: Backend) {
    let app = spawn_app(backend).await;
    let tea = app.create_category("Tea").await;
    for (sku, price) in [("A", 300), ("B", 100), ("C", 200), ("D", 200)] {
        app.create_product(&tea.id, sku, "Tea", price).await;
    }

    let response = app
        .client()
        .list_products(proto::ListProductsRequest {
            order_by: proto::ProductOrderBy::Price as i32,
            direction: proto::SortDirection::Desc as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    let prices: Vec<i64> = response
        .products
        .iter()
        .filter_map(|product| product.price.as_ref())
        .map(|price| price.amount_minor)
        .collect();
    assert_eq!(prices, [300, 200, 200, 100]);
}

async fn pages_cover_every_product_once_with_a_total(backend: Backend) {
    let app = spawn_app(backend).await;
    let tea = app.create_category("Tea").await;
    let mut created = HashSet::new();
    for index in 0..23 {
        created.insert(
            app.create_product(
                &tea.id,
                &format!("SKU-{index:02}"),
                &format!("Tea {index:02}"),
                index,
            )
            .await
            .id,
        );
    }

    let mut seen = Vec::new();
    let mut page_token = String::new();
    let mut n_pages = 0;
    loop {
        let page = app
            .client()
            .list_products(proto::ListProductsRequest {
                page_size: 5,
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.total_size, 23);
        assert!(page.products.len() <= 5);
        seen.extend(page.products.into_iter().map(|product| product.name));
        n_pages += 1;
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }

    assert_eq!(n_pages, 5);
    let expected: Vec<String> = (0..23).map(|index| format!("Tea {index:02}")).collect();
    assert_eq!(seen, expected, "pages are in name order, each product once");
}

async fn pagination_is_stable_under_concurrent_inserts(backend: Backend) {
    let app = spawn_app(backend).await;
    let tea = app.create_category("Tea").await;
    let mut originals = HashSet::new();
    for index in 0..30 {
        originals.insert(
            app.create_product(
                &tea.id,
                &format!("ORIG-{index:02}"),
                &format!("Tea {index:02}"),
                1,
            )
            .await
            .id,
        );
    }
    // A writer inserts products that sort before, between and after the originals while we page.
    let mut writer = app.client();
    let category_id = tea.id.clone();
    let inserts = tokio::spawn(async move {
        for index in 0..40 {
            let name = match index % 3 {
                0 => format!("Aaa {index}"),
                1 => format!("Tea {:02} b{index}", index % 30),
                _ => format!("Zzz {index}"),
            };
            writer
                .create_product(valid_product(
                    &category_id,
                    &format!("NEW-{index}"),
                    &name,
                    1,
                ))
                .await
                .unwrap();
        }
    });

    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = app
            .client()
            .list_products(proto::ListProductsRequest {
                page_size: 4,
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.products.into_iter().map(|product| product.id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
        tokio::task::yield_now().await;
    }
    inserts.await.unwrap();

    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no product is served twice");
    for original in &originals {
        assert!(
            unique.contains(original),
            "original product {original} was skipped"
        );
    }
}

async fn a_page_token_only_works_with_its_own_query(backend: Backend) {
    let app = spawn_app(backend).await;
    let tea = app.create_category("Tea").await;
    for index in 0..3 {
        app.create_product(&tea.id, &format!("SKU-{index}"), "Tea", 1)
            .await;
    }
    let first = app
        .client()
        .list_products(proto::ListProductsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    let other_order = app
        .client()
        .list_products(proto::ListProductsRequest {
            page_size: 1,
            page_token: first.next_page_token.clone(),
            order_by: proto::ProductOrderBy::Price as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    let garbage = app
        .client()
        .list_products(proto::ListProductsRequest {
            page_token: "not-a-token".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let too_big = app
        .client()
        .list_products(proto::ListProductsRequest {
            page_size: 501,
            ..Default::default()
        })
        .await
        .unwrap_err();

    assert_eq!(other_order.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&other_order), ["page_token"]);
    assert_eq!(violated_fields(&garbage), ["page_token"]);
    assert_eq!(violated_fields(&too_big), ["page_size"]);
}

async fn later_pages_report_the_count_taken_by_the_first(backend: Backend) {
    let app = spawn_app(backend).await;
    let tea = app.create_category("Tea").await;
    for index in 0..3 {
        app.create_product(&tea.id, &format!("SKU-{index}"), &format!("Tea {index}"), 1)
            .await;
    }
    let list = |page_token: &str, text: &str| proto::ListProductsRequest {
        page_size: 2,
        page_token: page_token.to_owned(),
        query: text.to_owned(),
        ..Default::default()
    };
    let first = app
        .client()
        .list_products(list("", ""))
        .await
        .unwrap()
        .into_inner();
    app.create_product(&tea.id, "SKU-3", "Tea 3", 1).await;
    app.create_product(&tea.id, "SKU-4", "Tea 4", 1).await;

    let second = app
        .client()
        .list_products(list(&first.next_page_token, ""))
        .await
        .unwrap()
        .into_inner();
    let other_filter = app
        .client()
        .list_products(list(&first.next_page_token, "tea"))
        .await
        .unwrap_err();
    let fresh = app
        .client()
        .list_products(list("", ""))
        .await
        .unwrap()
        .into_inner();

    assert_eq!(first.total_size, 3);
    assert_eq!(
        second.total_size, 3,
        "page 2 reports the count its first page took"
    );
    assert_eq!(second.products.len(), 2, "page 2 still sees the new rows");
    assert_eq!(violated_fields(&other_filter), ["page_token"]);
    assert_eq!(fresh.total_size, 5, "a new first page counts again");
}
