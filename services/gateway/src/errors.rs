//! A service's gRPC status as a GraphQL error, mapped once: `extensions.code` says what the
//! caller can do (`BAD_USER_INPUT` with the violated fields, `UNAUTHENTICATED`, `FORBIDDEN`,
//! `NOT_FOUND`, `CONFLICT`, `FAILED_PRECONDITION`, `INTERNAL`); an internal error says nothing
//! more (the service logged it).

use async_graphql::{Error, ErrorExtensions as _, Value};
use tonic::Code;
use tonic_types::StatusExt as _;

/// The GraphQL error of a failed call.
pub fn from_status(status: &tonic::Status) -> Error {
    let code = match status.code() {
        Code::InvalidArgument | Code::OutOfRange => "BAD_USER_INPUT",
        Code::Unauthenticated => "UNAUTHENTICATED",
        Code::PermissionDenied => "FORBIDDEN",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists | Code::Aborted => "CONFLICT",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted => "UNAVAILABLE",
        _ => "INTERNAL",
    };
    let message = if code == "INTERNAL" {
        "internal error".to_owned()
    } else {
        status.message().to_owned()
    };
    let violations: Vec<Value> = status
        .get_details_bad_request()
        .map(|bad_request| {
            bad_request
                .field_violations
                .into_iter()
                .map(|violation| {
                    Value::from_json(serde_json::json!({
                        "field": violation.field,
                        "reason": violation.description,
                    }))
                    .unwrap_or(Value::Null)
                })
                .collect()
        })
        .unwrap_or_default();
    Error::new(message).extend_with(|_, extensions| {
        extensions.set("code", code);
        if !violations.is_empty() {
            extensions.set("fields", Value::List(violations.clone()));
        }
    })
}

/// A request the gateway refuses before calling anyone: `BAD_USER_INPUT`, naming the argument.
pub fn bad_input(argument: &str, reason: impl std::fmt::Display) -> Error {
    let reason = reason.to_string();
    Error::new(format!("{argument}: {reason}")).extend_with(|_, extensions| {
        extensions.set("code", "BAD_USER_INPUT");
        extensions.set(
            "fields",
            Value::from_json(serde_json::json!([{ "field": argument, "reason": reason }]))
                .unwrap_or(Value::Null),
        );
    })
}

/// An error the gateway itself raises, with its `extensions.code`.
pub fn coded(code: &'static str, message: impl Into<String>) -> Error {
    Error::new(message).extend_with(move |_, extensions| extensions.set("code", code))
}
