//! Identity's start-up hook (called from its row of the service table, `services.rs`): what
//! `emporium up` does for a new installation beyond starting the services (a key to encrypt
//! identity's signing keys, kept in the data directory, and the first admin account and the
//! suite's own OAuth2 clients), and the little `serve identity` does (the first admin, only from
//! the environment). Production takes its secrets from the environment and its accounts from an
//! admin.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use anyhow::Context;
use chassis::settings::Settings;
use chassis::storage::Database;
use identity::IdentityOptions;
use identity::bootstrap::Bootstrap;
use identity::keys::{KEY_ENCRYPTION_KEY_VARIABLE, KeyEncryptionKey, KeyPolicy};
use secrecy::{ExposeSecret, SecretString};

/// The admin account `up` creates unless `EMPORIUM_ADMIN_EMAIL` names another.
pub(crate) const DEFAULT_ADMIN_EMAIL: &str = "admin@emporium.localhost";
/// Where `up` keeps the key encryption key when the environment gives none.
const KEY_FILE: &str = "identity-key-encryption.key";

/// Where `up` keeps the secret of the gateway's OAuth client (its browser sessions).
const GATEWAY_SECRET_FILE: &str = "gateway-client.secret";

/// The secret of the gateway's client that `up` keeps in the data directory, if it has one.
pub(crate) fn gateway_client_secret(settings: &Settings) -> anyhow::Result<Option<SecretString>> {
    let path = settings.data_dir.join(GATEWAY_SECRET_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(SecretString::from(text.trim().to_owned()))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("Failed to read {}", path.display())),
    }
}

/// Replaces `path` with `secret` (0600), whole or not at all.
fn write_secret_file(path: &Path, secret: &SecretString) -> anyhow::Result<()> {
    let partial = path.with_extension("partial");
    let _ = std::fs::remove_file(&partial);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .with_context(|| format!("Failed to create {}", partial.display()))?;
    writeln!(file, "{}", secret.expose_secret())?;
    file.sync_all()?;
    std::fs::rename(&partial, path).with_context(|| format!("Failed to write {}", path.display()))
}

/// What the first-start set-up did, for the banner.
#[derive(Debug)]
pub(crate) struct FirstStart {
    admin_email: String,
    /// `Some` when the admin was created now; holds the generated password, if one was.
    admin_created: Option<Option<SecretString>>,
    clients_created: Vec<String>,
}

/// Identity's options: the key encryption key from `EMPORIUM_IDENTITY_KEY_ENCRYPTION_KEY`, or, in
/// `up` only, from a file in the data directory created (0600) on first start.
pub(crate) fn identity_options(settings: &Settings, up: bool) -> anyhow::Result<IdentityOptions> {
    let key_encryption_key = match settings.value(KEY_ENCRYPTION_KEY_VARIABLE) {
        Some(text) => KeyEncryptionKey::from_base64(text)?,
        None if up => key_file(&settings.data_dir)?,
        None => anyhow::bail!(
            "{KEY_ENCRYPTION_KEY_VARIABLE} is not set: identity encrypts its token signing keys \
             with it. Generate one with `openssl rand -base64 32`, keep it with your other \
             secrets, and give every identity replica the same one"
        ),
    };
    Ok(IdentityOptions {
        key_encryption_key,
        key_policy: KeyPolicy::default(),
    })
}

fn key_file(data_dir: &Path) -> anyhow::Result<KeyEncryptionKey> {
    let path = data_dir.join(KEY_FILE);
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("Failed to read {}", path.display()))?;
        return KeyEncryptionKey::from_base64(&text)
            .with_context(|| format!("{} is damaged", path.display()));
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("Failed to create {}", data_dir.display()))?;
    let key = KeyEncryptionKey::generate()?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("Failed to create {}", path.display()))?;
    writeln!(file, "{}", key.to_base64())?;
    file.sync_all()?;
    tracing::info!(path = %path.display(), "Created the key that encrypts identity's signing keys");
    Ok(key)
}

/// Creates, if missing, the admin account (`EMPORIUM_ADMIN_EMAIL`, password from
/// `EMPORIUM_ADMIN_PASSWORD` or generated) and the web app and CLI clients.
pub(crate) async fn first_start(
    settings: &Settings,
    database: &Database,
) -> anyhow::Result<FirstStart> {
    let admin_email = settings
        .value("EMPORIUM_ADMIN_EMAIL")
        .unwrap_or(DEFAULT_ADMIN_EMAIL)
        .to_owned();
    let bootstrap = Bootstrap::for_suite(
        &settings.auth.issuer,
        &admin_email,
        settings.secret("EMPORIUM_ADMIN_PASSWORD"),
    );
    let identity = identity::service::Identity::new(database.clone());
    let report = bootstrap
        .run(&identity)
        .await
        .context("Failed to set up the first admin account and clients")?;
    let secret_path = settings.data_dir.join(GATEWAY_SECRET_FILE);
    let known = gateway_client_secret(settings)?;
    if let Some(secret) =
        Bootstrap::gateway_client(&identity, &settings.auth.issuer, known.as_ref()).await?
    {
        write_secret_file(&secret_path, &secret)?;
    }
    Ok(FirstStart {
        admin_email,
        admin_created: report.admin_created,
        clients_created: report.clients_created,
    })
}

/// In production (`serve identity`): creates the first admin account only when
/// `EMPORIUM_ADMIN_PASSWORD` is given (never a generated password that would end up in a log),
/// and the `emporiumctl` client (loopback redirects only, so it does not depend on where the
/// suite is deployed), so the admin can sign in with the CLI. The web apps' clients depend on
/// their public URLs: an admin registers them.
pub(crate) async fn first_admin(settings: &Settings, database: &Database) -> anyhow::Result<()> {
    let Some(password) = settings.secret("EMPORIUM_ADMIN_PASSWORD") else {
        return Ok(());
    };
    let admin_email = settings
        .value("EMPORIUM_ADMIN_EMAIL")
        .unwrap_or(DEFAULT_ADMIN_EMAIL);
    let mut bootstrap = Bootstrap::for_suite(&settings.auth.issuer, admin_email, Some(password));
    bootstrap
        .clients
        .retain(|client| client.client_id == "emporiumctl");
    let identity = identity::service::Identity::new(database.clone());
    let report = bootstrap
        .run(&identity)
        .await
        .context("Failed to create the first admin account")?;
    if report.admin_created.is_some() {
        tracing::info!(
            email = admin_email,
            "Created the first admin account from EMPORIUM_ADMIN_PASSWORD"
        );
    }
    Ok(())
}

/// Printed once for the person who started the suite, under the banner; never logged.
pub(crate) fn print_first_start(first_start: &FirstStart) {
    match &first_start.admin_created {
        Some(Some(password)) => {
            say!();
            say!("  Created the admin account {}", first_start.admin_email);
            say!("  with the password  {}", password.expose_secret());
            say!("  It is shown only this once: sign in and keep it somewhere safe.");
        }
        Some(None) => say!(
            "\n  Created the admin account {} with the password from EMPORIUM_ADMIN_PASSWORD.",
            first_start.admin_email
        ),
        None => {}
    }
    if !first_start.clients_created.is_empty() {
        say!(
            "  Registered the OAuth2 clients: {}",
            first_start.clients_created.join(", ")
        );
    }
}
