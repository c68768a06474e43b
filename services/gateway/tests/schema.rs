//! The gateway's schema, built from the compiled-in contract. `schema.graphql` at the
//! repository's root is its SDL: this test writes it and fails when it was out of date, so
//! every API change shows in review. Run `cargo test -p gateway --test schema` after changing a
//! `.proto` file (or the gateway) and commit the file.

use std::path::Path;

fn schema() -> async_graphql::dynamic::Schema {
    let pool = contract::decode_pool(emporium_proto::FILE_DESCRIPTOR_SET)
        .expect("the compiled-in descriptor set decodes");
    gateway::build(&pool, gateway::Upstream::new(), None, &Default::default())
        .expect("the contract's schema builds")
        .schema()
        .clone()
}

#[test]
fn schema_graphql_is_the_contracts_schema() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schema.graphql");
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();

    let generated = format!(
        "# Emporium's GraphQL API, generated from the contracts by the gateway: do not edit.\n\
         # Regenerate with `cargo test -p gateway --test schema`.\n\n{}",
        schema().sdl()
    );

    if checked_in != generated {
        std::fs::write(&path, &generated).expect("schema.graphql is writable");
        panic!(
            "schema.graphql was out of date with the contracts and has been regenerated: review \
             and commit it"
        );
    }
}

#[test]
fn every_resource_has_its_opencrud_fields() {
    let sdl = schema().sdl();

    for expected in [
        "product(where: ProductWhereUniqueInput!): Product",
        "products(where: ProductWhereInput, orderBy: ProductOrderByInput, skip: Int, after: String, before: String, first: Int, last: Int): [Product!]!",
        "productsConnection(",
        "createProduct(data: ProductCreateInput!): Product!",
        "updateProduct(where: ProductWhereUniqueInput!, data: ProductUpdateInput!): Product!",
        "deleteProduct(where: ProductWhereUniqueInput!, data: ProductDeleteInput): ID!",
        "category(where: CategoryWhereUniqueInput!): Category",
        "account(where: AccountWhereUniqueInput!): Account",
        "grantRole(input: GrantRoleRequestInput!): Account!",
        "category: Category",
        "products(where: ProductWhereInput, orderBy: ProductOrderByInput, skip: Int, after: String, before: String, first: Int, last: Int): [Product!]\n",
        "name_ASC",
        "sku_DESC",
        "productChanged(where: ProductSubscriptionWhereInput): ProductSubscriptionPayload!",
        "accountChanged(where: AccountSubscriptionWhereInput): AccountSubscriptionPayload!",
    ] {
        assert!(sdl.contains(expected), "{expected} is missing from:\n{sdl}");
    }
}

/// The field names of `type_name`, by introspection (an object's fields or an input's).
async fn field_names(type_name: &str) -> Vec<String> {
    let query = format!(
        "{{ __type(name: \"{type_name}\") {{ fields {{ name }} inputFields {{ name }} }} }}"
    );
    let answer = schema()
        .execute(query)
        .await
        .into_result()
        .expect("introspection answers");
    let json = answer.data.into_json().expect("the answer is JSON");
    let of = |kind: &str| {
        json["__type"][kind]
            .as_array()
            .into_iter()
            .flatten()
            .map(|field| field["name"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
    };
    [of("fields"), of("inputFields")].concat()
}

#[tokio::test]
async fn a_list_filters_by_exactly_its_requests_filters_and_by_ids_where_there_is_batch_get() {
    assert_eq!(
        field_names("ProductWhereInput").await,
        ["categoryId", "query", "sku", "id_in"]
    );
    // A List without filters of its own: its `where` holds the ids filter alone, on the key.
    assert_eq!(field_names("ClientWhereInput").await, ["clientId_in"]);
}

#[tokio::test]
async fn passwords_are_never_answered_and_a_new_secret_is_answered_once() {
    let account = field_names("Account").await;
    let client = field_names("Client").await;
    let created_client = field_names("CreateClientResponse").await;

    assert!(account.contains(&"email".to_owned()), "{account:?}");
    for fields in [&account, &client] {
        assert!(
            !fields
                .iter()
                .any(|field| field.to_lowercase().contains("password")
                    || field.to_lowercase().contains("secret")),
            "{fields:?}"
        );
    }
    assert_eq!(created_client, ["client", "clientSecret"]);
}

/// `{ type field rpc visitors anySignedInCaller roles }` of every access rule.
async fn access_rules() -> Vec<serde_json::Value> {
    let answer = schema()
        .execute("{ accessRules { type field rpc visitors anySignedInCaller roles } }")
        .await
        .into_result()
        .expect("accessRules answers");
    let json = answer.data.into_json().expect("the answer is JSON");
    json["accessRules"]
        .as_array()
        .cloned()
        .expect("accessRules is a list")
}

#[tokio::test]
async fn every_field_that_calls_an_rpc_tells_who_may_use_it_as_the_contract_declares() {
    let rules = access_rules().await;
    let pool = contract::decode_pool(emporium_proto::FILE_DESCRIPTOR_SET)
        .expect("the compiled-in descriptor set decodes");
    let declared: std::collections::HashMap<String, _> = contract::access::method_access(&pool)
        .into_iter()
        .map(|method| {
            (
                method.path.trim_start_matches('/').to_owned(),
                method.access,
            )
        })
        .collect();

    // Each rule is the contract's, read one way: roles, any signed-in caller, or visitors too.
    for rule in &rules {
        let rpc = rule["rpc"].as_str().expect("a rule names its RPC");
        let roles: Vec<String> = serde_json::from_value(rule["roles"].clone()).expect("roles");
        let expected = match declared.get(rpc) {
            Some(Ok(contract::access::Access::Visitors)) => (true, true, vec![]),
            Some(Ok(contract::access::Access::AnySignedInCaller)) => (false, true, vec![]),
            Some(Ok(contract::access::Access::AnyRoleOf(roles))) => (false, false, roles.clone()),
            other => panic!("{rule} names an RPC the contract does not declare: {other:?}"),
        };
        assert_eq!(
            (
                rule["visitors"].as_bool().expect("visitors"),
                rule["anySignedInCaller"]
                    .as_bool()
                    .expect("anySignedInCaller"),
                roles
            ),
            expected,
            "{rule}"
        );
    }

    // One rule per field, and every root field but the two metadata fields has one.
    let mut fields: Vec<(String, String)> = rules
        .iter()
        .map(|rule| {
            (
                rule["type"].as_str().unwrap_or_default().to_owned(),
                rule["field"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let count = fields.len();
    fields.sort();
    fields.dedup();
    assert_eq!(fields.len(), count, "a field has two rules: {rules:?}");
    for root in ["Query", "Mutation", "Subscription"] {
        for field in field_names(root).await {
            if field != "accessRules" && field != "references" {
                assert!(
                    fields.contains(&(root.to_owned(), field.clone())),
                    "{root}.{field} has no access rule"
                );
            }
        }
    }

    // And the fields of a record's type that make a call of their own.
    let rule_of = |owner: &str, field: &str| {
        rules
            .iter()
            .find(|rule| rule["type"] == owner && rule["field"] == field)
            .unwrap_or_else(|| panic!("{owner}.{field} has no rule"))
    };
    assert_eq!(
        rule_of("Mutation", "createProduct")["roles"],
        serde_json::json!(["admin", "catalog-manager"])
    );
    assert_eq!(rule_of("Query", "products")["visitors"], true);
    assert_eq!(
        rule_of("Category", "events")["rpc"],
        "emporium.catalog.v1.CatalogService/ListEvents"
    );
    assert_eq!(
        rule_of("Product", "category")["rpc"],
        "emporium.catalog.v1.CatalogService/BatchGetCategories"
    );
    assert_eq!(
        rule_of("Category", "products")["rpc"],
        "emporium.catalog.v1.CatalogService/ListProducts"
    );
    assert_eq!(
        rule_of("Query", "accounts")["roles"],
        serde_json::json!(["admin"])
    );
}

#[tokio::test]
async fn every_reference_the_contract_declares_names_its_resource_and_key() {
    let answer = schema()
        .execute("{ references { type field resource key } }")
        .await
        .into_result()
        .expect("references answers");
    let json = answer.data.into_json().expect("the answer is JSON");
    let references: Vec<(String, String, String, String)> =
        serde_json::from_value::<Vec<serde_json::Value>>(json["references"].clone())
            .expect("references is a list")
            .iter()
            .map(|reference| {
                let text = |name: &str| reference[name].as_str().unwrap_or_default().to_owned();
                (text("type"), text("field"), text("resource"), text("key"))
            })
            .collect();
    let has = |owner: &str, field: &str, resource: &str, key: &str| {
        references.contains(&(owner.into(), field.into(), resource.into(), key.into()))
    };

    // Followed by the gateway, not followed (a list of role names), in a filter and in inputs.
    assert!(
        has("Product", "categoryId", "Category", "id"),
        "{references:?}"
    );
    assert!(has("Account", "roles", "Role", "name"), "{references:?}");
    assert!(
        has("ProductWhereInput", "categoryId", "Category", "id"),
        "{references:?}"
    );
    assert!(
        has("ProductCreateInput", "categoryId", "Category", "id"),
        "{references:?}"
    );
    assert!(
        has("GrantRoleRequestInput", "role", "Role", "name"),
        "{references:?}"
    );
    // The history's actor, declared in the shared audit contract.
    assert!(has("Event", "actor", "Account", "id"), "{references:?}");
    assert!(
        has("Event", "actorClientId", "Client", "clientId"),
        "{references:?}"
    );
    // References to what this gateway does not serve (customers, `*`) are left out.
    assert!(
        !references
            .iter()
            .any(|(_, field, _, _)| field == "customerId" || field == "aggregateId"),
        "{references:?}"
    );

    // Each names a field the type has, and a resource with its Get.
    let query = field_names("Query").await;
    for (owner, field, resource, _) in &references {
        assert!(
            field_names(owner).await.contains(field),
            "{owner}.{field} is not in the schema"
        );
        let mut singular = resource.clone();
        singular[..1].make_ascii_lowercase();
        assert!(
            query.contains(&singular),
            "{resource} has no Get ({singular})"
        );
    }
}
