//! Free-text values shared by categories and products.

/// A description: up to 5000 characters, surrounding whitespace trimmed; may be empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Description(String);

/// A case-insensitive substring to search for in names and descriptions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchText(String);

impl Description {
    pub const MAX_CHARS: usize = 5000;

    pub fn parse(text: &str) -> Result<Description, String> {
        let trimmed = text.trim();
        if trimmed.chars().count() > Self::MAX_CHARS {
            return Err(format!("must be at most {} characters", Self::MAX_CHARS));
        }
        Ok(Description(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl SearchText {
    pub fn parse(text: &str) -> Result<SearchText, String> {
        let trimmed = text.trim();
        if trimmed.chars().count() > 200 {
            return Err("must be at most 200 characters".to_owned());
        }
        Ok(SearchText(trimmed.to_owned()))
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
    }
}
