//! A service's gRPC status as a GraphQL error, mapped once: `extensions.code` says what the
//! caller can do (`BAD_USER_INPUT` with the violated fields, `UNAUTHENTICATED`, `FORBIDDEN`,
//! `NOT_FOUND`, `CONFLICT`, `FAILED_PRECONDITION`, `INTERNAL`); an internal error says nothing
//! more (the service logged it).

use std::sync::Arc;

use async_graphql::dynamic::ResolverContext;
use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextSubscribe,
};
use async_graphql::{Error, ErrorExtensions as _, Response, ServerError, Value};
use futures::StreamExt as _;
use futures::stream::BoxStream;
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

/// The extension key of the stand-in error [`at_root_field`] returns.
const ROOT_FAILED: &str = "emporium.rootFieldFailed";

/// A failed root field that is non-null (a list, a connection, a mutation), as GraphQL has it:
/// its error at its path, and the answer's `data` null (a non-null root field's null reaches the
/// root). async-graphql's dynamic schema would report the error without its path and leave the
/// rest of `data` standing; so the error is recorded here with its path, and the one returned
/// only marks the answer for [`RootFailures`], which takes it out and nulls `data`.
pub fn at_root_field(ctx: &ResolverContext<'_>, error: Error) -> Error {
    ctx.add_error(ctx.set_error_path(error.into_server_error(ctx.item.pos)));
    Error::new("a root field failed").extend_with(|_, extensions| {
        extensions.set(ROOT_FAILED, true);
    })
}

/// Finishes the answers whose root fields failed ([`at_root_field`]), on every transport.
pub struct RootFailures;

impl ExtensionFactory for RootFailures {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(RootFailures)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for RootFailures {
    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        finish(next.run(ctx, operation_name).await)
    }

    /// Over a WebSocket, queries and mutations are answered through the stream too.
    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        next.run(ctx, stream).map(finish).boxed()
    }
}

fn finish(mut response: Response) -> Response {
    let before = response.errors.len();
    response.errors.retain(|error| !is_root_failure(error));
    if response.errors.len() < before {
        response.data = Value::Null;
    }
    response
}

fn is_root_failure(error: &ServerError) -> bool {
    error
        .extensions
        .as_ref()
        .is_some_and(|extensions| extensions.get(ROOT_FAILED).is_some())
}
