//! The event bus: one interface, two backends. NATS JetStream is the production bus; the embedded
//! bus is a durable, single-machine log for `emporium up`. Both give the same guarantees to the
//! code above them: publishes are acknowledged once stored and de-duplicated by message id,
//! consumers are durable pull consumers with explicit ack, redelivery after the ack wait or a
//! negative ack, and a delivery count the consumer helper uses to dead-letter poison messages.

pub mod embedded;
pub mod nats;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;

pub use embedded::EmbeddedBus;
pub use nats::NatsBus;

/// Where the bus lives: parsed from `EMPORIUM_BUS_URL` (`embedded` or `nats://host:port`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BusSettings {
    /// The embedded bus, persisted in `<data_dir>/bus.db`.
    Embedded { path: std::path::PathBuf },
    /// A NATS server with JetStream enabled.
    Nats {
        url: String,
        /// How the streams this process creates are stored.
        streams: NatsStreamSettings,
    },
}

/// How JetStream stores the streams: replicas and storage type, from `EMPORIUM_NATS_STREAM_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatsStreamSettings {
    /// `EMPORIUM_NATS_STREAM_REPLICAS`: copies of each stream across the cluster, 1..=5 (default
    /// 1, a single server).
    pub replicas: usize,
    /// `EMPORIUM_NATS_STREAM_STORAGE`: `file` (default) or `memory`.
    pub storage: NatsStreamStorage,
}

/// Where JetStream keeps a stream's messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatsStreamStorage {
    /// On disk: survives a server restart.
    File,
    /// In memory: lost when the server stops.
    Memory,
}

/// A stream: every message whose subject matches one of `subjects` is stored in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamSpec {
    /// Stream name, e.g. `EMPORIUM_CATALOG` (upper case, no dots).
    pub name: String,
    /// Subject filters, e.g. `emporium.catalog.>`.
    pub subjects: Vec<String>,
    /// How long a message id is remembered for de-duplication, on both backends.
    pub duplicate_window: Duration,
}

/// A durable pull consumer on a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerSpec {
    pub stream: String,
    /// Durable name; the consumer's position survives restarts under this name.
    pub durable_name: String,
    /// Only messages whose subject matches this filter are delivered (`*` one token, `>` the rest).
    pub filter_subject: String,
    /// A delivery not acknowledged within this time is delivered again.
    pub ack_wait: Duration,
}

/// A message to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub subject: String,
    /// De-duplication id (`Nats-Msg-Id`): a second publish with the same id is dropped.
    pub id: String,
    pub headers: BTreeMap<String, String>,
    pub payload: Bytes,
}

/// The bus's answer to a publish, given once the message is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublishAck {
    /// Sequence of the message in its stream.
    pub sequence: u64,
    /// True when the id had been seen before and this publish was dropped.
    pub duplicate: bool,
}

/// A message as its stream stores it, read for inspection (the dead-letter tools), not delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMessage {
    /// Sequence of the message in its stream.
    pub sequence: u64,
    pub subject: String,
    pub headers: BTreeMap<String, String>,
    pub payload: Bytes,
    /// When the bus stored it.
    pub stored_at: std::time::SystemTime,
}

/// Where a durable consumer stands in its stream: what an operator reads as its lag.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ConsumerPosition {
    /// Messages matching its filter that it has not been delivered yet (JetStream's
    /// `num_pending`).
    pub pending: u64,
    /// Messages delivered to it and neither acknowledged nor terminated yet (`num_ack_pending`).
    pub ack_pending: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("no stream holds subject {0}")]
    NoStream(String),
    #[error("the bus is shut down")]
    Closed,
    /// The bus refuses the message for good: payload and headers exceed its maximum size.
    #[error("a message of {size} bytes for {subject} exceeds the bus's maximum of {max} bytes")]
    TooLarge {
        subject: String,
        size: usize,
        max: usize,
    },
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// The bus a service publishes to and consumes from. Cheap to clone.
#[derive(Clone, Debug)]
pub enum Bus {
    Nats(Box<NatsBus>),
    Embedded(EmbeddedBus),
}

/// A durable consumer, ready to fetch.
#[derive(Debug)]
pub enum Consumer {
    Nats(Box<nats::NatsConsumer>),
    Embedded(embedded::EmbeddedConsumer),
}

/// A live tail of a stream, from [`Bus::tail`].
#[derive(Debug)]
pub enum Tail {
    Nats(Box<nats::NatsTail>),
    Embedded(embedded::EmbeddedTail),
}

/// One delivery of a message to a consumer; settle it with exactly one of ack, nak or term.
#[derive(Debug)]
pub struct Delivery {
    pub subject: String,
    pub headers: BTreeMap<String, String>,
    pub payload: Bytes,
    /// 1 on the first delivery, 2 on the first redelivery, ...
    pub delivery_count: u64,
    /// Sequence of the message in its stream.
    pub stream_sequence: u64,
    acker: Acker,
}

#[derive(Debug)]
enum Acker {
    Nats(Box<async_nats::jetstream::Message>),
    Embedded(embedded::EmbeddedAcker),
}

// === impl NatsStreamSettings ===

impl Default for NatsStreamSettings {
    /// One file-backed copy: what a single NATS server can hold.
    fn default() -> NatsStreamSettings {
        NatsStreamSettings {
            replicas: 1,
            storage: NatsStreamStorage::File,
        }
    }
}

// === impl Bus ===

impl Bus {
    /// Connects to (or opens) the bus the settings name.
    pub async fn connect(settings: &BusSettings) -> Result<Bus, BusError> {
        match settings {
            BusSettings::Embedded { path } => Ok(Bus::Embedded(EmbeddedBus::open(path).await?)),
            BusSettings::Nats { url, streams } => {
                Ok(Bus::Nats(Box::new(NatsBus::connect(url, *streams).await?)))
            }
        }
    }

    /// Creates the stream if it does not exist yet, or brings an existing one's subjects,
    /// de-duplication window and (NATS) replicas in line (idempotent).
    pub async fn ensure_stream(&self, spec: &StreamSpec) -> Result<(), BusError> {
        match self {
            Bus::Nats(bus) => bus.ensure_stream(spec).await,
            Bus::Embedded(bus) => bus.ensure_stream(spec).await,
        }
    }

    /// Publishes the messages in order and returns once every one is stored (or recognised as a
    /// duplicate). Messages are pipelined: one round trip per batch, not per message.
    pub async fn publish_batch(
        &self,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<PublishAck>, BusError> {
        match self {
            Bus::Nats(bus) => bus.publish_batch(messages).await,
            Bus::Embedded(bus) => bus.publish_batch(messages).await,
        }
    }

    /// Publishes one message; see [`Bus::publish_batch`].
    pub async fn publish(&self, message: OutgoingMessage) -> Result<PublishAck, BusError> {
        let mut acks = self.publish_batch(vec![message]).await?;
        acks.pop()
            .ok_or_else(|| BusError::Unexpected(anyhow::anyhow!("publish returned no ack")))
    }

    /// Creates the durable consumer if absent, updates it if its settings changed, and binds to
    /// it.
    pub async fn consumer(&self, spec: &ConsumerSpec) -> Result<Consumer, BusError> {
        match self {
            Bus::Nats(bus) => Ok(Consumer::Nats(Box::new(bus.consumer(spec).await?))),
            Bus::Embedded(bus) => Ok(Consumer::Embedded(bus.consumer(spec).await?)),
        }
    }

    /// Follows `stream` from now on: the messages matching `filter_subject` stored after this
    /// call, in order, on each call of [`Tail::next`]. Nothing is acknowledged and nothing is
    /// kept for the tail when it is dropped (NATS: an ordered, ephemeral consumer). For live
    /// views, such as the gateway's subscriptions; never for work that must not be lost, which
    /// takes a durable [`Bus::consumer`].
    pub async fn tail(&self, stream: &str, filter_subject: &str) -> Result<Tail, BusError> {
        match self {
            Bus::Nats(bus) => Ok(Tail::Nats(Box::new(
                bus.tail(stream, filter_subject).await?,
            ))),
            Bus::Embedded(bus) => Ok(Tail::Embedded(bus.tail(stream, filter_subject).await?)),
        }
    }

    /// Reads up to `max` messages of `stream` whose subject matches `filter_subject`, oldest
    /// first, starting at sequence `from_sequence`. Nothing is delivered or acknowledged: this is
    /// for inspection, e.g. of dead letters.
    pub async fn read_stream(
        &self,
        stream: &str,
        filter_subject: &str,
        from_sequence: u64,
        max: usize,
    ) -> Result<Vec<StoredMessage>, BusError> {
        match self {
            Bus::Nats(bus) => {
                bus.read_stream(stream, filter_subject, from_sequence, max)
                    .await
            }
            Bus::Embedded(bus) => {
                bus.read_stream(stream, filter_subject, from_sequence, max)
                    .await
            }
        }
    }

    /// Removes one message from `stream` for good (a re-driven dead letter). False when there
    /// was no such message.
    pub async fn delete_message(&self, stream: &str, sequence: u64) -> Result<bool, BusError> {
        match self {
            Bus::Nats(bus) => bus.delete_message(stream, sequence).await,
            Bus::Embedded(bus) => bus.delete_message(stream, sequence).await,
        }
    }

    /// Where the durable consumer `durable_name` of `stream` stands; none when it does not exist
    /// (yet).
    pub async fn consumer_position(
        &self,
        stream: &str,
        durable_name: &str,
    ) -> Result<Option<ConsumerPosition>, BusError> {
        match self {
            Bus::Nats(bus) => bus.consumer_position(stream, durable_name).await,
            Bus::Embedded(bus) => bus.consumer_position(stream, durable_name).await,
        }
    }

    /// How many messages `stream` holds per subject, for the subjects matching `filter_subject`
    /// (e.g. the dead letters of each consumer). Subjects with no message are absent.
    pub async fn count_by_subject(
        &self,
        stream: &str,
        filter_subject: &str,
    ) -> Result<BTreeMap<String, u64>, BusError> {
        match self {
            Bus::Nats(bus) => bus.count_by_subject(stream, filter_subject).await,
            Bus::Embedded(bus) => bus.count_by_subject(stream, filter_subject).await,
        }
    }

    /// True while the bus can take publishes (NATS: the connection is up).
    pub fn is_connected(&self) -> bool {
        match self {
            Bus::Nats(bus) => bus.is_connected(),
            Bus::Embedded(_) => true,
        }
    }

    /// Short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Bus::Nats(_) => "nats",
            Bus::Embedded(_) => "embedded",
        }
    }

    /// The bus's `messaging.system` on spans: `nats`, or `emporium_embedded` for the embedded
    /// bus (no standard name: it is Emporium's own).
    pub fn messaging_system(&self) -> &'static str {
        match self {
            Bus::Nats(_) => "nats",
            Bus::Embedded(_) => "emporium_embedded",
        }
    }
}

// === impl Consumer ===

impl Consumer {
    /// Waits up to `wait` for at most `max` deliveries; returns early as soon as at least one is
    /// available. An empty result means nothing arrived in time.
    pub async fn fetch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        match self {
            Consumer::Nats(consumer) => consumer.fetch(max, wait).await,
            Consumer::Embedded(consumer) => consumer.fetch(max, wait).await,
        }
    }
}

// === impl Tail ===

impl Tail {
    /// The next message the tail sees; waits until one is stored.
    pub async fn next(&mut self) -> Result<StoredMessage, BusError> {
        match self {
            Tail::Nats(tail) => tail.next().await,
            Tail::Embedded(tail) => tail.next().await,
        }
    }
}

// === impl Delivery ===

impl Delivery {
    /// Settles the delivery: it will not be delivered again.
    pub async fn ack(self) -> Result<(), BusError> {
        match self.acker {
            Acker::Nats(message) => nats::ack(&message).await,
            Acker::Embedded(acker) => acker.ack().await,
        }
    }

    /// Asks for redelivery after `delay`.
    pub async fn nak(self, delay: Duration) -> Result<(), BusError> {
        match self.acker {
            Acker::Nats(message) => nats::nak(&message, delay).await,
            Acker::Embedded(acker) => acker.nak(delay).await,
        }
    }

    /// Gives up on the message: it will never be delivered to this consumer again.
    pub async fn term(self) -> Result<(), BusError> {
        match self.acker {
            Acker::Nats(message) => nats::term(&message).await,
            Acker::Embedded(acker) => acker.term().await,
        }
    }
}

/// Does `subject` match the filter? Tokens are separated by `.`; `*` matches one token, `>` one or
/// more trailing tokens.
pub fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut filter_tokens = filter.split('.');
    let mut subject_tokens = subject.split('.');
    loop {
        match (filter_tokens.next(), subject_tokens.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(expected), Some(actual)) if expected == actual => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::subject_matches;

    #[test]
    fn subject_filters_follow_nats_wildcards() {
        assert!(subject_matches(
            "emporium.catalog.>",
            "emporium.catalog.product.created"
        ));
        assert!(subject_matches(
            "emporium.*.product.created",
            "emporium.catalog.product.created"
        ));
        assert!(subject_matches("a.b", "a.b"));
        assert!(!subject_matches("emporium.catalog.>", "emporium.catalog"));
        assert!(!subject_matches("emporium.*", "emporium.catalog.product"));
        assert!(!subject_matches("a.b", "a.b.c"));
        assert!(!subject_matches("a.b.c", "a.b"));
    }
}
