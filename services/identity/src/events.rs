//! The identity service's events, written to the outbox with each change. Every change event
//! carries the record's state after the change (deletions carry the last state), never a password,
//! a client secret or their hashes. Reads of accounts are audited with `audit.account.accessed`, which is not a
//! change: it lives under its own subject tree (`<namespace>.identity.audit.>`), so a consumer of
//! `<namespace>.identity.account.>` never receives it and per-account version ordering is never
//! confused by it. Schemas: docs/events.md.

use chassis::outbox::{Actor, NewEvent};
use emporium_proto::EventType;
use emporium_proto::identity::v1::{self as proto, events};

use crate::domain::{Account, Client, Role};
use crate::wire::{account_to_proto, client_to_proto, role_to_proto};

#[derive(Clone, Copy, Debug)]
pub enum IdentityEvent<'a> {
    AccountCreated(&'a Account),
    /// Field changes, grants and revokes.
    AccountUpdated(&'a Account),
    /// The account after its password was set or replaced (the password is not in it).
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
                account_event(events::ACCOUNT_CREATED, account, account.version)
            }
            IdentityEvent::AccountUpdated(account) => {
                account_event(events::ACCOUNT_UPDATED, account, account.version)
            }
            IdentityEvent::PasswordChanged(account) => {
                account_event(events::ACCOUNT_PASSWORD_CHANGED, account, account.version)
            }
            // A deletion is one more version of the record.
            IdentityEvent::AccountDeleted(account) => {
                account_event(events::ACCOUNT_DELETED, account, account.version + 1)
            }
            // Not a change: the version the reader saw. Published outside the account's subject
            // tree, so no consumer applies it as one.
            IdentityEvent::AccountAccessed {
                account,
                accessed_by,
            } => NewEvent::new(
                events::AUDIT_ACCOUNT_ACCESSED,
                account.id,
                account.version,
                &proto::AccountAccessed {
                    account_id: account.id.to_string(),
                    accessed_by: accessed_by.to_owned(),
                },
            ),
            IdentityEvent::RoleCreated(role) => {
                role_event(events::ROLE_CREATED, role, role.version)
            }
            IdentityEvent::RoleUpdated(role) => {
                role_event(events::ROLE_UPDATED, role, role.version)
            }
            IdentityEvent::RoleDeleted(role) => {
                role_event(events::ROLE_DELETED, role, role.version + 1)
            }
            IdentityEvent::ClientCreated(client) => {
                client_event(events::CLIENT_CREATED, client, client.version)
            }
            IdentityEvent::ClientUpdated(client) => {
                client_event(events::CLIENT_UPDATED, client, client.version)
            }
            IdentityEvent::ClientDeleted(client) => {
                client_event(events::CLIENT_DELETED, client, client.version + 1)
            }
            IdentityEvent::ClientSecretReset(client) => {
                client_event(events::CLIENT_SECRET_RESET, client, client.version)
            }
        };
        event.actor = Some(actor.clone());
        event
    }
}

fn account_event(
    event_type: EventType<proto::Account>,
    account: &Account,
    version: i64,
) -> NewEvent {
    let data = proto::Account {
        version,
        ..account_to_proto(account.clone())
    };
    NewEvent::new(event_type, account.id, version, &data)
}

fn role_event(event_type: EventType<proto::Role>, role: &Role, version: i64) -> NewEvent {
    let data = proto::Role {
        version,
        ..role_to_proto(role.clone())
    };
    NewEvent::new(event_type, role.id, version, &data)
}

fn client_event(event_type: EventType<proto::Client>, client: &Client, version: i64) -> NewEvent {
    let data = proto::Client {
        version,
        ..client_to_proto(client.clone())
    };
    NewEvent::new(event_type, client.id, version, &data)
}
