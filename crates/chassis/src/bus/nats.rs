//! NATS JetStream backend: streams with the configured replicas and storage (file by default),
//! publish acknowledgements with `Nats-Msg-Id` de-duplication, durable pull consumers with
//! explicit ack, updated in place when their settings change.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::{self, AckKind, consumer::pull, stream};
use futures::StreamExt;

use super::{
    Acker, BusError, ConsumerPosition, ConsumerSpec, Delivery, NatsStreamSettings,
    NatsStreamStorage, OutgoingMessage, PublishAck, StoredMessage, StreamSpec,
};

/// How many times creating a stream is tried before the start fails.
const CREATE_ATTEMPTS: u32 = 3;

/// A connection to a NATS server with JetStream. Cheap to clone.
#[derive(Clone)]
pub struct NatsBus {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    streams: NatsStreamSettings,
}

/// A bound durable pull consumer.
pub struct NatsConsumer {
    consumer: jetstream::consumer::Consumer<pull::Config>,
}

// === impl NatsBus ===

impl NatsBus {
    pub async fn connect(url: &str, streams: NatsStreamSettings) -> Result<NatsBus, BusError> {
        let client = async_nats::ConnectOptions::new()
            .name("emporium")
            .connection_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .with_context(|| format!("Failed to connect to NATS at {url}"))?;
        let jetstream = jetstream::new(client.clone());
        Ok(NatsBus {
            client,
            jetstream,
            streams,
        })
    }

    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    pub async fn ensure_stream(&self, spec: &StreamSpec) -> Result<(), BusError> {
        let storage = match self.streams.storage {
            NatsStreamStorage::File => stream::StorageType::File,
            NatsStreamStorage::Memory => stream::StorageType::Memory,
        };
        let replicas = self.streams.replicas;
        let config = stream::Config {
            name: spec.name.clone(),
            subjects: spec.subjects.clone(),
            duplicate_window: spec.duplicate_window,
            num_replicas: self.streams.replicas,
            storage,
            ..Default::default()
        };
        match self.jetstream.get_stream(&spec.name).await {
            Ok(mut existing) => {
                let info = existing
                    .info()
                    .await
                    .with_context(|| format!("Failed to read stream {}", spec.name))?;
                // JetStream cannot move a stream between file and memory storage.
                if info.config.storage != storage {
                    return Err(BusError::Unexpected(anyhow::anyhow!(
                        "stream {} is stored in {:?} storage, EMPORIUM_NATS_STREAM_STORAGE asks \
                         for {:?}; JetStream cannot change that in place",
                        spec.name,
                        info.config.storage,
                        storage
                    )));
                }
                if info.config.subjects != spec.subjects
                    || info.config.duplicate_window != spec.duplicate_window
                    || info.config.num_replicas != replicas
                {
                    self.jetstream
                        .update_stream(config)
                        .await
                        .with_context(|| {
                            format!(
                                "Failed to update stream {} ({replicas} replicas)",
                                spec.name
                            )
                        })?;
                }
            }
            Err(_) => {
                // Creating is idempotent, and a server can fail it transiently (nats-server 2.9
                // answers 500 when it races removing an emptied store directory): a few quick
                // retries before giving up, so a start does not fail on that.
                let mut attempt = 1;
                loop {
                    match self.jetstream.get_or_create_stream(config.clone()).await {
                        Ok(_) => break,
                        Err(error) if attempt < CREATE_ATTEMPTS => {
                            tracing::warn!(stream = %spec.name, attempt, error.message = %error, "Creating the stream failed; retrying");
                            tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt)))
                                .await;
                            attempt += 1;
                        }
                        Err(error) => {
                            return Err(anyhow::Error::new(error)
                                .context(format!(
                                    "Failed to create stream {} ({replicas} replicas)",
                                    spec.name
                                ))
                                .into());
                        }
                    }
                }
            }
        }
        Ok(())
    }

    pub async fn publish_batch(
        &self,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<PublishAck>, BusError> {
        // Send everything first, then collect the acknowledgements: one round trip for the batch.
        // Messages from one connection reach the server in the order they were sent.
        let mut pending_acks = Vec::with_capacity(messages.len());
        for message in messages {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(async_nats::header::NATS_MESSAGE_ID, message.id.as_str());
            for (name, value) in &message.headers {
                headers.insert(name.as_str(), value.as_str());
            }
            let size = message.payload.len()
                + message
                    .headers
                    .iter()
                    .map(|(name, value)| name.len() + value.len())
                    .sum::<usize>();
            let pending = self
                .jetstream
                .publish_with_headers(message.subject.clone(), headers, message.payload)
                .await
                .map_err(|error| match error.kind() {
                    jetstream::context::PublishErrorKind::StreamNotFound => {
                        BusError::NoStream(message.subject.clone())
                    }
                    jetstream::context::PublishErrorKind::MaxPayloadExceeded => {
                        BusError::TooLarge {
                            subject: message.subject.clone(),
                            size,
                            max: self.client.max_payload(),
                        }
                    }
                    _ => BusError::Unexpected(
                        anyhow::Error::from(error).context("Failed to publish to NATS"),
                    ),
                })?;
            pending_acks.push((message.subject, pending));
        }
        let mut acks = Vec::with_capacity(pending_acks.len());
        for (subject, pending) in pending_acks {
            let ack = pending.await.map_err(|error| match error.kind() {
                jetstream::context::PublishErrorKind::StreamNotFound => BusError::NoStream(subject),
                _ => BusError::Unexpected(
                    anyhow::Error::from(error).context("NATS did not acknowledge a publish"),
                ),
            })?;
            acks.push(PublishAck {
                sequence: ack.sequence,
                duplicate: ack.duplicate,
            });
        }
        Ok(acks)
    }

    pub async fn consumer(&self, spec: &ConsumerSpec) -> Result<NatsConsumer, BusError> {
        let stream = self
            .jetstream
            .get_stream(&spec.stream)
            .await
            .with_context(|| format!("Failed to find stream {}", spec.stream))?;
        let config = pull::Config {
            durable_name: Some(spec.durable_name.clone()),
            filter_subject: spec.filter_subject.clone(),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: spec.ack_wait,
            deliver_policy: jetstream::consumer::DeliverPolicy::All,
            // Unlimited: the consumer helper counts deliveries and dead-letters poison messages
            // itself, so JetStream must never silently stop redelivering one.
            max_deliver: -1,
            ..Default::default()
        };
        // Create-or-update: a new durable is created, an existing one takes the new settings (as
        // the embedded bus does), so a changed ack wait or filter applies from the next start
        // (nats-server 2.9 changes both in place). The server refuses what it cannot change in
        // place, e.g. the ack policy of a durable of that name made by another program; that
        // fails the start, naming the consumer, with the server's reason.
        let consumer = stream.create_consumer(config).await.map_err(|error| {
            anyhow::Error::new(error).context(format!(
                "Failed to create or update consumer {} on stream {} (filter {}, ack wait {:?}); \
                 a consumer the server cannot change in place must be removed to be recreated",
                spec.durable_name, spec.stream, spec.filter_subject, spec.ack_wait
            ))
        })?;
        Ok(NatsConsumer { consumer })
    }

    pub async fn read_stream(
        &self,
        stream: &str,
        filter_subject: &str,
        from_sequence: u64,
        max: usize,
    ) -> Result<Vec<StoredMessage>, BusError> {
        let stream = self
            .jetstream
            .get_stream_no_info(stream)
            .await
            .with_context(|| format!("Failed to find stream {stream}"))?;
        let mut messages = Vec::new();
        let mut next_sequence = from_sequence.max(1);
        while messages.len() < max {
            // The first message at or after `next_sequence` whose subject matches the filter.
            let found = stream
                .raw_message_builder()
                .sequence(next_sequence)
                .next_by_subject(filter_subject)
                .send()
                .await;
            let message = match found {
                Ok(message) => message,
                Err(error)
                    if error.kind() == jetstream::stream::RawMessageErrorKind::NoMessageFound =>
                {
                    break;
                }
                Err(error) => {
                    return Err(anyhow::Error::from(error)
                        .context("Failed to read a stored message")
                        .into());
                }
            };
            next_sequence = message.sequence + 1;
            let headers = header_map(Some(&message.headers));
            messages.push(StoredMessage {
                sequence: message.sequence,
                subject: message.subject.to_string(),
                headers,
                payload: message.payload,
                stored_at: message.time.into(),
            });
        }
        Ok(messages)
    }

    pub async fn consumer_position(
        &self,
        stream: &str,
        durable_name: &str,
    ) -> Result<Option<ConsumerPosition>, BusError> {
        use jetstream::context::ConsumerInfoErrorKind;
        let stream = self
            .jetstream
            .get_stream_no_info(stream)
            .await
            .with_context(|| format!("Failed to find stream {stream}"))?;
        match stream.consumer_info(durable_name).await {
            Ok(info) => Ok(Some(ConsumerPosition {
                pending: info.num_pending,
                ack_pending: u64::try_from(info.num_ack_pending).unwrap_or(u64::MAX),
            })),
            Err(error)
                if matches!(
                    error.kind(),
                    ConsumerInfoErrorKind::NotFound | ConsumerInfoErrorKind::StreamNotFound
                ) =>
            {
                Ok(None)
            }
            Err(error) => Err(anyhow::Error::from(error)
                .context(format!("Failed to read consumer {durable_name}"))
                .into()),
        }
    }

    pub async fn count_by_subject(
        &self,
        stream: &str,
        filter_subject: &str,
    ) -> Result<BTreeMap<String, u64>, BusError> {
        use futures::TryStreamExt as _;
        let stream = self
            .jetstream
            .get_stream_no_info(stream)
            .await
            .with_context(|| format!("Failed to find stream {stream}"))?;
        let mut subjects = stream
            .info_with_subjects(filter_subject)
            .await
            .context("Failed to read the stream's subjects")?;
        let mut counts = BTreeMap::new();
        while let Some((subject, count)) = subjects
            .try_next()
            .await
            .context("Failed to read the stream's subjects")?
        {
            counts.insert(subject, u64::try_from(count).unwrap_or(u64::MAX));
        }
        Ok(counts)
    }

    pub async fn delete_message(&self, stream: &str, sequence: u64) -> Result<bool, BusError> {
        let stream = self
            .jetstream
            .get_stream_no_info(stream)
            .await
            .with_context(|| format!("Failed to find stream {stream}"))?;
        match stream.delete_message(sequence).await {
            Ok(deleted) => Ok(deleted),
            // JetStream answers a missing message with an API error; any other is a failure.
            Err(error)
                if matches!(
                    error.kind(),
                    jetstream::stream::DeleteMessageErrorKind::JetStream(api_error)
                        if api_error.error_code() == jetstream::ErrorCode::NO_MESSAGE_FOUND
                ) =>
            {
                Ok(false)
            }
            Err(error) => Err(anyhow::Error::from(error)
                .context(format!("Failed to delete message {sequence}"))
                .into()),
        }
    }
}

impl std::fmt::Debug for NatsBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBus")
            .field("state", &self.client.connection_state())
            .finish()
    }
}

/// A live tail of one stream: an ordered consumer (ephemeral, unacknowledged, recreated by the
/// client from the last sequence it saw whenever it notices a gap), delivering new messages only.
pub struct NatsTail {
    messages: pull::Ordered,
}

impl NatsBus {
    pub async fn tail(&self, stream: &str, filter_subject: &str) -> Result<NatsTail, BusError> {
        let stream = self
            .jetstream
            .get_stream_no_info(stream)
            .await
            .with_context(|| format!("Failed to find stream {stream}"))?;
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: filter_subject.to_owned(),
                deliver_policy: jetstream::consumer::DeliverPolicy::New,
                ..Default::default()
            })
            .await
            .with_context(|| format!("Failed to follow {filter_subject}"))?;
        let messages = consumer
            .messages()
            .await
            .with_context(|| format!("Failed to follow {filter_subject}"))?;
        Ok(NatsTail { messages })
    }
}

impl NatsTail {
    pub async fn next(&mut self) -> Result<StoredMessage, BusError> {
        let message = self
            .messages
            .next()
            .await
            .ok_or(BusError::Closed)?
            .map_err(|error| anyhow::Error::new(error).context("Failed to follow a stream"))?;
        let info = message
            .info()
            .map_err(|e| anyhow::anyhow!("{e}").context("Message without JetStream metadata"))?;
        let (sequence, stored_at) = (info.stream_sequence, info.published.into());
        Ok(StoredMessage {
            sequence,
            subject: message.subject.to_string(),
            headers: header_map(message.headers.as_ref()),
            payload: message.payload.clone(),
            stored_at,
        })
    }
}

impl std::fmt::Debug for NatsTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsTail").finish_non_exhaustive()
    }
}

// === impl NatsConsumer ===

impl NatsConsumer {
    pub async fn fetch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        // A no-wait fetch returns what is there at once; only when that is nothing do we park a
        // pull request for one message, so a quiet stream costs one request per `wait`.
        let mut deliveries = self.fetch_available(max).await?;
        if deliveries.is_empty() {
            let mut batch = self
                .consumer
                .batch()
                .max_messages(1)
                .expires(wait)
                .messages()
                .await
                .context("Failed to pull from NATS")?;
            if let Some(message) = batch.next().await {
                let message = message.map_err(|e| anyhow::anyhow!(e).context("Failed to pull"))?;
                deliveries.push(delivery(message)?);
                if max > 1 {
                    deliveries.extend(self.fetch_available(max - 1).await?);
                }
            }
        }
        Ok(deliveries)
    }

    async fn fetch_available(&mut self, max: usize) -> Result<Vec<Delivery>, BusError> {
        let mut batch = self
            .consumer
            .fetch()
            .max_messages(max)
            .messages()
            .await
            .context("Failed to fetch from NATS")?;
        let mut deliveries = Vec::new();
        while let Some(message) = batch.next().await {
            let message = message.map_err(|e| anyhow::anyhow!(e).context("Failed to fetch"))?;
            deliveries.push(delivery(message)?);
        }
        Ok(deliveries)
    }
}

impl std::fmt::Debug for NatsConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsConsumer")
            .field(
                "durable_name",
                &self.consumer.cached_info().config.durable_name,
            )
            .finish()
    }
}

// === helpers ===

/// A message's headers, the first value of each.
fn header_map(headers: Option<&async_nats::HeaderMap>) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for (name, values) in headers.into_iter().flat_map(async_nats::HeaderMap::iter) {
        if let Some(value) = values.first() {
            map.insert(name.to_string(), value.to_string());
        }
    }
    map
}

fn delivery(message: jetstream::Message) -> Result<Delivery, BusError> {
    let info = message
        .info()
        .map_err(|e| anyhow::anyhow!("{e}").context("Message without JetStream metadata"))?;
    let delivery_count = u64::try_from(info.delivered).unwrap_or(1);
    let stream_sequence = info.stream_sequence;
    Ok(Delivery {
        subject: message.subject.to_string(),
        headers: header_map(message.headers.as_ref()),
        payload: message.payload.clone(),
        delivery_count,
        stream_sequence,
        acker: Acker::Nats(Box::new(message)),
    })
}

pub(super) async fn ack(message: &jetstream::Message) -> Result<(), BusError> {
    message
        .ack()
        .await
        .map_err(|e| anyhow::anyhow!(e).context("Failed to ack"))?;
    Ok(())
}

pub(super) async fn nak(message: &jetstream::Message, delay: Duration) -> Result<(), BusError> {
    message
        .ack_with(AckKind::Nak(Some(delay)))
        .await
        .map_err(|e| anyhow::anyhow!(e).context("Failed to nak"))?;
    Ok(())
}

pub(super) async fn term(message: &jetstream::Message) -> Result<(), BusError> {
    message
        .ack_with(AckKind::Term)
        .await
        .map_err(|e| anyhow::anyhow!(e).context("Failed to term"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Against the shared NATS server (`EMPORIUM_TEST_NATS_URL`, default the local one), each test
    //! in its own stream, deleted at the end. The server is required: these fail without it.

    use std::time::Duration;

    use async_nats::jetstream::consumer::{AckPolicy, pull};
    use async_nats::jetstream::stream::StorageType;

    use super::NatsBus;
    use crate::bus::{
        ConsumerSpec, NatsStreamSettings, NatsStreamStorage, OutgoingMessage, StreamSpec,
    };

    /// A uniquely named stream that exists for one test, deleted when this is dropped (also when
    /// the test fails).
    struct TestStream {
        bus: NatsBus,
        spec: StreamSpec,
    }

    #[tokio::test]
    async fn an_existing_consumer_takes_a_changed_ack_wait_and_filter() {
        // Arrange
        let stream = TestStream::new(NatsStreamSettings::default()).await;
        let mut spec = ConsumerSpec {
            stream: stream.spec.name.clone(),
            durable_name: "billing".to_owned(),
            filter_subject: stream.spec.subjects[0].clone(),
            ack_wait: Duration::from_secs(30),
        };
        stream.bus.consumer(&spec).await.unwrap();

        // Act
        spec.ack_wait = Duration::from_secs(7);
        spec.filter_subject = format!("{}.placed", spec.filter_subject.trim_end_matches(".>"));
        let consumer = stream.bus.consumer(&spec).await.unwrap();

        // Assert
        let info = stream
            .bus
            .jetstream
            .get_stream(&stream.spec.name)
            .await
            .unwrap()
            .consumer_info("billing")
            .await
            .unwrap();
        assert_eq!(info.config.ack_wait, Duration::from_secs(7));
        assert_eq!(info.config.filter_subject, spec.filter_subject);
        assert_eq!(
            consumer.consumer.cached_info().config.ack_wait,
            Duration::from_secs(7)
        );
    }

    #[tokio::test]
    async fn a_tail_sees_only_what_is_stored_after_it_began_matching_its_filter_in_order() {
        // Arrange
        let stream = TestStream::new(NatsStreamSettings::default()).await;
        let prefix = stream.spec.subjects[0].trim_end_matches(".>").to_owned();
        let message = |action: &str, id: String| OutgoingMessage {
            subject: format!("{prefix}.{action}"),
            payload: bytes::Bytes::from(id.clone()),
            id,
            headers: std::collections::BTreeMap::new(),
        };
        stream
            .bus
            .publish_batch(vec![message("paid", "before".to_owned())])
            .await
            .unwrap();
        let mut tail = stream
            .bus
            .tail(&stream.spec.name, &format!("{prefix}.paid"))
            .await
            .unwrap();

        // Act
        let published = (0..5)
            .flat_map(|n| {
                [
                    message("placed", format!("placed-{n}")),
                    message("paid", format!("paid-{n}")),
                ]
            })
            .collect();
        stream.bus.publish_batch(published).await.unwrap();
        let mut seen = Vec::new();
        while seen.len() < 5 {
            let next = tokio::time::timeout(Duration::from_secs(5), tail.next()).await;
            seen.push(next.expect("a tailed message in time").unwrap());
        }

        // Assert
        let payloads: Vec<String> = seen
            .iter()
            .map(|message| String::from_utf8(message.payload.to_vec()).unwrap())
            .collect();
        let expected: Vec<String> = (0..5).map(|n| format!("paid-{n}")).collect();
        assert_eq!(payloads, expected);
        assert!(
            seen.windows(2)
                .all(|pair| pair[0].sequence < pair[1].sequence)
        );
    }

    #[tokio::test]
    async fn a_consumer_the_server_cannot_change_fails_naming_it() {
        // Arrange: a durable of the same name with another ack policy, as another program
        // might have made it.
        let stream = TestStream::new(NatsStreamSettings::default()).await;
        stream
            .bus
            .jetstream
            .get_stream(&stream.spec.name)
            .await
            .unwrap()
            .create_consumer(pull::Config {
                durable_name: Some("billing".to_owned()),
                filter_subject: stream.spec.subjects[0].clone(),
                ack_policy: AckPolicy::All,
                ..Default::default()
            })
            .await
            .unwrap();
        let spec = ConsumerSpec {
            stream: stream.spec.name.clone(),
            durable_name: "billing".to_owned(),
            filter_subject: stream.spec.subjects[0].clone(),
            ack_wait: Duration::from_secs(30),
        };

        // Act
        let error = stream.bus.consumer(&spec).await.unwrap_err();

        // Assert
        let message = format!("{error:#}");
        assert!(message.contains("consumer billing"), "{message}");
        assert!(message.contains("ack policy"), "{message}");
    }

    #[tokio::test]
    async fn a_stream_is_created_with_the_configured_replicas_and_storage() {
        for settings in [
            NatsStreamSettings::default(),
            NatsStreamSettings {
                replicas: 1,
                storage: NatsStreamStorage::Memory,
            },
        ] {
            // Arrange + Act
            let stream = TestStream::new(settings).await;

            // Assert
            let info = stream.info().await;
            assert_eq!(info.config.num_replicas, 1);
            let expected = match settings.storage {
                NatsStreamStorage::File => StorageType::File,
                NatsStreamStorage::Memory => StorageType::Memory,
            };
            assert_eq!(info.config.storage, expected);
        }
    }

    #[tokio::test]
    async fn a_stream_in_other_storage_is_refused_naming_the_setting() {
        // Arrange
        let stream = TestStream::new(NatsStreamSettings::default()).await;
        let memory_bus = NatsBus::connect(
            &nats_url(),
            NatsStreamSettings {
                replicas: 1,
                storage: NatsStreamStorage::Memory,
            },
        )
        .await
        .unwrap();

        // Act
        let error = memory_bus.ensure_stream(&stream.spec).await.unwrap_err();

        // Assert
        assert!(
            format!("{error:#}").contains("EMPORIUM_NATS_STREAM_STORAGE"),
            "{error:#}"
        );
        assert_eq!(stream.info().await.config.storage, StorageType::File);
    }

    #[tokio::test]
    async fn more_replicas_than_a_single_server_holds_fail_the_start_clearly() {
        // Arrange
        let bus = NatsBus::connect(
            &nats_url(),
            NatsStreamSettings {
                replicas: 3,
                storage: NatsStreamStorage::File,
            },
        )
        .await
        .unwrap();
        let spec = unique_stream_spec();

        // Act
        let error = bus.ensure_stream(&spec).await.unwrap_err();

        // Assert
        assert!(format!("{error:#}").contains("3 replicas"), "{error:#}");
        let _ = bus.jetstream.delete_stream(&spec.name).await;
    }

    // === impl TestStream ===

    impl TestStream {
        async fn new(settings: NatsStreamSettings) -> TestStream {
            let bus = NatsBus::connect(&nats_url(), settings)
                .await
                .unwrap_or_else(|error| panic!("NATS is required for this test: {error:#}"));
            let spec = unique_stream_spec();
            bus.ensure_stream(&spec).await.unwrap();
            TestStream { bus, spec }
        }

        async fn info(&self) -> async_nats::jetstream::stream::Info {
            self.bus
                .jetstream
                .get_stream(&self.spec.name)
                .await
                .unwrap()
                .info()
                .await
                .unwrap()
                .clone()
        }
    }

    impl Drop for TestStream {
        fn drop(&mut self) {
            // A drop cannot await, and blocks the test's runtime, which drives the bus's
            // connection: delete through a connection of its own on a runtime of its own.
            let name = self.spec.name.clone();
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(runtime) = runtime {
                    runtime.block_on(async {
                        if let Ok(client) = async_nats::connect(nats_url()).await {
                            let _ = async_nats::jetstream::new(client)
                                .delete_stream(&name)
                                .await;
                        }
                    });
                }
            })
            .join();
        }
    }

    // === helpers ===

    fn nats_url() -> String {
        std::env::var("EMPORIUM_TEST_NATS_URL")
            .unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
    }

    fn unique_stream_spec() -> StreamSpec {
        let namespace = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        StreamSpec {
            name: format!("{}_ORDERS", namespace.to_uppercase()),
            subjects: vec![format!("{namespace}.orders.>")],
            duplicate_window: Duration::from_secs(60),
        }
    }
}
