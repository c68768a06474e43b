//! Dead letters: reading them back and re-driving them. A consumer parks a message it gave up on
//! in the namespace's dead-letter stream ([`crate::consumer::dead_letter_stream`]) under
//! `<namespace>.deadletter.<consumer>`, with the original payload and the headers in
//! [`crate::consumer::headers`]. `emporium deadletter list|show|redrive` is a thin shell over the
//! functions here.
//!
//! A redrive publishes the payload again to the original subject under a fresh message id (the
//! original id is remembered by the bus's de-duplication and would be dropped), then deletes the
//! dead letter, so it is no longer listed. Every consumer of that subject receives the event
//! again: the one that parked it applies it (its inbox never recorded it), the others find its id
//! in their inbox and skip it. The new id is derived from the dead letter's sequence, so
//! repeating a redrive that failed half-way publishes nothing twice.

use std::collections::BTreeMap;
use std::time::SystemTime;

use anyhow::Context;
use bytes::Bytes;

use crate::bus::{Bus, OutgoingMessage, StoredMessage};
use crate::cloudevents::CloudEvent;
use crate::consumer::{dead_letter_stream, headers};

/// One parked message, as read from the dead-letter stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its sequence in the dead-letter stream: how `show` and `redrive --sequence` name it.
    pub sequence: u64,
    /// The consumer that parked it.
    pub consumer: String,
    /// Where it was consumed from, and where a redrive publishes it.
    pub original_subject: Option<String>,
    /// Why it was parked.
    pub reason: String,
    pub dead_lettered_at: SystemTime,
    /// The bus's delivery count when parked.
    pub delivery_count: Option<u64>,
    /// How often the handler refused it (none: parked without running the handler).
    pub handler_failures: Option<u64>,
    /// The CloudEvent, when the payload is one.
    pub event: Option<EventSummary>,
    pub headers: BTreeMap<String, String>,
    pub payload: Bytes,
}

/// The attributes of a dead-lettered CloudEvent that say what it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventSummary {
    pub id: String,
    pub event_type: String,
    /// The record's id.
    pub subject: String,
    pub aggregate_version: i64,
}

/// Which dead letters: every field set must match; all unset selects every one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeadLetterFilter {
    pub consumer: Option<String>,
    pub event_id: Option<String>,
    pub sequence: Option<u64>,
}

/// A dead letter published again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redriven {
    pub dead_letter: DeadLetter,
    /// Where it was published.
    pub subject: String,
    /// Its new sequence in the original stream.
    pub stream_sequence: u64,
}

/// The header a redriven message carries: the dead letter's sequence it came from.
pub const REDRIVEN_FROM: &str = "Emporium-Redriven-From";

/// Dead letters read per request while listing.
const PAGE: usize = 256;

// === impl DeadLetter ===

impl DeadLetter {
    /// The dead letter as the tools print it in JSON (`emporium deadletter`, the ops API): its
    /// payload as JSON when it is JSON, as text otherwise.
    pub fn to_json(&self) -> serde_json::Value {
        let payload =
            serde_json::from_slice::<serde_json::Value>(&self.payload).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(&self.payload).into_owned())
            });
        serde_json::json!({
            "sequence": self.sequence,
            "consumer": self.consumer,
            "original_subject": self.original_subject,
            "reason": self.reason,
            "dead_lettered_at": rfc3339(self.dead_lettered_at),
            "delivery_count": self.delivery_count,
            "handler_failures": self.handler_failures,
            "event": self.event.as_ref().map(|event| serde_json::json!({
                "id": event.id,
                "type": event.event_type,
                "subject": event.subject,
                "aggregate_version": event.aggregate_version,
            })),
            "headers": self.headers,
            "payload": payload,
        })
    }
}

// === impl Redriven ===

impl Redriven {
    /// What a redrive did, in JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "sequence": self.dead_letter.sequence,
            "consumer": self.dead_letter.consumer,
            "event_id": self.dead_letter.event.as_ref().map(|event| event.id.as_str()),
            "subject": self.subject,
            "stream_sequence": self.stream_sequence,
        })
    }
}

// === impl DeadLetterFilter ===

impl DeadLetterFilter {
    /// Every dead letter.
    pub fn all() -> DeadLetterFilter {
        DeadLetterFilter::default()
    }

    pub fn consumer(consumer: &str) -> DeadLetterFilter {
        DeadLetterFilter {
            consumer: Some(consumer.to_owned()),
            ..DeadLetterFilter::default()
        }
    }

    pub fn event_id(event_id: &str) -> DeadLetterFilter {
        DeadLetterFilter {
            event_id: Some(event_id.to_owned()),
            ..DeadLetterFilter::default()
        }
    }

    fn matches(&self, dead_letter: &DeadLetter) -> bool {
        self.consumer
            .as_ref()
            .is_none_or(|consumer| *consumer == dead_letter.consumer)
            && self.event_id.as_ref().is_none_or(|event_id| {
                dead_letter
                    .event
                    .as_ref()
                    .is_some_and(|event| event.id.eq_ignore_ascii_case(event_id))
            })
            && self
                .sequence
                .is_none_or(|sequence| sequence == dead_letter.sequence)
    }
}

// === functions ===

/// The dead letters of `namespace` that match `filter`, oldest first.
pub async fn list(
    bus: &Bus,
    namespace: &str,
    filter: &DeadLetterFilter,
) -> anyhow::Result<Vec<DeadLetter>> {
    let stream = dead_letter_stream(namespace);
    // Creating it is idempotent, and no stream simply means no dead letter yet.
    bus.ensure_stream(&stream)
        .await
        .context("Failed to open the dead-letter stream")?;
    let subject_filter = match &filter.consumer {
        Some(consumer) => format!("{namespace}.deadletter.{consumer}"),
        None => format!("{namespace}.deadletter.>"),
    };
    let mut dead_letters = Vec::new();
    let mut from_sequence = filter.sequence.unwrap_or(1);
    loop {
        let messages = bus
            .read_stream(&stream.name, &subject_filter, from_sequence, PAGE)
            .await
            .context("Failed to read the dead-letter stream")?;
        let n_messages = messages.len();
        for message in messages {
            from_sequence = message.sequence + 1;
            let dead_letter = dead_letter(namespace, message);
            if filter.matches(&dead_letter) {
                dead_letters.push(dead_letter);
            }
        }
        if n_messages < PAGE || filter.sequence.is_some() {
            break;
        }
    }
    Ok(dead_letters)
}

/// The dead letter at `sequence` of the dead-letter stream, if there is one.
pub async fn show(bus: &Bus, namespace: &str, sequence: u64) -> anyhow::Result<Option<DeadLetter>> {
    let filter = DeadLetterFilter {
        sequence: Some(sequence),
        ..DeadLetterFilter::default()
    };
    Ok(list(bus, namespace, &filter).await?.into_iter().next())
}

/// Publishes every dead letter matching `filter` again to its original subject, oldest first,
/// and deletes each once its publish is acknowledged. Stops at the first one that cannot be
/// re-driven (no original subject recorded) or whose publish fails; those before it are done.
pub async fn redrive(
    bus: &Bus,
    namespace: &str,
    filter: &DeadLetterFilter,
) -> anyhow::Result<Vec<Redriven>> {
    let dead_letters = list(bus, namespace, filter).await?;
    redrive_listed(bus, namespace, dead_letters).await
}

/// Re-drives `dead_letters`, as [`list`] gave them, oldest first; see [`redrive`].
pub async fn redrive_listed(
    bus: &Bus,
    namespace: &str,
    dead_letters: Vec<DeadLetter>,
) -> anyhow::Result<Vec<Redriven>> {
    let stream = dead_letter_stream(namespace);
    let mut redriven = Vec::new();
    for dead_letter in dead_letters {
        let Some(subject) = dead_letter.original_subject.clone() else {
            anyhow::bail!(
                "dead letter {} has no {} header, so there is nowhere to re-drive it",
                dead_letter.sequence,
                headers::ORIGINAL_SUBJECT
            );
        };
        let mut message_headers = BTreeMap::new();
        if let Some(content_type) = dead_letter.headers.get("Content-Type") {
            message_headers.insert("Content-Type".to_owned(), content_type.clone());
        }
        message_headers.insert(REDRIVEN_FROM.to_owned(), dead_letter.sequence.to_string());
        let ack = bus
            .publish(OutgoingMessage {
                subject: subject.clone(),
                id: format!("redrive:{}:{}", stream.name, dead_letter.sequence),
                headers: message_headers,
                payload: dead_letter.payload.clone(),
            })
            .await
            .with_context(|| {
                format!(
                    "Failed to re-drive dead letter {} to {subject}",
                    dead_letter.sequence
                )
            })?;
        bus.delete_message(&stream.name, dead_letter.sequence)
            .await
            .with_context(|| {
                format!(
                    "Re-drove dead letter {} but failed to delete it; re-driving it again publishes nothing twice",
                    dead_letter.sequence
                )
            })?;
        tracing::info!(
            dead_letter = dead_letter.sequence,
            consumer = %dead_letter.consumer,
            %subject,
            stream_sequence = ack.sequence,
            "Re-drove a dead letter"
        );
        redriven.push(Redriven {
            dead_letter,
            subject,
            stream_sequence: ack.sequence,
        });
    }
    Ok(redriven)
}

// === helpers ===

/// RFC 3339 in UTC.
pub fn rfc3339(at: SystemTime) -> String {
    time::OffsetDateTime::from(at)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn dead_letter(namespace: &str, message: StoredMessage) -> DeadLetter {
    let header = |name: &str| message.headers.get(name).cloned();
    let subject_prefix = format!("{namespace}.deadletter.");
    let consumer = header(headers::CONSUMER).unwrap_or_else(|| {
        message
            .subject
            .strip_prefix(&subject_prefix)
            .unwrap_or(&message.subject)
            .to_owned()
    });
    let event = serde_json::from_slice::<CloudEvent>(&message.payload)
        .ok()
        .map(|event| EventSummary {
            id: event.id,
            event_type: event.event_type,
            subject: event.subject,
            aggregate_version: event.aggregateversion,
        });
    DeadLetter {
        sequence: message.sequence,
        consumer,
        original_subject: header(headers::ORIGINAL_SUBJECT),
        reason: header(headers::ERROR).unwrap_or_default(),
        dead_lettered_at: message.stored_at,
        delivery_count: header(headers::DELIVERY_COUNT).and_then(|count| count.parse().ok()),
        handler_failures: header(headers::HANDLER_FAILURES).and_then(|count| count.parse().ok()),
        event,
        headers: message.headers,
        payload: message.payload,
    }
}
