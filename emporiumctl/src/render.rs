//! How results look, for any resource: aligned tables for people; for scripts the response's
//! proto3 JSON mapping (as the events' `data` is written: lowerCamelCase names, 64-bit integers
//! as strings, every field present), or the same data as YAML.
//!
//! Columns of a resource list, chosen from the contract: the resource's key field, then its
//! REQUIRED single-valued fields that fit a cell (scalars, enums, money; no lists, no nested
//! messages, and no free text since descriptions are OPTIONAL), then `version` and
//! `update_time`. A single record shows every field, one per line.

use std::io::Write;

use contract::resources::{self, FieldBehavior, Resource};
use prost_reflect::{
    DynamicMessage, FieldDescriptor, Kind, ReflectMessage, SerializeOptions, Value,
};

use crate::OutputFormat;
use crate::error::CliError;
use crate::table::{Align, Fields, Table};
use crate::values::{self, ValueKind};

/// The columns of an event history (`emporium.audit.v1.Event`), where the message has them.
const EVENT_COLUMNS: &[&str] = &["aggregate_version", "time", "type", "publish_time", "actor"];

/// `message` as proto3 JSON.
pub(crate) fn message_json(message: &DynamicMessage) -> serde_json::Value {
    let options = SerializeOptions::new().skip_default_fields(false);
    message
        .serialize_with_options(serde_json::value::Serializer, &options)
        .unwrap_or_else(|error| serde_json::Value::String(format!("unprintable message: {error}")))
}

/// `message` as proto3 JSON on one line.
pub(crate) fn compact_json(message: &DynamicMessage) -> String {
    message_json(message).to_string()
}

/// Writes `value` as pretty JSON or YAML.
pub(crate) fn write_document(
    output: OutputFormat,
    value: &serde_json::Value,
    out: &mut impl Write,
) -> Result<(), CliError> {
    match output {
        OutputFormat::Yaml => out.write_all(crate::yaml::to_yaml(value).as_bytes())?,
        OutputFormat::Json | OutputFormat::Table => {
            serde_json::to_writer_pretty(&mut *out, value)
                .map_err(|error| CliError::Output(error.into()))?;
            writeln!(out)?;
        }
    }
    Ok(())
}

/// A response holding one record: the resource itself, or a message with the resource in one
/// field and more beside it (a created client and its secret), shown as one set of lines.
pub(crate) fn record(
    output: OutputFormat,
    resource: &Resource,
    response: &DynamicMessage,
    out: &mut impl Write,
) -> Result<(), CliError> {
    if output != OutputFormat::Table {
        return write_document(output, &message_json(response), out);
    }
    let mut fields = Fields::default();
    let held = resource.field_holding(&response.descriptor());
    for field in response.descriptor().fields() {
        match (&held, response.get_field(&field).as_ref()) {
            (Some(held), Value::Message(record)) if *held == field => {
                for inner in record.descriptor().fields() {
                    fields.push(inner.name(), cell(record, &inner));
                }
            }
            _ => fields.push(field.name(), cell(response, &field)),
        }
    }
    Ok(fields.write(out)?)
}

/// A list of resources: the (merged) List or BatchGet response. The table ends with the count,
/// the total when the response has one, and how to fetch the next page.
pub(crate) fn listing(
    output: OutputFormat,
    resource: &Resource,
    response: &DynamicMessage,
    out: &mut impl Write,
) -> Result<(), CliError> {
    if output != OutputFormat::Table {
        return write_document(output, &message_json(response), out);
    }
    let descriptor = response.descriptor();
    let list_field = resource.list_field(&descriptor);
    let items: Vec<DynamicMessage> = list_field
        .as_ref()
        .map(|field| messages_of(response, field))
        .unwrap_or_default();
    let columns = resource_columns(resource);
    write_table(out, &columns, &items)?;
    let n_items = items.len();
    let total = descriptor
        .get_field_by_name("total_size")
        .and_then(|field| response.get_field(&field).as_i64());
    let noun = |count: i64| {
        if count == 1 {
            resource.singular.as_str()
        } else {
            resource.plural.as_str()
        }
    };
    match total {
        Some(total) => writeln!(out, "{n_items} of {total} {}", noun(total))?,
        None => writeln!(out, "{n_items} {}", noun(n_items as i64))?,
    }
    for field in descriptor.fields() {
        if Some(&field) == list_field.as_ref() || field.name() == "total_size" {
            continue;
        }
        let text = cell(response, &field);
        if text.is_empty() || text == "-" {
            continue;
        }
        if field.name() == "next_page_token" {
            writeln!(out, "next page: --page-token {text}")?;
        } else {
            writeln!(out, "{}: {text}", field.name())?;
        }
    }
    Ok(())
}

/// Records read one by one (several keys of a resource without BatchGet): a table like a
/// list's, or one document `{"<plural>": [...]}`.
pub(crate) fn records(
    output: OutputFormat,
    resource: &Resource,
    records: &[DynamicMessage],
    out: &mut impl Write,
) -> Result<(), CliError> {
    if output != OutputFormat::Table {
        let mut document = serde_json::Map::new();
        document.insert(
            resource.plural.clone(),
            serde_json::Value::Array(records.iter().map(message_json).collect()),
        );
        return write_document(output, &serde_json::Value::Object(document), out);
    }
    write_table(out, &resource_columns(resource), records)?;
    let noun = if records.len() == 1 {
        &resource.singular
    } else {
        &resource.plural
    };
    writeln!(out, "{} {noun}", records.len())?;
    Ok(())
}

/// An event history (a merged `ListEvents` response), oldest first.
pub(crate) fn events(
    output: OutputFormat,
    response: &DynamicMessage,
    out: &mut impl Write,
) -> Result<(), CliError> {
    if output != OutputFormat::Table {
        return write_document(output, &message_json(response), out);
    }
    let list_field = response
        .descriptor()
        .fields()
        .find(|field| field.is_list() && matches!(field.kind(), Kind::Message(_)));
    let items: Vec<DynamicMessage> = list_field
        .as_ref()
        .map(|field| messages_of(response, field))
        .unwrap_or_default();
    let columns: Vec<FieldDescriptor> = list_field
        .and_then(|field| match field.kind() {
            Kind::Message(event) => Some(
                EVENT_COLUMNS
                    .iter()
                    .filter_map(|name| event.get_field_by_name(name))
                    .collect(),
            ),
            _ => None,
        })
        .unwrap_or_default();
    write_table(out, &columns, &items)?;
    let noun = if items.len() == 1 { "event" } else { "events" };
    writeln!(out, "{} {noun}", items.len())?;
    Ok(())
}

/// What a delete prints: the response is empty, so the record deleted is named.
pub(crate) fn deleted(
    output: OutputFormat,
    singular: &str,
    key_field: &FieldDescriptor,
    key: &str,
    out: &mut impl Write,
) -> Result<(), CliError> {
    match output {
        OutputFormat::Table => Ok(writeln!(out, "deleted {singular} {key}")?),
        _ => {
            let mut value = serde_json::Map::new();
            value.insert(
                key_field.json_name().to_owned(),
                serde_json::Value::String(key.to_owned()),
            );
            value.insert("deleted".to_owned(), serde_json::Value::Bool(true));
            write_document(output, &serde_json::Value::Object(value), out)
        }
    }
}

/// The non-empty secrets of a response (`(emporium.api.v1.sensitive)` fields), by name.
pub(crate) fn secrets_shown(response: &DynamicMessage) -> Vec<String> {
    response
        .descriptor()
        .fields()
        .filter(resources::is_sensitive)
        .filter(|field| !cell(response, field).is_empty())
        .map(|field| field.name().to_owned())
        .collect()
}

/// The table columns of `resource`'s lists, by the rule in this file's opening comment.
pub(crate) fn resource_columns(resource: &Resource) -> Vec<FieldDescriptor> {
    let message = &resource.message;
    let mut columns: Vec<FieldDescriptor> = Vec::new();
    if let Some(key) = message.get_field_by_name(&resource.name_field) {
        columns.push(key);
    }
    for field in message.fields() {
        let fits_a_cell = !field.is_list()
            && ValueKind::of_field(&field)
                .is_some_and(|kind| !matches!(kind, ValueKind::Timestamp(_)));
        if fits_a_cell
            && resources::has_behavior(&field, FieldBehavior::Required)
            && !columns.contains(&field)
        {
            columns.push(field);
        }
    }
    for name in ["version", "update_time"] {
        if let Some(field) = message.get_field_by_name(name)
            && !columns.contains(&field)
        {
            columns.push(field);
        }
    }
    columns
}

// === helpers ===

fn write_table(
    out: &mut impl Write,
    columns: &[FieldDescriptor],
    items: &[DynamicMessage],
) -> Result<(), CliError> {
    if items.is_empty() {
        return Ok(());
    }
    let headers: Vec<(String, Align)> = columns
        .iter()
        .map(|field| {
            let numeric = !field.is_list()
                && ValueKind::of_field(field).is_some_and(|kind| kind.is_numeric());
            let align = if numeric { Align::Right } else { Align::Left };
            (field.name().to_uppercase(), align)
        })
        .collect();
    let mut table = Table::new(&headers);
    for item in items {
        table.push(columns.iter().map(|field| cell(item, field)).collect());
    }
    Ok(table.write(out)?)
}

fn messages_of(message: &DynamicMessage, field: &FieldDescriptor) -> Vec<DynamicMessage> {
    message
        .get_field(field)
        .as_list()
        .unwrap_or_default()
        .iter()
        .filter_map(|item| item.as_message().cloned())
        .collect()
}

/// A field's value for a table: `-` for a message or optional field that is not set.
fn cell(message: &DynamicMessage, field: &FieldDescriptor) -> String {
    let unset_with_presence = field.supports_presence() && !message.has_field(field);
    if unset_with_presence {
        return "-".to_owned();
    }
    values::display(field, &message.get_field(field))
}
