//! Token signing keys: created once, kept across restarts, published as a JWKS over HTTP that the
//! chassis verifier fetches to check tokens signed with them.

use std::sync::Arc;
use std::time::Duration;

use chassis::auth::{Claims, KeySource, TokenVerifier, roles};
use chassis::settings::ServiceSettings;
use chassis::storage::Database;
use identity::Application;
use identity::keys::SigningKeys;
use test_support::{Backend, TestBus, TestDatabase, TestIssuer, both_backends};

both_backends!(
    the_signing_key_is_created_once_and_kept_across_restarts,
    a_token_signed_with_the_current_key_verifies_against_the_served_jwks,
);

async fn the_signing_key_is_created_once_and_kept_across_restarts(backend: Backend) {
    let test_database = TestDatabase::new(backend, "identity").await;
    let test_bus = TestBus::new(backend).await;
    let first_start = build(&test_database, &test_bus).await;
    let first = SigningKeys::new(first_start.database().clone())
        .current()
        .await
        .unwrap();
    let again = SigningKeys::new(first_start.database().clone())
        .current()
        .await
        .unwrap();
    first_start.database().close().await;
    drop(first_start);

    let restarted = build(&test_database, &test_bus).await;
    let after_restart = SigningKeys::new(restarted.database().clone())
        .current()
        .await
        .unwrap();
    let key_set = SigningKeys::new(restarted.database().clone())
        .key_set()
        .await
        .unwrap();

    assert_eq!(again.kid(), first.kid());
    assert_eq!(after_restart.kid(), first.kid());
    assert_eq!(after_restart.pkcs8_der(), first.pkcs8_der());
    assert_eq!(key_set.keys.len(), 1);
    assert_eq!(key_set.keys[0].common.key_id.as_deref(), Some(first.kid()));
}

async fn a_token_signed_with_the_current_key_verifies_against_the_served_jwks(backend: Backend) {
    let test_database = TestDatabase::new(backend, "identity").await;
    let test_bus = TestBus::new(backend).await;
    let application = build(&test_database, &test_bus).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_url = format!(
        "http://{}{}",
        listener.local_addr().unwrap(),
        identity::http::JWKS_PATH
    );
    let router = application.http_router(
        identity::oauth::OAuthSettings::new(TestIssuer::ISSUER, TestIssuer::AUDIENCE),
        identity::oauth::Clock::system(),
    );
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let key = SigningKeys::new(Database::open(test_database.url()).await.unwrap())
        .current()
        .await
        .unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = Claims {
        iss: TestIssuer::ISSUER.to_owned(),
        sub: "account-1".to_owned(),
        aud: TestIssuer::AUDIENCE.to_owned(),
        exp: now + 300,
        iat: now,
        jti: uuid::Uuid::new_v4().to_string(),
        client_id: "test".to_owned(),
        roles: vec![roles::ADMIN.to_owned()],
        customer_id: None,
    };
    let verifier = Arc::new(TokenVerifier::new(
        TestIssuer::ISSUER,
        TestIssuer::AUDIENCE,
        KeySource::Url(jwks_url),
    ));

    let caller = verifier
        .verify(&key.sign(&claims).unwrap())
        .await
        .expect("the served JWKS verifies the token");
    let forged = verifier
        .verify(&TestIssuer::new().token("account-1", &[roles::ADMIN]))
        .await;

    assert_eq!(caller.subject, "account-1");
    assert!(caller.has_role(roles::ADMIN));
    assert!(forged.is_err(), "a token from another key must not verify");
    server.abort();
}

async fn build(test_database: &TestDatabase, test_bus: &TestBus) -> Application {
    let settings = ServiceSettings {
        name: identity::NAME,
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        database_url: test_database.secret_url(),
        namespace: test_bus.namespace.clone(),
    };
    Application::build(
        &settings,
        test_bus.connect().await,
        Duration::from_secs(5),
        TestIssuer::new().verifier(),
    )
    .await
    .expect("the identity service starts")
}
