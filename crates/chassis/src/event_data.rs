//! Event data from the contract: an event's `data` is the proto3 JSON mapping of the message the
//! contract declares for it (`(emporium.api.v1.events)`), and its `dataschema` names that message,
//! so consumers decode it with the generated type ([`CloudEvent::decode_data`]).
//!
//! The mapping is the canonical one (lowerCamelCase names, 64-bit integers as strings,
//! timestamps in RFC 3339, enums by name), with fields at their default value written out so a
//! reader sees every field. Decoding accepts either name form and ignores fields it does not know,
//! so a consumer keeps working when a producer adds one.
//!
//! [`CloudEvent::decode_data`]: crate::cloudevents::CloudEvent::decode_data

use std::collections::HashMap;
use std::sync::LazyLock;

use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor, SerializeOptions,
};

/// Every contract's descriptors (with their options): the messages events carry.
static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    contract::decode_pool(emporium_proto::FILE_DESCRIPTOR_SET)
        .expect("the compiled-in descriptor set decodes: build.rs wrote it")
});

/// Event type → `dataschema`, for every declared event.
static SCHEMAS: LazyLock<HashMap<String, String>> = LazyLock::new(|| {
    contract::events::declared_events(&POOL)
        .into_iter()
        .map(|event| {
            let schema = contract::events::data_schema(event.message.full_name());
            (event.event_type, schema)
        })
        .collect()
});

/// Why an event's data could not be decoded as the message asked for.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("the event's dataschema is `{found}`, not `{expected}`")]
    OtherSchema { expected: String, found: String },
    #[error("`{0}` is not a message of the compiled-in contracts")]
    UnknownMessage(String),
    #[error("the event's data is not a valid {message}: {reason}")]
    Invalid { message: String, reason: String },
}

/// The `dataschema` of events of type `event_type`, when the contract declares it.
pub fn schema_of(event_type: &str) -> Option<&'static str> {
    SCHEMAS.get(event_type).map(String::as_str)
}

/// The `dataschema` of events whose data is an `M`.
pub fn schema_for<M: prost::Name>() -> String {
    contract::events::data_schema(&M::full_name())
}

/// The proto3 JSON mapping of `message`.
pub fn to_json<M: prost::Message + prost::Name>(message: &M) -> serde_json::Value {
    let descriptor =
        descriptor_of::<M>().expect("every generated message is in the compiled-in descriptor set");
    let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())
        .expect("a message re-decodes with its own descriptor");
    dynamic
        .serialize_with_options(
            serde_json::value::Serializer,
            &SerializeOptions::new().skip_default_fields(false),
        )
        .expect("a message maps to JSON: its map keys are strings or numbers")
}

/// Decodes the proto3 JSON mapping of an `M`.
pub fn from_json<M: prost::Message + prost::Name + Default>(
    value: &serde_json::Value,
) -> Result<M, DataError> {
    let descriptor =
        descriptor_of::<M>().ok_or_else(|| DataError::UnknownMessage(M::full_name()))?;
    let invalid = |reason: String| DataError::Invalid {
        message: M::full_name(),
        reason,
    };
    let dynamic = DynamicMessage::deserialize_with_options(
        descriptor,
        value,
        &DeserializeOptions::new().deny_unknown_fields(false),
    )
    .map_err(|error| invalid(error.to_string()))?;
    dynamic
        .transcode_to::<M>()
        .map_err(|error| invalid(error.to_string()))
}

fn descriptor_of<M: prost::Name>() -> Option<MessageDescriptor> {
    POOL.get_message_by_name(&M::full_name())
}

#[cfg(test)]
mod tests {
    use emporium_proto::catalog::v1 as catalog;

    use super::*;

    fn product() -> catalog::Product {
        catalog::Product {
            id: "0194f3c2-0000-7000-8000-000000000001".to_owned(),
            sku: "TEA-1".to_owned(),
            name: "Sencha".to_owned(),
            version: 3,
            create_time: Some(prost_types::Timestamp {
                seconds: 1_764_000_000,
                nanos: 123_456_000,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn data_is_the_canonical_proto3_json_mapping_with_every_field() {
        let json = to_json(&product());
        assert_eq!(json["sku"], "TEA-1");
        // 64-bit integers are strings; names are lowerCamelCase; defaults are written out.
        assert_eq!(json["version"], "3");
        assert_eq!(json["createTime"], "2025-11-24T16:00:00.123456Z");
        assert_eq!(json["description"], "");
        assert!(json.get("categoryId").is_some(), "{json}");
    }

    #[test]
    fn data_decodes_into_the_generated_type_ignoring_unknown_fields() {
        let mut json = to_json(&product());
        json["addedLater"] = serde_json::json!("a field this consumer does not know");
        let decoded: catalog::Product = from_json(&json).unwrap();
        assert_eq!(decoded, product());
        // The proto field names are accepted too.
        let snake = serde_json::json!({ "sku": "TEA-2", "stock_on_hand": 4 });
        let decoded: catalog::Product = from_json(&snake).unwrap();
        assert_eq!((decoded.sku.as_str(), decoded.stock_on_hand), ("TEA-2", 4));
    }

    #[test]
    fn data_of_the_wrong_shape_is_refused_with_the_reason() {
        let error =
            from_json::<catalog::Product>(&serde_json::json!({ "version": "three" })).unwrap_err();
        assert!(matches!(error, DataError::Invalid { .. }), "{error}");
    }

    #[test]
    fn every_declared_event_has_a_schema_naming_its_message() {
        assert_eq!(
            schema_of("emporium.catalog.product.created"),
            Some("urn:emporium:proto:emporium.catalog.v1.Product")
        );
        assert_eq!(
            schema_of("emporium.identity.audit.account.accessed"),
            Some("urn:emporium:proto:emporium.identity.v1.AccountAccessed")
        );
        assert_eq!(schema_of("emporium.catalog.product.exploded"), None);
    }
}
