//! First-start set-up for a new installation: an `admin` account and the suite's own OAuth2
//! clients (web apps, CLI). Idempotent: what exists is left exactly as it is, so running it on
//! every start of `emporium up` never resets a password or a client an admin changed. Safe to run
//! from several replicas at once: the admin account and its role are created in one transaction,
//! each client in one, and whichever replica comes second finds them made and records nothing.

use anyhow::Context;
use chassis::auth::roles;
use chassis::error::Error;
use chassis::outbox::Actor;
use rand::Rng as _;
use rand::distributions::Alphanumeric;
use secrecy::SecretString;

use crate::domain::{
    ClientId, ClientKind, ClientName, Country, Email, NewAccount, NewClient, Nickname, Password,
    PersonName, RedirectUri, RoleName,
};
use crate::service::Identity;
use crate::store;

/// Who the set-up acts as, in the events it records: no token is involved, so it names itself as
/// both the subject and the client.
pub const ACTOR: &str = "emporium-bootstrap";

fn bootstrap_actor() -> Actor {
    Actor {
        subject: ACTOR.to_owned(),
        client_id: ACTOR.to_owned(),
    }
}

/// What a new installation needs.
#[derive(Debug)]
pub struct Bootstrap {
    pub admin_email: String,
    /// The admin's first password; generated (and reported once) when `None`.
    pub admin_password: Option<SecretString>,
    /// Public clients to register (the suite's web apps and CLI).
    pub clients: Vec<PublicClient>,
}

/// The gateway's own client: confidential, for the browser sessions it keeps (code + PKCE, its
/// secret kept by the gateway, never in a browser), and holding the role `visitor` alone, so its
/// client-credentials token is the one the gateway calls with for visitors who have not signed in
/// (taking the role away closes the API to them).
pub const GATEWAY_CLIENT_ID: &str = "emporium-gateway";

/// Where the gateway, served at an origin, has identity send a browser back after sign-in.
pub fn gateway_redirect_uri(origin: &str) -> String {
    format!("{}/auth/callback", origin.trim_end_matches('/'))
}

/// A public client (no secret; PKCE) the suite registers for itself.
#[derive(Clone, Debug)]
pub struct PublicClient {
    pub client_id: String,
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
}

/// What the set-up did.
#[derive(Debug, Default)]
pub struct Report {
    /// Set when the admin account was created now; holds the generated password, if one was.
    pub admin_created: Option<Option<SecretString>>,
    pub clients_created: Vec<String>,
}

impl Bootstrap {
    /// The set-up `emporium up` performs for the suite served at `origin`.
    pub fn for_suite(
        origin: &str,
        admin_email: &str,
        admin_password: Option<SecretString>,
    ) -> Bootstrap {
        let origin = origin.trim_end_matches('/');
        let web_app = |client_id: &str, name: &str, path: &str| PublicClient {
            client_id: client_id.to_owned(),
            name: name.to_owned(),
            redirect_uris: vec![format!("{origin}{path}callback")],
            post_logout_redirect_uris: vec![format!("{origin}{path}")],
        };
        Bootstrap {
            admin_email: admin_email.to_owned(),
            admin_password,
            clients: vec![
                web_app("emporium-admin", "Emporium admin console", "/admin/"),
                web_app("emporium-storefront", "Emporium storefront", "/"),
                PublicClient {
                    client_id: "emporiumctl".to_owned(),
                    name: "emporiumctl".to_owned(),
                    // A loopback redirect on any port (RFC 8252 §7.3).
                    redirect_uris: vec!["http://127.0.0.1/callback".to_owned()],
                    post_logout_redirect_uris: Vec::new(),
                },
            ],
        }
    }

    /// Makes sure the gateway of the suite served at `origin` is a confidential client whose
    /// secret is `known` (the one the gateway kept): registers it, or gives it a new secret
    /// when `known` is absent or no longer its secret. Returns the secret to keep when it is new
    /// (shown nowhere else; only its hash is stored).
    pub async fn gateway_client(
        identity: &Identity,
        origin: &str,
        known: Option<&SecretString>,
    ) -> anyhow::Result<Option<SecretString>> {
        let existing = {
            let mut tx = identity.database().begin_read().await?;
            let found = store::find_client_credentials(&mut tx, GATEWAY_CLIENT_ID).await?;
            tx.commit().await?;
            found
        };
        if let Some(existing) = existing {
            let still_valid =
                known
                    .zip(existing.secret_hash.as_deref())
                    .is_some_and(|(known, hash)| {
                        crate::domain::verify_client_secret(
                            secrecy::ExposeSecret::expose_secret(known),
                            hash,
                        )
                    });
            if still_valid {
                return Ok(None);
            }
            let (_, secret) = identity
                .reset_client_secret(
                    GATEWAY_CLIENT_ID,
                    existing.client.version,
                    &bootstrap_actor(),
                )
                .await
                .context("Failed to give the gateway's client a new secret")?;
            tracing::info!(
                client_id = GATEWAY_CLIENT_ID,
                "Gave the gateway's client a new secret"
            );
            return Ok(Some(secret));
        }
        let origin = origin.trim_end_matches('/');
        let uri = |uri: String| {
            RedirectUri::parse(&uri).map_err(|reason| anyhow::anyhow!("{uri}: {reason}"))
        };
        let new = NewClient::new(
            ClientId::parse(GATEWAY_CLIENT_ID).map_err(anyhow::Error::msg)?,
            ClientName::parse("Emporium gateway (browser sessions)").map_err(anyhow::Error::msg)?,
            ClientKind::Confidential,
            vec![uri(gateway_redirect_uri(origin))?],
            vec![uri(format!("{origin}/"))?],
            vec![RoleName::parse(roles::VISITOR).map_err(anyhow::Error::msg)?],
        )
        .map_err(|violations| anyhow::anyhow!("The gateway's client is invalid: {violations:?}"))?;
        let (_, secret) = identity
            .create_client(new, &bootstrap_actor())
            .await
            .context("Failed to register the gateway's client")?;
        tracing::info!(client_id = GATEWAY_CLIENT_ID, "Registered a client");
        secret
            .map(Some)
            .context("A confidential client was registered without a secret")
    }

    pub async fn run(self, identity: &Identity) -> anyhow::Result<Report> {
        let mut report = Report::default();
        let email = Email::parse(&self.admin_email).map_err(|reason| {
            anyhow::anyhow!(
                "The admin email {:?} is invalid: {reason}",
                self.admin_email
            )
        })?;
        let existing = {
            let mut tx = identity.database().begin_read().await?;
            let found = store::find_credentials(&mut tx, &email).await?;
            tx.commit().await?;
            found
        };
        if existing.is_none() {
            let (password, generated) = match self.admin_password {
                Some(password) => (password, None),
                None => {
                    let password: String = rand::rngs::OsRng
                        .sample_iter(&Alphanumeric)
                        .take(24)
                        .map(char::from)
                        .collect();
                    let password = SecretString::from(password);
                    (password.clone(), Some(password))
                }
            };
            let password =
                Password::parse(secrecy::ExposeSecret::expose_secret(&password).to_owned())
                    .map_err(|reason| {
                        anyhow::anyhow!("The admin password is not acceptable: {reason}")
                    })?;
            let new = NewAccount {
                email,
                first_name: PersonName::parse("Emporium").map_err(anyhow::Error::msg)?,
                last_name: PersonName::parse("Administrator").map_err(anyhow::Error::msg)?,
                nickname: Nickname::parse("admin").map_err(anyhow::Error::msg)?,
                country: Country::parse("US").map_err(anyhow::Error::msg)?,
                password: Some(password),
                customer_id: None,
            };
            let created = identity
                .create_first_account(new, roles::ADMIN, &bootstrap_actor())
                .await
                .context("Failed to create the admin account")?;
            // `None`: another replica starting at the same time created it first.
            if let Some(account) = created {
                tracing::info!(account_id = %account.id, "Created the admin account");
                report.admin_created = Some(generated);
            }
        }
        for client in self.clients {
            let exists = {
                let mut tx = identity.database().begin_read().await?;
                let found = store::find_client_credentials(&mut tx, &client.client_id).await?;
                tx.commit().await?;
                found.is_some()
            };
            if exists {
                continue;
            }
            let uris = |uris: &[String]| -> anyhow::Result<Vec<RedirectUri>> {
                uris.iter()
                    .map(|uri| {
                        RedirectUri::parse(uri).map_err(|reason| anyhow::anyhow!("{uri}: {reason}"))
                    })
                    .collect()
            };
            let new = NewClient::new(
                ClientId::parse(&client.client_id).map_err(anyhow::Error::msg)?,
                ClientName::parse(&client.name).map_err(anyhow::Error::msg)?,
                ClientKind::Public,
                uris(&client.redirect_uris)?,
                uris(&client.post_logout_redirect_uris)?,
                Vec::new(),
            )
            .map_err(|violations| {
                anyhow::anyhow!("Client {} is invalid: {violations:?}", client.client_id)
            })?;
            match identity.create_client(new, &bootstrap_actor()).await {
                Ok(_) => {
                    tracing::info!(client_id = %client.client_id, "Registered a client");
                    report.clients_created.push(client.client_id);
                }
                // Another replica starting at the same time registered it first; its transaction
                // rolled back, so nothing was recorded twice.
                Err(Error::AlreadyExists {
                    resource: "client", ..
                }) => {}
                Err(error) => {
                    return Err(anyhow::Error::new(error).context(format!(
                        "Failed to register the client {}",
                        client.client_id
                    )));
                }
            }
        }
        Ok(report)
    }
}
