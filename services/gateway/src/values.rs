//! Values between GraphQL and protobuf, through the canonical proto3 JSON mapping, whose field
//! names (`lowerCamelCase`) are the GraphQL field names: 64-bit integers as strings (the
//! `Int64` scalar), timestamps as RFC 3339 strings (`DateTime`), enums by value name.

use prost_reflect::{DynamicMessage, MessageDescriptor, SerializeOptions};

/// `message` as a GraphQL object, every field present (defaults included), serialized straight
/// into the GraphQL value (no JSON in between).
pub(crate) fn to_graphql(message: &DynamicMessage) -> async_graphql::Value {
    async_graphql::to_value(WithDefaults(message)).unwrap_or(async_graphql::Value::Null)
}

/// A message serialized in the proto3 JSON mapping with its default-valued fields written out.
struct WithDefaults<'a>(&'a DynamicMessage);

impl serde::Serialize for WithDefaults<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let options = SerializeOptions::new().skip_default_fields(false);
        self.0.serialize_with_options(serializer, &options)
    }
}

/// A `descriptor` message from a JSON object of its fields by their JSON names; the error says
/// which field is wrong and why.
pub(crate) fn to_message(
    descriptor: &MessageDescriptor,
    json: serde_json::Value,
) -> Result<DynamicMessage, String> {
    DynamicMessage::deserialize(descriptor.clone(), json).map_err(|error| error.to_string())
}

/// A GraphQL input value as JSON (enum values become their names).
pub(crate) fn to_json(value: async_graphql::Value) -> serde_json::Value {
    value.into_json().unwrap_or(serde_json::Value::Null)
}
