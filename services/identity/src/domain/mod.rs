//! The identity domain: validated values and the rules about them. Nothing here knows tonic,
//! GraphQL or SQL; values are parsed from raw input once, at the boundary, and trusted after.

mod account;
mod client;
mod password;
mod role;
mod text;

pub use account::{
    Account, AccountChanges, AccountListQuery, AccountOrder, Country, Email, NewAccount, Nickname,
    PersonName,
};
pub use client::{
    Client, ClientChanges, ClientId, ClientKind, ClientName, ClientSecret, MAX_REDIRECT_URIS,
    NewClient, RedirectUri, sorted_roles, verify_client_secret,
};
pub use password::{Password, hash_password, verify_password};
pub use role::{BUILTIN_ROLES, BuiltinRole, NewRole, Role, RoleChanges, RoleDescription, RoleName};
pub use text::SearchText;

pub use chassis::pagination::{Direction, Page};
