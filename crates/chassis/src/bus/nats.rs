//! NATS JetStream backend: file-backed streams, publish acknowledgements with `Nats-Msg-Id`
//! de-duplication, durable pull consumers with explicit ack.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::{self, AckKind, consumer::pull, stream};
use futures::StreamExt;

use super::{
    Acker, BusError, ConsumerSpec, Delivery, OutgoingMessage, PublishAck, StoredMessage, StreamSpec,
};

/// How many times creating a stream is tried before the start fails.
const CREATE_ATTEMPTS: u32 = 3;

/// A connection to a NATS server with JetStream. Cheap to clone.
#[derive(Clone)]
pub struct NatsBus {
    client: async_nats::Client,
    jetstream: jetstream::Context,
}

/// A bound durable pull consumer.
pub struct NatsConsumer {
    consumer: jetstream::consumer::Consumer<pull::Config>,
}

// === impl NatsBus ===

impl NatsBus {
    pub async fn connect(url: &str) -> Result<NatsBus, BusError> {
        let client = async_nats::ConnectOptions::new()
            .name("emporium")
            .connection_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .with_context(|| format!("Failed to connect to NATS at {url}"))?;
        let jetstream = jetstream::new(client.clone());
        Ok(NatsBus { client, jetstream })
    }

    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    pub async fn ensure_stream(&self, spec: &StreamSpec) -> Result<(), BusError> {
        let config = stream::Config {
            name: spec.name.clone(),
            subjects: spec.subjects.clone(),
            duplicate_window: spec.duplicate_window,
            storage: stream::StorageType::File,
            ..Default::default()
        };
        match self.jetstream.get_stream(&spec.name).await {
            Ok(mut existing) => {
                let info = existing
                    .info()
                    .await
                    .with_context(|| format!("Failed to read stream {}", spec.name))?;
                if info.config.subjects != spec.subjects
                    || info.config.duplicate_window != spec.duplicate_window
                {
                    self.jetstream
                        .update_stream(config)
                        .await
                        .with_context(|| format!("Failed to update stream {}", spec.name))?;
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
                                .context(format!("Failed to create stream {}", spec.name))
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
        let consumer = stream
            .get_or_create_consumer(&spec.durable_name, config)
            .await
            .with_context(|| format!("Failed to create consumer {}", spec.durable_name))?;
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
            let mut headers = BTreeMap::new();
            for (name, values) in message.headers.iter() {
                if let Some(value) = values.first() {
                    headers.insert(name.to_string(), value.to_string());
                }
            }
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

fn delivery(message: jetstream::Message) -> Result<Delivery, BusError> {
    let info = message
        .info()
        .map_err(|e| anyhow::anyhow!("{e}").context("Message without JetStream metadata"))?;
    let delivery_count = u64::try_from(info.delivered).unwrap_or(1);
    let stream_sequence = info.stream_sequence;
    let mut headers = BTreeMap::new();
    if let Some(header_map) = &message.headers {
        for (name, values) in header_map.iter() {
            if let Some(value) = values.first() {
                headers.insert(name.to_string(), value.to_string());
            }
        }
    }
    Ok(Delivery {
        subject: message.subject.to_string(),
        headers,
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
