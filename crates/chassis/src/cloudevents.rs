//! The event envelope on the bus: CloudEvents 1.0, JSON structured mode, with the aggregate's
//! version, the W3C `traceparent` and who made the change (`actor`, `actorclientid`) as extension
//! attributes.

use serde::{Deserialize, Serialize};

use crate::event_data::{self, DataError};

/// `Content-Type` of a structured-mode CloudEvent.
pub const CONTENT_TYPE: &str = "application/cloudevents+json";

/// A CloudEvent as Emporium publishes it. Field names are the CloudEvents attribute names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent {
    pub specversion: String,
    /// The event id (UUID); also the bus de-duplication id.
    pub id: String,
    /// `/emporium/<service>`.
    pub source: String,
    /// `emporium.<service>.<aggregate>.<action>`, e.g. `emporium.catalog.product.updated`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The aggregate id.
    pub subject: String,
    /// RFC 3339 time of the change.
    pub time: String,
    pub datacontenttype: String,
    /// The message whose proto3 JSON mapping `data` is, as a URN:
    /// `urn:emporium:proto:emporium.catalog.v1.Product` (absent on events recorded before the
    /// contract declared their data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataschema: Option<String>,
    pub data: serde_json::Value,
    /// Extension: the aggregate's version after the change (1 for a creation).
    pub aggregateversion: i64,
    /// Extension: the aggregate type, e.g. `product`.
    pub aggregatetype: String,
    /// Extension (distributed tracing): the W3C trace context of the request that caused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// Extension: the token subject of who made the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Extension: the OAuth client id of who made the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actorclientid: Option<String>,
}

impl CloudEvent {
    /// The event's data as the generated message `M`, checking `dataschema` names `M` (when the
    /// event has one). Fields `M` does not know are ignored.
    pub fn decode_data<M: prost::Message + prost::Name + Default>(&self) -> Result<M, DataError> {
        if let Some(found) = &self.dataschema {
            let expected = event_data::schema_for::<M>();
            if *found != expected {
                return Err(DataError::OtherSchema {
                    expected,
                    found: found.clone(),
                });
            }
        }
        event_data::from_json(&self.data)
    }
}

#[cfg(test)]
mod tests {
    use super::CloudEvent;

    #[test]
    fn serializes_required_attributes_and_extensions() {
        let event = CloudEvent {
            specversion: "1.0".to_owned(),
            id: "0b9c5a8e-9f8b-4a4e-8a9c-1d2e3f405162".to_owned(),
            source: "/emporium/catalog".to_owned(),
            event_type: "emporium.catalog.product.created".to_owned(),
            subject: "7d7b1c1e-0000-4000-8000-000000000001".to_owned(),
            time: "2026-11-23T11:34:42.123456Z".to_owned(),
            datacontenttype: "application/json".to_owned(),
            dataschema: Some("urn:emporium:proto:emporium.catalog.v1.Product".to_owned()),
            data: serde_json::json!({"sku": "A-1"}),
            aggregateversion: 1,
            aggregatetype: "product".to_owned(),
            traceparent: None,
            actor: Some("admin-7".to_owned()),
            actorclientid: Some("backoffice".to_owned()),
        };
        let json: serde_json::Value = serde_json::to_value(&event).unwrap();
        assert_eq!(json["specversion"], "1.0");
        assert_eq!(json["type"], "emporium.catalog.product.created");
        assert_eq!(json["aggregateversion"], 1);
        assert!(json.get("traceparent").is_none());
        assert_eq!(json["actor"], "admin-7");
        assert_eq!(json["actorclientid"], "backoffice");
        let parsed: CloudEvent = serde_json::from_value(json).unwrap();
        assert_eq!(parsed, event);
    }
}
