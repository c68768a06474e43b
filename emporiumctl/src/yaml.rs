//! A small YAML emitter for JSON values (`--output yaml`): block mappings and sequences, plain
//! scalars where YAML reads them back as the same string, double-quoted (JSON escapes, which
//! YAML shares) everywhere else. Written here because serde_yaml is unmaintained and the CLI only
//! writes YAML, never reads it; the output is YAML 1.2 and its data is exactly the JSON's.

use serde_json::{Map, Value};

/// `value` as a YAML document, ending in a newline.
pub(crate) fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => write_mapping(&mut out, map, 0),
        Value::Array(items) if !items.is_empty() => write_sequence(&mut out, items, 0),
        scalar => {
            out.push_str(&scalar_text(scalar));
            out.push('\n');
        }
    }
    out
}

// === helpers ===

fn write_mapping(out: &mut String, map: &Map<String, Value>, indent: usize) {
    for (key, value) in map {
        pad(out, indent);
        write_entry(out, key, value, indent);
    }
}

/// `key: value`, the cursor already indented; nested collections go on the following lines.
fn write_entry(out: &mut String, key: &str, value: &Value, indent: usize) {
    out.push_str(&string_text(key));
    out.push(':');
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            write_mapping(out, map, indent + 2);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            write_sequence(out, items, indent + 2);
        }
        scalar => {
            out.push(' ');
            out.push_str(&scalar_text(scalar));
            out.push('\n');
        }
    }
}

fn write_sequence(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        pad(out, indent);
        out.push('-');
        match item {
            Value::Object(map) if !map.is_empty() => {
                // The first entry shares the dash's line; the others align under it.
                out.push(' ');
                for (index, (key, value)) in map.iter().enumerate() {
                    if index > 0 {
                        pad(out, indent + 2);
                    }
                    write_entry(out, key, value, indent + 2);
                }
            }
            Value::Array(nested) if !nested.is_empty() => {
                out.push('\n');
                write_sequence(out, nested, indent + 2);
            }
            scalar => {
                out.push(' ');
                out.push_str(&scalar_text(scalar));
                out.push('\n');
            }
        }
    }
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(value) => value.to_string(),
        Value::Number(number) => number.to_string(),
        Value::String(text) => string_text(text),
        Value::Array(_) => "[]".to_owned(),
        Value::Object(_) => "{}".to_owned(),
    }
}

/// A string plain when YAML would read it back as that same string, else double-quoted.
fn string_text(text: &str) -> String {
    if is_plain_safe(text) {
        text.to_owned()
    } else {
        // JSON's string escapes are all YAML double-quoted escapes too.
        serde_json::to_string(text).unwrap_or_else(|_| format!("\"{text}\""))
    }
}

fn is_plain_safe(text: &str) -> bool {
    const INDICATORS: &[char] = &[
        '-', '?', ':', ',', '[', ']', '{', '}', '#', '&', '*', '!', '|', '>', '\'', '"', '%', '@',
        '`',
    ];
    const SPECIAL_WORDS: &[&str] = &[
        "null", "~", "true", "false", "yes", "no", "on", "off", "y", "n",
    ];
    let Some(first) = text.chars().next() else {
        return false;
    };
    let starts_like_a_number = first.is_ascii_digit() || matches!(first, '+' | '.');
    !(INDICATORS.contains(&first)
        || starts_like_a_number
        || text.starts_with(' ')
        || text.ends_with(' ')
        || text.contains(": ")
        || text.contains(" #")
        || text.ends_with(':')
        || text.chars().any(char::is_control)
        || SPECIAL_WORDS.contains(&text.to_lowercase().as_str()))
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_values_are_block_yaml_in_the_value_s_key_order() {
        let value = json!({
            "products": [
                {"id": "p-1", "price": {"amountMinor": "1299", "currency": "EUR"}, "tags": ["a", "b"]},
                {"id": "p-2", "price": null, "tags": []}
            ],
            "nextPageToken": "",
            "totalSize": 2,
            "empty": {}
        });

        assert_eq!(
            to_yaml(&value),
            "empty: {}\n\
             nextPageToken: \"\"\n\
             products:\n\
             \x20 - id: p-1\n\
             \x20   price:\n\
             \x20     amountMinor: \"1299\"\n\
             \x20     currency: EUR\n\
             \x20   tags:\n\
             \x20     - a\n\
             \x20     - b\n\
             \x20 - id: p-2\n\
             \x20   price: null\n\
             \x20   tags: []\n\
             totalSize: 2\n"
        );
    }

    #[test]
    fn strings_yaml_would_read_otherwise_are_quoted() {
        for (text, expected) in [
            ("Sencha tea", "Sencha tea"),
            ("true", "\"true\""),
            ("No", "\"No\""),
            ("12", "\"12\""),
            ("2025-01-31T09:30:00Z", "\"2025-01-31T09:30:00Z\""),
            ("- dash", "\"- dash\""),
            ("key: value", "\"key: value\""),
            ("two\nlines", "\"two\\nlines\""),
            (" padded", "\" padded\""),
            ("", "\"\""),
            ("a#b", "a#b"),
            (
                "emporium.catalog.product.updated",
                "emporium.catalog.product.updated",
            ),
        ] {
            assert_eq!(string_text(text), expected, "{text:?}");
        }
    }
}
