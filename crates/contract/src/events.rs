//! The events a contract declares: `(emporium.api.v1.events)` on the message that is each event's
//! `data`. emporium-proto generates a typed constant for each (so code can emit only declared
//! events, with the declared message), the chassis names the message in each CloudEvent's
//! `dataschema`, the lint checks every resource declares its standard events, and
//! `docs/events.md` is generated from them ([`crate::docs`]).

use std::fmt;

use prost_reflect::{DescriptorPool, MessageDescriptor};

pub const EVENTS_EXTENSION: &str = "emporium.api.v1.events";

/// One declared event type.
#[derive(Clone, Debug)]
pub struct DeclaredEvent {
    /// The CloudEvents `type`, e.g. `emporium.catalog.product.created`.
    pub event_type: String,
    /// The message whose proto3 JSON mapping is the event's `data`.
    pub message: MessageDescriptor,
    /// The declaration's one-sentence description.
    pub description: String,
}

/// The parts of a well-formed event type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventTypeParts<'a> {
    /// `catalog`.
    pub service: &'a str,
    /// Whether it is an audit record (`emporium.<service>.audit.…`), not a change.
    pub audit: bool,
    /// The aggregate's singular name, `product`.
    pub aggregate: &'a str,
    /// `created`.
    pub action: &'a str,
}

/// Why an event type is not of the form `emporium.<service>[.audit].<aggregate>.<action>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MalformedEventType(pub String);

/// Every event declared in `pool`, in the pool's message order and each message's declaration
/// order.
pub fn declared_events(pool: &DescriptorPool) -> Vec<DeclaredEvent> {
    let Some(extension) = pool.get_extension_by_name(EVENTS_EXTENSION) else {
        return Vec::new();
    };
    let mut events = Vec::new();
    for message in pool.all_messages() {
        let options = message.options();
        if !options.has_extension(&extension) {
            continue;
        }
        let value = options.get_extension(&extension);
        for declared in value.as_list().unwrap_or_default() {
            let Some(declared) = declared.as_message() else {
                continue;
            };
            let text = |name: &str| {
                declared
                    .get_field_by_name(name)
                    .and_then(|value| value.as_str().map(str::to_owned))
                    .unwrap_or_default()
            };
            events.push(DeclaredEvent {
                event_type: text("type"),
                message: message.clone(),
                description: text("description"),
            });
        }
    }
    events
}

/// The declared event of type `event_type`, if any.
pub fn declared_event(pool: &DescriptorPool, event_type: &str) -> Option<DeclaredEvent> {
    declared_events(pool)
        .into_iter()
        .find(|event| event.event_type == event_type)
}

/// Splits `emporium.<service>[.audit].<aggregate>.<action>`; every part is lower snake case.
pub fn parse_event_type(event_type: &str) -> Result<EventTypeParts<'_>, MalformedEventType> {
    let malformed = || MalformedEventType(event_type.to_owned());
    let parts: Vec<&str> = event_type.split('.').collect();
    let well_formed = |part: &&str| {
        !part.is_empty()
            && part.starts_with(|c: char| c.is_ascii_lowercase())
            && part
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    if !parts.iter().all(well_formed) {
        return Err(malformed());
    }
    match parts.as_slice() {
        ["emporium", service, "audit", aggregate, action] => Ok(EventTypeParts {
            service,
            audit: true,
            aggregate,
            action,
        }),
        ["emporium", service, aggregate, action] if *aggregate != "audit" => Ok(EventTypeParts {
            service,
            audit: false,
            aggregate,
            action,
        }),
        _ => Err(malformed()),
    }
}

/// The Rust constant emporium-proto generates for `event_type`: `PRODUCT_CREATED`,
/// `AUDIT_ACCOUNT_ACCESSED`.
pub fn constant_name(parts: &EventTypeParts<'_>) -> String {
    let mut name = String::new();
    if parts.audit {
        name.push_str("AUDIT_");
    }
    name.push_str(parts.aggregate);
    name.push('_');
    name.push_str(parts.action);
    name.to_ascii_uppercase()
}

/// The `dataschema` of an event whose data is the message `full_name`:
/// `urn:emporium:proto:emporium.catalog.v1.Product`. CloudEvents wants an absolute URI there,
/// which the bare type URL of `google.protobuf.Any` (`type.googleapis.com/…`) is not; the URN
/// names the message and claims no web address.
pub fn data_schema(full_name: &str) -> String {
    format!("{DATA_SCHEMA_PREFIX}{full_name}")
}

/// What every `dataschema` starts with, before the message's full name.
pub const DATA_SCHEMA_PREFIX: &str = "urn:emporium:proto:";

impl fmt::Display for MalformedEventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "event type `{}` is not `emporium.<service>.<aggregate>.<action>` (or \
             `emporium.<service>.audit.<aggregate>.<action>` for an audit record), every part \
             lower snake case",
            self.0
        )
    }
}

impl std::error::Error for MalformedEventType {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_split_into_their_parts() {
        let parts = parse_event_type("emporium.catalog.product.created").unwrap();
        assert_eq!(
            parts,
            EventTypeParts {
                service: "catalog",
                audit: false,
                aggregate: "product",
                action: "created"
            }
        );
        assert_eq!(constant_name(&parts), "PRODUCT_CREATED");
        let audit = parse_event_type("emporium.identity.audit.account.accessed").unwrap();
        assert!(audit.audit);
        assert_eq!(constant_name(&audit), "AUDIT_ACCOUNT_ACCESSED");
        let reset = parse_event_type("emporium.identity.client.secret_reset").unwrap();
        assert_eq!(constant_name(&reset), "CLIENT_SECRET_RESET");
    }

    #[test]
    fn malformed_event_types_are_refused() {
        for bad in [
            "",
            "catalog.product.created",
            "emporium.catalog.product",
            "emporium.catalog.Product.created",
            "emporium.catalog.audit.created",
            "emporium.catalog.product.created.twice",
            "emporium..product.created",
            "other.catalog.product.created",
        ] {
            assert!(parse_event_type(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
