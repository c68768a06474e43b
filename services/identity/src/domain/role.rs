//! Roles: named sets of permissions that accounts (and confidential OAuth2 clients) hold. Five are
//! built in (`admin`, `catalog-manager`, `sales`, `customer`, `visitor`) and cannot be deleted; a
//! role still held by an account or a client cannot be deleted either.

use chassis::storage::Timestamp;
use chassis::text::{Text, TextField, TextRule};
use uuid::Uuid;

/// 1 to 64 of `a-z 0-9 -`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleName(String);

/// Up to 500 characters over any number of lines (`\r\n` stored as `\n`), surrounding whitespace
/// trimmed, without control characters; may be empty.
pub type RoleDescription = Text<RoleDescriptionRule>;

/// The rule of a [`RoleDescription`].
#[derive(Debug)]
pub enum RoleDescriptionRule {}

impl TextField for RoleDescriptionRule {
    const RULE: TextRule = TextRule::multi_line(500).allowing_empty();
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Role {
    /// The role's event-history id; the name is its key.
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub builtin: bool,
    /// Starts at 1; every change adds 1.
    pub version: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A role the service seeds itself at start ([`BUILTIN_ROLES`]): its name, fixed event-history id
/// and the description it starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuiltinRole {
    pub name: &'static str,
    pub id: Uuid,
    pub description: &'static str,
}

/// The roles every installation has. The first four were inserted by the migration
/// `20261123000002` (same ids and descriptions) before built-in roles were seeded with events.
pub const BUILTIN_ROLES: [BuiltinRole; 5] = [
    BuiltinRole {
        name: "admin",
        id: Uuid::from_u128(0x0000_0000_0000_7000_8000_0000_0000_0001),
        description: "Everything, including accounts and roles",
    },
    BuiltinRole {
        name: "catalog-manager",
        id: Uuid::from_u128(0x0000_0000_0000_7000_8000_0000_0000_0002),
        description: "Manages categories and products",
    },
    BuiltinRole {
        name: "sales",
        id: Uuid::from_u128(0x0000_0000_0000_7000_8000_0000_0000_0003),
        description: "Handles customers and orders",
    },
    BuiltinRole {
        name: "customer",
        id: Uuid::from_u128(0x0000_0000_0000_7000_8000_0000_0000_0004),
        description: "Shops and sees their own records",
    },
    BuiltinRole {
        name: chassis::auth::roles::VISITOR,
        id: Uuid::from_u128(0x0000_0000_0000_7000_8000_0000_0000_0005),
        description: "Browses what is open to visitors who have not signed in (the catalog); \
                      held by the gateway's own token, never with another role",
    },
];

#[derive(Clone, Debug)]
pub struct NewRole {
    pub name: RoleName,
    pub description: RoleDescription,
}

/// The fields to change; `None` keeps the current value.
#[derive(Clone, Debug)]
pub struct RoleChanges {
    /// The version the caller read; the change is refused if the role moved on.
    pub expected_version: i64,
    pub description: Option<RoleDescription>,
}

// === impl RoleName ===

impl RoleName {
    /// Not trimmed: the alphabet has no whitespace.
    pub const RULE: TextRule = TextRule::single_line(64).untrimmed();

    pub fn parse(text: &str) -> Result<RoleName, String> {
        let text = Self::RULE.parse(text)?;
        if let Some(bad) = text
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(format!("must use only a-z 0-9 - (found {bad:?})"));
        }
        Ok(RoleName(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::{RoleDescription, RoleName};

    #[test]
    fn role_names_take_a_restricted_alphabet() {
        assert!(RoleName::parse("warehouse-2").is_ok());
        for bad in ["", "Admin", "has space", "under_score"] {
            assert!(RoleName::parse(bad).is_err(), "{bad}");
        }
        assert!(RoleName::parse(&"a".repeat(65)).is_err());
        assert!(RoleName::parse(&"a".repeat(64)).is_ok());
        assert!(RoleName::parse("admin\0").is_err());
    }

    #[test]
    fn role_descriptions_may_span_lines_but_hold_no_control_characters() {
        assert_eq!(
            RoleDescription::parse(" Packs orders\r\nShips them ")
                .unwrap()
                .as_str(),
            "Packs orders\nShips them"
        );
        assert!(RoleDescription::parse("a\0").is_err());
        assert!(RoleDescription::parse("\x1b[31mred").is_err());
    }
}
