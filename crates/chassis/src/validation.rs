//! Parsing a request at the boundary: every field is checked, every problem is reported at once
//! (one `google.rpc.BadRequest` naming each field and reason), and the parsed values come out only
//! when all of them passed, with no "validated field missing" branch left to write.
//!
//! ```
//! # use chassis::{Error, Violations};
//! # struct NewTag { name: String, weight: i64 }
//! # fn parse_weight(weight: i64) -> Result<i64, String> { Ok(weight) }
//! fn parse_new_tag(name: &str, weight: i64) -> Result<NewTag, Error> {
//!     let mut violations = Violations::new();
//!     let name = violations.check("name", non_empty(name));
//!     let weight = violations.check("weight", parse_weight(weight));
//!     let valid = violations.finish()?;
//!     Ok(NewTag { name: valid.take(name), weight: valid.take(weight) })
//! }
//! # fn non_empty(text: &str) -> Result<String, &'static str> {
//! #     if text.is_empty() { Err("is required") } else { Ok(text.to_owned()) }
//! # }
//! ```
//!
//! Besides `check`, the shared shapes of Emporium's contracts are parsed here once: ids (UUIDs),
//! expected versions, batch ids, page sizes and sort directions, and the whole of the requests
//! that carry nothing else ([`parse_id`], [`parse_ids`], [`parse_delete`]).

use std::fmt::Display;

use uuid::Uuid;

use crate::error::{Error, FieldViolation};
use crate::pagination::{Direction, PageStart};

/// Ids in one batch get at most.
pub const MAX_BATCH_IDS: usize = 500;

/// The page size of a list whose request asks for none (`page_size` 0).
pub const DEFAULT_PAGE_SIZE: i64 = 50;

/// The most rows one page of a list holds.
pub const MAX_PAGE_SIZE: i64 = 500;

/// Collects violations across fields so a caller learns every problem at once.
#[derive(Debug, Default)]
#[must_use = "finish() reports the violations"]
pub struct Violations(Vec<FieldViolation>);

/// A value [`Violations`] checked: taken out with [`Valid::take`] once every check passed.
#[derive(Debug)]
#[must_use = "take the value out with Valid::take"]
pub struct Checked<T>(Option<T>);

/// Proof that every check of a [`Violations`] passed, from [`Violations::finish`].
#[derive(Debug)]
pub struct Valid(());

impl Violations {
    pub fn new() -> Violations {
        Violations::default()
    }

    /// Records that `field` is invalid, and why.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation {
            field: field.into(),
            description: description.into(),
        });
    }

    /// Keeps the value or records the error under `field`.
    pub fn check<T, E: Display>(&mut self, field: &str, result: Result<T, E>) -> Checked<T> {
        match result {
            Ok(value) => Checked(Some(value)),
            Err(error) => {
                self.add(field, error.to_string());
                Checked(None)
            }
        }
    }

    /// [`check`](Self::check) for a field that may be absent (`None` stays `None`): a partial
    /// update's fields, an optional filter.
    pub fn check_optional<T, E: Display>(
        &mut self,
        field: &str,
        result: Option<Result<T, E>>,
    ) -> Checked<Option<T>> {
        match result {
            None => Checked(Some(None)),
            Some(result) => self.check(field, result).map(Some),
        }
    }

    /// A field that must be present (a message field): `is required` when it is `None`.
    pub fn require<T>(&mut self, field: &str, value: Option<T>) -> Checked<T> {
        self.check(field, value.ok_or("is required"))
    }

    /// A record's id: a UUID, required.
    pub fn id(&mut self, field: &str, text: &str) -> Checked<Uuid> {
        self.check(field, parse_uuid(text))
    }

    /// A reference that may be empty (no filter, no link): `None` when empty, else a UUID.
    pub fn optional_id(&mut self, field: &str, text: &str) -> Checked<Option<Uuid>> {
        self.check_optional(field, (!text.is_empty()).then(|| parse_uuid(text)))
    }

    /// At most `max` ids, each a UUID (reported by index, `ids[2]`), in request order.
    pub fn ids(&mut self, field: &str, ids: &[String], max: usize) -> Checked<Vec<Uuid>> {
        if ids.len() > max {
            self.add(field, format!("must hold at most {max} ids"));
        }
        self.each(field, ids, |id| parse_uuid(id))
    }

    /// Every item of a repeated field, each checked under `field[index]`, in order.
    pub fn each<S, T, E: Display>(
        &mut self,
        field: &str,
        items: &[S],
        mut parse: impl FnMut(&S) -> Result<T, E>,
    ) -> Checked<Vec<T>> {
        let parsed: Vec<Checked<T>> = items
            .iter()
            .enumerate()
            .map(|(index, item)| self.check(&format!("{field}[{index}]"), parse(item)))
            .collect();
        Checked(parsed.into_iter().map(|checked| checked.0).collect())
    }

    /// An update's `expected_version` (the field every Update request has, by the contract
    /// lint): the version the caller last read, at least 1.
    pub fn expected_version(&mut self, version: i64) -> Checked<i64> {
        self.check(
            "expected_version",
            if version >= 1 {
                Ok(version)
            } else {
                Err("is required: the version you last read")
            },
        )
    }

    /// A delete's `expected_version` (the field every Delete request has, by the contract
    /// lint): 0 deletes whatever the version, else the version read.
    pub fn delete_version(&mut self, version: i64) -> Checked<i64> {
        self.check(
            "expected_version",
            if version >= 0 {
                Ok(version)
            } else {
                Err("must not be negative (0 deletes whatever the version)")
            },
        )
    }

    /// A list's `page_size`: 0 means [`DEFAULT_PAGE_SIZE`]; above [`MAX_PAGE_SIZE`] or negative
    /// is invalid.
    pub fn page_size(&mut self, field: &str, requested: i32) -> Checked<i64> {
        self.check(
            field,
            match i64::from(requested) {
                0 => Ok(DEFAULT_PAGE_SIZE),
                size if (1..=MAX_PAGE_SIZE).contains(&size) => Ok(size),
                _ => Err(format!("must be between 0 and {MAX_PAGE_SIZE}")),
            },
        )
    }

    /// A list's `page_size` (as [`Violations::page_size`]) and its `page_token`, which
    /// [`PageStart::for_list`] reads once the list's query is parsed.
    pub fn page<'a>(&mut self, page_size: i32, page_token: &'a str) -> Checked<PageStart<'a>> {
        self.page_size("page_size", page_size)
            .map(|size| PageStart {
                size,
                token: page_token,
            })
    }

    /// A list's `direction`, by the contracts' `SortDirection` numbering (`UNSPECIFIED` = 0 and
    /// `ASC` = 1 ascend, `DESC` = 2 descends).
    pub fn direction(&mut self, field: &str, direction: i32) -> Checked<Direction> {
        self.check(
            field,
            match direction {
                0 | 1 => Ok(Direction::Ascending),
                2 => Ok(Direction::Descending),
                _ => Err("is not a known direction"),
            },
        )
    }

    /// An enum field of the contract (`E` is the generated enum): `choose` maps each known value;
    /// an unknown number is invalid.
    pub fn enumeration<E: TryFrom<i32>, T>(
        &mut self,
        field: &str,
        value: i32,
        choose: impl FnOnce(E) -> T,
    ) -> Checked<T> {
        self.check(
            field,
            E::try_from(value)
                .map(choose)
                .map_err(|_| "is not a known value"),
        )
    }

    /// A list's `order_by` (`E` is the generated ordering enum): `choose` maps each ordering.
    pub fn order_by<E: TryFrom<i32>, T>(
        &mut self,
        field: &str,
        value: i32,
        choose: impl FnOnce(E) -> T,
    ) -> Checked<T> {
        self.check(
            field,
            E::try_from(value)
                .map(choose)
                .map_err(|_| "is not a known ordering"),
        )
    }

    /// `Ok` with the proof to take the checked values out when nothing was recorded; otherwise
    /// the validation error naming every field.
    pub fn finish(self) -> Result<Valid, Error> {
        if self.0.is_empty() {
            Ok(Valid(()))
        } else {
            Err(Error::Validation(self.0))
        }
    }
}

impl<T> Checked<Option<T>> {
    /// An optional field the request left out: nothing to check.
    pub fn absent() -> Checked<Option<T>> {
        Checked(Some(None))
    }
}

impl<T> Checked<T> {
    /// A further check of a checked value (e.g. a message's own fields once it is present).
    pub fn and_then<U>(self, f: impl FnOnce(T) -> Checked<U>) -> Checked<U> {
        Checked(self.0.and_then(|value| f(value).0))
    }

    /// The value when its check passed, for a rule across fields checked before `finish`.
    pub fn peek(&self) -> Option<&T> {
        self.0.as_ref()
    }

    /// A value derived from a checked one (still checked).
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Checked<U> {
        Checked(self.0.map(f))
    }

    /// Both values, checked when both are.
    pub fn zip<U>(self, other: Checked<U>) -> Checked<(T, U)> {
        Checked(self.0.zip(other.0))
    }
}

impl Valid {
    /// The value of a passed check.
    ///
    /// # Panics
    ///
    /// Only if `checked` comes from another [`Violations`] than the one whose `finish` gave this
    /// proof and failed there: every check that fails records a violation, so `finish` returns no
    /// proof while any of its values is missing.
    pub fn take<T>(&self, checked: Checked<T>) -> T {
        checked
            .0
            .expect("a failed check records a violation, so finish() gives no proof")
    }
}

/// A Get request's `id`.
pub fn parse_id(id: &str) -> Result<Uuid, Error> {
    let mut violations = Violations::new();
    let id = violations.id("id", id);
    let valid = violations.finish()?;
    Ok(valid.take(id))
}

/// A BatchGet request's `ids`: at most [`MAX_BATCH_IDS`], each a UUID.
pub fn parse_ids(ids: &[String]) -> Result<Vec<Uuid>, Error> {
    let mut violations = Violations::new();
    let ids = violations.ids("ids", ids, MAX_BATCH_IDS);
    let valid = violations.finish()?;
    Ok(valid.take(ids))
}

/// A Delete request's `id` and `expected_version` (0 deletes whatever the version).
pub fn parse_delete(id: &str, expected_version: i64) -> Result<(Uuid, i64), Error> {
    let mut violations = Violations::new();
    let id = violations.id("id", id);
    let expected_version = violations.delete_version(expected_version);
    let valid = violations.finish()?;
    Ok((valid.take(id), valid.take(expected_version)))
}

fn parse_uuid(text: &str) -> Result<Uuid, &'static str> {
    if text.is_empty() {
        return Err("is required");
    }
    Uuid::parse_str(text).map_err(|_| "must be a UUID")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_reported_and_values_come_out_only_when_all_pass() {
        let mut violations = Violations::new();
        let id = violations.id("id", "not-a-uuid");
        let _ = violations.page_size("page_size", -1);
        let _ = violations.direction("direction", 7);
        let _ = id;
        let Err(Error::Validation(found)) = violations.finish() else {
            panic!("three violations pass");
        };
        let fields: Vec<(&str, &str)> = found
            .iter()
            .map(|violation| (violation.field.as_str(), violation.description.as_str()))
            .collect();
        assert_eq!(
            fields,
            [
                ("id", "must be a UUID"),
                ("page_size", "must be between 0 and 500"),
                ("direction", "is not a known direction"),
            ]
        );

        let mut violations = Violations::new();
        let size = violations.page_size("page_size", 0);
        let filter = violations.optional_id("category_id", "");
        let version = violations.expected_version(3);
        let valid = violations.finish().unwrap();
        assert_eq!(valid.take(size), 50);
        assert_eq!(valid.take(filter), None);
        assert_eq!(valid.take(version), 3);
    }

    #[test]
    fn batch_ids_are_reported_by_index_and_bounded() {
        let mut violations = Violations::new();
        let ids = vec![
            Uuid::nil().to_string(),
            "x".to_owned(),
            String::new(),
            Uuid::nil().to_string(),
        ];
        let _ = violations.ids("ids", &ids, 3);
        let Err(Error::Validation(found)) = violations.finish() else {
            panic!("the batch passes");
        };
        let fields: Vec<&str> = found.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["ids", "ids[1]", "ids[2]"]);
    }

    #[test]
    fn versions_follow_the_update_and_delete_rules() {
        let mut violations = Violations::new();
        let _ = violations.expected_version(0);
        let zero = violations.delete_version(0);
        let _ = violations.delete_version(-1);
        let _ = zero;
        let Err(Error::Validation(found)) = violations.finish() else {
            panic!("invalid versions pass");
        };
        assert_eq!(found.len(), 2, "{found:?}");
    }
}
