//! End-to-end tests of `emporiumctl`: a real catalog runs in-process on a random port, on both
//! backends, and each test drives the CLI through `run` exactly as a user would, reading what it
//! prints or the error it reports.

use std::net::SocketAddr;
use std::time::Duration;

use catalog::Application;
use chassis::auth::roles;
use chassis::settings::ServiceSettings;
use clap::Parser;
use emporiumctl::credentials::{CredentialStore, Credentials};
use emporiumctl::oauth::{basic_authorization, pkce_challenge};
use emporiumctl::{Cli, CliError, run};
use serde_json::Value;
use test_support::{Backend, TestBus, TestDatabase, TestIssuer, both_backends};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::Code;

both_backends!(
    creating_a_category_and_a_product_prints_them,
    lists_print_columns_a_count_and_json,
    list_all_follows_every_page_and_a_token_continues_a_listing,
    an_update_with_the_current_version_succeeds_and_a_stale_one_is_a_conflict,
    an_invalid_currency_is_reported_by_field,
    a_duplicate_sku_names_the_field,
    a_category_with_products_cannot_be_deleted,
    a_deleted_product_is_not_found,
    events_show_the_history_of_a_product,
    the_token_is_sent_with_every_call_and_required,
    a_stored_login_is_used_when_no_token_is_given,
);

// === tests ===

async fn creating_a_category_and_a_product_prints_them(backend: Backend) {
    // Arrange
    let app = spawn_catalog(backend).await;

    // Act
    let category = app
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
    let product = app
        .ctl(&[
            "product",
            "create",
            "--sku",
            "SHOE-42",
            "--name",
            "Trail runner",
            "--category-id",
            &category_id,
            "--price-minor",
            "1299",
            "--currency",
            "EUR",
            "--stock",
            "7",
        ])
        .await;

    // Assert
    assert!(category.contains("name         Shoes\n"), "{category}");
    assert!(category.contains("version      1\n"), "{category}");
    assert!(product.contains("price        12.99 EUR\n"), "{product}");
    assert!(product.contains("stock        7\n"), "{product}");
    assert!(
        product.contains(&format!("category     {category_id}\n")),
        "{product}"
    );
    let created = field_of(&product, "created");
    assert!(
        created.ends_with('Z') && created.contains('T'),
        "an RFC 3339 time: {created}"
    );
}

async fn lists_print_columns_a_count_and_json(backend: Backend) {
    // Arrange
    let app = spawn_catalog(backend).await;
    let category_id = app.create_category("Shoes").await;
    app.create_product(&category_id, "SHOE-1", "Boot", 4500)
        .await;
    app.create_product(&category_id, "SHOE-2", "Sandal", 999)
        .await;

    // Act
    let table = app.ctl(&["product", "list", "--order-by", "price"]).await;
    let json = app
        .ctl(&[
            "--output",
            "json",
            "product",
            "list",
            "--category-id",
            &category_id,
        ])
        .await;

    // Assert
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(
        lines[0].starts_with("ID ") && lines[0].ends_with("VERSION"),
        "{table}"
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
    assert_eq!(listing["total_size"], 2);
    assert_eq!(listing["next_page_token"], "");
    assert_eq!(listing["products"][0]["sku"], "SHOE-1");
    assert_eq!(listing["products"][0]["price"]["amount_minor"], 4500);
    assert_eq!(listing["products"][0]["price"]["currency"], "EUR");
    assert_eq!(listing["products"][0]["category_id"], category_id.as_str());
}

async fn list_all_follows_every_page_and_a_token_continues_a_listing(backend: Backend) {
    // Arrange
    let app = spawn_catalog(backend).await;
    for name in ["Alpha", "Beta", "Gamma"] {
        app.create_category(name).await;
    }

    // Act
    let everything = app
        .ctl(&["category", "list", "--page-size", "1", "--all"])
        .await;
    let first_page = app
        .ctl(&["category", "list", "--page-size", "2", "--desc"])
        .await;
    let token = first_page
        .lines()
        .find_map(|line| line.strip_prefix("next page: --page-token "))
        .expect("a first page of two out of three tells how to continue")
        .to_owned();
    let second_page = app
        .ctl(&[
            "category",
            "list",
            "--page-size",
            "2",
            "--desc",
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

async fn an_update_with_the_current_version_succeeds_and_a_stale_one_is_a_conflict(
    backend: Backend,
) {
    // Arrange
    let app = spawn_catalog(backend).await;
    let category_id = app.create_category("Shoes").await;
    let product_id = app
        .create_product(&category_id, "SHOE-1", "Boot", 4500)
        .await;

    // Act
    let updated = app
        .ctl(&[
            "product",
            "update",
            &product_id,
            "--expected-version",
            "1",
            "--price-minor",
            "4999",
            "--currency",
            "EUR",
        ])
        .await;
    let stale = app
        .ctl_error(&[
            "product",
            "update",
            &product_id,
            "--expected-version",
            "1",
            "--stock",
            "3",
        ])
        .await;

    // Assert
    assert!(updated.contains("price        49.99 EUR\n"), "{updated}");
    assert!(updated.contains("version      2\n"), "{updated}");
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
    let unchanged = app.ctl(&["product", "get", &product_id]).await;
    assert!(unchanged.contains("stock        0\n"), "{unchanged}");
}

async fn an_invalid_currency_is_reported_by_field(backend: Backend) {
    // Arrange
    let app = spawn_catalog(backend).await;
    let category_id = app.create_category("Shoes").await;

    // Act
    let error = app
        .ctl_error(&[
            "product",
            "create",
            "--sku",
            "SHOE-1",
            "--name",
            "Boot",
            "--category-id",
            &category_id,
            "--price-minor",
            "1299",
            "--currency",
            "euro",
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

async fn a_duplicate_sku_names_the_field(backend: Backend) {
    // Arrange
    let app = spawn_catalog(backend).await;
    let category_id = app.create_category("Shoes").await;
    app.create_product(&category_id, "SHOE-1", "Boot", 4500)
        .await;

    // Act
    let error = app
        .ctl_error(&[
            "product",
            "create",
            "--sku",
            "SHOE-1",
            "--name",
            "Other boot",
            "--category-id",
            &category_id,
            "--price-minor",
            "100",
            "--currency",
            "EUR",
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
    let app = spawn_catalog(backend).await;
    let category_id = app.create_category("Shoes").await;
    app.create_product(&category_id, "SHOE-1", "Boot", 4500)
        .await;

    // Act
    let error = app.ctl_error(&["category", "delete", &category_id]).await;

    // Assert
    assert_eq!(error.code(), Some(Code::FailedPrecondition));
    assert!(error.to_string().contains("still has 1 product"), "{error}");
}

async fn a_deleted_product_is_not_found(backend: Backend) {
    // Arrange
    let app = spawn_catalog(backend).await;
    let category_id = app.create_category("Shoes").await;
    let product_id = app
        .create_product(&category_id, "SHOE-1", "Boot", 4500)
        .await;

    // Act
    let deleted = app
        .ctl(&["product", "delete", &product_id, "--expected-version", "1"])
        .await;
    let error = app.ctl_error(&["product", "get", &product_id]).await;

    // Assert
    assert_eq!(deleted, format!("deleted product {product_id}\n"));
    assert_eq!(error.code(), Some(Code::NotFound));
    assert_eq!(error.exit_code(), 1);
    assert!(error.to_string().contains(&product_id), "{error}");
}

async fn events_show_the_history_of_a_product(backend: Backend) {
    // Arrange
    let app = spawn_catalog(backend).await;
    let category_id = app.create_category("Shoes").await;
    let product_id = app
        .create_product(&category_id, "SHOE-1", "Boot", 4500)
        .await;
    app.ctl(&[
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
    let table = app.ctl(&["product", "events", &product_id]).await;
    let json = app
        .ctl(&["--output", "json", "product", "events", &product_id])
        .await;

    // Assert
    assert!(table.ends_with("\n2 events\n"), "{table}");
    let history: Value = serde_json::from_str(&json).expect("the output is JSON");
    let events = history["events"].as_array().expect("a list of events");
    assert_eq!(events.len(), 2, "{json}");
    assert_eq!(events[0]["aggregate_version"], 1);
    assert_eq!(events[1]["aggregate_version"], 2);
    assert!(
        events[1]["type"]
            .as_str()
            .is_some_and(|kind| kind.contains("product")),
        "{json}"
    );
    assert!(
        events[1]["data"].is_object(),
        "the payload is embedded as JSON: {json}"
    );
}

#[tokio::test]
async fn an_unreachable_server_exits_with_3_and_no_debug_output() {
    // Arrange: a port that was free a moment ago, so nothing listens on it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let addr = listener.local_addr().expect("a bound address");
    drop(listener);

    // Act
    let error = ctl_at(addr, "unused", &["category", "list"])
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
        vec![
            "emporiumctl",
            "product",
            "update",
            "some-id",
            "--expected-version",
            "1",
        ],
        vec![
            "emporiumctl",
            "product",
            "update",
            "some-id",
            "--expected-version",
            "1",
            "--price-minor",
            "5",
        ],
        vec![
            "emporiumctl",
            "category",
            "update",
            "some-id",
            "--name",
            "x",
        ],
        vec!["emporiumctl", "category", "list", "--order-by", "price"],
        vec!["emporiumctl", "--output", "yaml", "category", "list"],
    ];
    for arguments in invalid {
        let error = Cli::try_parse_from(&arguments).expect_err("the arguments are invalid");
        assert_eq!(error.exit_code(), 2, "{arguments:?}");
    }
}

#[test]
fn every_command_has_help() {
    use clap::CommandFactory;
    let command = Cli::command();
    command.clone().debug_assert();
    for group in command.get_subcommands() {
        assert!(group.get_about().is_some(), "{} has help", group.get_name());
        for subcommand in group.get_subcommands() {
            assert!(
                subcommand.get_about().is_some(),
                "{} {} has help",
                group.get_name(),
                subcommand.get_name()
            );
        }
    }
}

async fn the_token_is_sent_with_every_call_and_required(backend: Backend) {
    // Arrange
    let app = spawn_catalog(backend).await;
    let server = format!("http://{}", app.addr);
    let empty_config = test_support::temp_dir("emporiumctl-config");
    let config_dir = empty_config.display().to_string();
    let customer = app.issuer.token("customer-1", &[roles::CUSTOMER]);

    // Act
    let with_token = ctl_with(&[
        "--server", &server, "--token", &app.token, "category", "list",
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
    let _ = std::fs::remove_dir_all(&empty_config);
}

async fn a_stored_login_is_used_when_no_token_is_given(backend: Backend) {
    // Arrange
    let app = spawn_catalog(backend).await;
    let server = format!("http://{}", app.addr);
    let config = test_support::temp_dir("emporiumctl-config");
    CredentialStore::new(&config)
        .save(&Credentials {
            issuer: TestIssuer::ISSUER.to_owned(),
            client_id: "emporiumctl".to_owned(),
            access_token: app.token.clone(),
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
    assert!(whoami.contains("subject   catalog-manager-1\n"), "{whoami}");
    assert!(whoami.contains("roles     catalog-manager\n"), "{whoami}");
    assert!(
        !whoami.contains(&app.token),
        "the token itself is never printed"
    );
    let _ = std::fs::remove_dir_all(&config);
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
    let app = spawn_catalog(Backend::SqliteEmbedded).await;
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
    let server = format!("http://{}", app.addr);
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

/// A catalog serving on a random port until dropped.
struct TestCatalog {
    addr: SocketAddr,
    /// The only issuer the catalog trusts.
    issuer: TestIssuer,
    /// A catalog-manager token, passed with --token by [`TestCatalog::ctl`].
    token: String,
    shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    // Dropped after the catalog stops: they delete the database and bus namespace.
    _test_database: TestDatabase,
    _test_bus: TestBus,
}

async fn spawn_catalog(backend: Backend) -> TestCatalog {
    let test_database = TestDatabase::new(backend, "catalog").await;
    let test_bus = TestBus::new(backend).await;
    let issuer = TestIssuer::new();
    let token = issuer.token("catalog-manager-1", &[roles::CATALOG_MANAGER]);
    let settings = ServiceSettings {
        name: catalog::NAME,
        grpc_addr: "127.0.0.1:0".parse().expect("a valid address"),
        database_url: test_database.secret_url(),
        namespace: test_bus.namespace.clone(),
        database_max_connections: None,
    };
    let application = Application::build(
        &settings,
        test_bus.connect().await,
        Duration::from_secs(5),
        issuer.verifier(),
    )
    .await
    .expect("the catalog starts");
    let addr = application.local_addr();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(application.run_until_stopped(shutdown.clone()));
    TestCatalog {
        addr,
        issuer,
        token,
        shutdown,
        task: Some(task),
        _test_database: test_database,
        _test_bus: test_bus,
    }
}

/// Runs `emporiumctl --server <addr> --token <token> <arguments>`, returning what it printed or
/// its error.
async fn ctl_at(addr: SocketAddr, token: &str, arguments: &[&str]) -> Result<String, CliError> {
    let server = format!("http://{addr}");
    let command_line: Vec<&str> = ["--server", server.as_str(), "--token", token]
        .into_iter()
        .chain(arguments.iter().copied())
        .collect();
    ctl_with(&command_line).await
}

/// Runs `emporiumctl <arguments>`, returning what it printed or its error.
async fn ctl_with(arguments: &[&str]) -> Result<String, CliError> {
    let command_line = ["emporiumctl"].into_iter().chain(arguments.iter().copied());
    let cli = Cli::try_parse_from(command_line)
        .unwrap_or_else(|error| panic!("{arguments:?} parse: {error}"));
    let mut out = Vec::new();
    run(cli, &mut out).await?;
    Ok(String::from_utf8(out).expect("the output is UTF-8"))
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

/// The value of `key` in a record printed as a table (`key  value` lines).
fn field_of(output: &str, key: &str) -> String {
    output
        .lines()
        .find_map(|line| {
            let (line_key, value) = line.split_once(' ')?;
            (line_key == key).then(|| value.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no {key} in:\n{output}"))
}

impl TestCatalog {
    /// Runs the CLI and expects success.
    async fn ctl(&self, arguments: &[&str]) -> String {
        ctl_at(self.addr, &self.token, arguments)
            .await
            .unwrap_or_else(|error| panic!("emporiumctl {arguments:?} failed: {error}"))
    }

    /// Runs the CLI and expects an error.
    async fn ctl_error(&self, arguments: &[&str]) -> CliError {
        match ctl_at(self.addr, &self.token, arguments).await {
            Ok(output) => panic!("emporiumctl {arguments:?} succeeded:\n{output}"),
            Err(error) => error,
        }
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
        price_minor: i64,
    ) -> String {
        let price_minor = price_minor.to_string();
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
                "--price-minor",
                &price_minor,
                "--currency",
                "EUR",
            ])
            .await;
        field_of(&output, "id")
    }
}

impl Drop for TestCatalog {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
