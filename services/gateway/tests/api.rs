//! The gateway in front of the real catalog (port 0, a throwaway database and bus namespace, on
//! both backends): OpenCRUD queries and mutations through the schema built from the contract,
//! each resolved by a gRPC call with the caller's token, and the services' refusals as GraphQL
//! error codes.

mod common;

use chassis::auth::roles;
use common::Gateway;
use serde_json::{Value, json};
use test_support::{Backend, both_backends};

both_backends!(
    a_product_is_created_read_listed_updated_and_deleted,
    a_stale_version_is_a_conflict_and_changes_nothing,
    without_a_token_every_mutation_is_refused_and_nothing_changes,
    bad_input_names_the_field_and_changes_nothing,
    arguments_the_service_cannot_do_are_refused_by_name,
    a_records_history_is_its_events_and_a_field_refused_is_null_with_its_path,
    a_category_lists_its_own_products,
    a_variable_left_null_is_an_absent_argument,
    records_are_listed_by_their_ids_alone,
);

/// The fields the first error of `answer` names as violated (`extensions.fields[].field`).
fn violated_fields(answer: &Value) -> Vec<&str> {
    answer["errors"][0]["extensions"]["fields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|violation| violation["field"].as_str())
        .collect()
}

/// The `extensions.code` of each error of `answer`.
fn error_codes(answer: &Value) -> Vec<String> {
    answer["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|error| {
            error["extensions"]["code"]
                .as_str()
                .unwrap_or("none")
                .to_owned()
        })
        .collect()
}

async fn a_product_is_created_read_listed_updated_and_deleted(backend: Backend) {
    let gateway = Gateway::spawn(backend).await;
    let category_id = gateway.create_category("Tea").await;

    // Create: the answer in proto3 JSON's shapes (int64 as strings, RFC 3339 times).
    let created = gateway
        .create_product(&category_id, "TEA-1", "Sencha")
        .await;
    assert_eq!(created["sku"], "TEA-1");
    assert_eq!(created["version"], "1");
    assert_eq!(
        created["price"],
        json!({ "amountMinor": "1299", "currency": "EUR" })
    );
    assert!(
        created["createTime"].as_str().unwrap().ends_with('Z'),
        "{created}"
    );
    gateway
        .create_product(&category_id, "TEA-2", "Gyokuro")
        .await;
    gateway
        .create_product(&category_id, "TEA-3", "Bancha")
        .await;
    let id = created["id"].as_str().unwrap();

    // Read, list with a filter and an order, and page through a connection.
    let read = gateway
        .run(&format!(
            r#"{{ product(where: {{ id: "{id}" }}) {{ name }} }}"#
        ))
        .await;
    assert_eq!(read["product"]["name"], "Sencha");
    let listed = gateway
        .run(&format!(
            r#"{{ products(where: {{ categoryId: "{category_id}" }}, orderBy: sku_DESC, first: 2) {{ sku }} }}"#
        ))
        .await;
    assert_eq!(
        listed["products"],
        json!([{ "sku": "TEA-3" }, { "sku": "TEA-2" }])
    );
    let first_page = gateway
        .run("{ productsConnection(orderBy: name_ASC, first: 2) { edges { node { name } cursor } pageInfo { hasNextPage endCursor } aggregate { count } } }")
        .await;
    let connection = &first_page["productsConnection"];
    assert_eq!(connection["aggregate"]["count"], "3");
    assert_eq!(connection["pageInfo"]["hasNextPage"], true);
    let cursor = connection["pageInfo"]["endCursor"].as_str().unwrap();
    assert_eq!(connection["edges"][1]["cursor"], cursor);
    let second_page = gateway
        .run(&format!(
            r#"{{ productsConnection(orderBy: name_ASC, first: 2, after: "{cursor}") {{ edges {{ node {{ name }} }} pageInfo {{ hasNextPage }} }} }}"#
        ))
        .await;
    assert_eq!(
        second_page["productsConnection"],
        json!({ "edges": [{ "node": { "name": "Sencha" } }], "pageInfo": { "hasNextPage": false } })
    );

    // Update with the version read, then delete.
    let updated = gateway
        .run(&format!(
            r#"mutation {{ updateProduct(where: {{ id: "{id}" }}, data: {{ expectedVersion: "1", name: "Sencha Superior" }}) {{ name version }} }}"#
        ))
        .await;
    assert_eq!(
        updated["updateProduct"],
        json!({ "name": "Sencha Superior", "version": "2" })
    );
    let deleted = gateway
        .run(&format!(
            r#"mutation {{ deleteProduct(where: {{ id: "{id}" }}, data: {{ expectedVersion: "2" }}) }}"#
        ))
        .await;
    assert_eq!(deleted["deleteProduct"], id);
    let gone = gateway
        .run(&format!(
            r#"{{ product(where: {{ id: "{id}" }}) {{ name }} }}"#
        ))
        .await;
    assert_eq!(gone["product"], Value::Null);
}

async fn a_stale_version_is_a_conflict_and_changes_nothing(backend: Backend) {
    let gateway = Gateway::spawn(backend).await;
    let id = gateway.sencha().await;
    gateway
        .run(&format!(
            r#"mutation {{ updateProduct(where: {{ id: "{id}" }}, data: {{ expectedVersion: "1", name: "First" }}) {{ version }} }}"#
        ))
        .await;

    let answer = gateway
        .run_with(
            &format!(
                r#"mutation {{ updateProduct(where: {{ id: "{id}" }}, data: {{ expectedVersion: "1", name: "Second" }}) {{ version }} }}"#
            ),
            Some(&gateway.app.token),
        )
        .await;

    assert_eq!(error_codes(&answer), ["CONFLICT"], "{answer:#}");
    let read = gateway
        .run(&format!(
            r#"{{ product(where: {{ id: "{id}" }}) {{ name version }} }}"#
        ))
        .await;
    assert_eq!(read["product"], json!({ "name": "First", "version": "2" }));
}

async fn without_a_token_every_mutation_is_refused_and_nothing_changes(backend: Backend) {
    let gateway = Gateway::spawn(backend).await;
    let id = gateway.sencha().await;
    let customer = gateway.app.issuer.token("customer-1", &[roles::CUSTOMER]);
    // A manager's token, but for another API.
    let mut claims = gateway
        .app
        .issuer
        .claims("catalog-manager-1", &[roles::CATALOG_MANAGER]);
    claims.aud = "another-api".to_owned();
    let other_audience = gateway.app.issuer.token_with(&claims);

    for (token, code) in [
        (None, "UNAUTHENTICATED"),
        (Some(customer.as_str()), "FORBIDDEN"),
        (Some(other_audience.as_str()), "UNAUTHENTICATED"),
    ] {
        for (mutation, field) in [
            (
                r#"mutation { createCategory(data: { name: "Coffee" }) { id } }"#.to_owned(),
                "createCategory",
            ),
            (
                format!(
                    r#"mutation {{ updateProduct(where: {{ id: "{id}" }}, data: {{ expectedVersion: "1", name: "Mine" }}) {{ id }} }}"#
                ),
                "updateProduct",
            ),
            (
                format!(r#"mutation {{ deleteProduct(where: {{ id: "{id}" }}) }}"#),
                "deleteProduct",
            ),
        ] {
            let answer = gateway.run_with(&mutation, token).await;
            assert_eq!(error_codes(&answer), [code], "{mutation}: {answer:#}");
            // A non-null root field's failure: its error at its path, and no data at all.
            assert_eq!(answer["errors"][0]["path"], json!([field]), "{answer:#}");
            assert!(answer["data"].is_null(), "{answer:#}");
        }
    }
    let unauthenticated_reads = gateway
        .run_with(
            "{ categories(first: 1) { id } productsConnection(first: 1) { aggregate { count } } }",
            None,
        )
        .await;
    let mut paths: Vec<String> = unauthenticated_reads["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|error| error["path"].to_string())
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        [r#"["categories"]"#, r#"["productsConnection"]"#],
        "{unauthenticated_reads:#}"
    );
    assert!(unauthenticated_reads["data"].is_null());
    let read = gateway
        .run(&format!(
            r#"{{ product(where: {{ id: "{id}" }}) {{ name version }} }}"#
        ))
        .await;
    assert_eq!(read["product"], json!({ "name": "Sencha", "version": "1" }));
    assert_eq!(gateway.product_count().await, "1");
}

async fn bad_input_names_the_field_and_changes_nothing(backend: Backend) {
    let gateway = Gateway::spawn(backend).await;
    let category_id = gateway.create_category("Tea").await;

    let answer = gateway
        .run_with(
            &format!(
                r#"mutation {{ createProduct(data: {{ sku: "TEA-1", name: "Sencha", categoryId: "{category_id}", price: {{ amountMinor: -5, currency: "EUR" }} }}) {{ id }} }}"#
            ),
            Some(&gateway.app.token),
        )
        .await;

    assert_eq!(error_codes(&answer), ["BAD_USER_INPUT"], "{answer:#}");
    assert_eq!(
        violated_fields(&answer),
        ["price.amount_minor"],
        "{answer:#}"
    );
    assert_eq!(gateway.product_count().await, "0");
}

async fn arguments_the_service_cannot_do_are_refused_by_name(backend: Backend) {
    let gateway = Gateway::spawn(backend).await;

    for (argument, query) in [
        ("skip", "{ products(skip: 10) { id } }"),
        ("last", "{ products(last: 5) { id } }"),
        (
            "before",
            r#"{ productsConnection(before: "x") { aggregate { count } } }"#,
        ),
    ] {
        let answer = gateway.run_with(query, Some(&gateway.app.token)).await;
        assert_eq!(error_codes(&answer), ["BAD_USER_INPUT"], "{answer:#}");
        let message = answer["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with(argument) && message.contains("pages forward only"),
            "{message}"
        );
    }
}

async fn a_records_history_is_its_events_and_a_field_refused_is_null_with_its_path(
    backend: Backend,
) {
    let gateway = Gateway::spawn(backend).await;
    let id = gateway.sencha().await;
    gateway
        .run(&format!(
            r#"mutation {{ updateProduct(where: {{ id: "{id}" }}, data: {{ expectedVersion: "1", name: "Sencha Superior" }}) {{ version }} }}"#
        ))
        .await;
    let query = format!(
        r#"{{ product(where: {{ id: "{id}" }}) {{ name events {{ type aggregateVersion actor }} }} }}"#
    );

    let history = gateway.run(&query).await;
    let customer = gateway.app.issuer.token("customer-1", &[roles::CUSTOMER]);
    let as_customer = gateway.run_with(&query, Some(&customer)).await;

    assert_eq!(
        history["product"]["events"],
        json!([
            { "type": "emporium.catalog.product.created", "aggregateVersion": "1", "actor": "catalog-manager-1" },
            { "type": "emporium.catalog.product.updated", "aggregateVersion": "2", "actor": "catalog-manager-1" },
        ])
    );
    // The audit trail needs a catalog role: the customer reads the product, not its history.
    assert_eq!(as_customer["data"]["product"]["name"], "Sencha Superior");
    assert_eq!(as_customer["data"]["product"]["events"], Value::Null);
    assert_eq!(error_codes(&as_customer), ["FORBIDDEN"], "{as_customer:#}");
    assert_eq!(
        as_customer["errors"][0]["path"],
        json!(["product", "events"]),
        "{as_customer:#}"
    );
}

async fn a_category_lists_its_own_products(backend: Backend) {
    let gateway = Gateway::spawn(backend).await;
    let tea = gateway.create_category("Tea").await;
    let coffee = gateway.create_category("Coffee").await;
    gateway.create_product(&tea, "TEA-2", "Gyokuro").await;
    gateway.create_product(&coffee, "COF-1", "Mocha").await;
    gateway.create_product(&tea, "TEA-1", "Sencha").await;

    let data = gateway
        .run(&format!(
            r#"{{ category(where: {{ id: "{tea}" }}) {{ name products(orderBy: sku_ASC, first: 10) {{ sku category {{ name }} }} }} }}"#
        ))
        .await;

    assert_eq!(
        data["category"],
        json!({
            "name": "Tea",
            "products": [
                { "sku": "TEA-1", "category": { "name": "Tea" } },
                { "sku": "TEA-2", "category": { "name": "Tea" } },
            ],
        })
    );
}

async fn a_variable_left_null_is_an_absent_argument(backend: Backend) {
    let gateway = Gateway::spawn(backend).await;
    gateway.sencha().await;
    let request = async_graphql::Request::new(
        "query ($first: Int, $after: String, $where: ProductWhereInput) { \
           productsConnection(first: $first, after: $after, where: $where) { edges { node { sku } } } }",
    )
    .variables(async_graphql::Variables::from_json(
        json!({ "first": null, "after": null, "where": null }),
    ));

    let answer = gateway.execute(request).await;

    assert!(answer["errors"].is_null(), "{answer}");
    assert_eq!(
        answer["data"]["productsConnection"]["edges"],
        json!([{ "node": { "sku": "TEA-1" } }])
    );
}

async fn records_are_listed_by_their_ids_alone(backend: Backend) {
    let gateway = Gateway::spawn(backend).await;
    let tea = gateway.create_category("Tea").await;
    gateway.create_category("Coffee").await;
    let cocoa = gateway.create_category("Cocoa").await;

    let data = gateway
        .run(&format!(
            r#"{{ categories(where: {{ id_in: ["{cocoa}", "{tea}"] }}) {{ name }}
                 categoriesConnection(where: {{ id_in: ["{tea}"] }}) {{
                   edges {{ node {{ name }} }} pageInfo {{ hasNextPage }} aggregate {{ count }} }} }}"#
        ))
        .await;

    let mut names: Vec<&str> = data["categories"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|category| category["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["Cocoa", "Tea"], "{data:#}");
    // A filter's variable left null is no filter.
    let answer = gateway
        .execute(
            async_graphql::Request::new(
                "query($ids: [ID!], $query: String) { categories(where: { id_in: $ids, query: $query }) { name } }",
            )
            .variables(async_graphql::Variables::from_json(
                json!({ "ids": [tea], "query": null }),
            )),
        )
        .await;
    assert_eq!(
        answer["data"]["categories"],
        json!([{ "name": "Tea" }]),
        "{answer:#}"
    );
    assert_eq!(
        data["categoriesConnection"],
        json!({
            "edges": [{ "node": { "name": "Tea" } }],
            "pageInfo": { "hasNextPage": false },
            "aggregate": { "count": "1" },
        })
    );

    // Ids with the List's own filters, orderings or cursor, or fewer `first` than ids: refused,
    // naming the argument.
    for (argument, query) in [
        (
            "where.id_in",
            format!(r#"{{ categories(where: {{ id_in: ["{tea}"], query: "Tea" }}) {{ id }} }}"#),
        ),
        (
            "where.id_in",
            format!(
                r#"{{ categories(where: {{ id_in: ["{tea}"] }}, orderBy: name_ASC) {{ id }} }}"#
            ),
        ),
        (
            "first",
            format!(
                r#"{{ categories(where: {{ id_in: ["{tea}", "{cocoa}"] }}, first: 1) {{ id }} }}"#
            ),
        ),
    ] {
        let answer = gateway.run_with(&query, Some(&gateway.app.token)).await;
        assert_eq!(error_codes(&answer), ["BAD_USER_INPUT"], "{answer:#}");
        assert_eq!(violated_fields(&answer), [argument], "{answer:#}");
    }
}
