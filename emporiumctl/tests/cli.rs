//! End-to-end tests of `emporiumctl`: identity and the catalog run in-process on one random
//! port (as `emporium up` serves them), on both backends, and each test drives the CLI through
//! `run_with` exactly as a user would, reading what it prints (and notes on stderr) or the error
//! it reports. The resource commands are generated from the contract, so these tests reach every
//! resource of both services through the same code.

use std::collections::HashMap;
use std::time::Duration;

use catalog::CatalogParts;
use chassis::auth::roles;
use chassis::runtime::Built;
use chassis::settings::ServiceSettings;
use emporiumctl::credentials::{CredentialStore, Credentials};
use emporiumctl::oauth::{basic_authorization, pkce_challenge};
use emporiumctl::{Action, Cli, CliError, Console, run_with};
use identity::keys::{KeyEncryptionKey, KeyPolicy};
use identity::{IdentityOptions, IdentityParts};
use serde_json::Value;
use test_support::{
    Backend, HostedServices, TestBus, TestDatabase, TestIssuer, both_backends, host_on_one_port,
};
use tokio::task::JoinHandle;
use tonic::Code;

both_backends!(
    creating_a_category_and_a_product_prints_them,
    lists_print_columns_a_count_json_and_yaml,
    list_all_follows_every_page_and_a_token_continues_a_listing,
    get_with_several_ids_reads_them_in_one_batch,
    an_update_with_the_current_version_succeeds_and_a_stale_one_is_a_conflict,
    an_invalid_currency_is_reported_by_field,
    a_negative_price_reaches_the_server_and_is_reported_by_field,
    a_duplicate_sku_names_the_field,
    a_category_with_products_cannot_be_deleted,
    a_deleted_product_is_not_found,
    events_show_the_history_of_a_product,
    accounts_are_created_with_a_password_from_stdin_changed_granted_roles_and_deleted,
    roles_are_named_by_their_name_in_every_verb,
    a_confidential_client_s_secret_is_printed_once_with_a_note,
    a_request_file_gives_the_fields_and_flags_override_them,
    the_token_is_sent_with_every_call_and_required,
    a_stored_login_is_used_when_no_token_is_given,
);

// === tests: the catalog ===

async fn creating_a_category_and_a_product_prints_them(backend: Backend) {
    // Arrange
    let suite = spawn_suite(backend).await;

    // Act
    let category = suite
        .ctl(&[
            "category",
            "create",
            "--name",
            "Shoes",
            "--description",
            "For feet",
        ])
        .await;
    let category_id = field_of(&category, "id");
    let product = suite
        .ctl(&[
            "product",
            "create",
            "--sku",
            "SHOE-42",
            "--name",
            "Trail runner",
            "--category-id",
            &category_id,
            "--price",
            "12.99EUR",
            "--stock-on-hand",
            "7",
        ])
        .await;

    // Assert
    assert_eq!(field_of(&category, "name"), "Shoes", "{category}");
    assert_eq!(field_of(&category, "version"), "1", "{category}");
    assert_eq!(field_of(&product, "price"), "12.99 EUR", "{product}");
    assert_eq!(field_of(&product, "stock_on_hand"), "7", "{product}");
    assert_eq!(field_of(&product, "category_id"), category_id, "{product}");
    let created = field_of(&product, "create_time");
    assert!(
        created.ends_with('Z') && created.contains('T'),
        "an RFC 3339 time: {created}"
    );
}

async fn lists_print_columns_a_count_json_and_yaml(backend: Backend) {
    // Arrange
    let suite = spawn_suite(backend).await;
    let category_id = suite.create_category("Shoes").await;
    suite
        .create_product(&category_id, "SHOE-1", "Boot", "45.00EUR")
        .await;
    suite
        .create_product(&category_id, "SHOE-2", "Sandal", "9.99EUR")
        .await;

    // Act
    let table = suite.ctl(&["product", "list", "--order-by", "price"]).await;
    let json = suite
        .ctl(&[
            "--output",
            "json",
            "products",
            "list",
            "--category-id",
            &category_id,
        ])
        .await;
    let yaml = suite
        .ctl(&["-o", "yaml", "product", "list", "--order-by", "sku"])
        .await;

    // Assert
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        [
            "ID",
            "SKU",
            "NAME",
            "CATEGORY_ID",
            "PRICE",
            "VERSION",
            "UPDATE_TIME"
        ],
        "the key, the required fields, the version and the update time"
    );
    assert!(
        lines[1].contains("SHOE-2") && lines[1].contains(" 9.99 EUR"),
        "cheapest first:\n{table}"
    );
    assert!(
        lines[2].contains("SHOE-1") && lines[2].contains("45.00 EUR"),
        "{table}"
    );
    // Right-aligned prices end in the same column.
    assert_eq!(lines[1].find("EUR"), lines[2].find("EUR"), "{table}");
    assert_eq!(lines[3], "2 of 2 products");

    let listing: Value = serde_json::from_str(&json).expect("the output is JSON");
    assert_eq!(listing["totalSize"], "2", "proto3 JSON: int64 as a string");
    assert_eq!(listing["nextPageToken"], "");
    assert_eq!(listing["products"][0]["sku"], "SHOE-1");
    assert_eq!(listing["products"][0]["price"]["amountMinor"], "4500");
    assert_eq!(listing["products"][0]["price"]["currency"], "EUR");
    assert_eq!(listing["products"][0]["categoryId"], category_id.as_str());

    assert!(yaml.contains("\nproducts:\n  - categoryId: "), "{yaml}");
    assert!(yaml.contains("    sku: SHOE-1\n"), "{yaml}");
    assert!(yaml.contains("      amountMinor: \"999\"\n"), "{yaml}");
    assert!(yaml.ends_with("totalSize: \"2\"\n"), "{yaml}");
}

async fn list_all_follows_every_page_and_a_token_continues_a_listing(backend: Backend) {
    // Arrange
    let suite = spawn_suite(backend).await;
    for name in ["Alpha", "Beta", "Gamma"] {
        suite.create_category(name).await;
    }

    // Act
    let everything = suite
        .ctl(&["category", "list", "--page-size", "1", "--all"])
        .await;
    let first_page = suite
        .ctl(&[
            "category",
            "list",
            "--page-size",
            "2",
            "--direction",
            "desc",
        ])
        .await;
    let token = first_page
        .lines()
        .find_map(|line| line.strip_prefix("next page: --page-token "))
        .expect("a first page of two out of three tells how to continue")
        .to_owned();
    let second_page = suite
        .ctl(&[
            "category",
            "list",
            "--page-size",
            "2",
            "--direction",
            "desc",
            "--page-token",
            &token,
        ])
        .await;

    // Assert
    let names = |output: &str| -> Vec<String> {
        output
            .lines()
            .skip(1)
            .filter_map(|line| line.split_whitespace().nth(1).map(str::to_owned))
            .collect()
    };
    assert!(everything.ends_with("3 of 3 categories\n"), "{everything}");
    assert_eq!(
        names(&everything)[..3],
        ["Alpha", "Beta", "Gamma"],
        "{everything}"
    );
    assert!(first_page.contains("\n2 of 3 categories\n"), "{first_page}");
    assert_eq!(names(&first_page)[..2], ["Gamma", "Beta"], "{first_page}");
    assert!(
        second_page.ends_with("1 of 3 categories\n"),
        "{second_page}"
    );
    assert_eq!(names(&second_page)[..1], ["Alpha"], "{second_page}");
}

async fn get_with_several_ids_reads_them_in_one_batch(backend: Backend) {
    // Arrange
    let suite = spawn_suite(backend).await;
    let tea = suite.create_category("Tea").await;
    let coffee = suite.create_category("Coffee").await;
    let missing = "00000000-0000-4000-8000-000000000000";

    // Act
    let table = suite
        .ctl(&["category", "get", &tea, &coffee, missing])
        .await;

    // Assert
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[1].starts_with(&tea) && lines[1].contains("Tea"),
        "{table}"
    );
    assert!(lines[2].starts_with(&coffee), "{table}");
    assert_eq!(lines[3], "2 categories", "{table}");
    assert_eq!(lines[4], format!("missing_ids: {missing}"), "{table}");
}

async fn an_update_with_the_current_version_succeeds_and_a_stale_one_is_a_conflict(
    backend: Backend,
) {
    // Arrange
    let suite = spawn_suite(backend).await;
    let category_id = suite.create_category("Shoes").await;
    let product_id = suite
        .create_product(&category_id, "SHOE-1", "Boot", "45.00EUR")
        .await;

    // Act
    let updated = suite
        .ctl(&[
            "product",
            "update",
            &product_id,
            "--expected-version",
            "1",
            "--price",
            "49.99EUR",
        ])
        .await;
    let stale = suite
        .ctl_error(&[
            "product",
            "update",
            &product_id,
            "--expected-version",
            "1",
            "--stock-on-hand",
            "3",
        ])
        .await;

    // Assert
    assert_eq!(field_of(&updated, "price"), "49.99 EUR", "{updated}");
    assert_eq!(field_of(&updated, "version"), "2", "{updated}");
    assert_eq!(stale.code(), Some(Code::Aborted));
    assert_eq!(stale.exit_code(), 1);
    let message = stale.to_string();
    assert!(message.starts_with("conflict: "), "{message}");
    assert!(
        message.contains("version 2"),
        "names the current version: {message}"
    );
    assert!(
        message.contains(&format!("emporiumctl product get {product_id}")),
        "hints how to re-read: {message}"
    );
    let unchanged = suite.ctl(&["product", "get", &product_id]).await;
    assert_eq!(field_of(&unchanged, "stock_on_hand"), "0", "{unchanged}");
}

async fn an_invalid_currency_is_reported_by_field(backend: Backend) {
    // Arrange
    let suite = spawn_suite(backend).await;
    let category_id = suite.create_category("Shoes").await;

    // Act
    let error = suite
        .ctl_error(&[
            "product",
            "create",
            "--sku",
            "SHOE-1",
            "--name",
            "Boot",
            "--category-id",
            &category_id,
            "--price",
            "12.99euro",
        ])
        .await;

    // Assert
    assert_eq!(error.code(), Some(Code::InvalidArgument));
    assert_eq!(error.exit_code(), 1);
    let message = error.to_string();
    assert!(
        message.starts_with("invalid request\n  price.currency: "),
        "{message}"
    );
    assert!(message.contains("ISO 4217"), "{message}");
}

async fn a_negative_price_reaches_the_server_and_is_reported_by_field(backend: Backend) {
    // Arrange
    let suite = spawn_suite(backend).await;
    let category_id = suite.create_category("Shoes").await;

    // Act: `-1.00EUR` is the flag's value, not an unknown option.
    let error = suite
        .ctl_error(&[
            "product",
            "create",
            "--sku",
            "SHOE-1",
            "--name",
            "Boot",
            "--category-id",
            &category_id,
            "--price",
            "-1.00EUR",
        ])
        .await;

    // Assert
    assert_eq!(error.code(), Some(Code::InvalidArgument), "{error}");
    assert_eq!(
        error.to_string(),
        "invalid request\n  price.amount_minor: must not be negative"
    );
}

async fn a_duplicate_sku_names_the_field(backend: Backend) {
    // Arrange
    let suite = spawn_suite(backend).await;
    let category_id = suite.create_category("Shoes").await;
    suite
        .create_product(&category_id, "SHOE-1", "Boot", "45.00EUR")
        .await;

    // Act
    let error = suite
        .ctl_error(&[
            "product",
            "create",
            "--sku",
            "SHOE-1",
            "--name",
            "Other boot",
            "--category-id",
            &category_id,
            "--price",
            "1EUR",
        ])
        .await;

    // Assert
    assert_eq!(error.code(), Some(Code::AlreadyExists));
    let message = error.to_string();
    assert!(
        message.contains("already exists") && message.contains("\n  sku: "),
        "{message}"
    );
}

async fn a_category_with_products_cannot_be_deleted(backend: Backend) {
    // Arrange
    let suite = spawn_suite(backend).await;
    let category_id = suite.create_category("Shoes").await;
    suite
        .create_product(&category_id, "SHOE-1", "Boot", "45.00EUR")
        .await;

    // Act
    let error = suite.ctl_error(&["category", "delete", &category_id]).await;

    // Assert
    assert_eq!(error.code(), Some(Code::FailedPrecondition));
    assert!(error.to_string().contains("still has 1 product"), "{error}");
}

async fn a_deleted_product_is_not_found(backend: Backend) {
    // Arrange
    let suite = spawn_suite(backend).await;
    let category_id = suite.create_category("Shoes").await;
    let product_id = suite
        .create_product(&category_id, "SHOE-1", "Boot", "45.00EUR")
        .await;

    // Act
    let deleted = suite
        .ctl(&["product", "delete", &product_id, "--expected-version", "1"])
        .await;
    let error = suite.ctl_error(&["product", "get", &product_id]).await;

    // Assert
    assert_eq!(deleted, format!("deleted product {product_id}\n"));
    assert_eq!(error.code(), Some(Code::NotFound));
    assert_eq!(error.exit_code(), 1);
    assert!(error.to_string().contains(&product_id), "{error}");
}

async fn events_show_the_history_of_a_product(backend: Backend) {
    // Arrange
    let suite = spawn_suite(backend).await;
    let category_id = suite.create_category("Shoes").await;
    let product_id = suite
        .create_product(&category_id, "SHOE-1", "Boot", "45.00EUR")
        .await;
    suite
        .ctl(&[
            "product",
            "update",
            &product_id,
            "--expected-version",
            "1",
            "--name",
            "Tall boot",
        ])
        .await;

    // Act
    let table = suite.ctl(&["product", "events", &product_id]).await;
    let json = suite
        .ctl(&["--output", "json", "product", "events", &product_id])
        .await;

    // Assert
    assert!(table.starts_with("AGGREGATE_VERSION  TIME"), "{table}");
    assert!(table.ends_with("\n2 events\n"), "{table}");
    let history: Value = serde_json::from_str(&json).expect("the output is JSON");
    let events = history["events"].as_array().expect("a list of events");
    assert_eq!(events.len(), 2, "{json}");
    assert_eq!(events[0]["aggregateVersion"], "1");
    assert_eq!(events[1]["aggregateVersion"], "2");
    assert_eq!(events[1]["type"], "emporium.catalog.product.updated");
    let data: Value = serde_json::from_str(
        events[1]["dataJson"]
            .as_str()
            .expect("the payload is JSON text"),
    )
    .expect("the payload is JSON");
    assert_eq!(data["name"], "Tall boot", "{json}");
}

// === tests: identity ===

async fn accounts_are_created_with_a_password_from_stdin_changed_granted_roles_and_deleted(
    backend: Backend,
) {
    // Arrange
    let suite = spawn_suite(backend).await;

    // Act
    let created = suite
        .ctl_with_console(
            &[
                "account",
                "create",
                "--email",
                "Ada@Example.com",
                "--first-name",
                "Ada",
                "--last-name",
                "Lovelace",
                "--country",
                "GB",
                "--password-stdin",
            ],
            "correct horse battery staple\n",
            &[],
        )
        .await
        .0
        .expect("the account is created");
    let account_id = field_of(&created, "id");
    let renamed = suite
        .ctl(&[
            "account",
            "update",
            &account_id,
            "--expected-version",
            "1",
            "--nickname",
            "Countess",
            "--disabled",
        ])
        .await;
    let with_password = suite
        .ctl_with_console(
            &[
                "account",
                "set-password",
                &account_id,
                "--expected-version",
                "2",
                "--password-stdin",
            ],
            "",
            &[("EMPORIUMCTL_PASSWORD", "unused: --password-stdin wins")],
        )
        .await
        .0;
    let password_from_env = suite
        .ctl_with_console(
            &[
                "account",
                "set-password",
                &account_id,
                "--expected-version",
                "2",
            ],
            "",
            &[("EMPORIUMCTL_PASSWORD", "another long passphrase")],
        )
        .await
        .0
        .expect("the password is set from the environment");
    let granted = suite
        .ctl(&[
            "account",
            "grant-role",
            &account_id,
            "--role",
            roles::CATALOG_MANAGER,
            "--expected-version",
            "3",
        ])
        .await;
    let listed = suite.ctl(&["accounts", "list", "--query", "ada"]).await;
    let revoked = suite
        .ctl(&[
            "account",
            "revoke-role",
            &account_id,
            "--role",
            roles::CATALOG_MANAGER,
            "--expected-version",
            "4",
        ])
        .await;
    let deleted = suite.ctl(&["account", "delete", &account_id]).await;
    let gone = suite.ctl_error(&["account", "get", &account_id]).await;

    // Assert
    assert_eq!(field_of(&created, "email"), "ada@example.com", "{created}");
    assert!(
        !created.contains("correct horse"),
        "no password is ever printed: {created}"
    );
    assert_eq!(field_of(&renamed, "nickname"), "Countess", "{renamed}");
    assert_eq!(field_of(&renamed, "disabled"), "true", "{renamed}");
    let empty_stdin = with_password.expect_err("stdin held no password");
    assert_eq!(empty_stdin.exit_code(), 2, "{empty_stdin}");
    assert_eq!(field_of(&password_from_env, "version"), "3");
    assert_eq!(
        field_of(&granted, "roles"),
        roles::CATALOG_MANAGER,
        "{granted}"
    );
    assert_eq!(field_of(&granted, "version"), "4", "{granted}");
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        [
            "ID",
            "EMAIL",
            "FIRST_NAME",
            "LAST_NAME",
            "COUNTRY",
            "VERSION",
            "UPDATE_TIME"
        ],
        "{listed}"
    );
    assert!(lines[1].starts_with(&account_id), "{listed}");
    assert_eq!(lines[2], "1 of 1 account", "{listed}");
    assert_eq!(field_of(&revoked, "roles"), "", "{revoked}");
    assert_eq!(deleted, format!("deleted account {account_id}\n"));
    assert_eq!(gone.code(), Some(Code::NotFound));
}

async fn roles_are_named_by_their_name_in_every_verb(backend: Backend) {
    // Arrange
    let suite = spawn_suite(backend).await;

    // Act
    let created = suite
        .ctl(&[
            "role",
            "create",
            "--name",
            "auditor",
            "--description",
            "Reads the audit trail",
        ])
        .await;
    let updated = suite
        .ctl(&[
            "role",
            "update",
            "auditor",
            "--expected-version",
            "1",
            "--description",
            "Reads everything",
        ])
        .await;
    let listed = suite.ctl(&["role", "list"]).await;
    let history = suite.ctl(&["role", "events", "auditor"]).await;
    let builtin = suite.ctl_error(&["role", "delete", roles::ADMIN]).await;
    let two = suite
        .ctl(&["-o", "json", "role", "get", "auditor", roles::ADMIN])
        .await;
    let deleted = suite
        .ctl(&["role", "delete", "auditor", "--expected-version", "2"])
        .await;

    // Assert
    assert_eq!(field_of(&created, "name"), "auditor", "{created}");
    assert_eq!(
        field_of(&updated, "description"),
        "Reads everything",
        "{updated}"
    );
    assert!(
        listed.starts_with("NAME ") && listed.contains("\nauditor "),
        "{listed}"
    );
    assert!(
        listed.ends_with(" roles\n"),
        "a list without pages: {listed}"
    );
    assert!(history.ends_with("\n2 events\n"), "{history}");
    assert!(
        history.contains("emporium.identity.role.updated"),
        "{history}"
    );
    assert_eq!(builtin.code(), Some(Code::FailedPrecondition), "{builtin}");
    let two: Value = serde_json::from_str(&two).expect("one JSON document");
    assert_eq!(two["roles"][0]["name"], "auditor", "{two}");
    assert_eq!(two["roles"][1]["name"], roles::ADMIN);
    assert_eq!(deleted, "deleted role auditor\n");
}

async fn a_confidential_client_s_secret_is_printed_once_with_a_note(backend: Backend) {
    // Arrange
    let suite = spawn_suite(backend).await;

    // Act
    let (created, notes) = suite
        .ctl_with_console(
            &[
                "client",
                "create",
                "--client-id",
                "billing-job",
                "--name",
                "Billing",
                "--type",
                "confidential",
                "--roles",
                roles::CATALOG_MANAGER,
            ],
            "",
            &[],
        )
        .await;
    let created = created.expect("the client is created");
    let updated = suite
        .ctl(&[
            "client",
            "update",
            "billing-job",
            "--expected-version",
            "1",
            "--clear-roles",
            "--name",
            "Billing job",
        ])
        .await;
    let (reset, reset_notes) = suite
        .ctl_with_console(
            &[
                "-o",
                "json",
                "client",
                "reset-secret",
                "billing-job",
                "--expected-version",
                "2",
            ],
            "",
            &[],
        )
        .await;
    let reset: Value =
        serde_json::from_str(&reset.expect("the secret is reset")).expect("the output is JSON");
    let listed = suite.ctl(&["client", "list"]).await;
    let deleted = suite.ctl(&["client", "delete", "billing-job"]).await;

    // Assert
    assert_eq!(field_of(&created, "type"), "confidential", "{created}");
    assert_eq!(
        field_of(&created, "roles"),
        roles::CATALOG_MANAGER,
        "{created}"
    );
    let secret = field_of(&created, "client_secret");
    assert!(secret.len() >= 32, "the secret is printed: {created}");
    assert!(
        notes.contains("client_secret is shown only this once"),
        "{notes}"
    );
    assert_eq!(field_of(&updated, "roles"), "", "{updated}");
    assert_eq!(field_of(&updated, "name"), "Billing job", "{updated}");
    let new_secret = reset["clientSecret"].as_str().expect("the new secret");
    assert!(!new_secret.is_empty() && new_secret != secret);
    assert_eq!(reset["client"]["version"], "3");
    assert!(reset_notes.contains("client_secret"), "{reset_notes}");
    assert!(
        listed.starts_with("CLIENT_ID ") && listed.contains("\nbilling-job "),
        "{listed}"
    );
    assert!(!listed.contains(&secret), "a list never shows a secret");
    assert_eq!(deleted, "deleted client billing-job\n");
}

async fn a_request_file_gives_the_fields_and_flags_override_them(backend: Backend) {
    // Arrange
    let suite = spawn_suite(backend).await;
    let file = test_support::temp_dir("emporiumctl-request").join("category.json");
    std::fs::write(
        &file,
        r#"{"name": "From the file", "description": "Kept from the file"}"#,
    )
    .expect("the file is written");
    let path = file.display().to_string();

    // Act
    let from_file = suite
        .ctl(&["category", "create", "-f", &path, "--name", "From a flag"])
        .await;
    let (from_stdin, _) = suite
        .ctl_with_console(
            &["role", "create", "-f", "-"],
            r#"{"name": "from-stdin", "description": "Piped"}"#,
            &[],
        )
        .await;
    let not_the_message = suite
        .ctl_with_console(&["role", "create", "-f", "-"], r#"{"colour": "red"}"#, &[])
        .await
        .0;

    // Assert
    assert_eq!(field_of(&from_file, "name"), "From a flag", "{from_file}");
    assert_eq!(
        field_of(&from_file, "description"),
        "Kept from the file",
        "{from_file}"
    );
    let from_stdin = from_stdin.expect("the role is created from stdin");
    assert_eq!(field_of(&from_stdin, "name"), "from-stdin", "{from_stdin}");
    let error = not_the_message.expect_err("an unknown field is refused");
    assert_eq!(error.exit_code(), 2, "{error}");
    assert!(error.to_string().contains("CreateRoleRequest"), "{error}");
    let _ = std::fs::remove_dir_all(file.parent().expect("the file's directory"));
}

// === tests: signing in and the command line ===

async fn the_token_is_sent_with_every_call_and_required(backend: Backend) {
    // Arrange
    let suite = spawn_suite(backend).await;
    let server = format!("http://{}", suite.hosted.addr);
    let empty_config = test_support::temp_dir("emporiumctl-config");
    let config_dir = empty_config.display().to_string();
    let customer = suite.issuer.token("customer-1", &[roles::CUSTOMER]);

    // Act
    let with_token = ctl_with(&[
        "--server",
        &server,
        "--token",
        &suite.token,
        "category",
        "list",
    ])
    .await;
    let without_token = ctl_with(&[
        "--server",
        &server,
        "--config-dir",
        &config_dir,
        "category",
        "list",
    ])
    .await;
    let as_customer = ctl_with(&[
        "--server", &server, "--token", &customer, "category", "create", "--name", "Shoes",
    ])
    .await;
    let customer_reads_accounts =
        ctl_with(&["--server", &server, "--token", &customer, "account", "list"]).await;

    // Assert
    assert!(with_token.is_ok(), "{with_token:?}");
    let without_token = without_token.expect_err("no token, no catalog");
    assert_eq!(without_token.code(), Some(Code::Unauthenticated));
    assert_eq!(without_token.exit_code(), 1);
    assert!(
        without_token.to_string().contains("emporiumctl login"),
        "{without_token}"
    );
    let as_customer = as_customer.expect_err("customers do not change the catalog");
    assert_eq!(as_customer.code(), Some(Code::PermissionDenied));
    let customer_reads_accounts =
        customer_reads_accounts.expect_err("identity needs the admin role");
    assert_eq!(customer_reads_accounts.code(), Some(Code::PermissionDenied));
    let _ = std::fs::remove_dir_all(&empty_config);
}

async fn a_stored_login_is_used_when_no_token_is_given(backend: Backend) {
    // Arrange
    let suite = spawn_suite(backend).await;
    let server = format!("http://{}", suite.hosted.addr);
    let config = test_support::temp_dir("emporiumctl-config");
    CredentialStore::new(&config)
        .save(&Credentials {
            issuer: TestIssuer::ISSUER.to_owned(),
            client_id: "emporiumctl".to_owned(),
            access_token: suite.token.clone(),
            refresh_token: None,
            expires_at: i64::MAX / 2,
        })
        .unwrap();
    let config_dir = config.display().to_string();

    // Act
    let created = ctl_with(&[
        "--server",
        &server,
        "--config-dir",
        &config_dir,
        "category",
        "create",
        "--name",
        "Shoes",
    ])
    .await;
    let whoami = ctl_with(&["--config-dir", &config_dir, "whoami"]).await;

    // Assert
    assert!(created.is_ok(), "{created:?}");
    let whoami = whoami.expect("whoami reads the stored token");
    assert!(whoami.contains("subject   admin-1\n"), "{whoami}");
    assert!(whoami.contains("roles     admin\n"), "{whoami}");
    assert!(
        !whoami.contains(&suite.token),
        "the token itself is never printed"
    );
    let _ = std::fs::remove_dir_all(&config);
}

#[tokio::test]
async fn an_unreachable_server_exits_with_3_and_no_debug_output() {
    // Arrange: a port that was free a moment ago, so nothing listens on it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let addr = listener.local_addr().expect("a bound address");
    drop(listener);
    let server = format!("http://{addr}");

    // Act
    let error = ctl_with(&["--server", &server, "--token", "unused", "category", "list"])
        .await
        .expect_err("nothing listens there");

    // Assert
    assert_eq!(error.exit_code(), 3);
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("cannot reach http://{addr}: is emporium running?")),
        "{message}"
    );
    assert!(!message.contains('{'), "no debug structs: {message}");
}

#[test]
fn usage_errors_are_caught_before_any_call_and_exit_with_2() {
    let invalid = [
        // An update that changes nothing.
        vec!["product", "update", "some-id", "--expected-version", "1"],
        // A required field missing.
        vec!["category", "update", "some-id", "--name", "x"],
        vec!["account", "create", "--email", "a@example.com"],
        // Values of the wrong shape.
        vec!["category", "list", "--order-by", "price"],
        vec![
            "product",
            "update",
            "id",
            "--expected-version",
            "one",
            "--name",
            "x",
        ],
        vec![
            "product",
            "update",
            "id",
            "--expected-version",
            "1",
            "--price",
            "12.999EUR",
        ],
        vec![
            "client",
            "create",
            "--client-id",
            "x",
            "--name",
            "x",
            "--type",
            "secret",
        ],
        vec!["--output", "xml", "category", "list"],
        // Output-only fields and secrets are never flags.
        vec!["category", "create", "--name", "x", "--version", "3"],
        vec![
            "account",
            "set-password",
            "id",
            "--expected-version",
            "1",
            "--password",
            "hunter2hunter2",
        ],
        // Get takes keys, not flags.
        vec!["role", "get", "admin", "--all"],
        vec!["completion", "tcsh"],
    ];
    for arguments in invalid {
        let command_line = ["emporiumctl"].into_iter().chain(arguments.iter().copied());
        let error = Cli::try_parse_from(command_line).expect_err("the arguments are invalid");
        assert_eq!(error.exit_code(), 2, "{arguments:?}: {error}");
    }
}

#[tokio::test]
async fn a_missing_secret_is_a_usage_error_before_any_call() {
    // Arrange: nothing listens on the server; the error must come first.
    let arguments = [
        "--server",
        "http://127.0.0.1:9",
        "--token",
        "unused",
        "account",
        "set-password",
        "some-id",
        "--expected-version",
        "1",
    ];

    // Act
    let (outcome, _) = ctl_with_console(&arguments, "", &[]).await;

    // Assert
    let error = outcome.expect_err("no password given");
    assert_eq!(error.exit_code(), 2);
    let message = error.to_string();
    assert!(
        message.contains("--password-stdin") && message.contains("EMPORIUMCTL_PASSWORD"),
        "{message}"
    );
}

#[test]
fn every_resource_and_verb_has_help_from_the_contract() {
    let command = Cli::command();
    command.clone().debug_assert();
    let resources = ["category", "product", "account", "role", "client"];
    for name in resources {
        let resource = command
            .find_subcommand(name)
            .unwrap_or_else(|| panic!("a command for every resource: {name}"));
        assert!(resource.get_about().is_some(), "{name} has help");
        for verb in resource.get_subcommands() {
            let about = verb
                .get_about()
                .map(ToString::to_string)
                .unwrap_or_default();
            assert!(!about.is_empty(), "{name} {} has help", verb.get_name());
        }
    }
}

#[test]
fn the_help_of_a_generated_command_shows_the_proto_comments() {
    let mut command = Cli::command();
    let grant_role = command
        .find_subcommand_mut("account")
        .and_then(|account| account.find_subcommand_mut("grant-role"))
        .expect("GrantRole is a verb of accounts");

    let help = grant_role.render_long_help().to_string();

    // The method's comment, the request message's, and the fields'.
    assert!(
        help.contains("Grants a role to an account; the account's version goes up by one."),
        "{help}"
    );
    assert!(
        help.contains("Which role to grant to which account."),
        "{help}"
    );
    assert!(help.contains("<ACCOUNT_ID>"), "{help}");
    assert!(help.contains("--role <TEXT>"), "{help}");
    assert!(help.contains("The role's name."), "{help}");
    assert!(help.contains("--expected-version <N>"), "{help}");
}

#[tokio::test]
async fn completion_scripts_cover_the_generated_commands() {
    for shell in ["bash", "zsh", "fish"] {
        let script = ctl_with(&["completion", shell])
            .await
            .unwrap_or_else(|error| panic!("{shell}: {error}"));

        assert!(script.contains("reset-secret"), "{shell}");
        assert!(script.contains("grant-role"), "{shell}");
        assert!(script.contains("expected-version"), "{shell}");
    }
}

#[tokio::test]
async fn a_closed_output_is_an_error_not_a_panic() {
    struct ClosedPipe;
    impl std::io::Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let cli = Cli::try_parse_from(["emporiumctl", "completion", "bash"]).unwrap();
    let (mut stdin, mut stderr) = (std::io::Cursor::new(Vec::new()), Vec::new());
    let no_env = |_: &str| None;
    let console = Console {
        stdin: &mut stdin,
        stderr: &mut stderr,
        env: &no_env,
    };

    let outcome = run_with(cli, console, &mut ClosedPipe).await;

    assert!(
        matches!(&outcome, Err(CliError::Output(error)) if error.kind() == std::io::ErrorKind::BrokenPipe),
        "{outcome:?}"
    );
}

#[test]
fn parsing_reads_the_resource_the_verb_and_the_key() {
    let cli = Cli::try_parse_from([
        "emporiumctl",
        "roles",
        "update",
        "auditor",
        "--expected-version",
        "2",
        "--description",
        "x",
    ])
    .expect("the command line is valid");

    let Action::Resource(call) = &cli.action else {
        panic!("a resource command: {cli:?}");
    };
    let debug = format!("{call:?}");
    assert!(debug.contains(r#"resource: "role""#), "{debug}");
    assert!(debug.contains(r#"verb: "update""#), "{debug}");
    assert!(debug.contains(r#"keys: ["auditor"]"#), "{debug}");
    assert!(
        debug.contains(r#"fields: ["expected_version", "description"]"#),
        "{debug}"
    );
}

#[test]
fn the_credentials_file_is_private_and_replaced_atomically() {
    use std::os::unix::fs::PermissionsExt;
    // Arrange
    let parent = test_support::temp_dir("emporiumctl-config");
    let directory = parent.join("emporiumctl");
    let store = CredentialStore::new(&directory);
    let credentials = Credentials {
        issuer: "http://localhost:8080".to_owned(),
        client_id: "emporiumctl".to_owned(),
        access_token: "access".to_owned(),
        refresh_token: Some("refresh".to_owned()),
        expires_at: 1_900_000_000,
    };

    // Act
    store.save(&credentials).unwrap();
    let rotated = Credentials {
        refresh_token: Some("rotated".to_owned()),
        ..credentials.clone()
    };
    store.save(&rotated).unwrap();

    // Assert
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&directory), 0o700);
    assert_eq!(mode(&store.path()), 0o600);
    assert_eq!(store.load().unwrap(), Some(rotated));
    let entries: Vec<_> = std::fs::read_dir(&directory)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(entries, ["credentials.json"], "no temporary file is left");
    assert!(
        !format!("{credentials:?}").contains("refresh"),
        "Debug hides tokens"
    );
    store.delete().unwrap();
    assert_eq!(store.load().unwrap(), None);
    let _ = std::fs::remove_dir_all(&parent);
}

#[tokio::test]
async fn login_exchanges_the_code_with_the_pkce_verifier_after_checking_state() {
    // Arrange
    let provider = FakeProvider::start("access-1").await;
    let login = emporiumctl::oauth::BrowserLogin {
        issuer: provider.issuer.clone(),
        client_id: "emporiumctl".to_owned(),
        scope: "openid offline_access".to_owned(),
        timeout: Duration::from_secs(20),
    };
    let authorize_url = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let seen_url = std::sync::Arc::clone(&authorize_url);

    // Act: the "browser" follows the redirect the provider would send.
    let credentials = emporiumctl::oauth::login_with_browser(&login, move |url| {
        *seen_url.lock().unwrap() = url.to_owned();
        let query = query_of(url);
        let redirect = format!(
            "{}?code=code-1&state={}",
            query["redirect_uri"], query["state"]
        );
        tokio::spawn(browser_get(redirect));
    })
    .await
    .expect("the login succeeds");

    // Assert
    let query = query_of(&authorize_url.lock().unwrap());
    assert!(
        authorize_url
            .lock()
            .unwrap()
            .starts_with(&format!("{}/authorize?", provider.issuer))
    );
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["client_id"], "emporiumctl");
    assert_eq!(query["code_challenge_method"], "S256");
    assert!(query["redirect_uri"].starts_with("http://127.0.0.1:"));
    assert!(query["redirect_uri"].ends_with("/callback"));
    let exchange = provider.token_requests().remove(0);
    assert_eq!(exchange["grant_type"], "authorization_code");
    assert_eq!(exchange["code"], "code-1");
    assert_eq!(exchange["redirect_uri"], query["redirect_uri"]);
    assert_eq!(exchange["client_id"], "emporiumctl");
    assert_eq!(
        pkce_challenge(&exchange["code_verifier"]),
        query["code_challenge"]
    );
    assert_eq!(credentials.access_token, "access-1");
    assert_eq!(credentials.refresh_token.as_deref(), Some("refresh-2"));
    assert_eq!(credentials.issuer, provider.issuer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_login_is_refreshed_and_the_rotated_refresh_token_stored() {
    // Arrange
    let app = spawn_suite(Backend::SqliteEmbedded).await;
    let provider = FakeProvider::start(&app.token).await;
    let config = test_support::temp_dir("emporiumctl-config");
    let store = CredentialStore::new(&config);
    store
        .save(&Credentials {
            issuer: provider.issuer.clone(),
            client_id: "emporiumctl".to_owned(),
            access_token: "expired".to_owned(),
            refresh_token: Some("refresh-1".to_owned()),
            expires_at: 1,
        })
        .unwrap();
    let server = format!("http://{}", app.hosted.addr);
    let config_dir = config.display().to_string();

    // Act
    let listed = ctl_with(&[
        "--server",
        &server,
        "--config-dir",
        &config_dir,
        "category",
        "list",
    ])
    .await;

    // Assert
    assert!(listed.is_ok(), "{listed:?}");
    let refresh = provider.token_requests().remove(0);
    assert_eq!(refresh["grant_type"], "refresh_token");
    assert_eq!(refresh["refresh_token"], "refresh-1");
    assert_eq!(refresh["client_id"], "emporiumctl");
    let stored = store.load().unwrap().expect("still logged in");
    assert_eq!(stored.refresh_token.as_deref(), Some("refresh-2"));
    assert_eq!(stored.access_token, app.token);
    let _ = std::fs::remove_dir_all(&config);
}

#[test]
fn the_pkce_challenge_is_the_s256_of_the_verifier() {
    // RFC 7636, appendix B.
    assert_eq!(
        pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    );
}

#[test]
fn client_secret_basic_form_encodes_id_and_secret() {
    // RFC 6749 §2.3.1: each part form-urlencoded before the colon joins them.
    assert_eq!(
        basic_authorization("billing job", "p:ss/word"),
        format!("Basic {}", base64_standard("billing+job:p%3Ass%2Fword"))
    );
}

#[test]
fn the_token_is_never_shown_in_debug_output() {
    let cli = Cli::try_parse_from(["emporiumctl", "--token", "secret-token", "category", "list"])
        .unwrap();

    assert!(!format!("{cli:?}").contains("secret-token"));
}

// === helpers ===

/// Identity and the catalog, hosted on one random port as `up` hosts them, until dropped.
struct TestSuite {
    hosted: HostedServices,
    /// The only issuer the services trust.
    issuer: TestIssuer,
    /// An admin token (identity needs `admin`; it also may change the catalog), passed with
    /// --token by [`TestSuite::ctl`].
    token: String,
    // Dropped after the services stop: they delete the databases and the bus namespace.
    _identity_database: TestDatabase,
    _catalog_database: TestDatabase,
    _test_bus: TestBus,
}

async fn spawn_suite(backend: Backend) -> TestSuite {
    let identity_database = TestDatabase::new(backend, "identity").await;
    let catalog_database = TestDatabase::new(backend, "catalog").await;
    let test_bus = TestBus::new(backend).await;
    let bus = test_bus.connect().await;
    let issuer = TestIssuer::new();
    let identity = Built::<IdentityParts>::build(
        &settings(identity::NAME, &identity_database, &test_bus),
        bus.clone(),
        IdentityOptions {
            key_encryption_key: KeyEncryptionKey::generate().expect("a key"),
            key_policy: KeyPolicy::default(),
        },
    )
    .await
    .expect("identity starts");
    let catalog = Built::<CatalogParts>::build(
        &settings(catalog::NAME, &catalog_database, &test_bus),
        bus,
        (),
    )
    .await
    .expect("the catalog starts");
    let hosted =
        host_on_one_port(&issuer, [identity.into_unit(None), catalog.into_unit(None)]).await;
    let token = issuer.token("admin-1", &[roles::ADMIN]);
    TestSuite {
        hosted,
        issuer,
        token,
        _identity_database: identity_database,
        _catalog_database: catalog_database,
        _test_bus: test_bus,
    }
}

fn settings(
    name: &'static str,
    test_database: &TestDatabase,
    test_bus: &TestBus,
) -> ServiceSettings {
    ServiceSettings {
        name,
        grpc_addr: "127.0.0.1:0".parse().expect("a valid address"),
        database_url: test_database.secret_url(),
        namespace: test_bus.namespace.clone(),
        database_max_connections: None,
    }
}

/// Runs `emporiumctl <arguments>` with an empty stdin and environment, returning what it
/// printed or its error.
async fn ctl_with(arguments: &[&str]) -> Result<String, CliError> {
    ctl_with_console(arguments, "", &[]).await.0
}

/// Runs `emporiumctl <arguments>` with `stdin` and the environment `env`: what it printed or its
/// error, and what it wrote to stderr.
async fn ctl_with_console(
    arguments: &[&str],
    stdin: &str,
    env: &[(&str, &str)],
) -> (Result<String, CliError>, String) {
    let command_line = ["emporiumctl"].into_iter().chain(arguments.iter().copied());
    let cli = Cli::try_parse_from(command_line)
        .unwrap_or_else(|error| panic!("{arguments:?} parse: {error}"));
    let environment: HashMap<String, String> = env
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    let lookup = move |name: &str| environment.get(name).cloned();
    let mut stdin = std::io::Cursor::new(stdin.as_bytes().to_vec());
    let mut stderr = Vec::new();
    let mut out = Vec::new();
    let console = Console {
        stdin: &mut stdin,
        stderr: &mut stderr,
        env: &lookup,
    };
    let outcome = run_with(cli, console, &mut out)
        .await
        .map(|()| String::from_utf8(out).expect("the output is UTF-8"));
    (outcome, String::from_utf8(stderr).expect("stderr is UTF-8"))
}

/// The value of `key` in a record printed as a table (`key  value` lines).
fn field_of(output: &str, key: &str) -> String {
    output
        .lines()
        .find_map(|line| {
            let (line_key, value) = line.split_once(' ').unwrap_or((line, ""));
            (line_key == key).then(|| value.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no {key} in:\n{output}"))
}

impl TestSuite {
    /// `--server <the suite> --token <admin> <arguments>`.
    fn command_line<'a>(&'a self, server: &'a str, arguments: &[&'a str]) -> Vec<&'a str> {
        ["--server", server, "--token", self.token.as_str()]
            .into_iter()
            .chain(arguments.iter().copied())
            .collect()
    }

    /// Runs the CLI as the admin and expects success.
    async fn ctl(&self, arguments: &[&str]) -> String {
        self.ctl_with_console(arguments, "", &[])
            .await
            .0
            .unwrap_or_else(|error| panic!("emporiumctl {arguments:?} failed: {error}"))
    }

    /// Runs the CLI as the admin and expects an error.
    async fn ctl_error(&self, arguments: &[&str]) -> CliError {
        match self.ctl_with_console(arguments, "", &[]).await.0 {
            Ok(output) => panic!("emporiumctl {arguments:?} succeeded:\n{output}"),
            Err(error) => error,
        }
    }

    /// Runs the CLI as the admin with `stdin` and `env`.
    async fn ctl_with_console(
        &self,
        arguments: &[&str],
        stdin: &str,
        env: &[(&str, &str)],
    ) -> (Result<String, CliError>, String) {
        let server = format!("http://{}", self.hosted.addr);
        ctl_with_console(&self.command_line(&server, arguments), stdin, env).await
    }

    async fn create_category(&self, name: &str) -> String {
        field_of(
            &self.ctl(&["category", "create", "--name", name]).await,
            "id",
        )
    }

    async fn create_product(
        &self,
        category_id: &str,
        sku: &str,
        name: &str,
        price: &str,
    ) -> String {
        let output = self
            .ctl(&[
                "product",
                "create",
                "--sku",
                sku,
                "--name",
                name,
                "--category-id",
                category_id,
                "--price",
                price,
            ])
            .await;
        field_of(&output, "id")
    }
}

impl Drop for TestSuite {
    fn drop(&mut self) {
        self.hosted.shutdown.cancel();
        self.hosted.served.abort();
    }
}

/// An OAuth2 provider with a discovery document and a token endpoint that answers every grant
/// with `access_token` and the refresh token `refresh-2`, recording each request's form.
struct FakeProvider {
    issuer: String,
    token_requests:
        std::sync::Arc<std::sync::Mutex<Vec<std::collections::HashMap<String, String>>>>,
    task: JoinHandle<()>,
}

impl FakeProvider {
    async fn start(access_token: &str) -> FakeProvider {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let token_requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let discovery = serde_json::json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "revocation_endpoint": format!("{issuer}/revoke"),
        });
        let tokens = serde_json::json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": 300,
            "refresh_token": "refresh-2",
        });
        let recorded = std::sync::Arc::clone(&token_requests);
        let router = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(move || {
                    let discovery = discovery.clone();
                    async move { axum::Json(discovery) }
                }),
            )
            .route(
                "/token",
                axum::routing::post(move |body: String| {
                    let tokens = tokens.clone();
                    let recorded = std::sync::Arc::clone(&recorded);
                    async move {
                        recorded.lock().unwrap().push(
                            form_urlencoded::parse(body.as_bytes())
                                .into_owned()
                                .collect(),
                        );
                        axum::Json(tokens)
                    }
                }),
            );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        FakeProvider {
            issuer,
            token_requests,
            task,
        }
    }

    fn token_requests(&self) -> Vec<std::collections::HashMap<String, String>> {
        self.token_requests.lock().unwrap().clone()
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The query parameters of `url`.
fn query_of(url: &str) -> std::collections::HashMap<String, String> {
    let query = url.split_once('?').map_or("", |(_, query)| query);
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// What a browser does with a redirect: GET it (plain HTTP/1.1) and read the page.
async fn browser_get(url: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut stream = tokio::net::TcpStream::connect(authority).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut page = String::new();
    stream.read_to_string(&mut page).await.unwrap();
    page
}

/// Standard base64 with padding, as HTTP Basic uses.
fn base64_standard(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}
