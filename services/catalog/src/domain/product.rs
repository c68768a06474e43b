//! Products: what is sold, at what price, with how much stock on hand.

use chassis::storage::Timestamp;
use uuid::Uuid;

use super::{Description, Direction, SearchText};

/// Stock keeping unit: 1 to 64 of `A-Z a-z 0-9 - _ . /`, unique across the catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sku(String);

/// 1 to 200 characters after trimming.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProductName(String);

/// An ISO 4217 currency code: three upper-case letters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Currency(String);

/// A non-negative amount in the currency's minor units. Never a float.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Money {
    pub amount_minor: i64,
    pub currency: Currency,
}

/// Units on hand: never negative.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StockQuantity(i64);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Product {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub category_id: Uuid,
    pub price_minor: i64,
    pub currency: String,
    pub stock_on_hand: i64,
    /// Starts at 1; every change adds 1.
    pub version: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Clone, Debug)]
pub struct NewProduct {
    pub sku: Sku,
    pub name: ProductName,
    pub description: Description,
    pub category_id: Uuid,
    pub price: Money,
    pub stock_on_hand: StockQuantity,
}

/// The fields to change; `None` keeps the current value.
#[derive(Clone, Debug)]
pub struct ProductChanges {
    /// The version the caller read; the change is refused if the product moved on.
    pub expected_version: i64,
    pub sku: Option<Sku>,
    pub name: Option<ProductName>,
    pub description: Option<Description>,
    pub category_id: Option<Uuid>,
    pub price: Option<Money>,
    pub stock_on_hand: Option<StockQuantity>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProductOrder {
    Name,
    Sku,
    Price,
    CreatedAt,
    UpdatedAt,
}

#[derive(Clone, Debug)]
pub struct ProductListQuery {
    pub category_id: Option<Uuid>,
    pub text: Option<SearchText>,
    pub sku: Option<Sku>,
    pub order: ProductOrder,
    pub direction: Direction,
    pub page_size: i64,
}

// === impl Sku ===

impl Sku {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(text: &str) -> Result<Sku, String> {
        if text.is_empty() {
            return Err("must not be empty".to_owned());
        }
        if text.len() > Self::MAX_CHARS {
            return Err(format!("must be at most {} characters", Self::MAX_CHARS));
        }
        if let Some(bad) = text
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')))
        {
            return Err(format!("must use only A-Z a-z 0-9 - _ . / (found {bad:?})"));
        }
        Ok(Sku(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// === impl ProductName ===

impl ProductName {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(text: &str) -> Result<ProductName, String> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err("must not be empty".to_owned());
        }
        if trimmed.chars().count() > Self::MAX_CHARS {
            return Err(format!("must be at most {} characters", Self::MAX_CHARS));
        }
        Ok(ProductName(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// === impl Currency ===

impl Currency {
    pub fn parse(text: &str) -> Result<Currency, String> {
        if text.len() == 3 && text.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Currency(text.to_owned()))
        } else {
            Err("must be an ISO 4217 code of three upper-case letters, e.g. EUR".to_owned())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// === impl Money ===

impl Money {
    pub fn parse_amount(amount_minor: i64) -> Result<i64, String> {
        if amount_minor < 0 {
            Err("must not be negative".to_owned())
        } else {
            Ok(amount_minor)
        }
    }
}

// === impl StockQuantity ===

impl StockQuantity {
    pub fn parse(units: i64) -> Result<StockQuantity, String> {
        if units < 0 {
            Err("must not be negative".to_owned())
        } else {
            Ok(StockQuantity(units))
        }
    }

    pub fn units(self) -> i64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::{Currency, Sku, StockQuantity};

    #[test]
    fn skus_take_a_restricted_alphabet() {
        assert!(Sku::parse("TEA-001/green.500_g").is_ok());
        assert!(Sku::parse("").is_err());
        assert!(Sku::parse("has space").is_err());
        assert!(Sku::parse(&"A".repeat(65)).is_err());
    }

    #[test]
    fn currencies_are_three_upper_case_letters() {
        assert!(Currency::parse("EUR").is_ok());
        for bad in ["eur", "EURO", "E1R", ""] {
            assert!(Currency::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stock_is_never_negative() {
        assert_eq!(StockQuantity::parse(0).unwrap().units(), 0);
        assert!(StockQuantity::parse(-1).is_err());
    }
}
