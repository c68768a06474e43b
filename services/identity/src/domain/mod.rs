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

/// Sort direction of a list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Ascending,
    Descending,
}

/// A page of a list: the items, whether more follow, and how many match in all.
#[derive(Clone, Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_more: bool,
    pub total: i64,
}
