//! Reference documentation generated from the contract: the events each service declares and the
//! fields of the messages their data carries, for `docs/events.md`. A test in this crate writes
//! the generated part of that file and fails when it was out of date, so the page cannot drift
//! from the `.proto` files.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt::Write;

use prost_reflect::{
    Cardinality, DescriptorPool, ExtensionDescriptor, FieldDescriptor, Kind, MessageDescriptor,
};

use crate::events::{DeclaredEvent, data_schema, declared_events};
use crate::lint::comments_by_path;

/// Where the generated part of `docs/events.md` starts (after this line) and ends.
pub const BEGIN_MARKER: &str = "<!-- BEGIN GENERATED from the contract by `cargo test -p contract --test docs`: do not edit -->";
pub const END_MARKER: &str = "<!-- END GENERATED -->";

/// The reference of every declared event in `pool`: per service, a table of its event types and
/// the message each carries, then a table of each such message's fields (and of the messages they
/// nest), with their proto3 JSON names, types, behaviours and comments.
pub fn events_reference(pool: &DescriptorPool) -> String {
    let events = declared_events(pool);
    let behavior = pool.get_extension_by_name("google.api.field_behavior");
    let mut comments = Comments::default();
    let mut out = String::new();
    let services: BTreeSet<&str> = events.iter().map(service_of).collect();
    for service in services {
        let of_service: Vec<&DeclaredEvent> = events
            .iter()
            .filter(|event| service_of(event) == service)
            .collect();
        let _ = writeln!(out, "### {}\n", title(service));
        let _ = writeln!(out, "| type | data (`dataschema`) | when |");
        let _ = writeln!(out, "|---|---|---|");
        for event in &of_service {
            let _ = writeln!(
                out,
                "| `{}` | [`{}`](#{}) | {} |",
                event.event_type,
                event.message.name(),
                anchor(&event.message),
                cell(&event.description)
            );
        }
        out.push('\n');
        let mut documented = BTreeSet::new();
        // The events' messages in declaration order, then the messages they nest.
        let mut pending: VecDeque<MessageDescriptor> = of_service
            .iter()
            .map(|event| event.message.clone())
            .collect();
        while let Some(message) = pending.pop_front() {
            if !documented.insert(message.full_name().to_owned()) {
                continue;
            }
            write_message(&mut out, &message, behavior.as_ref(), &mut comments);
            for field in message.fields() {
                if let Kind::Message(nested) = field.kind()
                    && !is_well_known(&nested)
                    && !documented.contains(nested.full_name())
                {
                    pending.push_back(nested);
                }
            }
        }
    }
    out
}

/// `docs` with its generated part replaced by `generated`, or `None` when `docs` lacks the
/// markers.
pub fn splice(docs: &str, generated: &str) -> Option<String> {
    let begin = docs.find(BEGIN_MARKER)? + BEGIN_MARKER.len();
    let end = docs[begin..].find(END_MARKER)? + begin;
    Some(format!("{}\n\n{generated}{}", &docs[..begin], &docs[end..]))
}

fn write_message(
    out: &mut String,
    message: &MessageDescriptor,
    behavior: Option<&ExtensionDescriptor>,
    comments: &mut Comments,
) {
    let _ = writeln!(out, "#### {}\n", message.name());
    let _ = writeln!(
        out,
        "`{}`{}\n",
        data_schema(message.full_name()),
        comments
            .of(message, message.path())
            .map(|comment| format!(": {}", cell(&comment)))
            .unwrap_or_default()
    );
    let _ = writeln!(out, "| field | JSON type | behaviour | meaning |");
    let _ = writeln!(out, "|---|---|---|---|");
    for field in message.fields() {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} |",
            field.json_name(),
            json_type(&field),
            behaviours(&field, behavior),
            cell(&comments.of(message, field.path()).unwrap_or_default())
        );
    }
    out.push('\n');
}

/// The field's shape in the proto3 JSON mapping.
fn json_type(field: &FieldDescriptor) -> String {
    let single = match field.kind() {
        Kind::String => "string".to_owned(),
        Kind::Bytes => "string (base64)".to_owned(),
        Kind::Bool => "boolean".to_owned(),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => "string (int64)".to_owned(),
        Kind::Uint64 | Kind::Fixed64 => "string (uint64)".to_owned(),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 | Kind::Uint32 | Kind::Fixed32 => {
            "number (integer)".to_owned()
        }
        Kind::Float | Kind::Double => "number".to_owned(),
        Kind::Enum(enumeration) => {
            let values: Vec<String> = enumeration
                .values()
                .map(|value| format!("`{}`", value.name()))
                .collect();
            format!("string, one of {}", values.join(", "))
        }
        Kind::Message(message) if message.full_name() == "google.protobuf.Timestamp" => {
            "string (RFC 3339 time)".to_owned()
        }
        Kind::Message(message) => format!("[{}](#{})", message.name(), anchor(&message)),
    };
    if field.is_map() {
        "object".to_owned()
    } else if field.cardinality() == Cardinality::Repeated {
        format!("list of {single}")
    } else {
        single
    }
}

fn behaviours(field: &FieldDescriptor, behavior: Option<&ExtensionDescriptor>) -> String {
    let Some(behavior) = behavior else {
        return String::new();
    };
    let options = field.options();
    if !options.has_extension(behavior) {
        return String::new();
    }
    let value = options.get_extension(behavior);
    let names: Vec<String> = value
        .as_list()
        .unwrap_or_default()
        .iter()
        .filter_map(|value| value.as_enum_number())
        .filter_map(|number| {
            let Kind::Enum(enumeration) = behavior.kind() else {
                return None;
            };
            enumeration
                .get_value(number)
                .map(|value| value.name().to_owned())
        })
        .collect();
    names.join(", ")
}

fn is_well_known(message: &MessageDescriptor) -> bool {
    message.package_name() == "google.protobuf"
}

fn service_of(event: &DeclaredEvent) -> &str {
    event.event_type.split('.').nth(1).unwrap_or_default()
}

fn title(service: &str) -> String {
    let mut chars = service.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// GitHub's anchor for a `#### Name` heading.
fn anchor(message: &MessageDescriptor) -> String {
    message.name().to_lowercase()
}

/// `text` fit for one table cell: one line, pipes escaped.
fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// Each file's comments by source path, read once per file.
#[derive(Default)]
struct Comments {
    by_file: HashMap<String, HashMap<Vec<i32>, String>>,
}

impl Comments {
    fn of(&mut self, message: &MessageDescriptor, path: &[i32]) -> Option<String> {
        let file = message.parent_file();
        self.by_file
            .entry(file.name().to_owned())
            .or_insert_with(|| comments_by_path(&file))
            .get(path)
            .map(|comment| comment.trim().to_owned())
            .filter(|comment| !comment.is_empty())
    }
}
