//! Products: what is sold, at what price, with how much stock on hand.

use chassis::storage::Timestamp;
use chassis::text::{Text, TextField, TextRule};
use uuid::Uuid;

use super::{Description, Direction, SearchText};

/// Stock keeping unit: 1 to 64 of `A-Z a-z 0-9 - _ . /`, unique across the catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sku(String);

/// One line of 1 to 200 characters after trimming, without control characters.
pub type ProductName = Text<ProductNameRule>;

/// The rule of a [`ProductName`].
#[derive(Debug)]
pub enum ProductNameRule {}

impl TextField for ProductNameRule {
    const RULE: TextRule = TextRule::single_line(200);
}

/// A circulating currency of ISO 4217 list one, by its code (`EUR`): the list comes from the
/// `iso_currency` crate. Codes that are not money to price in are refused: superseded ones
/// (`HRK`), funds (`USN`), and the special codes (`XAU` gold, `XTS` testing, `XXX` none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Currency(iso_currency::Currency);

/// An amount of 0 to [`Money::MAX_AMOUNT_MINOR`] in the currency's minor units. Never a float.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Money {
    pub amount_minor: i64,
    pub currency: Currency,
}

/// Units on hand: 0 to [`StockQuantity::MAX_UNITS`].
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
}

// === impl NewProduct ===

impl NewProduct {
    /// The product this creates: `id`, at version 1, created and last updated `at`.
    pub fn into_product(self, id: Uuid, at: Timestamp) -> Product {
        Product {
            id,
            sku: self.sku.0,
            name: self.name.into_string(),
            description: self.description.into_string(),
            category_id: self.category_id,
            price_minor: self.price.amount_minor,
            currency: self.price.currency.as_str().to_owned(),
            stock_on_hand: self.stock_on_hand.units(),
            version: 1,
            created_at: at,
            updated_at: at,
        }
    }
}

// === impl Sku ===

impl Sku {
    /// Not trimmed: the alphabet has no whitespace, so a space is an error, not a typo to fix.
    pub const RULE: TextRule = TextRule::single_line(64).untrimmed();

    pub fn parse(text: &str) -> Result<Sku, String> {
        let text = Self::RULE.parse(text)?;
        if let Some(bad) = text
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')))
        {
            return Err(format!("must use only A-Z a-z 0-9 - _ . / (found {bad:?})"));
        }
        Ok(Sku(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// === impl Currency ===

impl Currency {
    pub fn parse(text: &str) -> Result<Currency, String> {
        let shape = "must be an ISO 4217 currency code of three upper-case letters, e.g. EUR";
        if !(text.len() == 3 && text.bytes().all(|b| b.is_ascii_uppercase())) {
            return Err(shape.to_owned());
        }
        match iso_currency::Currency::from_code(text) {
            None => Err(format!("{text} is not an ISO 4217 currency code")),
            Some(currency) if currency.is_special() || currency.is_fund() => Err(format!(
                "{text} is not a currency to price in ({})",
                currency.name()
            )),
            Some(currency) => match currency.is_superseded() {
                Some(successor) => Err(format!(
                    "{text} is no longer in use; it was replaced by {}",
                    successor.code()
                )),
                None => Ok(Currency(currency)),
            },
        }
    }

    pub fn as_str(&self) -> &'static str {
        self.0.code()
    }
}

// === impl Money ===

impl Money {
    /// 10^15 minor units (ten trillion euros): far above any price, still exact in an IEEE
    /// double (below 2^53), so JSON clients read it exactly, and 9,000 of them still sum within
    /// an `i64`.
    pub const MAX_AMOUNT_MINOR: i64 = 1_000_000_000_000_000;

    pub fn parse_amount(amount_minor: i64) -> Result<i64, String> {
        if amount_minor < 0 {
            Err("must not be negative".to_owned())
        } else if amount_minor > Self::MAX_AMOUNT_MINOR {
            Err(format!(
                "must be at most {} minor units",
                Self::MAX_AMOUNT_MINOR
            ))
        } else {
            Ok(amount_minor)
        }
    }
}

// === impl StockQuantity ===

impl StockQuantity {
    /// 10^9 units: fits an `i32`, and the stock of nine billion products still sums within an
    /// `i64`. (A price times a quantity does not always fit: 10^15 × 10^9 overflows, so whatever
    /// multiplies them bounds its own quantity; 9,000 units of the dearest price still fit.)
    pub const MAX_UNITS: i64 = 1_000_000_000;

    pub fn parse(units: i64) -> Result<StockQuantity, String> {
        if units < 0 {
            Err("must not be negative".to_owned())
        } else if units > Self::MAX_UNITS {
            Err(format!("must be at most {} units", Self::MAX_UNITS))
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
    use proptest::prelude::*;

    use super::{Currency, Money, Sku, StockQuantity};

    #[test]
    fn skus_take_a_restricted_alphabet() {
        assert!(Sku::parse("TEA-001/green.500_g").is_ok());
        assert!(Sku::parse("").is_err());
        assert!(Sku::parse("has space").is_err());
        assert!(Sku::parse(&"A".repeat(65)).is_err());
        assert!(Sku::parse("TEA\0").is_err());
    }

    #[test]
    fn currencies_are_circulating_iso_4217_codes() {
        for good in ["EUR", "USD", "JPY", "KWD", "CHF", "XCG", "ZWG"] {
            assert_eq!(Currency::parse(good).unwrap().as_str(), good);
        }
        for bad in [
            "eur", "EURO", "E1R", "", "QQQ", "ZZZ", "XXX", "XTS", "XAU", "HRK", "USN", "EU\0",
        ] {
            assert!(Currency::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Currency::parse("HRK").unwrap_err().contains("EUR"));
    }

    #[test]
    fn stock_is_never_negative_nor_above_its_bound() {
        assert_eq!(StockQuantity::parse(0).unwrap().units(), 0);
        assert!(StockQuantity::parse(-1).is_err());
        assert!(StockQuantity::parse(StockQuantity::MAX_UNITS).is_ok());
        assert!(StockQuantity::parse(StockQuantity::MAX_UNITS + 1).is_err());
        assert!(StockQuantity::parse(i64::MAX).is_err());
    }

    #[test]
    fn amounts_are_never_negative_nor_above_their_bound() {
        assert!(Money::parse_amount(Money::MAX_AMOUNT_MINOR).is_ok());
        assert!(Money::parse_amount(Money::MAX_AMOUNT_MINOR + 1).is_err());
        assert!(Money::parse_amount(i64::MAX).is_err());
        // The bound is exact in a double, so a JavaScript client reads it back unchanged.
        assert_eq!(
            Money::MAX_AMOUNT_MINOR as f64 as i64,
            Money::MAX_AMOUNT_MINOR
        );
    }

    proptest! {
        #[test]
        fn an_amount_is_accepted_exactly_when_within_bounds(amount in any::<i64>()) {
            let within = (0..=Money::MAX_AMOUNT_MINOR).contains(&amount);
            prop_assert_eq!(Money::parse_amount(amount).is_ok(), within);
        }

        #[test]
        fn stock_is_accepted_exactly_when_within_bounds(units in any::<i64>()) {
            let within = (0..=StockQuantity::MAX_UNITS).contains(&units);
            prop_assert_eq!(StockQuantity::parse(units).map(StockQuantity::units).ok(), within.then_some(units));
        }

        #[test]
        fn sums_of_bounded_values_fit_an_i64(
            amounts in prop::collection::vec(0..=Money::MAX_AMOUNT_MINOR, 0..9_000),
            units in 0..=9_000_i64,
        ) {
            let total = amounts.iter().try_fold(0_i64, |sum, amount| sum.checked_add(*amount));
            prop_assert!(total.is_some());
            prop_assert!(Money::MAX_AMOUNT_MINOR.checked_mul(units).is_some());
        }

        #[test]
        fn a_currency_parses_only_to_itself(code in "[A-Z]{3}|.{0,5}") {
            if let Ok(currency) = Currency::parse(&code) {
                prop_assert_eq!(currency.as_str(), code.as_str());
            }
        }

        #[test]
        fn skus_are_accepted_exactly_in_their_alphabet(sku in "[A-Za-z0-9._/-]{1,64}|.{0,70}") {
            let in_alphabet = !sku.is_empty()
                && sku.len() <= 64
                && sku.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
            prop_assert_eq!(Sku::parse(&sku).is_ok(), in_alphabet);
        }
    }
}
