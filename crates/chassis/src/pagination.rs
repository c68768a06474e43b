//! Opaque page tokens for keyset pagination. A token carries the sort key of the last row served
//! and a fingerprint of the query, so a page is stable under concurrent inserts and a token reused
//! with a different filter is refused instead of silently skipping rows. A list's token also
//! carries the count its first page took ([`Continuation`]), so later pages do not count again.

use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::Error;
use crate::storage::Timestamp;

/// Sort direction of a list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    Ascending,
    Descending,
}

/// A page of a list: the items, whether more follow, and how many match in all.
#[derive(Clone, Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_more: bool,
    pub total: i64,
}

impl<T> Page<T> {
    /// The page from `rows` fetched with one row more than `page_size` (whether that extra row
    /// came says whether more follow; it is not served).
    pub fn from_rows(mut rows: Vec<T>, page_size: i64, total: i64) -> Page<T> {
        let page_size = usize::try_from(page_size).unwrap_or(0);
        let has_more = rows.len() > page_size;
        rows.truncate(page_size);
        Page {
            items: rows,
            has_more,
            total,
        }
    }

    /// The page with each item converted, e.g. from its row to its record.
    pub fn map<U>(self, convert: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(convert).collect(),
            has_more: self.has_more,
            total: self.total,
        }
    }
}

/// Where a keyset page starts: the sort key and id of the last row served.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    pub key: SortKey,
    pub id: Uuid,
}

impl Cursor {
    /// The cursor after the row `id`, whose sort key is `key`.
    pub fn new(key: SortKey, id: Uuid) -> Cursor {
        Cursor { key, id }
    }
}

/// The value of the column a list is sorted by.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SortKey {
    Text(String),
    Integer(i64),
    /// RFC 3339, microseconds.
    Time(String),
}

impl SortKey {
    /// A time sort key (RFC 3339, microseconds).
    pub fn time(timestamp: Timestamp) -> SortKey {
        SortKey::Time(timestamp.to_rfc3339())
    }

    /// The time of a [`SortKey::Time`] read back from a token; a token whose time does not parse
    /// was not made by the list.
    pub fn parse_time(text: &str) -> Result<Timestamp, Error> {
        Timestamp::parse_rfc3339(text)
            .map_err(|_| Error::invalid("page_token", "is not a token returned by this list"))
    }
}

/// A list request's `page_size`, checked, and its `page_token`, from
/// [`Violations::page`](crate::Violations::page): [`PageStart::for_list`] reads the token once
/// the query it must belong to is parsed.
#[derive(Clone, Copy, Debug)]
pub struct PageStart<'a> {
    pub size: i64,
    pub token: &'a str,
}

impl PageStart<'_> {
    /// The page of the list of `resource` filtered and ordered by `query`
    /// ([`PageRequest::parse`]).
    pub fn for_list(self, resource: &str, query: &impl Debug) -> Result<PageRequest, Error> {
        PageRequest::parse(resource, query, self.size, self.token)
    }
}

/// A list request's page: its size, where it starts (from `page_token`), and the query's
/// fingerprint, so that the next page's token is refused with other filters or ordering.
#[derive(Clone, Debug)]
pub struct PageRequest {
    pub size: i64,
    pub after: Option<Continuation<Cursor>>,
    fingerprint: String,
}

impl PageRequest {
    /// The page `page_token` (field `page_token`) continues, for the list of `resource` filtered
    /// and ordered by `query` (its `Debug` form is the fingerprint: the page size may change
    /// between pages, nothing else may).
    pub fn parse(
        resource: &str,
        query: &impl Debug,
        size: i64,
        page_token: &str,
    ) -> Result<PageRequest, Error> {
        let fingerprint = format!("{resource}|{query:?}");
        let after = decode_token("page_token", &fingerprint, page_token)?;
        Ok(PageRequest {
            size,
            after,
            fingerprint,
        })
    }

    /// Whether this is a list's first page (which counts the matches).
    pub fn is_first(&self) -> bool {
        self.after.is_none()
    }

    /// The `next_page_token` after `page`: empty when no more follow, else where the next page
    /// starts (`cursor_of` its last item), carrying the total counted on the first page.
    pub fn next_page_token<T>(
        &self,
        page: &Page<T>,
        cursor_of: impl FnOnce(&T) -> Cursor,
    ) -> String {
        match page.items.last() {
            Some(last) if page.has_more => encode_token(
                &self.fingerprint,
                &Continuation {
                    cursor: cursor_of(last),
                    total_size: page.total,
                },
            ),
            _ => String::new(),
        }
    }
}

/// What a list's page token carries besides the query's fingerprint: where the next page starts,
/// and the `total_size` the list reports on every page after the first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Continuation<C> {
    /// The sort key and id of the last row served.
    pub cursor: C,
    /// How many rows matched when the first page was read. Counting every page would scan every
    /// match again per page (listing a large table slows with its size); the count is a hint
    /// anyway, since rows come and go while a client pages. The token is not signed: a client
    /// that edits it misleads only itself.
    pub total_size: i64,
}

/// The `total_size` of a page, counting only when it must: a later page reports the count its
/// first page took; a first page holding every match (`n_rows` of at most `page_size`, fetched
/// with one extra row to see whether more follow) is its own count; only a first page with more
/// to follow runs `count`.
pub async fn total_size<C, F, E>(
    after: Option<&Continuation<C>>,
    n_rows: usize,
    page_size: i64,
    count: F,
) -> Result<i64, E>
where
    F: Future<Output = Result<i64, E>>,
{
    let n_rows = i64::try_from(n_rows).unwrap_or(i64::MAX);
    match after {
        Some(after) => Ok(after.total_size),
        None if n_rows <= page_size => Ok(n_rows),
        None => count.await,
    }
}

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
    use super::{Continuation, decode_token, encode_token, total_size};

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

    #[tokio::test]
    async fn only_a_first_page_with_more_to_follow_counts() {
        let n_counts = std::cell::Cell::new(0);
        let count = || async {
            n_counts.set(n_counts.get() + 1);
            Ok::<i64, ()>(99)
        };
        let later = Continuation {
            cursor: 7,
            total_size: 40,
        };

        let later_page = total_size(Some(&later), 6, 5, count()).await;
        let whole_first_page = total_size::<i32, _, _>(None, 5, 5, count()).await;
        assert_eq!(n_counts.get(), 0, "a page that needed no count counted");
        let first_of_several = total_size::<i32, _, _>(None, 6, 5, count()).await;

        assert_eq!(later_page, Ok(40));
        assert_eq!(whole_first_page, Ok(5));
        assert_eq!(first_of_several, Ok(99));
        assert_eq!(n_counts.get(), 1);
    }
}
