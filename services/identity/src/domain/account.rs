//! Accounts: who can log in, and as whom. An email is unique (case-insensitively: it is stored
//! lower-cased); the password hash never leaves the store except to be verified. An account may
//! own one customer record (of the customers service), and no two accounts own the same one.

use chassis::storage::Timestamp;
use chassis::text::{Text, TextField, TextRule};
use uuid::Uuid;

use super::{Direction, Password, SearchText};

/// An email address, trimmed and lower-cased: `local@domain.tld`, at most 254 characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email(String);

/// A first or last name: one line of 1 to 100 characters after trimming, without control
/// characters.
pub type PersonName = Text<PersonNameRule>;

/// The rule of a [`PersonName`].
#[derive(Debug)]
pub enum PersonNameRule {}

impl TextField for PersonNameRule {
    const RULE: TextRule = TextRule::single_line(100);
}

/// One line of up to 100 characters after trimming; may be empty.
pub type Nickname = Text<NicknameRule>;

/// The rule of a [`Nickname`].
#[derive(Debug)]
pub enum NicknameRule {}

impl TextField for NicknameRule {
    const RULE: TextRule = TextRule::single_line(100).allowing_empty();
}

/// An assigned ISO 3166-1 alpha-2 code (`FR`), from the `rust_iso3166` crate's list; the
/// user-assigned codes (`XX`, `ZZ`, `XK`) and withdrawn ones (`AN`) are refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Country(&'static str);

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
}

// === impl Email ===

impl Email {
    pub const RULE: TextRule = TextRule::single_line(254);

    pub fn parse(text: &str) -> Result<Email, String> {
        // Lower-cased first: lower-casing can change the number of characters.
        let email = Self::RULE.parse(&text.trim().to_lowercase())?;
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

// === impl Country ===

impl Country {
    pub fn parse(text: &str) -> Result<Country, String> {
        if !(text.len() == 2 && text.bytes().all(|b| b.is_ascii_uppercase())) {
            return Err(
                "must be an ISO 3166-1 alpha-2 code of two upper-case letters, e.g. FR".to_owned(),
            );
        }
        match rust_iso3166::from_alpha2(text) {
            Some(country) => Ok(Country(country.alpha2)),
            None => Err(format!("{text} is not an assigned ISO 3166-1 country code")),
        }
    }

    pub fn as_str(&self) -> &'static str {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

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
            "ada\0@example.com",
            "ada@exa\x1bmple.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn countries_are_assigned_iso_3166_codes() {
        for good in ["FR", "DE", "JP", "SS", "CW"] {
            assert_eq!(Country::parse(good).unwrap().as_str(), good);
        }
        for bad in [
            "fr", "FRA", "F", "", "F1", "XX", "ZZ", "XK", "AN", "UK", "F\0",
        ] {
            assert!(Country::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_must_not_be_blank_but_nicknames_may_be() {
        assert!(PersonName::parse("  ").is_err());
        assert_eq!(PersonName::parse(" Ada ").unwrap().as_str(), "Ada");
        assert_eq!(Nickname::parse("  ").unwrap().as_str(), "");
        assert!(Nickname::parse(&"x".repeat(101)).is_err());
        assert!(PersonName::parse("Ada\x07\x1b[31m").is_err());
        assert!(Nickname::parse("\0").is_err());
        assert!(PersonName::parse("Ada\nLovelace").is_err());
        assert_eq!(PersonName::parse("Zoë 東京").unwrap().as_str(), "Zoë 東京");
    }

    proptest! {
        #[test]
        fn a_country_parses_only_to_itself(code in "[A-Z]{2}|.{0,3}") {
            if let Ok(country) = Country::parse(&code) {
                prop_assert_eq!(country.as_str(), code.as_str());
            }
        }

        #[test]
        fn a_parsed_email_is_lower_case_and_parses_to_itself(text in "[A-Za-z0-9.]{1,10}@[A-Za-z]{1,10}\\.[a-z]{2,3}|.{0,30}") {
            if let Ok(email) = Email::parse(&text) {
                prop_assert_eq!(email.as_str().to_lowercase(), email.as_str());
                prop_assert!(!email.as_str().chars().any(char::is_control));
                prop_assert_eq!(Email::parse(email.as_str()), Ok(email.clone()));
            }
        }
    }
}
