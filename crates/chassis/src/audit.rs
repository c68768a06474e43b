//! The `ListEvents` RPC every service exposes over its outbox: a record's audit history.

use uuid::Uuid;

use emporium_proto::audit::v1 as proto;

use crate::error::Error;
use crate::grpc::timestamp_to_proto;
use crate::outbox;
use crate::pagination::{decode_token, encode_token};
use crate::storage::Database;
use crate::validation::Violations;

/// Answers `ListEvents` for the service owning `database`.
#[tracing::instrument(level = "debug", skip_all, fields(aggregate_id = %request.aggregate_id))]
pub async fn list_events(
    database: &Database,
    request: proto::ListEventsRequest,
) -> Result<proto::ListEventsResponse, Error> {
    let mut violations = Violations::new();
    let aggregate_id = violations.id("aggregate_id", &request.aggregate_id);
    let limit = violations.page_size("page_size", request.page_size);
    let valid = violations.finish()?;
    let (aggregate_id, limit): (Uuid, i64) = (valid.take(aggregate_id), valid.take(limit));
    let fingerprint = aggregate_id.to_string();
    let after: i64 = decode_token("page_token", &fingerprint, &request.page_token)?.unwrap_or(0);
    // One more than asked tells whether another page exists.
    let mut events = outbox::list_events(database, aggregate_id, after, limit + 1).await?;
    let next_page_token = if events.len() as i64 > limit {
        events.truncate(limit as usize);
        events
            .last()
            .map(|event| encode_token(&fingerprint, &event.sequence))
            .unwrap_or_default()
    } else {
        String::new()
    };
    Ok(proto::ListEventsResponse {
        events: events
            .into_iter()
            .map(|event| proto::Event {
                id: event.id.to_string(),
                data_schema: crate::event_data::schema_of(&event.event_type)
                    .unwrap_or_default()
                    .to_owned(),
                r#type: event.event_type,
                aggregate_id: event.aggregate_id.to_string(),
                aggregate_version: event.aggregate_version,
                time: Some(timestamp_to_proto(event.occurred_at)),
                data_json: event.data,
                traceparent: event.traceparent.unwrap_or_default(),
                publish_time: event.published_at.map(timestamp_to_proto),
                actor: event.actor.unwrap_or_default(),
                actor_client_id: event.actor_client_id.unwrap_or_default(),
            })
            .collect(),
        next_page_token,
    })
}
