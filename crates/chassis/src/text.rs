//! The one rule for free text that every service's domain applies before a value is stored,
//! compared or put in an event: which characters may appear, how surrounding whitespace is
//! treated, and how length is counted. Field types (`ProductName`, `PersonName`, …) are a
//! [`Text`] of their [`TextRule`], or thin newtypes over one, so no field can forget a part of
//! it, and both backends only ever see text they store alike: PostgreSQL refuses a NUL byte in
//! `text`, SQLite stores it and its `length()` stops counting there.
//!
//! Refused everywhere:
//! - control characters (Unicode `Cc`: C0 including NUL, DEL, C1), which corrupt terminals, logs
//!   and CSV exports (`\x1b[31m`); a multi-line field allows `\n`, `\t` and `\r\n` (stored as
//!   `\n`, so a text typed in a browser's text area and one sent by a script compare equal);
//! - the line and paragraph separators U+2028 and U+2029, so a single-line field is one line in
//!   every renderer and a multi-line one breaks lines one way only;
//! - the bidirectional embedding, override and isolate controls (U+202A–U+202E, U+2066–U+2069),
//!   which make text display in another order than it is stored ("Trojan Source"); the marks
//!   U+200E and U+200F, which only nudge neutral characters, stay allowed, as do the zero-width
//!   joiners that scripts and emoji need;
//! - Unicode noncharacters (U+FDD0–U+FDEF and the last two code points of every plane), which are
//!   never text.
//!
//! Length is counted in characters (Unicode scalar values), after trimming, as both backends'
//! `char_length`/`length` count them. No Unicode normalisation is applied.

use std::fmt;
use std::marker::PhantomData;

/// How one field's text is parsed. Build it with [`TextRule::single_line`] or
/// [`TextRule::multi_line`] and adjust it with the `const` methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TextRule {
    /// Most characters, counted after trimming and line-break normalisation.
    max_chars: usize,
    /// Whether the value may be empty (after trimming).
    allow_empty: bool,
    /// Whether `\n`, `\t` and `\r\n` may appear.
    multi_line: bool,
    /// Whether surrounding whitespace is removed first. A field whose spaces are meaningful (a
    /// password) or whose alphabet excludes them (a SKU) keeps the text as given.
    trim: bool,
}

/// The value of a text field whose only rule is its [`TextRule`]: `pub type ProductName =
/// Text<ProductNameRule>;`, where `ProductNameRule` is a [`TextField`] naming the rule. A field
/// with rules of its own (an alphabet, a shape) is a newtype that parses with its rule first.
pub struct Text<F>(String, PhantomData<F>);

/// Which [`TextRule`] a [`Text`] field follows: implemented by an uninhabited marker type,
/// `pub enum ProductNameRule {}`.
pub trait TextField {
    const RULE: TextRule;
}

/// Why a text was refused. Its `Display` is the sentence a caller reads in the field violation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TextError {
    Empty,
    TooLong {
        max_chars: usize,
    },
    /// A character no field accepts (or, in a single-line field, a line break or tab), with its
    /// position in characters from the start of the text as given.
    ForbiddenCharacter {
        character: char,
        position: usize,
    },
}

/// A character's place in the rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CharacterClass {
    Allowed,
    /// `\n` and `\t`: allowed in multi-line fields only.
    LineBreakOrTab,
    /// `\r`: allowed in multi-line fields only when `\n` follows.
    CarriageReturn,
    Forbidden,
}

// === impl TextRule ===

impl TextRule {
    /// One line of at most `max_chars` characters, trimmed, not empty.
    pub const fn single_line(max_chars: usize) -> TextRule {
        TextRule {
            max_chars,
            allow_empty: false,
            multi_line: false,
            trim: true,
        }
    }

    /// Lines of at most `max_chars` characters in all, trimmed, not empty.
    pub const fn multi_line(max_chars: usize) -> TextRule {
        TextRule {
            max_chars,
            allow_empty: false,
            multi_line: true,
            trim: true,
        }
    }

    /// The same rule, but the empty text (or only whitespace, when trimmed) is accepted.
    pub const fn allowing_empty(self) -> TextRule {
        TextRule {
            allow_empty: true,
            ..self
        }
    }

    /// The same rule, but surrounding whitespace is kept and counted.
    pub const fn untrimmed(self) -> TextRule {
        TextRule {
            trim: false,
            ..self
        }
    }

    pub const fn max_chars(&self) -> usize {
        self.max_chars
    }

    /// The text as it is to be stored: trimmed if the rule says so, `\r\n` turned into `\n` in a
    /// multi-line field; or the first reason it breaks the rule.
    pub fn parse(&self, text: &str) -> Result<String, TextError> {
        // A character no field accepts is refused wherever it is, surrounding whitespace
        // included (U+0085 and U+2028 are whitespace to `trim`, but no keyboard types them).
        if let Some((position, character)) = text
            .chars()
            .enumerate()
            .find(|(_, character)| classify(*character) == CharacterClass::Forbidden)
        {
            return Err(TextError::ForbiddenCharacter {
                character,
                position,
            });
        }
        // Surrounding line breaks and tabs (a pasted trailing newline, say) are trimmed, not
        // refused; inside a single-line field they are refused.
        let (kept, n_leading_chars) = if self.trim {
            let leading = &text[..text.len() - text.trim_start().len()];
            (text.trim(), leading.chars().count())
        } else {
            (text, 0)
        };
        let mut characters = kept.chars().enumerate().peekable();
        while let Some((index, character)) = characters.next() {
            let allowed = match classify(character) {
                CharacterClass::Allowed => true,
                CharacterClass::LineBreakOrTab => self.multi_line,
                CharacterClass::CarriageReturn => {
                    self.multi_line && characters.peek().is_some_and(|(_, next)| *next == '\n')
                }
                CharacterClass::Forbidden => false,
            };
            if !allowed {
                return Err(TextError::ForbiddenCharacter {
                    character,
                    position: n_leading_chars + index,
                });
            }
        }
        let normalised = if self.multi_line {
            kept.replace("\r\n", "\n")
        } else {
            kept.to_owned()
        };
        if normalised.is_empty() && !self.allow_empty {
            return Err(TextError::Empty);
        }
        if normalised.chars().count() > self.max_chars {
            return Err(TextError::TooLong {
                max_chars: self.max_chars,
            });
        }
        Ok(normalised)
    }
}

/// Whether `character` may appear in any text at all, line breaks aside: what a field with its
/// own alphabet or format (an email address, a URL) checks before anything else.
pub fn is_forbidden_character(character: char) -> bool {
    classify(character) != CharacterClass::Allowed
}

fn classify(character: char) -> CharacterClass {
    match character {
        '\n' | '\t' => CharacterClass::LineBreakOrTab,
        '\r' => CharacterClass::CarriageReturn,
        '\u{2028}' | '\u{2029}' => CharacterClass::Forbidden,
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' => CharacterClass::Forbidden,
        '\u{FDD0}'..='\u{FDEF}' => CharacterClass::Forbidden,
        // The last two code points of every plane (U+FFFE, U+FFFF, U+1FFFE, …).
        _ if (u32::from(character) & 0xFFFE) == 0xFFFE => CharacterClass::Forbidden,
        _ if character.is_control() => CharacterClass::Forbidden,
        _ => CharacterClass::Allowed,
    }
}

// === impl Text ===

impl<F: TextField> Text<F> {
    pub const RULE: TextRule = F::RULE;

    pub fn parse(text: &str) -> Result<Text<F>, String> {
        Ok(Text(F::RULE.parse(text)?, PhantomData))
    }
}

impl<F> Text<F> {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

// By hand, so that the marker type needs none of these traits.
impl<F> Clone for Text<F> {
    fn clone(&self) -> Text<F> {
        Text(self.0.clone(), PhantomData)
    }
}

impl<F> fmt::Debug for Text<F> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_tuple("Text").field(&self.0).finish()
    }
}

impl<F> PartialEq for Text<F> {
    fn eq(&self, other: &Text<F>) -> bool {
        self.0 == other.0
    }
}

impl<F> Eq for Text<F> {}

// === impl TextError ===

impl fmt::Display for TextError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TextError::Empty => formatter.write_str("must not be empty"),
            TextError::TooLong { max_chars } => {
                write!(formatter, "must be at most {max_chars} characters")
            }
            TextError::ForbiddenCharacter {
                character,
                position,
            } => write!(
                formatter,
                "must not contain control or invisible formatting characters \
                 (found U+{:04X} at character {position})",
                u32::from(*character)
            ),
        }
    }
}

impl std::error::Error for TextError {}

impl From<TextError> for String {
    fn from(error: TextError) -> String {
        error.to_string()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{TextError, TextRule, is_forbidden_character};

    const NAME: TextRule = TextRule::single_line(10);
    const DESCRIPTION: TextRule = TextRule::multi_line(10).allowing_empty();

    #[test]
    fn text_is_trimmed_and_counted_in_characters() {
        assert_eq!(NAME.parse("  Tea ").unwrap(), "Tea");
        assert_eq!(
            NAME.parse("東京東京東京東京東京").unwrap(),
            "東京東京東京東京東京"
        );
        assert_eq!(
            NAME.parse("東京東京東京東京東京東"),
            Err(TextError::TooLong { max_chars: 10 })
        );
        assert_eq!(NAME.parse("Crème").unwrap(), "Crème");
        assert_eq!(NAME.parse("   "), Err(TextError::Empty));
        assert_eq!(DESCRIPTION.parse("   ").unwrap(), "");
        assert_eq!(NAME.untrimmed().parse(" a ").unwrap(), " a ");
    }

    #[test]
    fn control_characters_are_refused_with_their_position() {
        assert_eq!(
            NAME.parse("ab\0c"),
            Err(TextError::ForbiddenCharacter {
                character: '\0',
                position: 2
            })
        );
        for text in [
            "\x07bell",
            "\x1b[31mred",
            "a\x7f",
            "a\u{85}",
            "a\u{202E}b",
            "a\u{2066}b",
            "a\u{2028}b",
            "a\u{FFFF}",
            "a\u{10FFFE}",
            "a\u{FDD0}",
        ] {
            assert!(NAME.parse(text).is_err(), "{text:?}");
            assert!(DESCRIPTION.parse(text).is_err(), "{text:?}");
        }
        // A NUL in surrounding whitespace is still a NUL: trimming does not hide it.
        assert!(NAME.parse("\0 Tea").is_err());
    }

    #[test]
    fn only_multi_line_fields_take_line_breaks_and_tabs() {
        for text in ["a\nb", "a\tb", "a\r\nb"] {
            assert!(NAME.parse(text).is_err(), "{text:?}");
        }
        assert_eq!(NAME.parse("\tTea\r\n").unwrap(), "Tea");
        assert_eq!(DESCRIPTION.parse("a\r\nb\tc\nd").unwrap(), "a\nb\tc\nd");
        assert!(DESCRIPTION.parse("a\rb").is_err());
        assert!(DESCRIPTION.parse("a\r b").is_err());
    }

    #[test]
    fn marks_and_joiners_that_scripts_need_are_text() {
        for character in [
            '\u{200C}', '\u{200D}', '\u{200E}', '\u{200F}', 'é', '東', '👩',
        ] {
            assert!(!is_forbidden_character(character), "{character:?}");
        }
    }

    proptest! {
        #[test]
        fn accepted_text_obeys_every_part_of_the_rule(text in any::<String>()) {
            for rule in [NAME, DESCRIPTION, NAME.untrimmed(), TextRule::multi_line(10)] {
                if let Ok(parsed) = rule.parse(&text) {
                    prop_assert!(parsed.chars().count() <= rule.max_chars());
                    prop_assert!(!parsed.contains('\0'));
                    prop_assert!(!parsed.contains('\r'));
                    prop_assert!(parsed.chars().all(|c| c == '\n' || c == '\t' || !is_forbidden_character(c)));
                    if !rule.multi_line {
                        prop_assert!(!parsed.contains('\n') && !parsed.contains('\t'));
                    }
                    if rule.trim {
                        prop_assert_eq!(parsed.trim(), parsed.as_str());
                    }
                    if !rule.allow_empty {
                        prop_assert!(!parsed.is_empty());
                    }
                    // Parsing is idempotent: what was stored parses back to itself.
                    prop_assert_eq!(rule.parse(&parsed), Ok(parsed.clone()));
                }
            }
        }

        #[test]
        fn printable_text_within_the_bound_is_accepted(
            text in "[\\p{L}\\p{N}\\p{P} ]{1,10}"
        ) {
            prop_assume!(!text.trim().is_empty());
            prop_assert_eq!(NAME.parse(&text), Ok(text.trim().to_owned()));
        }

        #[test]
        fn any_forbidden_character_anywhere_is_refused(
            before in "[a-z]{0,4}",
            after in "[a-z]{0,4}",
            character in prop_oneof![
                (0_u32..0x20).prop_filter("line breaks", |c| ![0x0A, 0x09, 0x0D].contains(c)),
                0x7F_u32..0xA0,
                0x202A_u32..0x202F,
                0x2066_u32..0x206A,
            ].prop_map(|code| char::from_u32(code).unwrap_or('\0')),
        ) {
            let text = format!("{before}{character}{after}");
            prop_assert!(
                matches!(
                    DESCRIPTION.parse(&text),
                    Err(TextError::ForbiddenCharacter { .. })
                ),
                "{:?}",
                text
            );
        }
    }
}
