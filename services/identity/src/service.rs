//! The identity service's use cases: each opens a transaction, applies the change through the
//! store, and commits it with its event (`Transaction::commit_with`) — all or nothing. Every
//! read of accounts (get, batch get, list) records an `audit.account.accessed` audit event per
//! account returned, naming the reader, before the accounts are returned. Password hashing and verification
//! run on blocking threads; client secrets are hashed with plain SHA-256 (see
//! [`domain::ClientSecret`]), which needs no such care. No transport here.

use std::sync::OnceLock;

use anyhow::Context;
use chassis::error::Error;
use chassis::outbox::{self, Actor};
use chassis::pagination::PageRequest;
use chassis::storage::{Database, Transaction};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::domain::{
    self, Account, AccountChanges, AccountListQuery, BUILTIN_ROLES, Client, ClientChanges,
    ClientId, ClientKind, ClientSecret, Email, NewAccount, NewClient, NewRole, Page, Password,
    Role, RoleChanges, RoleName,
};
use emporium_proto::identity::v1::events;

use crate::events::IdentityEvent;
use crate::store;

/// Who the service acts as in the events it records on its own (seeding built-in data): both
/// the subject and the client id.
pub const SYSTEM_ACTOR: &str = "emporium-identity";

fn system_actor() -> Actor {
    Actor {
        subject: SYSTEM_ACTOR.to_owned(),
        client_id: SYSTEM_ACTOR.to_owned(),
    }
}

#[derive(Clone, Debug)]
pub struct Identity {
    database: Database,
}

impl Identity {
    pub fn new(database: Database) -> Identity {
        Identity { database }
    }

    pub fn database(&self) -> &Database {
        &self.database
    }

    // === accounts ===

    #[tracing::instrument(skip_all)]
    pub async fn create_account(
        &self,
        mut new: NewAccount,
        actor: &Actor,
    ) -> Result<Account, Error> {
        let password_hash = match new.password.take() {
            Some(password) => Some(hash_on_blocking_thread(password).await?),
            None => None,
        };
        let mut tx = self.database.begin().await?;
        let account = store::insert_account(&mut tx, &new, password_hash.as_ref()).await?;
        tx.commit_with(IdentityEvent::AccountCreated(&account).into_new_event(actor))
            .await?;
        Ok(account)
    }

    /// Creates the installation's first account holding `role`, in one transaction with its one
    /// `account.created` event (version 1, the role already in it), unless an account with its
    /// email exists. Replicas starting together may all call this: one creates the account, the
    /// others get `None` (on SQLite the write lock orders them and they see the account; on
    /// PostgreSQL the loser's insert waits for the winner's commit and hits the unique email).
    #[tracing::instrument(skip_all, fields(role))]
    pub async fn create_first_account(
        &self,
        mut new: NewAccount,
        role: &str,
        actor: &Actor,
    ) -> Result<Option<Account>, Error> {
        let password_hash = match new.password.take() {
            Some(password) => Some(hash_on_blocking_thread(password).await?),
            None => None,
        };
        let mut tx = self.database.begin().await?;
        if store::find_credentials(&mut tx, &new.email)
            .await?
            .is_some()
        {
            return Ok(None);
        }
        let account = match store::insert_account(&mut tx, &new, password_hash.as_ref()).await {
            Ok(account) => account,
            Err(Error::AlreadyExists {
                resource: "account",
                ..
            }) => return Ok(None),
            Err(error) => return Err(error),
        };
        store::insert_account_role(&mut tx, account.id, role).await?;
        let account = changed_account(&mut tx, account.id).await?;
        tx.commit_with(IdentityEvent::AccountCreated(&account).into_new_event(actor))
            .await?;
        Ok(Some(account))
    }

    /// Reads one account and records that `accessed_by` read it.
    #[tracing::instrument(skip_all, fields(account_id = %id))]
    pub async fn get_account(&self, id: Uuid, accessed_by: &Actor) -> Result<Account, Error> {
        let mut tx = self.database.begin().await?;
        let account = store::get_account(&mut tx, id)
            .await?
            .ok_or_else(|| Error::not_found("account", id))?;
        record_access(&mut tx, &account, accessed_by).await?;
        tx.commit().await?;
        Ok(account)
    }

    /// Reads the accounts that exist among `ids` and records that `accessed_by` read each.
    #[tracing::instrument(skip_all, fields(n_ids = ids.len()))]
    pub async fn get_accounts(
        &self,
        ids: &[Uuid],
        accessed_by: &Actor,
    ) -> Result<Vec<Account>, Error> {
        let mut tx = self.database.begin().await?;
        let accounts = store::get_accounts(&mut tx, ids).await?;
        for account in &accounts {
            record_access(&mut tx, account, accessed_by).await?;
        }
        tx.commit().await?;
        Ok(accounts)
    }

    /// Reads a page of accounts and records that `accessed_by` read each account on it. The page
    /// and its total (counted for a first page only) come from one read snapshot; the accesses are recorded in a second
    /// transaction that commits before the page is returned, so no page leaves unaudited.
    #[tracing::instrument(skip_all)]
    pub async fn list_accounts(
        &self,
        query: &AccountListQuery,
        page: &PageRequest,
        accessed_by: &Actor,
    ) -> Result<Page<Account>, Error> {
        let list = async |tx: &mut Transaction| store::list_accounts(tx, query, page).await;
        let page = self.database.read_snapshot(list).await?;
        if !page.items.is_empty() {
            let mut tx = self.database.begin().await?;
            for account in &page.items {
                record_access(&mut tx, account, accessed_by).await?;
            }
            tx.commit().await?;
        }
        Ok(page)
    }

    #[tracing::instrument(skip_all, fields(account_id = %id))]
    pub async fn update_account(
        &self,
        id: Uuid,
        changes: AccountChanges,
        actor: &Actor,
    ) -> Result<Account, Error> {
        let mut tx = self.database.begin().await?;
        let account = store::update_account(&mut tx, id, &changes).await?;
        tx.commit_with(IdentityEvent::AccountUpdated(&account).into_new_event(actor))
            .await?;
        Ok(account)
    }

    #[tracing::instrument(skip_all, fields(account_id = %id))]
    pub async fn set_password(
        &self,
        id: Uuid,
        expected_version: i64,
        password: Password,
        actor: &Actor,
    ) -> Result<Account, Error> {
        let password_hash = hash_on_blocking_thread(password).await?;
        let mut tx = self.database.begin().await?;
        let account =
            store::set_password_hash(&mut tx, id, expected_version, &password_hash).await?;
        tx.commit_with(IdentityEvent::PasswordChanged(&account).into_new_event(actor))
            .await?;
        Ok(account)
    }

    #[tracing::instrument(skip_all, fields(account_id = %id))]
    pub async fn delete_account(
        &self,
        id: Uuid,
        expected_version: i64,
        actor: &Actor,
    ) -> Result<(), Error> {
        let mut tx = self.database.begin().await?;
        let account = store::delete_account(&mut tx, id, expected_version).await?;
        tx.commit_with(IdentityEvent::AccountDeleted(&account).into_new_event(actor))
            .await?;
        Ok(())
    }

    /// Grants `role` to the account; its version goes up by one.
    #[tracing::instrument(skip_all, fields(account_id = %account_id, role))]
    pub async fn grant_role(
        &self,
        account_id: Uuid,
        role: &str,
        expected_version: i64,
        actor: &Actor,
    ) -> Result<Account, Error> {
        let mut tx = self.database.begin().await?;
        store::touch_account(&mut tx, account_id, expected_version).await?;
        store::insert_account_role(&mut tx, account_id, role).await?;
        let account = changed_account(&mut tx, account_id).await?;
        tx.commit_with(IdentityEvent::AccountUpdated(&account).into_new_event(actor))
            .await?;
        Ok(account)
    }

    /// Revokes `role` from the account; its version goes up by one.
    #[tracing::instrument(skip_all, fields(account_id = %account_id, role))]
    pub async fn revoke_role(
        &self,
        account_id: Uuid,
        role: &str,
        expected_version: i64,
        actor: &Actor,
    ) -> Result<Account, Error> {
        let mut tx = self.database.begin().await?;
        store::touch_account(&mut tx, account_id, expected_version).await?;
        store::delete_account_role(&mut tx, account_id, role).await?;
        let account = changed_account(&mut tx, account_id).await?;
        tx.commit_with(IdentityEvent::AccountUpdated(&account).into_new_event(actor))
            .await?;
        Ok(account)
    }

    /// The account whose `email` and `password` match, if it exists, has a password and is not
    /// disabled; `None` otherwise. Unknown emails still cost one hash verification, so the time
    /// taken does not reveal which emails have accounts. For the login page; not exposed over
    /// gRPC.
    #[tracing::instrument(skip_all)]
    pub async fn verify_password(
        &self,
        email: &str,
        password: SecretString,
    ) -> Result<Option<Account>, Error> {
        let credentials = match Email::parse(email) {
            Ok(email) => {
                let mut tx = self.database.begin_read().await?;
                let credentials = store::find_credentials(&mut tx, &email).await?;
                tx.commit().await?;
                credentials
            }
            Err(_) => None,
        };
        let (account, password_hash) = match credentials {
            Some(store::Credentials {
                account,
                password_hash: Some(password_hash),
            }) if !account.disabled => (Some(account), Some(password_hash)),
            _ => (None, None),
        };
        let matches = tokio::task::spawn_blocking(move || {
            let password_hash = password_hash.as_ref().unwrap_or_else(|| dummy_hash());
            domain::verify_password(password.expose_secret(), password_hash)
        })
        .await
        .context("The password verification task failed")?;
        Ok(account.filter(|_| matches))
    }

    // === roles ===

    /// Makes sure every built-in role exists and that its history starts with its
    /// `role.created` event at version 1, idempotently; run at every start, before serving.
    /// A missing role is inserted with that event. A role that exists without it (inserted by
    /// the old migration, which recorded none) gets the event it should have had: its state at
    /// version 1, the seeded description, recorded now. Consumers that already applied a later
    /// version skip it as older; the others start the role's history where it starts. Each role
    /// is checked under its row lock, so replicas starting together record it once.
    #[tracing::instrument(skip_all)]
    pub async fn seed_builtin_roles(&self) -> Result<(), Error> {
        for builtin in &BUILTIN_ROLES {
            let mut tx = self.database.begin().await?;
            if let Some(role) = store::insert_builtin_role_if_absent(&mut tx, builtin).await? {
                outbox::record(
                    &mut tx,
                    IdentityEvent::RoleCreated(&role).into_new_event(&system_actor()),
                )
                .await?;
                tracing::info!(role = builtin.name, "Created a built-in role");
            } else if store::lock_role(&mut tx, builtin.name).await?
                && let Some(role) = store::get_role(&mut tx, builtin.name).await?
                && !store::has_event(&mut tx, role.id, events::ROLE_CREATED.name()).await?
            {
                let first = Role {
                    description: builtin.description.to_owned(),
                    builtin: true,
                    version: 1,
                    updated_at: role.created_at,
                    ..role
                };
                outbox::record(
                    &mut tx,
                    IdentityEvent::RoleCreated(&first).into_new_event(&system_actor()),
                )
                .await?;
                tracing::info!(
                    role = builtin.name,
                    "Recorded the creation event of a built-in role the schema inserted"
                );
            }
            tx.commit().await?;
        }
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    pub async fn create_role(&self, new: NewRole, actor: &Actor) -> Result<Role, Error> {
        let mut tx = self.database.begin().await?;
        let role = store::insert_role(&mut tx, &new).await?;
        tx.commit_with(IdentityEvent::RoleCreated(&role).into_new_event(actor))
            .await?;
        Ok(role)
    }

    #[tracing::instrument(skip_all, fields(role = name))]
    pub async fn get_role(&self, name: &str) -> Result<Role, Error> {
        let read = async |tx: &mut Transaction| store::get_role(tx, name).await;
        let role = self.database.read(read).await?;
        role.ok_or_else(|| Error::not_found("role", name))
    }

    /// The roles among `names`, in no particular order.
    #[tracing::instrument(skip_all)]
    pub async fn get_roles(&self, names: &[RoleName]) -> Result<Vec<Role>, Error> {
        let roles = async |tx: &mut Transaction| store::get_roles(tx, names).await;
        self.database.read(roles).await
    }

    #[tracing::instrument(skip_all)]
    pub async fn list_roles(&self, page: &PageRequest) -> Result<Page<Role>, Error> {
        let list = async |tx: &mut Transaction| store::list_roles(tx, page).await;
        self.database.read_page(page, list).await
    }

    #[tracing::instrument(skip_all, fields(role = name))]
    pub async fn update_role(
        &self,
        name: &str,
        changes: RoleChanges,
        actor: &Actor,
    ) -> Result<Role, Error> {
        let mut tx = self.database.begin().await?;
        let role = store::update_role(&mut tx, name, &changes).await?;
        tx.commit_with(IdentityEvent::RoleUpdated(&role).into_new_event(actor))
            .await?;
        Ok(role)
    }

    #[tracing::instrument(skip_all, fields(role = name))]
    pub async fn delete_role(
        &self,
        name: &str,
        expected_version: i64,
        actor: &Actor,
    ) -> Result<(), Error> {
        let mut tx = self.database.begin().await?;
        let role = store::delete_role(&mut tx, name, expected_version).await?;
        tx.commit_with(IdentityEvent::RoleDeleted(&role).into_new_event(actor))
            .await?;
        Ok(())
    }

    // === clients ===

    /// Registers the client; a confidential one gets a fresh secret, returned here only (the
    /// store keeps its hash).
    #[tracing::instrument(skip_all, fields(client_id = new.client_id.as_str()))]
    pub async fn create_client(
        &self,
        new: NewClient,
        actor: &Actor,
    ) -> Result<(Client, Option<SecretString>), Error> {
        let (secret, secret_hash) = match new.kind {
            ClientKind::Confidential => {
                let (secret, secret_hash) = ClientSecret::generate();
                (Some(secret), Some(secret_hash))
            }
            ClientKind::Public => (None, None),
        };
        let mut tx = self.database.begin().await?;
        let client = store::insert_client(&mut tx, &new, secret_hash.as_deref()).await?;
        tx.commit_with(IdentityEvent::ClientCreated(&client).into_new_event(actor))
            .await?;
        Ok((client, secret))
    }

    #[tracing::instrument(skip_all, fields(client_id = client_id))]
    pub async fn get_client(&self, client_id: &str) -> Result<Client, Error> {
        let read = async |tx: &mut Transaction| store::get_client(tx, client_id).await;
        let client = self.database.read_snapshot(read).await?;
        client.ok_or_else(|| Error::not_found("client", client_id))
    }

    /// The clients among `client_ids`, in no particular order.
    #[tracing::instrument(skip_all)]
    pub async fn get_clients(&self, client_ids: &[ClientId]) -> Result<Vec<Client>, Error> {
        let clients = async |tx: &mut Transaction| store::get_clients(tx, client_ids).await;
        self.database.read_snapshot(clients).await
    }

    #[tracing::instrument(skip_all)]
    pub async fn list_clients(&self, page: &PageRequest) -> Result<Page<Client>, Error> {
        let list = async |tx: &mut Transaction| store::list_clients(tx, page).await;
        self.database.read_snapshot(list).await
    }

    /// Applies `changes` if the client is still at their expected version and keeps the rules of
    /// its kind once they apply; otherwise changes nothing.
    #[tracing::instrument(skip_all, fields(client_id = client_id))]
    pub async fn update_client(
        &self,
        client_id: &str,
        changes: ClientChanges,
        actor: &Actor,
    ) -> Result<Client, Error> {
        let mut tx = self.database.begin().await?;
        let current = store::get_client(&mut tx, client_id).await?;
        match &current {
            Some(client) if client.version == changes.expected_version => {
                let violations = changes.violations_for(client);
                if !violations.is_empty() {
                    return Err(Error::Validation(violations));
                }
            }
            _ => {
                return Err(Error::missing_or_stale(
                    current.as_ref().map(|client| client.version),
                    "client",
                    client_id,
                    changes.expected_version,
                ));
            }
        }
        let client = store::update_client(&mut tx, client_id, &changes).await?;
        tx.commit_with(IdentityEvent::ClientUpdated(&client).into_new_event(actor))
            .await?;
        Ok(client)
    }

    #[tracing::instrument(skip_all, fields(client_id = client_id))]
    pub async fn delete_client(
        &self,
        client_id: &str,
        expected_version: i64,
        actor: &Actor,
    ) -> Result<(), Error> {
        let mut tx = self.database.begin().await?;
        let client = store::delete_client(&mut tx, client_id, expected_version).await?;
        tx.commit_with(IdentityEvent::ClientDeleted(&client).into_new_event(actor))
            .await?;
        Ok(())
    }

    /// Replaces a confidential client's secret: the old one stops verifying when this commits.
    /// Returns the new secret, shown this once.
    #[tracing::instrument(skip_all, fields(client_id = client_id))]
    pub async fn reset_client_secret(
        &self,
        client_id: &str,
        expected_version: i64,
        actor: &Actor,
    ) -> Result<(Client, SecretString), Error> {
        let (secret, secret_hash) = ClientSecret::generate();
        let mut tx = self.database.begin().await?;
        let client =
            store::set_client_secret_hash(&mut tx, client_id, expected_version, &secret_hash)
                .await?;
        tx.commit_with(IdentityEvent::ClientSecretReset(&client).into_new_event(actor))
            .await?;
        Ok((client, secret))
    }
}

/// The account as a grant or revoke left it (it exists: the version bump just matched it).
async fn changed_account(tx: &mut Transaction, account_id: Uuid) -> Result<Account, Error> {
    store::get_account(tx, account_id)
        .await?
        .ok_or_else(|| Error::Unexpected(anyhow::anyhow!("the changed account vanished")))
}

async fn record_access(
    tx: &mut Transaction,
    account: &Account,
    accessed_by: &Actor,
) -> Result<(), Error> {
    outbox::record(
        tx,
        IdentityEvent::AccountAccessed {
            account,
            accessed_by: &accessed_by.subject,
        }
        .into_new_event(accessed_by),
    )
    .await?;
    Ok(())
}

/// Hashes a password on a blocking thread (argon2 takes tens of milliseconds of
/// CPU, which must not stall the runtime).
async fn hash_on_blocking_thread(password: Password) -> Result<SecretString, Error> {
    let password_hash = tokio::task::spawn_blocking(move || domain::hash_password(&password))
        .await
        .context("The password hashing task failed")??;
    Ok(password_hash)
}

/// A hash of a random password, verified against when there is no real hash so that a miss
/// costs as long as a hit.
fn dummy_hash() -> &'static SecretString {
    static DUMMY_HASH: OnceLock<SecretString> = OnceLock::new();
    DUMMY_HASH.get_or_init(|| {
        let password = Password::parse(Uuid::new_v4().simple().to_string())
            .ok()
            .and_then(|password| domain::hash_password(&password).ok());
        // Hashing a valid password with default parameters does not fail; should it, an empty
        // hash matches nothing (only the timing protection would be lost).
        password.unwrap_or_else(|| SecretString::from(String::new()))
    })
}
