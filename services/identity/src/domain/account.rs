//! Accounts: who can log in, and as whom. An email is unique (case-insensitively: it is stored
//! lower-cased); the password hash never leaves the store except to be verified. An account may
//! own one customer record (of the customers service), and no two accounts own the same one.

use chassis::storage::Timestamp;
use uuid::Uuid;

use super::{Direction, Password, SearchText};

/// An email address, trimmed and lower-cased: `local@domain.tld`, at most 254 characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email(String);

/// A first or last name: 1 to 100 characters after trimming.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersonName(String);

/// Up to 100 characters after trimming; may be empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nickname(String);

/// An ISO 3166-1 alpha-2 code: two upper-case letters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Country(String);

/// An account as stored, without its password hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub id: Uuid,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub nickname: String,
    pub country: String,
    pub disabled: bool,
    /// The customer record this account owns; unique among accounts. Only an account holding the
    /// `customer` role carries it into its access tokens.
    pub customer_id: Option<Uuid>,
    /// Role names, sorted.
    pub roles: Vec<String>,
    /// Starts at 1; every change (grants, revokes and password changes included) adds 1.
    pub version: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug)]
pub struct NewAccount {
    pub email: Email,
    pub first_name: PersonName,
    pub last_name: PersonName,
    pub nickname: Nickname,
    pub country: Country,
    /// `None` creates an account that cannot log in until a password is set.
    pub password: Option<Password>,
    pub customer_id: Option<Uuid>,
}

/// The fields to change; `None` keeps the current value.
#[derive(Clone, Debug)]
pub struct AccountChanges {
    /// The version the caller read; the change is refused if the account moved on.
    pub expected_version: i64,
    pub email: Option<Email>,
    pub first_name: Option<PersonName>,
    pub last_name: Option<PersonName>,
    pub nickname: Option<Nickname>,
    pub country: Option<Country>,
    pub disabled: Option<bool>,
    /// `Some(None)` unlinks the customer record; `None` keeps the current link.
    pub customer_id: Option<Option<Uuid>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountOrder {
    Email,
    CreatedAt,
}

#[derive(Clone, Debug)]
pub struct AccountListQuery {
    pub country: Option<Country>,
    pub text: Option<SearchText>,
    pub order: AccountOrder,
    pub direction: Direction,
    pub page_size: i64,
}

// === impl Email ===

impl Email {
    pub const MAX_CHARS: usize = 254;

    pub fn parse(text: &str) -> Result<Email, String> {
        let email = text.trim().to_lowercase();
        if email.is_empty() {
            return Err("must not be empty".to_owned());
        }
        if email.chars().count() > Self::MAX_CHARS {
            return Err(format!("must be at most {} characters", Self::MAX_CHARS));
        }
        let valid = match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !email.chars().any(|c| c.is_whitespace() || c.is_control())
            }
            None => false,
        };
        if !valid {
            return Err("must be an email address like name@example.com".to_owned());
        }
        Ok(Email(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// === impl PersonName ===

impl PersonName {
    pub const MAX_CHARS: usize = 100;

    pub fn parse(text: &str) -> Result<PersonName, String> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err("must not be empty".to_owned());
        }
        if trimmed.chars().count() > Self::MAX_CHARS {
            return Err(format!("must be at most {} characters", Self::MAX_CHARS));
        }
        Ok(PersonName(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// === impl Nickname ===

impl Nickname {
    pub const MAX_CHARS: usize = 100;

    pub fn parse(text: &str) -> Result<Nickname, String> {
        let trimmed = text.trim();
        if trimmed.chars().count() > Self::MAX_CHARS {
            return Err(format!("must be at most {} characters", Self::MAX_CHARS));
        }
        Ok(Nickname(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// === impl Country ===

impl Country {
    pub fn parse(text: &str) -> Result<Country, String> {
        if text.len() == 2 && text.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Country(text.to_owned()))
        } else {
            Err("must be an ISO 3166-1 alpha-2 code of two upper-case letters, e.g. FR".to_owned())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::{Country, Email, Nickname, PersonName};

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").unwrap().as_str(),
            "ada@example.com"
        );
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@",
            "ada@example",
            "a b@example.com",
            "a@b@c.d",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn countries_are_two_upper_case_letters() {
        assert!(Country::parse("FR").is_ok());
        for bad in ["fr", "FRA", "F", "", "F1"] {
            assert!(Country::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_must_not_be_blank_but_nicknames_may_be() {
        assert!(PersonName::parse("  ").is_err());
        assert_eq!(PersonName::parse(" Ada ").unwrap().as_str(), "Ada");
        assert_eq!(Nickname::parse("  ").unwrap().as_str(), "");
        assert!(Nickname::parse(&"x".repeat(101)).is_err());
    }
}
