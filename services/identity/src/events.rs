//! The identity service's events, written to the outbox with each change. Every change event
//! carries the record's state after the change (deletions carry the last state), never a password,
//! a client secret or their hashes. Reads of accounts are audited with `audit.account.accessed`, which is not a
//! change: it lives under its own subject tree (`<namespace>.identity.audit.>`), so a consumer of
//! `<namespace>.identity.account.>` never receives it and per-account version ordering is never
//! confused by it. Schemas: docs/events.md.

use chassis::outbox::{Actor, EventKind, NewEvent};
use serde_json::json;

use crate::domain::{Account, Client, RedirectUri, Role, RoleName};

pub const ACCOUNT_CREATED: &str = "emporium.identity.account.created";
pub const ACCOUNT_UPDATED: &str = "emporium.identity.account.updated";
pub const ACCOUNT_DELETED: &str = "emporium.identity.account.deleted";
pub const ACCOUNT_ACCESSED: &str = "emporium.identity.audit.account.accessed";
pub const ROLE_CREATED: &str = "emporium.identity.role.created";
pub const ROLE_UPDATED: &str = "emporium.identity.role.updated";
pub const ROLE_DELETED: &str = "emporium.identity.role.deleted";
pub const CLIENT_CREATED: &str = "emporium.identity.client.created";
pub const CLIENT_UPDATED: &str = "emporium.identity.client.updated";
pub const CLIENT_DELETED: &str = "emporium.identity.client.deleted";
pub const CLIENT_SECRET_RESET: &str = "emporium.identity.client.secret_reset";

#[derive(Clone, Copy, Debug)]
pub enum IdentityEvent<'a> {
    AccountCreated(&'a Account),
    /// Field changes, grants and revokes.
    AccountUpdated(&'a Account),
    /// An `account.updated` with `password_changed: true`.
    PasswordChanged(&'a Account),
    /// The account as it was before deletion.
    AccountDeleted(&'a Account),
    /// The account was read by `accessed_by` (a token subject).
    AccountAccessed {
        account: &'a Account,
        accessed_by: &'a str,
    },
    RoleCreated(&'a Role),
    RoleUpdated(&'a Role),
    /// The role as it was before deletion.
    RoleDeleted(&'a Role),
    ClientCreated(&'a Client),
    ClientUpdated(&'a Client),
    /// The client as it was before deletion.
    ClientDeleted(&'a Client),
    /// The client after its secret was replaced (the secret is not in it).
    ClientSecretReset(&'a Client),
}

impl IdentityEvent<'_> {
    /// The outbox row for this event, made by `actor` (the verified caller).
    pub fn into_new_event(self, actor: &Actor) -> NewEvent {
        let mut event = match self {
            IdentityEvent::AccountCreated(account) => {
                account_event(ACCOUNT_CREATED, account, account.version, false)
            }
            IdentityEvent::AccountUpdated(account) => {
                account_event(ACCOUNT_UPDATED, account, account.version, false)
            }
            IdentityEvent::PasswordChanged(account) => {
                account_event(ACCOUNT_UPDATED, account, account.version, true)
            }
            // A deletion is one more version of the record.
            IdentityEvent::AccountDeleted(account) => {
                account_event(ACCOUNT_DELETED, account, account.version + 1, false)
            }
            IdentityEvent::AccountAccessed {
                account,
                accessed_by,
            } => NewEvent {
                aggregate_type: "account",
                aggregate_id: account.id,
                // Not a change: the version the reader saw. Published outside the account's
                // subject tree, so no consumer applies it as one.
                aggregate_version: account.version,
                event_type: ACCOUNT_ACCESSED,
                kind: EventKind::Audit,
                data: json!({
                    "account_id": account.id,
                    "accessed_by": accessed_by,
                }),
                actor: None,
            },
            IdentityEvent::RoleCreated(role) => role_event(ROLE_CREATED, role, role.version),
            IdentityEvent::RoleUpdated(role) => role_event(ROLE_UPDATED, role, role.version),
            IdentityEvent::RoleDeleted(role) => role_event(ROLE_DELETED, role, role.version + 1),
            IdentityEvent::ClientCreated(client) => {
                client_event(CLIENT_CREATED, client, client.version)
            }
            IdentityEvent::ClientUpdated(client) => {
                client_event(CLIENT_UPDATED, client, client.version)
            }
            IdentityEvent::ClientDeleted(client) => {
                client_event(CLIENT_DELETED, client, client.version + 1)
            }
            IdentityEvent::ClientSecretReset(client) => {
                client_event(CLIENT_SECRET_RESET, client, client.version)
            }
        };
        event.actor = Some(actor.clone());
        event
    }
}

fn account_event(
    event_type: &'static str,
    account: &Account,
    version: i64,
    password_changed: bool,
) -> NewEvent {
    let mut data = json!({
        "id": account.id,
        "email": account.email,
        "first_name": account.first_name,
        "last_name": account.last_name,
        "nickname": account.nickname,
        "country": account.country,
        "disabled": account.disabled,
        "customer_id": account.customer_id,
        "roles": account.roles,
        "version": version,
        "created_at": account.created_at.to_rfc3339(),
        "updated_at": account.updated_at.to_rfc3339(),
    });
    if password_changed {
        data["password_changed"] = json!(true);
    }
    NewEvent {
        aggregate_type: "account",
        aggregate_id: account.id,
        aggregate_version: version,
        event_type,
        kind: EventKind::Change,
        data,
        actor: None,
    }
}

fn role_event(event_type: &'static str, role: &Role, version: i64) -> NewEvent {
    NewEvent {
        aggregate_type: "role",
        aggregate_id: role.id,
        aggregate_version: version,
        event_type,
        kind: EventKind::Change,
        data: json!({
            "id": role.id,
            "name": role.name,
            "description": role.description,
            "builtin": role.builtin,
            "version": version,
            "created_at": role.created_at.to_rfc3339(),
            "updated_at": role.updated_at.to_rfc3339(),
        }),
        actor: None,
    }
}

/// The client's state: never its secret or the secret's hash, which `Client` does not hold.
fn client_event(event_type: &'static str, client: &Client, version: i64) -> NewEvent {
    let roles: Vec<&str> = client.roles.iter().map(RoleName::as_str).collect();
    NewEvent {
        aggregate_type: "client",
        aggregate_id: client.id,
        aggregate_version: version,
        event_type,
        kind: EventKind::Change,
        data: json!({
            "id": client.id,
            "client_id": client.client_id.as_str(),
            "name": client.name,
            "type": client.kind.as_str(),
            "redirect_uris": uri_texts(&client.redirect_uris),
            "post_logout_redirect_uris": uri_texts(&client.post_logout_redirect_uris),
            "roles": roles,
            "disabled": client.disabled,
            "version": version,
            "created_at": client.created_at.to_rfc3339(),
            "updated_at": client.updated_at.to_rfc3339(),
        }),
        actor: None,
    }
}

fn uri_texts(uris: &[RedirectUri]) -> Vec<&str> {
    uris.iter().map(RedirectUri::as_str).collect()
}
