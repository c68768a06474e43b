//! Categories group products. A category's name is unique; a category with products cannot be
//! deleted.

use chassis::storage::Timestamp;
use chassis::text::{Text, TextField, TextRule};
use uuid::Uuid;

use super::{Description, Direction, SearchText};

/// One line of 1 to 200 characters after trimming, without control characters.
pub type CategoryName = Text<CategoryNameRule>;

/// The rule of a [`CategoryName`].
#[derive(Debug)]
pub enum CategoryNameRule {}

impl TextField for CategoryNameRule {
    const RULE: TextRule = TextRule::single_line(200);
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Category {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    /// Starts at 1; every change adds 1.
    pub version: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Clone, Debug)]
pub struct NewCategory {
    pub name: CategoryName,
    pub description: Description,
}

/// The fields to change; `None` keeps the current value.
#[derive(Clone, Debug)]
pub struct CategoryChanges {
    /// The version the caller read; the change is refused if the category moved on.
    pub expected_version: i64,
    pub name: Option<CategoryName>,
    pub description: Option<Description>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CategoryOrder {
    Name,
    CreatedAt,
    UpdatedAt,
}

#[derive(Clone, Debug)]
pub struct CategoryListQuery {
    pub text: Option<SearchText>,
    pub order: CategoryOrder,
    pub direction: Direction,
}

// === impl NewCategory ===

impl NewCategory {
    /// The category this creates: `id`, at version 1, created and last updated `at`.
    pub fn into_category(self, id: Uuid, at: Timestamp) -> Category {
        Category {
            id,
            name: self.name.into_string(),
            description: self.description.into_string(),
            version: 1,
            created_at: at,
            updated_at: at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CategoryName;

    #[test]
    fn names_are_trimmed_and_must_not_be_blank() {
        assert_eq!(CategoryName::parse("  Tea ").unwrap().as_str(), "Tea");
        assert!(CategoryName::parse("   ").is_err());
        assert!(CategoryName::parse(&"x".repeat(201)).is_err());
        assert!(CategoryName::parse("\x07\x1b[31mTea").is_err());
        assert_eq!(CategoryName::parse("東京").unwrap().as_str(), "東京");
    }
}
