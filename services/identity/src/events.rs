//! The identity service's events, written to the outbox with each change. Every change event
//! carries the record's state after the change (deletions carry the last state), never a password,
//! a client secret or their hashes. Reads of accounts are audited with `audit.account.accessed`, which is not a
//! change: it lives under its own subject tree (`<namespace>.identity.audit.>`), so a consumer of
//! `<namespace>.identity.account.>` never receives it and per-account version ordering is never
//! confused by it. Schemas: docs/events.md.

use chassis::outbox::{Actor, NewEvent};
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
                NewEvent::change(events::ACCOUNT_CREATED, &account_to_proto(account.clone()))
            }
            IdentityEvent::AccountUpdated(account) => {
                NewEvent::change(events::ACCOUNT_UPDATED, &account_to_proto(account.clone()))
            }
            IdentityEvent::PasswordChanged(account) => NewEvent::change(
                events::ACCOUNT_PASSWORD_CHANGED,
                &account_to_proto(account.clone()),
            ),
            IdentityEvent::AccountDeleted(account) => {
                NewEvent::deletion(events::ACCOUNT_DELETED, &account_to_proto(account.clone()))
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
                NewEvent::change(events::ROLE_CREATED, &role_to_proto(role.clone()))
            }
            IdentityEvent::RoleUpdated(role) => {
                NewEvent::change(events::ROLE_UPDATED, &role_to_proto(role.clone()))
            }
            IdentityEvent::RoleDeleted(role) => {
                NewEvent::deletion(events::ROLE_DELETED, &role_to_proto(role.clone()))
            }
            IdentityEvent::ClientCreated(client) => {
                NewEvent::change(events::CLIENT_CREATED, &client_to_proto(client.clone()))
            }
            IdentityEvent::ClientUpdated(client) => {
                NewEvent::change(events::CLIENT_UPDATED, &client_to_proto(client.clone()))
            }
            IdentityEvent::ClientDeleted(client) => {
                NewEvent::deletion(events::CLIENT_DELETED, &client_to_proto(client.clone()))
            }
            IdentityEvent::ClientSecretReset(client) => NewEvent::change(
                events::CLIENT_SECRET_RESET,
                &client_to_proto(client.clone()),
            ),
        };
        event.actor = Some(actor.clone());
        event
    }
}
