//! Free-text search shared by the account list, a thin newtype over the chassis' text rule.

use chassis::text::TextRule;

/// A case-insensitive substring to search for: one line of up to 200 characters, trimmed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchText(String);

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
    use super::SearchText;

    #[test]
    fn search_text_escapes_like_wildcards() {
        let text = SearchText::parse(" 50%_Off\\ ").unwrap();
        assert_eq!(text.like_pattern(), "%50\\%\\_off\\\\%");
        assert!(SearchText::parse("ada\0").is_err());
    }
}
