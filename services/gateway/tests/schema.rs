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
