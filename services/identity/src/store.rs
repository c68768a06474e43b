//! The identity service's SQL, one text per query for both backends, each function taking the
//! caller's transaction so that a change and its event commit together. Password hashes are read
//! only by [`find_credentials`] and written only by [`insert_account`] and [`set_password_hash`];
//! client secret hashes are read only by [`find_client_credentials`] and written only by
//! [`insert_client`] and [`set_client_secret_hash`].

use std::collections::HashMap;

use anyhow::Context;
use chassis::error::Error;
use chassis::on_backend;
use chassis::pagination::{Cursor, PageRequest, SortKey};
use chassis::storage::{
    ConstraintViolation, Filter, Table, Timestamp, Transaction, Value, constraint_violation,
};
use secrecy::{ExposeSecret, SecretString};
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use crate::domain::{
    Account, AccountChanges, AccountListQuery, AccountOrder, BuiltinRole, Client, ClientChanges,
    ClientId, ClientKind, Direction, Email, NewAccount, NewClient, NewRole, Page, RedirectUri,
    Role, RoleChanges, RoleName,
};

/// An account with what a login needs to check; the hash stays secret.
#[derive(Debug)]
pub struct Credentials {
    pub account: Account,
    /// `None` while no password was ever set.
    pub password_hash: Option<SecretString>,
}

/// A client with what the token endpoint needs to authenticate it. Debug leaves the hash out.
pub struct ClientCredentials {
    pub client: Client,
    /// Hex SHA-256 of the secret (see [`crate::domain::verify_client_secret`]); `None` for a
    /// public client.
    pub secret_hash: Option<String>,
}

const ACCOUNT_COLUMNS: &str = AccountRow::COLUMNS;
const ROLE_COLUMNS: &str = RoleRow::COLUMNS;
const CLIENT_COLUMNS: &str = ClientRow::COLUMNS;

chassis::table_row! {
    struct AccountRow {
        id: Uuid,
        email: String,
        first_name: String,
        last_name: String,
        nickname: String,
        country: String,
        disabled: bool,
        customer_id: Option<Uuid>,
        version: i64,
        created_at: Timestamp,
        updated_at: Timestamp,
    }
}

chassis::table_row! {
    struct RoleRow {
        id: Uuid,
        name: String,
        description: String,
        builtin: bool,
        version: i64,
        created_at: Timestamp,
        updated_at: Timestamp,
    }
}

chassis::table_row! {
    struct ClientRow {
        id: Uuid,
        client_id: String,
        name: String,
        kind: String,
        /// A JSON array of strings.
        redirect_uris: String,
        /// A JSON array of strings.
        post_logout_redirect_uris: String,
        disabled: bool,
        version: i64,
        created_at: Timestamp,
        updated_at: Timestamp,
    }
}

// === accounts ===

/// Inserts the account with `password_hash` (already computed; `None` for no password).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn insert_account(
    tx: &mut Transaction,
    new: &NewAccount,
    password_hash: Option<&SecretString>,
) -> Result<Account, Error> {
    let now = Timestamp::now();
    let sql = format!(
        "INSERT INTO accounts (id, email, first_name, last_name, nickname, country, password_hash, \
         disabled, customer_id, version, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, $10, $10) RETURNING {ACCOUNT_COLUMNS}"
    );
    let row = on_backend!(tx, conn => {
        sqlx::query_as::<_, AccountRow>(AssertSqlSafe(sql))
            .bind(Uuid::now_v7())
            .bind(new.email.as_str())
            .bind(new.first_name.as_str())
            .bind(new.last_name.as_str())
            .bind(new.nickname.as_str())
            .bind(new.country.as_str())
            .bind(password_hash.map(|hash| hash.expose_secret()))
            .bind(false)
            .bind(new.customer_id)
            .bind(now)
            .fetch_one(conn)
            .await
    })
    .map_err(|error| ACCOUNTS.error(error))?;
    Ok(row.into_account(Vec::new()))
}

#[tracing::instrument(level = "debug", skip_all, fields(account_id = %id))]
pub async fn get_account(tx: &mut Transaction, id: Uuid) -> Result<Option<Account>, Error> {
    let mut accounts = get_accounts(tx, &[id]).await?;
    Ok(accounts.pop())
}

#[tracing::instrument(level = "debug", skip_all, fields(n_ids = ids.len()))]
pub async fn get_accounts(tx: &mut Transaction, ids: &[Uuid]) -> Result<Vec<Account>, Error> {
    let placeholders = chassis::storage::placeholders(1, ids.len());
    let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id IN ({placeholders})");
    let rows = on_backend!(tx, conn => {
        let query = sqlx::query_as::<_, AccountRow>(AssertSqlSafe(sql));
        chassis::storage::bind_all(query, ids.iter().copied()).fetch_all(conn).await
    })?;
    with_roles(tx, rows).await
}

/// The account with `email` and its password hash, for verifying a login.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn find_credentials(
    tx: &mut Transaction,
    email: &Email,
) -> Result<Option<Credentials>, Error> {
    let sql = format!("SELECT {ACCOUNT_COLUMNS}, password_hash FROM accounts WHERE email = $1");
    let found = on_backend!(tx, conn => {
        use sqlx::Row as _;
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(email.as_str())
            .fetch_optional(&mut *conn)
            .await?;
        match row {
            Some(row) => {
                let account = <AccountRow as sqlx::FromRow<_>>::from_row(&row)?;
                let hash: Option<String> = row.try_get("password_hash")?;
                Ok::<_, sqlx::Error>(Some((account, hash)))
            }
            None => Ok(None),
        }
    })?;
    let Some((row, hash)) = found else {
        return Ok(None);
    };
    let account = with_roles(tx, vec![row]).await?.pop();
    Ok(account.map(|account| Credentials {
        account,
        password_hash: hash.map(SecretString::from),
    }))
}

#[tracing::instrument(level = "debug", skip_all)]
pub async fn list_accounts(
    tx: &mut Transaction,
    query: &AccountListQuery,
    page: &PageRequest,
) -> Result<Page<Account>, Error> {
    let column = match query.order {
        AccountOrder::Email => "email",
        AccountOrder::CreatedAt => "created_at",
    };
    let pattern = query.text.as_ref().map(|text| text.like_pattern());
    let filter = Filter::new()
        .and(
            "country = $",
            query
                .country
                .as_ref()
                .map(|country| Value::Text(country.as_str())),
        )
        .and(
            "email LIKE $ ESCAPE '\\' OR lower(first_name) LIKE $ ESCAPE '\\' \
             OR lower(last_name) LIKE $ ESCAPE '\\' OR lower(nickname) LIKE $ ESCAPE '\\'",
            pattern.as_deref().map(Value::Text),
        );
    let (sql, count_sql) = ACCOUNTS.keyset_sql(&filter, column, query.direction, page);
    let rows = on_backend!(tx, conn => {
        let select = sqlx::query_as::<_, AccountRow>(AssertSqlSafe(sql));
        let count = sqlx::query_scalar(AssertSqlSafe(count_sql));
        chassis::storage::fetch_page(conn, select, count, &filter, page).await
    })?;
    let accounts = with_roles(tx, rows.items).await?;
    Ok(Page {
        items: accounts,
        has_more: rows.has_more,
        total: rows.total,
    })
}

#[tracing::instrument(level = "debug", skip_all, fields(account_id = %id))]
pub async fn update_account(
    tx: &mut Transaction,
    id: Uuid,
    changes: &AccountChanges,
) -> Result<Account, Error> {
    let sql = format!(
        "UPDATE accounts SET email = COALESCE($3, email), first_name = COALESCE($4, first_name), \
         last_name = COALESCE($5, last_name), nickname = COALESCE($6, nickname), \
         country = COALESCE($7, country), disabled = COALESCE($8, disabled), \
         customer_id = CASE WHEN $10 THEN $11 ELSE customer_id END, \
         version = version + 1, updated_at = $9 \
         WHERE id = $1 AND version = $2 RETURNING {ACCOUNT_COLUMNS}"
    );
    let row = on_backend!(tx, conn => {
        sqlx::query_as::<_, AccountRow>(AssertSqlSafe(sql))
            .bind(id)
            .bind(changes.expected_version)
            .bind(changes.email.as_ref().map(|email| email.as_str()))
            .bind(changes.first_name.as_ref().map(|name| name.as_str()))
            .bind(changes.last_name.as_ref().map(|name| name.as_str()))
            .bind(changes.nickname.as_ref().map(|nickname| nickname.as_str()))
            .bind(changes.country.as_ref().map(|country| country.as_str()))
            .bind(changes.disabled)
            .bind(Timestamp::now())
            // A flag and a value, since NULL is both "keep" (COALESCE) and "unlink" here.
            .bind(changes.customer_id.is_some())
            .bind(changes.customer_id.flatten())
            .fetch_optional(conn)
            .await
    })
    .map_err(|error| ACCOUNTS.error(error))?;
    account_after_write(tx, row, id, changes.expected_version).await
}

/// Replaces the password hash and bumps the version.
#[tracing::instrument(level = "debug", skip_all, fields(account_id = %id))]
pub async fn set_password_hash(
    tx: &mut Transaction,
    id: Uuid,
    expected_version: i64,
    password_hash: &SecretString,
) -> Result<Account, Error> {
    let sql = format!(
        "UPDATE accounts SET password_hash = $3, version = version + 1, updated_at = $4 \
         WHERE id = $1 AND version = $2 RETURNING {ACCOUNT_COLUMNS}"
    );
    let row = on_backend!(tx, conn => {
        sqlx::query_as::<_, AccountRow>(AssertSqlSafe(sql))
            .bind(id)
            .bind(expected_version)
            .bind(password_hash.expose_secret())
            .bind(Timestamp::now())
            .fetch_optional(conn)
            .await
    })?;
    account_after_write(tx, row, id, expected_version).await
}

/// Bumps the account's version (for a grant or revoke), refusing a stale `expected_version`.
#[tracing::instrument(level = "debug", skip_all, fields(account_id = %id))]
pub async fn touch_account(
    tx: &mut Transaction,
    id: Uuid,
    expected_version: i64,
) -> Result<(), Error> {
    let n_updated = on_backend!(tx, conn => {
        sqlx::query(
            "UPDATE accounts SET version = version + 1, updated_at = $3 \
             WHERE id = $1 AND version = $2",
        )
        .bind(id)
        .bind(expected_version)
        .bind(Timestamp::now())
        .execute(conn)
        .await
        .map(|done| done.rows_affected())
    })?;
    if n_updated == 1 {
        return Ok(());
    }
    let current = get_account(tx, id).await?.map(|account| account.version);
    Err(ACCOUNTS.missing_or_stale(current, id, expected_version))
}

/// Grants `role`; fails if the role does not exist or is already held.
#[tracing::instrument(level = "debug", skip_all, fields(account_id = %account_id, role))]
pub async fn insert_account_role(
    tx: &mut Transaction,
    account_id: Uuid,
    role: &str,
) -> Result<(), Error> {
    on_backend!(tx, conn => {
        sqlx::query("INSERT INTO account_roles (account_id, role) VALUES ($1, $2)")
            .bind(account_id)
            .bind(role)
            .execute(conn)
            .await
            .map(|done| done.rows_affected())
    })
    .map_err(|error| match constraint_violation(&error) {
        Some(ConstraintViolation::Unique) => Error::AlreadyExists {
            resource: "role grant",
            field: "role",
        },
        Some(ConstraintViolation::ForeignKey) => Error::NotFound {
            resource: "role",
            id: role.to_owned(),
        },
        _ => Error::from(error),
    })?;
    Ok(())
}

/// Revokes `role`; fails if the account does not hold it.
#[tracing::instrument(level = "debug", skip_all, fields(account_id = %account_id, role))]
pub async fn delete_account_role(
    tx: &mut Transaction,
    account_id: Uuid,
    role: &str,
) -> Result<(), Error> {
    let n_deleted = on_backend!(tx, conn => {
        sqlx::query("DELETE FROM account_roles WHERE account_id = $1 AND role = $2")
            .bind(account_id)
            .bind(role)
            .execute(conn)
            .await
            .map(|done| done.rows_affected())
    })?;
    if n_deleted == 1 {
        Ok(())
    } else {
        Err(Error::NotFound {
            resource: "role grant",
            id: role.to_owned(),
        })
    }
}

/// Deletes the account (its grants go with it); returns it as it was.
#[tracing::instrument(level = "debug", skip_all, fields(account_id = %id))]
pub async fn delete_account(
    tx: &mut Transaction,
    id: Uuid,
    expected_version: i64,
) -> Result<Account, Error> {
    let Some(account) = get_account(tx, id).await? else {
        return Err(Error::not_found("account", id));
    };
    let n_deleted = on_backend!(tx, conn => {
        sqlx::query("DELETE FROM accounts WHERE id = $1 AND ($2 = 0 OR version = $2)")
            .bind(id)
            .bind(expected_version)
            .execute(conn)
            .await
            .map(|done| done.rows_affected())
    })?;
    if n_deleted == 1 {
        return Ok(account);
    }
    let current = Some(account.version);
    Err(ACCOUNTS.missing_or_stale(current, id, expected_version))
}

// === roles ===

#[tracing::instrument(level = "debug", skip_all)]
pub async fn insert_role(tx: &mut Transaction, new: &NewRole) -> Result<Role, Error> {
    let now = Timestamp::now();
    let sql = format!(
        "INSERT INTO roles (id, name, description, builtin, version, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 1, $5, $5) RETURNING {ROLE_COLUMNS}"
    );
    let row = on_backend!(tx, conn => {
        sqlx::query_as::<_, RoleRow>(AssertSqlSafe(sql))
            .bind(Uuid::now_v7())
            .bind(new.name.as_str())
            .bind(new.description.as_str())
            .bind(false)
            .bind(now)
            .fetch_one(conn)
            .await
    })
    .map_err(|error| ROLES.error(error))?;
    Ok(row.into())
}

#[tracing::instrument(level = "debug", skip_all, fields(role = name))]
pub async fn get_role(tx: &mut Transaction, name: &str) -> Result<Option<Role>, Error> {
    let sql = format!("SELECT {ROLE_COLUMNS} FROM roles WHERE name = $1");
    let row = on_backend!(tx, conn => {
        sqlx::query_as::<_, RoleRow>(AssertSqlSafe(sql))
            .bind(name)
            .fetch_optional(conn)
            .await
    })?;
    Ok(row.map(Role::from))
}

/// The roles among `names` (in no particular order).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn get_roles(tx: &mut Transaction, names: &[RoleName]) -> Result<Vec<Role>, Error> {
    let placeholders = chassis::storage::placeholders(1, names.len());
    let sql = format!("SELECT {ROLE_COLUMNS} FROM roles WHERE name IN ({placeholders})");
    let rows = on_backend!(tx, conn => {
        let query = sqlx::query_as::<_, RoleRow>(AssertSqlSafe(sql));
        let names = names.iter().map(RoleName::as_str);
        chassis::storage::bind_all(query, names).fetch_all(conn).await
    })?;
    Ok(rows.into_iter().map(Role::from).collect())
}

/// A page of roles by name.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn list_roles(tx: &mut Transaction, page: &PageRequest) -> Result<Page<Role>, Error> {
    let filter = Filter::new();
    let (sql, count_sql) = ROLES.keyset_sql(&filter, "name", Direction::Ascending, page);
    let rows = on_backend!(tx, conn => {
        let select = sqlx::query_as::<_, RoleRow>(AssertSqlSafe(sql));
        let count = sqlx::query_scalar(AssertSqlSafe(count_sql));
        chassis::storage::fetch_page(conn, select, count, &filter, page).await
    })?;
    Ok(rows.map(Role::from))
}

/// The cursor that continues a list of roles after `role`.
pub fn role_cursor(role: &Role) -> Cursor {
    Cursor::new(SortKey::Text(role.name.clone()), role.id)
}

#[tracing::instrument(level = "debug", skip_all, fields(role = name))]
pub async fn update_role(
    tx: &mut Transaction,
    name: &str,
    changes: &RoleChanges,
) -> Result<Role, Error> {
    let sql = format!(
        "UPDATE roles SET description = COALESCE($3, description), version = version + 1, \
         updated_at = $4 WHERE name = $1 AND version = $2 RETURNING {ROLE_COLUMNS}"
    );
    let row = on_backend!(tx, conn => {
        sqlx::query_as::<_, RoleRow>(AssertSqlSafe(sql))
            .bind(name)
            .bind(changes.expected_version)
            .bind(changes.description.as_ref().map(|description| description.as_str()))
            .bind(Timestamp::now())
            .fetch_optional(conn)
            .await
    })
    .map_err(|error| ROLES.error(error))?;
    let Some(row) = row else {
        let current = get_role(tx, name).await?.map(|role| role.version);
        return Err(ROLES.missing_or_stale(current, name, changes.expected_version));
    };
    Ok(row.into())
}

/// Inserts the built-in role unless a role of its name exists: the new role, or `None`. Of two
/// concurrent calls one inserts and the other (waiting on PostgreSQL for the first to commit)
/// gets `None`.
#[tracing::instrument(level = "debug", skip_all, fields(role = builtin.name))]
pub async fn insert_builtin_role_if_absent(
    tx: &mut Transaction,
    builtin: &BuiltinRole,
) -> Result<Option<Role>, Error> {
    let now = Timestamp::now();
    let sql = format!(
        "INSERT INTO roles (id, name, description, builtin, version, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 1, $5, $5) ON CONFLICT (name) DO NOTHING RETURNING {ROLE_COLUMNS}"
    );
    let row = on_backend!(tx, conn => {
        sqlx::query_as::<_, RoleRow>(AssertSqlSafe(sql))
            .bind(builtin.id)
            .bind(builtin.name)
            .bind(builtin.description)
            .bind(true)
            .bind(now)
            .fetch_optional(conn)
            .await
    })?;
    Ok(row.map(Role::from))
}

/// Locks the role's row until `tx` ends (a no-op update: a row lock on PostgreSQL; SQLite's write
/// transaction already holds the only write lock). Returns whether the role exists.
#[tracing::instrument(level = "debug", skip_all, fields(role = name))]
pub async fn lock_role(tx: &mut Transaction, name: &str) -> Result<bool, Error> {
    let n_locked = on_backend!(tx, conn => {
        sqlx::query("UPDATE roles SET version = version WHERE name = $1")
            .bind(name)
            .execute(conn)
            .await
            .map(|done| done.rows_affected())
    })?;
    Ok(n_locked == 1)
}

/// Whether the event log holds an event of `event_type` for the record `aggregate_id`.
#[tracing::instrument(level = "debug", skip_all, fields(aggregate_id = %aggregate_id, event_type))]
pub async fn has_event(
    tx: &mut Transaction,
    aggregate_id: Uuid,
    event_type: &str,
) -> Result<bool, Error> {
    let n_events = on_backend!(tx, conn => {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM outbox_events WHERE aggregate_id = $1 AND event_type = $2",
        )
        .bind(aggregate_id)
        .bind(event_type)
        .fetch_one(conn)
        .await
    })?;
    Ok(n_events > 0)
}

/// Deletes a custom role no account or client holds; returns it as it was.
#[tracing::instrument(level = "debug", skip_all, fields(role = name))]
pub async fn delete_role(
    tx: &mut Transaction,
    name: &str,
    expected_version: i64,
) -> Result<Role, Error> {
    let Some(role) = get_role(tx, name).await? else {
        return Err(Error::not_found("role", name));
    };
    if role.builtin {
        return Err(Error::FailedPrecondition(format!(
            "the role {name} is built in and cannot be deleted"
        )));
    }
    if expected_version != 0 && role.version != expected_version {
        let current = Some(role.version);
        return Err(ROLES.missing_or_stale(current, name, expected_version));
    }
    let (n_accounts, n_clients): (i64, i64) = on_backend!(tx, conn => {
        sqlx::query_as(
            "SELECT (SELECT count(*) FROM account_roles WHERE role = $1), \
                    (SELECT count(*) FROM oauth_client_roles WHERE role = $1)",
        )
        .bind(name)
        .fetch_one(conn)
        .await
    })?;
    if n_accounts > 0 || n_clients > 0 {
        return Err(role_in_use(
            name,
            &format!("{n_accounts} account(s) and {n_clients} client(s)"),
        ));
    }
    on_backend!(tx, conn => {
        sqlx::query("DELETE FROM roles WHERE name = $1")
            .bind(name)
            .execute(conn)
            .await
            .map(|done| done.rows_affected())
    })
    .map_err(|error| match constraint_violation(&error) {
        // A grant was added concurrently: the foreign key keeps the role.
        Some(ConstraintViolation::ForeignKey) => role_in_use(name, "an account or client"),
        _ => Error::from(error),
    })?;
    Ok(role)
}

/// The cursor that continues a list after `account`.
pub fn account_cursor(account: &Account, order: AccountOrder) -> Cursor {
    let key = match order {
        AccountOrder::Email => SortKey::Text(account.email.clone()),
        AccountOrder::CreatedAt => SortKey::time(account.created_at),
    };
    Cursor::new(key, account.id)
}

// === clients ===

/// Inserts the client with its roles and `secret_hash` (already computed; `None` for a public
/// client).
#[tracing::instrument(level = "debug", skip_all, fields(client_id = new.client_id.as_str()))]
pub async fn insert_client(
    tx: &mut Transaction,
    new: &NewClient,
    secret_hash: Option<&str>,
) -> Result<Client, Error> {
    let now = Timestamp::now();
    let sql = format!(
        "INSERT INTO oauth_clients (id, client_id, name, kind, secret_hash, redirect_uris, \
         post_logout_redirect_uris, disabled, version, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $9) RETURNING {CLIENT_COLUMNS}"
    );
    let redirect_uris = uri_list_json(&new.redirect_uris)?;
    let post_logout_redirect_uris = uri_list_json(&new.post_logout_redirect_uris)?;
    let row = on_backend!(tx, conn => {
        sqlx::query_as::<_, ClientRow>(AssertSqlSafe(sql))
            .bind(Uuid::now_v7())
            .bind(new.client_id.as_str())
            .bind(new.name.as_str())
            .bind(new.kind.as_str())
            .bind(secret_hash)
            .bind(redirect_uris.as_str())
            .bind(post_logout_redirect_uris.as_str())
            .bind(false)
            .bind(now)
            .fetch_one(conn)
            .await
    })
    .map_err(|error| CLIENTS.error(error))?;
    insert_client_roles(tx, row.id, &new.roles).await?;
    client_after_write(tx, Some(row), new.client_id.as_str(), 1).await
}

#[tracing::instrument(level = "debug", skip_all, fields(client_id = client_id))]
pub async fn get_client(tx: &mut Transaction, client_id: &str) -> Result<Option<Client>, Error> {
    let sql = format!("SELECT {CLIENT_COLUMNS} FROM oauth_clients WHERE client_id = $1");
    let row = on_backend!(tx, conn => {
        sqlx::query_as::<_, ClientRow>(AssertSqlSafe(sql))
            .bind(client_id)
            .fetch_optional(conn)
            .await
    })?;
    match row {
        Some(row) => Ok(with_client_roles(tx, vec![row]).await?.pop()),
        None => Ok(None),
    }
}

/// The clients among `client_ids` (in no particular order).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn get_clients(
    tx: &mut Transaction,
    client_ids: &[ClientId],
) -> Result<Vec<Client>, Error> {
    let placeholders = chassis::storage::placeholders(1, client_ids.len());
    let sql =
        format!("SELECT {CLIENT_COLUMNS} FROM oauth_clients WHERE client_id IN ({placeholders})");
    let rows = on_backend!(tx, conn => {
        let query = sqlx::query_as::<_, ClientRow>(AssertSqlSafe(sql));
        let client_ids = client_ids.iter().map(ClientId::as_str);
        chassis::storage::bind_all(query, client_ids).fetch_all(conn).await
    })?;
    with_client_roles(tx, rows).await
}

/// The client with `client_id` and its secret hash, for authenticating it at the token endpoint.
#[tracing::instrument(level = "debug", skip_all, fields(client_id = client_id))]
pub async fn find_client_credentials(
    tx: &mut Transaction,
    client_id: &str,
) -> Result<Option<ClientCredentials>, Error> {
    let sql =
        format!("SELECT {CLIENT_COLUMNS}, secret_hash FROM oauth_clients WHERE client_id = $1");
    let found = on_backend!(tx, conn => {
        use sqlx::Row as _;
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(client_id)
            .fetch_optional(&mut *conn)
            .await?;
        match row {
            Some(row) => {
                let client = <ClientRow as sqlx::FromRow<_>>::from_row(&row)?;
                let hash: Option<String> = row.try_get("secret_hash")?;
                Ok::<_, sqlx::Error>(Some((client, hash)))
            }
            None => Ok(None),
        }
    })?;
    let Some((row, secret_hash)) = found else {
        return Ok(None);
    };
    let client = with_client_roles(tx, vec![row]).await?.pop();
    Ok(client.map(|client| ClientCredentials {
        client,
        secret_hash,
    }))
}

/// A page of clients by `client_id`.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn list_clients(tx: &mut Transaction, page: &PageRequest) -> Result<Page<Client>, Error> {
    let filter = Filter::new();
    let (sql, count_sql) = CLIENTS.keyset_sql(&filter, "client_id", Direction::Ascending, page);
    let rows = on_backend!(tx, conn => {
        let select = sqlx::query_as::<_, ClientRow>(AssertSqlSafe(sql));
        let count = sqlx::query_scalar(AssertSqlSafe(count_sql));
        chassis::storage::fetch_page(conn, select, count, &filter, page).await
    })?;
    let clients = with_client_roles(tx, rows.items).await?;
    Ok(Page {
        items: clients,
        has_more: rows.has_more,
        total: rows.total,
    })
}

/// Applies `changes` (roles replaced when given) and bumps the version. The caller has checked
/// the result against the rules of the client's kind.
#[tracing::instrument(level = "debug", skip_all, fields(client_id = client_id))]
pub async fn update_client(
    tx: &mut Transaction,
    client_id: &str,
    changes: &ClientChanges,
) -> Result<Client, Error> {
    let sql = format!(
        "UPDATE oauth_clients SET name = COALESCE($3, name), \
         redirect_uris = COALESCE($4, redirect_uris), \
         post_logout_redirect_uris = COALESCE($5, post_logout_redirect_uris), \
         disabled = COALESCE($6, disabled), version = version + 1, updated_at = $7 \
         WHERE client_id = $1 AND version = $2 RETURNING {CLIENT_COLUMNS}"
    );
    let redirect_uris = changes
        .redirect_uris
        .as_deref()
        .map(uri_list_json)
        .transpose()?;
    let post_logout_redirect_uris = changes
        .post_logout_redirect_uris
        .as_deref()
        .map(uri_list_json)
        .transpose()?;
    let row = on_backend!(tx, conn => {
        sqlx::query_as::<_, ClientRow>(AssertSqlSafe(sql))
            .bind(client_id)
            .bind(changes.expected_version)
            .bind(changes.name.as_ref().map(|name| name.as_str()))
            .bind(redirect_uris.as_deref())
            .bind(post_logout_redirect_uris.as_deref())
            .bind(changes.disabled)
            .bind(Timestamp::now())
            .fetch_optional(conn)
            .await
    })
    .map_err(|error| CLIENTS.error(error))?;
    if let (Some(row), Some(roles)) = (&row, &changes.roles) {
        let client_uuid = row.id;
        on_backend!(tx, conn => {
            sqlx::query("DELETE FROM oauth_client_roles WHERE client_uuid = $1")
                .bind(client_uuid)
                .execute(conn)
                .await
                .map(|done| done.rows_affected())
        })?;
        insert_client_roles(tx, client_uuid, roles).await?;
    }
    client_after_write(tx, row, client_id, changes.expected_version).await
}

/// Replaces the secret hash of a confidential client and bumps the version.
#[tracing::instrument(level = "debug", skip_all, fields(client_id = client_id))]
pub async fn set_client_secret_hash(
    tx: &mut Transaction,
    client_id: &str,
    expected_version: i64,
    secret_hash: &str,
) -> Result<Client, Error> {
    let sql = format!(
        "UPDATE oauth_clients SET secret_hash = $3, version = version + 1, updated_at = $4 \
         WHERE client_id = $1 AND version = $2 AND kind = 'confidential' RETURNING {CLIENT_COLUMNS}"
    );
    let row = on_backend!(tx, conn => {
        sqlx::query_as::<_, ClientRow>(AssertSqlSafe(sql))
            .bind(client_id)
            .bind(expected_version)
            .bind(secret_hash)
            .bind(Timestamp::now())
            .fetch_optional(conn)
            .await
    })?;
    if row.is_none()
        && let Some(client) = get_client(tx, client_id).await?
        && client.kind == ClientKind::Public
    {
        return Err(public_client_has_no_secret(client_id));
    }
    client_after_write(tx, row, client_id, expected_version).await
}

/// Deletes the client (its roles go with it); returns it as it was.
#[tracing::instrument(level = "debug", skip_all, fields(client_id = client_id))]
pub async fn delete_client(
    tx: &mut Transaction,
    client_id: &str,
    expected_version: i64,
) -> Result<Client, Error> {
    let Some(client) = get_client(tx, client_id).await? else {
        return Err(Error::not_found("client", client_id));
    };
    let n_deleted = on_backend!(tx, conn => {
        sqlx::query("DELETE FROM oauth_clients WHERE client_id = $1 AND ($2 = 0 OR version = $2)")
            .bind(client_id)
            .bind(expected_version)
            .execute(conn)
            .await
            .map(|done| done.rows_affected())
    })?;
    if n_deleted == 1 {
        return Ok(client);
    }
    let current = Some(client.version);
    Err(CLIENTS.missing_or_stale(current, client_id, expected_version))
}

/// The cursor that continues the client list after `client`.
pub fn client_cursor(client: &Client) -> Cursor {
    Cursor::new(
        SortKey::Text(client.client_id.as_str().to_owned()),
        client.id,
    )
}

/// The error for a secret operation on a public client, which has none.
pub fn public_client_has_no_secret(client_id: &str) -> Error {
    Error::FailedPrecondition(format!(
        "the client {client_id} is public: it has no secret"
    ))
}

// === helpers ===

/// Loads the roles of `rows` and builds the accounts, in the order of `rows`.
async fn with_roles(tx: &mut Transaction, rows: Vec<AccountRow>) -> Result<Vec<Account>, Error> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT account_id, role FROM account_roles WHERE account_id IN ({}) ORDER BY role",
        chassis::storage::placeholders(1, rows.len())
    );
    let grants: Vec<(Uuid, String)> = on_backend!(tx, conn => {
        let mut query = sqlx::query_as::<_, (Uuid, String)>(AssertSqlSafe(sql));
        for row in &rows {
            query = query.bind(row.id);
        }
        query.fetch_all(conn).await
    })?;
    let mut roles_by_account: HashMap<Uuid, Vec<String>> = HashMap::new();
    for (account_id, role) in grants {
        roles_by_account.entry(account_id).or_default().push(role);
    }
    Ok(rows
        .into_iter()
        .map(|row| {
            let roles = roles_by_account.remove(&row.id).unwrap_or_default();
            row.into_account(roles)
        })
        .collect())
}

async fn account_after_write(
    tx: &mut Transaction,
    row: Option<AccountRow>,
    id: Uuid,
    expected_version: i64,
) -> Result<Account, Error> {
    let Some(row) = row else {
        let current = get_account(tx, id).await?.map(|account| account.version);
        return Err(ACCOUNTS.missing_or_stale(current, id, expected_version));
    };
    let account = with_roles(tx, vec![row]).await?.pop();
    account.ok_or_else(|| Error::Unexpected(anyhow::anyhow!("the written account vanished")))
}

fn role_in_use(name: &str, holders: &str) -> Error {
    Error::FailedPrecondition(format!(
        "the role {name} is still held by {holders}; revoke it first"
    ))
}

/// Gives `roles` to the client; an unknown role is the caller's mistake, named under `roles`.
async fn insert_client_roles(
    tx: &mut Transaction,
    client_uuid: Uuid,
    roles: &[RoleName],
) -> Result<(), Error> {
    for role in roles {
        on_backend!(tx, conn => {
            sqlx::query("INSERT INTO oauth_client_roles (client_uuid, role) VALUES ($1, $2)")
                .bind(client_uuid)
                .bind(role.as_str())
                .execute(conn)
                .await
                .map(|done| done.rows_affected())
        })
        .map_err(|error| match constraint_violation(&error) {
            Some(ConstraintViolation::ForeignKey) => {
                Error::invalid("roles", format!("{} is not a role", role.as_str()))
            }
            _ => Error::from(error),
        })?;
    }
    Ok(())
}

/// Loads the roles of `rows` and builds the clients, in the order of `rows`.
async fn with_client_roles(
    tx: &mut Transaction,
    rows: Vec<ClientRow>,
) -> Result<Vec<Client>, Error> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT client_uuid, role FROM oauth_client_roles WHERE client_uuid IN ({}) ORDER BY role",
        chassis::storage::placeholders(1, rows.len())
    );
    let grants: Vec<(Uuid, String)> = on_backend!(tx, conn => {
        let mut query = sqlx::query_as::<_, (Uuid, String)>(AssertSqlSafe(sql));
        for row in &rows {
            query = query.bind(row.id);
        }
        query.fetch_all(conn).await
    })?;
    let mut roles_by_client: HashMap<Uuid, Vec<String>> = HashMap::new();
    for (client_uuid, role) in grants {
        roles_by_client.entry(client_uuid).or_default().push(role);
    }
    rows.into_iter()
        .map(|row| {
            let roles = roles_by_client.remove(&row.id).unwrap_or_default();
            row.into_client(roles)
        })
        .collect()
}

async fn client_after_write(
    tx: &mut Transaction,
    row: Option<ClientRow>,
    client_id: &str,
    expected_version: i64,
) -> Result<Client, Error> {
    let Some(row) = row else {
        let current = get_client(tx, client_id)
            .await?
            .map(|client| client.version);
        return Err(CLIENTS.missing_or_stale(current, client_id, expected_version));
    };
    let client = with_client_roles(tx, vec![row]).await?.pop();
    client.ok_or_else(|| Error::Unexpected(anyhow::anyhow!("the written client vanished")))
}

/// The accounts table: its row's columns, and how a write's constraint violations read to the
/// caller; it can collide on `email` or on `customer_id`. (Versions, times, `builtin`, `kind`'s
/// pairing with the secret hash and the lock-out's `scope` are set by the service itself, so a
/// violation there is a bug, rightly INTERNAL.)
const ACCOUNTS: Table = Table {
    name: "accounts",
    columns: ACCOUNT_COLUMNS,
    resource: "account",
    unique: &["email", "customer_id"],
    foreign_keys: &[],
    fields: &[
        ("email", "email"),
        ("first_name", "first_name"),
        ("last_name", "last_name"),
        ("nickname", "nickname"),
        ("country", "country"),
    ],
};

/// The roles table.
const ROLES: Table = Table {
    name: "roles",
    columns: ROLE_COLUMNS,
    resource: "role",
    unique: &["name"],
    foreign_keys: &[],
    fields: &[("name", "name"), ("description", "description")],
};

/// The OAuth clients table.
const CLIENTS: Table = Table {
    name: "oauth_clients",
    columns: CLIENT_COLUMNS,
    resource: "client",
    unique: &["client_id"],
    foreign_keys: &[],
    fields: &[
        ("client_id", "client_id"),
        ("name", "name"),
        ("redirect_uris", "redirect_uris"),
        ("post_logout_redirect_uris", "post_logout_redirect_uris"),
    ],
};

fn uri_list_json(uris: &[RedirectUri]) -> Result<String, Error> {
    let texts: Vec<&str> = uris.iter().map(RedirectUri::as_str).collect();
    Ok(serde_json::to_string(&texts).context("Failed to encode redirect URIs")?)
}

/// Stored values passed the domain's rules on the way in; one that fails them now is corrupt.
fn stored<T>(column: &str, parsed: Result<T, String>) -> Result<T, Error> {
    parsed.map_err(|reason| {
        Error::Unexpected(anyhow::anyhow!(
            "A stored client has an invalid {column}: {reason}"
        ))
    })
}

fn stored_uri_list(column: &str, json: &str) -> Result<Vec<RedirectUri>, Error> {
    let texts: Vec<String> = stored(
        column,
        serde_json::from_str(json).map_err(|error| error.to_string()),
    )?;
    texts
        .iter()
        .map(|text| stored(column, RedirectUri::parse(text)))
        .collect()
}

impl AccountRow {
    fn into_account(self, roles: Vec<String>) -> Account {
        Account {
            id: self.id,
            email: self.email,
            first_name: self.first_name,
            last_name: self.last_name,
            nickname: self.nickname,
            country: self.country,
            disabled: self.disabled,
            customer_id: self.customer_id,
            roles,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

impl From<RoleRow> for Role {
    fn from(row: RoleRow) -> Role {
        Role {
            id: row.id,
            name: row.name,
            description: row.description,
            builtin: row.builtin,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

impl ClientRow {
    fn into_client(self, roles: Vec<String>) -> Result<Client, Error> {
        Ok(Client {
            id: self.id,
            client_id: stored("client_id", ClientId::parse(&self.client_id))?,
            name: self.name,
            kind: stored("kind", ClientKind::parse(&self.kind))?,
            redirect_uris: stored_uri_list("redirect_uris", &self.redirect_uris)?,
            post_logout_redirect_uris: stored_uri_list(
                "post_logout_redirect_uris",
                &self.post_logout_redirect_uris,
            )?,
            roles: roles
                .iter()
                .map(|role| stored("role", RoleName::parse(role)))
                .collect::<Result<_, _>>()?,
            disabled: self.disabled,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

// === impl ClientCredentials ===

// By hand, so the hash never reaches a log through `{:?}`.
impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("client", &self.client)
            .field(
                "secret_hash",
                &self.secret_hash.as_ref().map(|_| "[REDACTED]"),
            )
            .finish()
    }
}
