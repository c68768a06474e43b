//! Opaque page tokens for keyset pagination. A token carries the sort key of the last row served
//! and a fingerprint of the query, so a page is stable under concurrent inserts and a token reused
//! with a different filter is refused instead of silently skipping rows.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Error;

/// Encodes `cursor` for the query whose filter/sort is summarised by `fingerprint`.
pub fn encode_token<C: Serialize>(fingerprint: &str, cursor: &C) -> String {
    let json = serde_json::json!({ "q": fingerprint, "c": cursor });
    hex_encode(json.to_string().as_bytes())
}

/// Decodes a token made by [`encode_token`] for the same `fingerprint`; `None` for an empty one.
pub fn decode_token<C: DeserializeOwned>(
    field: &str,
    fingerprint: &str,
    token: &str,
) -> Result<Option<C>, Error> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || Error::invalid(field, "is not a token returned by this list");
    let bytes = hex_decode(token).ok_or_else(invalid)?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    if value.get("q").and_then(serde_json::Value::as_str) != Some(fingerprint) {
        return Err(Error::invalid(
            field,
            "belongs to a list with other filters or ordering",
        ));
    }
    let cursor = value.get("c").cloned().ok_or_else(invalid)?;
    serde_json::from_value(cursor)
        .map(Some)
        .map_err(|_| invalid())
}

fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    text
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{decode_token, encode_token};

    #[test]
    fn a_token_round_trips_for_its_own_query_only() {
        let token = encode_token("name|asc|q=tea", &("Tea", 7));
        let cursor: Option<(String, i64)> =
            decode_token("page_token", "name|asc|q=tea", &token).unwrap();
        assert_eq!(cursor, Some(("Tea".to_owned(), 7)));
        assert!(decode_token::<(String, i64)>("page_token", "name|desc|q=tea", &token).is_err());
        assert!(decode_token::<(String, i64)>("page_token", "x", "zz").is_err());
        assert_eq!(
            decode_token::<(String, i64)>("page_token", "x", "").unwrap(),
            None
        );
    }
}
