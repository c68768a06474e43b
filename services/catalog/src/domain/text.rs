//! Free-text values shared by categories and products, each a thin newtype over the chassis'
//! text rule (`chassis::text`): no control characters, length in characters, trimmed.

use chassis::text::{Text, TextField, TextRule};

/// A description: up to 5000 characters over any number of lines (`\r\n` stored as `\n`, tabs
/// allowed), surrounding whitespace trimmed; may be empty.
pub type Description = Text<DescriptionRule>;

/// The rule of a [`Description`].
#[derive(Debug)]
pub enum DescriptionRule {}

impl TextField for DescriptionRule {
    const RULE: TextRule = TextRule::multi_line(5000).allowing_empty();
}

/// A case-insensitive substring to search for in names and descriptions: one line of up to 200
/// characters, trimmed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchText(String);

// === impl SearchText ===

impl SearchText {
    pub const RULE: TextRule = TextRule::single_line(200).allowing_empty();

    pub fn parse(text: &str) -> Result<SearchText, String> {
        Ok(SearchText(Self::RULE.parse(text)?))
    }

    /// A `LIKE` pattern matching the text anywhere, lower-cased, with `%`, `_` and `\` escaped
    /// (the query says `ESCAPE '\'`).
    pub fn like_pattern(&self) -> String {
        let mut pattern = String::with_capacity(self.0.len() + 2);
        pattern.push('%');
        for c in self.0.to_lowercase().chars() {
            if matches!(c, '%' | '_' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('%');
        pattern
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::{Description, SearchText};

    #[test]
    fn search_text_escapes_like_wildcards() {
        let text = SearchText::parse(" 50%_Off\\ ").unwrap();
        assert_eq!(text.like_pattern(), "%50\\%\\_off\\\\%");
    }

    #[test]
    fn descriptions_are_trimmed_and_bounded() {
        assert_eq!(Description::parse("  tea  ").unwrap().as_str(), "tea");
        assert!(Description::parse(&"x".repeat(5001)).is_err());
        assert_eq!(
            Description::parse("Line one\r\n\tLine two")
                .unwrap()
                .as_str(),
            "Line one\n\tLine two"
        );
        assert!(Description::parse("a\0b").is_err());
    }

    #[test]
    fn search_text_is_one_line_without_control_characters() {
        assert!(SearchText::parse("tea\0").is_err());
        assert!(SearchText::parse("tea\ncake").is_err());
    }
}
