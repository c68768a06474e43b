//! What can go wrong running a command, worded for the person at the terminal, and the exit
//! code of each: 1 the server refused the request (or the login is missing or failed), 2 usage,
//! 3 cannot reach the server. gRPC statuses are mapped here and nowhere else.

use std::fmt;

use tonic::{Code, Status};
use tonic_types::StatusExt;

#[derive(Debug)]
pub enum CliError {
    /// The command line parsed but cannot be used (e.g. a malformed `--server`). Exit 2, like
    /// clap's own usage errors.
    Usage(String),
    /// The server answered and refused the request. Exit 1.
    Refused {
        status: Status,
        /// What to do about a conflict, when the command knows better than the generic advice.
        hint: Option<String>,
    },
    /// No connection to the server, or it went away. Exit 3.
    Unreachable {
        server: String,
        /// The transport's explanation, as one line of text.
        reason: String,
    },
    /// Not signed in, or the login expired or failed. Exit 1, like a refusal by the server.
    Auth(String),
    /// The result could not be written (e.g. stdout closed). Exit 1.
    Output(std::io::Error),
    /// Anything else. Exit 1.
    Other(anyhow::Error),
}

// === impl CliError ===

impl CliError {
    /// Classifies an error status of a call to `server`: UNAVAILABLE means the server could not be
    /// reached, every other code that it refused the request.
    pub fn from_status(status: Status, server: &str, hint: Option<String>) -> CliError {
        if status.code() == Code::Unavailable {
            CliError::Unreachable {
                server: server.to_owned(),
                reason: status.message().to_owned(),
            }
        } else {
            CliError::Refused { status, hint }
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Refused { .. }
            | CliError::Auth(_)
            | CliError::Output(_)
            | CliError::Other(_) => 1,
            CliError::Usage(_) => 2,
            CliError::Unreachable { .. } => 3,
        }
    }

    /// The gRPC code the server refused the request with, if it did.
    pub fn code(&self) -> Option<Code> {
        match self {
            CliError::Refused { status, .. } => Some(status.code()),
            _ => None,
        }
    }
}

impl fmt::Display for CliError {
    /// The message without the leading `error: `; may span several lines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(message) | CliError::Auth(message) => f.write_str(message),
            CliError::Refused { status, hint } => write_refusal(f, status, hint.as_deref()),
            CliError::Unreachable { server, reason } => {
                write!(f, "cannot reach {server}: is emporium running?")?;
                if !reason.is_empty() {
                    write!(f, "\n  ({reason})")?;
                }
                Ok(())
            }
            CliError::Output(error) => write!(f, "cannot write the output: {error}"),
            CliError::Other(error) => write!(f, "{error:#}"),
        }
    }
}

impl std::error::Error for CliError {}

impl From<std::io::Error> for CliError {
    fn from(error: std::io::Error) -> CliError {
        CliError::Output(error)
    }
}

/// An error and its sources on one line, `outer: inner: innermost`, skipping a source whose text
/// its parent already repeats. Transport errors nest several layers deep and their `Debug` form
/// is not for people.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        source = inner.source();
    }
    text
}

fn write_refusal(f: &mut fmt::Formatter<'_>, status: &Status, hint: Option<&str>) -> fmt::Result {
    let message = status.message();
    match status.code() {
        Code::InvalidArgument => {
            let violations = field_violations(status);
            if violations.is_empty() {
                write!(f, "invalid request: {message}")
            } else {
                f.write_str("invalid request")?;
                write_violations(f, &violations)
            }
        }
        Code::AlreadyExists => {
            f.write_str(message)?;
            write_violations(f, &field_violations(status))
        }
        Code::Aborted => {
            let hint = hint.unwrap_or("read the record again and retry with its current version");
            write!(f, "conflict: {message}\nhint: {hint} (--expected-version)")
        }
        // The catalog's message already says what was not found ("product … not found").
        Code::NotFound if message.is_empty() => f.write_str("not found"),
        Code::NotFound => f.write_str(message),
        Code::FailedPrecondition => write!(f, "not possible right now: {message}"),
        Code::Unauthenticated => write!(
            f,
            "not signed in: {message}\nhint: run `emporiumctl login`, or pass --token"
        ),
        Code::PermissionDenied => write!(f, "permission denied: {message}"),
        Code::DeadlineExceeded => write!(f, "the server did not answer in time: {message}"),
        Code::Internal => write!(f, "the server failed ({message}); its logs say why"),
        Code::Unimplemented => write!(f, "the server does not offer this operation: {message}"),
        code => write!(f, "{}: {message}", code.description()),
    }
}

/// `(field, description)` pairs from the status's `google.rpc.BadRequest` details.
fn field_violations(status: &Status) -> Vec<(String, String)> {
    status
        .get_details_bad_request()
        .map(|bad_request| {
            bad_request
                .field_violations
                .into_iter()
                .map(|violation| (violation.field, violation.description))
                .collect()
        })
        .unwrap_or_default()
}

fn write_violations(f: &mut fmt::Formatter<'_>, violations: &[(String, String)]) -> fmt::Result {
    for (field, description) in violations {
        write!(f, "\n  {field}: {description}")?;
    }
    Ok(())
}
