//! Token signing keys: created once, kept across restarts, encrypted at rest, rotated on a
//! schedule, published as a JWKS over HTTP (every key that may still have valid tokens) that the
//! chassis verifier fetches to check tokens signed with them. Time is passed in, never waited for.

use std::sync::Arc;
use std::time::Duration;

use chassis::auth::{Claims, KeySource, SigningKey, TokenVerifier, roles};
use chassis::on_backend;
use identity::keys::{KeyEncryptionKey, SigningKeys};
use identity::{Application, IdentityOptions, IdentityParts};
use jsonwebtoken::jwk::JwkSet;
use test_support::{Backend, TestBus, TestDatabase, TestIssuer, both_backends};
use time::OffsetDateTime;

use crate::helpers::identity_options;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
const HOUR: Duration = Duration::from_secs(60 * 60);
const MINUTE: Duration = Duration::from_secs(60);

both_backends!(
    the_signing_key_is_created_once_and_kept_across_restarts,
    a_token_signed_with_the_current_key_verifies_against_the_served_jwks,
    the_stored_signing_key_is_encrypted,
    a_restart_with_another_key_encryption_key_fails_clearly,
    an_old_key_is_replaced_and_published_until_its_tokens_have_expired,
    rotate_makes_a_new_key_current_at_once,
);

async fn the_signing_key_is_created_once_and_kept_across_restarts(backend: Backend) {
    let test_database = TestDatabase::new(backend, "identity").await;
    let test_bus = TestBus::new(backend).await;
    let options = identity_options();
    let now = OffsetDateTime::now_utc();
    let first_start = build(&test_database, &test_bus, options.clone()).await;
    let first = first_start
        .service()
        .signing_keys()
        .current(now)
        .await
        .unwrap();
    let again = first_start
        .service()
        .signing_keys()
        .current(now)
        .await
        .unwrap();
    first_start.database().close().await;
    drop(first_start);

    let restarted = build(&test_database, &test_bus, options).await;
    let after_restart = restarted
        .service()
        .signing_keys()
        .current(now)
        .await
        .unwrap();
    let key_set = restarted
        .service()
        .signing_keys()
        .key_set(now)
        .await
        .unwrap();

    assert_eq!(again.kid(), first.kid());
    assert_eq!(after_restart.kid(), first.kid());
    assert_eq!(after_restart.pkcs8_der(), first.pkcs8_der());
    assert_eq!(kids(&key_set), [first.kid()]);
}

async fn a_token_signed_with_the_current_key_verifies_against_the_served_jwks(backend: Backend) {
    let test_database = TestDatabase::new(backend, "identity").await;
    let test_bus = TestBus::new(backend).await;
    let application = build(&test_database, &test_bus, identity_options()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_url = format!(
        "http://{}{}",
        listener.local_addr().unwrap(),
        identity::http::JWKS_PATH
    );
    let router = application.service().http_router(
        identity::oauth::OAuthSettings::new(TestIssuer::ISSUER, TestIssuer::AUDIENCE),
        identity::oauth::Clock::system(),
    );
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let key = application
        .service()
        .signing_keys()
        .current(OffsetDateTime::now_utc())
        .await
        .unwrap();
    let verifier = Arc::new(TokenVerifier::new(
        TestIssuer::ISSUER,
        TestIssuer::AUDIENCE,
        KeySource::Url(jwks_url),
    ));

    let caller = verifier
        .verify(&key.sign(&valid_claims()).unwrap())
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

async fn the_stored_signing_key_is_encrypted(backend: Backend) {
    let test_database = TestDatabase::new(backend, "identity").await;
    let test_bus = TestBus::new(backend).await;
    let application = build(&test_database, &test_bus, identity_options()).await;

    let key = application
        .service()
        .signing_keys()
        .current(OffsetDateTime::now_utc())
        .await
        .unwrap();
    let rows = stored_rows(&application).await;

    assert_eq!(rows.len(), 1);
    let (kid, ciphertext, nonce) = &rows[0];
    assert_eq!(kid, key.kid());
    assert_eq!(nonce.len(), 24, "XChaCha20-Poly1305 takes a 24-byte nonce");
    let pkcs8_der = key.pkcs8_der();
    // An Ed25519 PKCS#8 document ends with the 32-byte private seed.
    let seed = &pkcs8_der[pkcs8_der.len() - 32..];
    assert_ne!(ciphertext.as_slice(), pkcs8_der);
    assert!(
        !contains(ciphertext, pkcs8_der),
        "the DER is stored in clear"
    );
    assert!(
        !contains(ciphertext, seed),
        "the private seed is stored in clear"
    );
    assert!(SigningKey::from_pkcs8_der(kid, ciphertext).is_err());
}

async fn a_restart_with_another_key_encryption_key_fails_clearly(backend: Backend) {
    let test_database = TestDatabase::new(backend, "identity").await;
    let test_bus = TestBus::new(backend).await;
    let options = identity_options();
    let first_start = build(&test_database, &test_bus, options.clone()).await;
    let now = OffsetDateTime::now_utc();
    let key = first_start
        .service()
        .signing_keys()
        .current(now)
        .await
        .unwrap();
    first_start.database().close().await;
    drop(first_start);

    let with_another_key = try_build(
        &test_database,
        &test_bus,
        IdentityOptions {
            key_encryption_key: KeyEncryptionKey::generate().unwrap(),
            ..options.clone()
        },
    )
    .await;
    let with_the_original_key = build(&test_database, &test_bus, options).await;

    let error = format!(
        "{:#}",
        with_another_key.expect_err("another key must not start")
    );
    assert!(
        error.contains(
            "the stored signing keys cannot be decrypted with EMPORIUM_IDENTITY_KEY_ENCRYPTION_KEY"
        ),
        "unclear error: {error}"
    );
    let current = with_the_original_key
        .service()
        .signing_keys()
        .current(now)
        .await
        .unwrap();
    assert_eq!(current.kid(), key.kid(), "the failed start changed nothing");
}

async fn an_old_key_is_replaced_and_published_until_its_tokens_have_expired(backend: Backend) {
    let test_database = TestDatabase::new(backend, "identity").await;
    let test_bus = TestBus::new(backend).await;
    let application = build(&test_database, &test_bus, identity_options()).await;
    let keys = application.service().signing_keys();
    let t0 = OffsetDateTime::now_utc();
    let after_31_days = t0 + 31 * DAY;
    // KeyPolicy::default(): tokens live at most an hour; the margin is five minutes.
    let just_before_retirement = after_31_days + HOUR + 4 * MINUTE;
    let just_after_retirement = after_31_days + HOUR + 6 * MINUTE;

    let key_a = keys.current(t0).await.unwrap();
    let still_a = keys.current(t0 + 29 * DAY).await.unwrap();
    let token_from_a = key_a.sign(&valid_claims()).unwrap();
    let key_b = keys.current(after_31_days).await.unwrap();
    let still_b = keys.current(after_31_days + MINUTE).await.unwrap();
    let published_at_rotation = keys.key_set(after_31_days).await.unwrap();
    let published_before_retirement = keys.key_set(just_before_retirement).await.unwrap();
    let published_after_retirement = keys.key_set(just_after_retirement).await.unwrap();
    let current_after_retirement = keys.current(just_after_retirement).await.unwrap();

    assert_eq!(still_a.kid(), key_a.kid());
    assert_ne!(key_b.kid(), key_a.kid());
    assert_eq!(still_b.kid(), key_b.kid());
    assert_eq!(kids(&published_at_rotation), [key_a.kid(), key_b.kid()]);
    assert_eq!(
        kids(&published_before_retirement),
        [key_a.kid(), key_b.kid()]
    );
    assert_eq!(kids(&published_after_retirement), [key_b.kid()]);
    assert_eq!(current_after_retirement.kid(), key_b.kid());
    let stored_kids: Vec<String> = stored_rows(&application)
        .await
        .into_iter()
        .map(|(kid, _, _)| kid)
        .collect();
    assert_eq!(stored_kids, [key_b.kid()], "the retired key is deleted");
    verifier(published_at_rotation)
        .verify(&token_from_a)
        .await
        .expect("a token from the old key verifies while the key is published");
    assert!(
        verifier(published_after_retirement)
            .verify(&token_from_a)
            .await
            .is_err()
    );
}

async fn rotate_makes_a_new_key_current_at_once(backend: Backend) {
    let test_database = TestDatabase::new(backend, "identity").await;
    let test_bus = TestBus::new(backend).await;
    let application = build(&test_database, &test_bus, identity_options()).await;
    let keys: &SigningKeys = application.service().signing_keys();
    let t0 = OffsetDateTime::now_utc();

    let before = keys.current(t0).await.unwrap();
    let rotated = keys.rotate(t0 + MINUTE).await.unwrap();
    let current = keys.current(t0 + 2 * MINUTE).await.unwrap();
    let published = keys.key_set(t0 + 2 * MINUTE).await.unwrap();

    assert_ne!(rotated.kid(), before.kid());
    assert_eq!(current.kid(), rotated.kid());
    assert_eq!(kids(&published), [before.kid(), rotated.kid()]);
}

async fn build(
    test_database: &TestDatabase,
    test_bus: &TestBus,
    options: IdentityOptions,
) -> Application {
    try_build(test_database, test_bus, options)
        .await
        .expect("the identity service starts")
}

async fn try_build(
    test_database: &TestDatabase,
    test_bus: &TestBus,
    options: IdentityOptions,
) -> anyhow::Result<Application> {
    Application::build_with(
        &test_support::service_settings::<IdentityParts>(test_database, test_bus),
        test_bus.connect().await,
        Duration::from_secs(5),
        TestIssuer::new().verifier(),
        options,
    )
    .await
}

/// Claims valid for five minutes from the real clock (the verifier checks `exp` against it).
fn valid_claims() -> Claims {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    Claims {
        iss: TestIssuer::ISSUER.to_owned(),
        sub: "account-1".to_owned(),
        aud: TestIssuer::AUDIENCE.to_owned(),
        exp: now + 300,
        iat: now,
        jti: uuid::Uuid::new_v4().to_string(),
        client_id: "test".to_owned(),
        roles: vec![roles::ADMIN.to_owned()],
        customer_id: None,
    }
}

fn verifier(key_set: JwkSet) -> TokenVerifier {
    TokenVerifier::new(
        TestIssuer::ISSUER,
        TestIssuer::AUDIENCE,
        KeySource::Fixed(key_set),
    )
}

fn kids(key_set: &JwkSet) -> Vec<&str> {
    key_set
        .keys
        .iter()
        .map(|jwk| jwk.common.key_id.as_deref().unwrap_or_default())
        .collect()
}

/// `(kid, ciphertext, nonce)` of every stored key, oldest first, read past the service.
async fn stored_rows(application: &Application) -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let mut tx = application.database().begin_read().await.unwrap();
    let rows = on_backend!(tx, conn => {
        sqlx::query_as::<_, (String, Vec<u8>, Vec<u8>)>(
            "SELECT kid, ciphertext, nonce FROM signing_keys ORDER BY created_at, kid",
        )
        .fetch_all(conn)
        .await
    })
    .unwrap();
    tx.commit().await.unwrap();
    rows
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}
