//! `verify_password`, the use case the login page will call: the right password finds the
//! account; a wrong one, an unknown email or a disabled account find nothing.

use chassis::storage::Database;
use emporium_proto::identity::v1 as proto;
use identity::service::Identity;
use secrecy::SecretString;
use test_support::{Backend, both_backends};

use crate::helpers::{IdentityApp as _, PASSWORD, spawn_app};

both_backends!(
    the_right_password_finds_the_account,
    a_wrong_password_or_an_unknown_email_finds_nothing,
    a_disabled_account_or_one_without_a_password_cannot_log_in,
    a_new_password_replaces_the_old_one,
);

async fn the_right_password_finds_the_account(backend: Backend) {
    let app = spawn_app(backend).await;
    let account = app.create_account("ada@example.com").await;
    let identity = identity(&app).await;

    let found = identity
        .verify_password("ADA@example.com", secret(PASSWORD))
        .await
        .unwrap();

    let found = found.expect("the right password is accepted");
    assert_eq!(found.id.to_string(), account.id);
    assert_eq!(found.email, "ada@example.com");
}

async fn a_wrong_password_or_an_unknown_email_finds_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_account("ada@example.com").await;
    let identity = identity(&app).await;

    let wrong_password = identity
        .verify_password("ada@example.com", secret("correct horse battery stapler"))
        .await
        .unwrap();
    let unknown_email = identity
        .verify_password("nobody@example.com", secret(PASSWORD))
        .await
        .unwrap();
    let not_an_email = identity
        .verify_password("nobody", secret(PASSWORD))
        .await
        .unwrap();

    assert!(wrong_password.is_none());
    assert!(unknown_email.is_none());
    assert!(not_an_email.is_none());
}

async fn a_disabled_account_or_one_without_a_password_cannot_log_in(backend: Backend) {
    let app = spawn_app(backend).await;
    let account = app.create_account("ada@example.com").await;
    app.client()
        .update_account(app.admin(proto::UpdateAccountRequest {
            id: account.id.clone(),
            expected_version: 1,
            disabled: Some(true),
            ..Default::default()
        }))
        .await
        .unwrap();
    app.client()
        .create_account(app.admin(proto::CreateAccountRequest {
            password: String::new(),
            ..crate::helpers::valid_account("grace@example.com")
        }))
        .await
        .unwrap();
    let identity = identity(&app).await;

    let disabled = identity
        .verify_password("ada@example.com", secret(PASSWORD))
        .await
        .unwrap();
    let without_password = identity
        .verify_password("grace@example.com", secret(""))
        .await
        .unwrap();

    assert!(disabled.is_none());
    assert!(without_password.is_none());
}

async fn a_new_password_replaces_the_old_one(backend: Backend) {
    let app = spawn_app(backend).await;
    let account = app.create_account("ada@example.com").await;
    let updated = app
        .client()
        .set_password(app.admin(proto::SetPasswordRequest {
            id: account.id.clone(),
            expected_version: 1,
            password: "a brand new passphrase".to_owned(),
        }))
        .await
        .unwrap()
        .into_inner();
    let identity = identity(&app).await;

    let with_old = identity
        .verify_password("ada@example.com", secret(PASSWORD))
        .await
        .unwrap();
    let with_new = identity
        .verify_password("ada@example.com", secret("a brand new passphrase"))
        .await
        .unwrap();

    assert_eq!(updated.version, 2);
    assert!(with_old.is_none());
    assert_eq!(with_new.map(|account| account.version), Some(2));
}

async fn identity(app: &crate::helpers::TestApp) -> Identity {
    Identity::new(
        Database::open(app.test_database.url())
            .await
            .expect("the test database opens"),
    )
}

fn secret(password: &str) -> SecretString {
    SecretString::from(password.to_owned())
}
