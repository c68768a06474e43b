//! The one error model of every service. Domain and store code return [`Error`]; the gRPC layer
//! maps it to a status once (`impl From<Error> for tonic::Status` in `grpc.rs`), and the gateway
//! will map it to GraphQL error codes. Variants say what the caller can do about it.

/// One invalid field and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldViolation {
    /// The request field, as named in the contract (`price.currency`).
    pub field: String,
    pub description: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed; nothing changed. Fix the named fields.
    #[error("invalid request: {}", describe(.0))]
    Validation(Vec<FieldViolation>),
    #[error("{resource} {id} not found")]
    NotFound { resource: &'static str, id: String },
    /// A unique field collides with another record; nothing changed.
    #[error("a {resource} with this {field} already exists")]
    AlreadyExists {
        resource: &'static str,
        field: &'static str,
    },
    /// The record changed since the caller read it (stale expected version); re-read and retry.
    #[error("{0}")]
    Conflict(String),
    /// The system is not in a state that allows the change; nothing changed.
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    /// Anything the caller cannot fix: logged with its cause chain, opaque to the caller.
    #[error("internal error")]
    Unexpected(#[from] anyhow::Error),
}

impl Error {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Error {
        Error::Validation(vec![FieldViolation {
            field: field.into(),
            description: description.into(),
        }])
    }
}

impl Error {
    /// No `resource` has the id (or name) `id`.
    pub fn not_found(resource: &'static str, id: impl std::fmt::Display) -> Error {
        Error::NotFound {
            resource,
            id: id.to_string(),
        }
    }

    /// After a conditional write matched no row: the record is gone (`current_version` is
    /// `None`) or moved past `expected_version`.
    pub fn missing_or_stale(
        current_version: Option<i64>,
        resource: &'static str,
        id: impl std::fmt::Display,
        expected_version: i64,
    ) -> Error {
        match current_version {
            None => Error::not_found(resource, id),
            Some(version) => Error::Conflict(format!(
                "{resource} {id} is at version {version}, not {expected_version}: it changed since you read it; read it again and retry"
            )),
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Error {
        Error::Unexpected(anyhow::Error::from(error).context("Database error"))
    }
}

fn describe(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|violation| format!("{}: {}", violation.field, violation.description))
        .collect::<Vec<_>>()
        .join("; ")
}
