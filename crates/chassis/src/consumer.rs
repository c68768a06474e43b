//! The consumer helper: a durable bus consumer that applies each event inside a database
//! transaction and acknowledges only after that transaction commits. It de-duplicates by event id
//! (inbox table), applies each aggregate's versions in order (an older or repeated version is
//! acknowledged and skipped; a gap waits for redelivery), retries failures with exponential
//! backoff, and parks poison messages on the dead-letter subject after `max_deliver` attempts.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::bus::{Bus, ConsumerSpec, Delivery, OutgoingMessage, StreamSpec};
use crate::cloudevents::CloudEvent;
use crate::on_backend;
use crate::storage::{Database, Timestamp, Transaction};

/// Applies one event. Runs inside the consumer's transaction: whatever it writes commits together
/// with the inbox record and the aggregate's new version, or not at all.
pub trait EventHandler: Send + Sync + 'static {
    fn handle(
        &self,
        tx: &mut Transaction,
        event: &CloudEvent,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}

#[derive(Clone, Debug)]
pub struct ConsumerOptions {
    /// Durable name, unique per consuming service and purpose, e.g. `invoicing-product-replica`.
    pub name: String,
    /// The stream to consume, e.g. `EMPORIUM_CATALOG`.
    pub stream: String,
    /// Which subjects, e.g. `emporium.catalog.product.>`. Must cover every event of the
    /// aggregates it follows, or version ordering would wait for versions it never receives.
    pub filter_subject: String,
    /// The bus namespace; dead letters go to `<namespace>.deadletter.<name>`.
    pub namespace: String,
    pub ack_wait: Duration,
    /// Deliveries before a message is dead-lettered.
    pub max_deliver: u64,
    /// First retry delay; doubles per delivery up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    pub batch_size: usize,
}

/// What happened to one delivery; returned for tests and counted in logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// Seen before (same event id): acknowledged, nothing applied.
    Duplicate,
    /// An older or equal version of the aggregate was already applied.
    Stale,
    /// A version is missing before this one: asked for redelivery.
    Gap,
    /// The handler failed: asked for redelivery after a backoff.
    Retry,
    /// Sent to the dead-letter subject and acknowledged.
    DeadLettered,
}

/// Runs a consumer until cancelled.
#[derive(Debug)]
pub struct Consumer<H> {
    database: Database,
    bus: Bus,
    options: ConsumerOptions,
    handler: H,
}

// === impl ConsumerOptions ===

impl ConsumerOptions {
    pub fn new(name: &str, stream: &str, filter_subject: &str, namespace: &str) -> ConsumerOptions {
        ConsumerOptions {
            name: name.to_owned(),
            stream: stream.to_owned(),
            filter_subject: filter_subject.to_owned(),
            namespace: namespace.to_owned(),
            ack_wait: Duration::from_secs(30),
            max_deliver: 10,
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            batch_size: 64,
        }
    }

    fn dead_letter_subject(&self) -> String {
        format!("{}.deadletter.{}", self.namespace, self.name)
    }

    fn backoff_for(&self, delivery_count: u64) -> Duration {
        let exponent = u32::try_from(delivery_count.saturating_sub(1).min(16)).unwrap_or(16);
        self.backoff
            .saturating_mul(2u32.saturating_pow(exponent))
            .min(self.max_backoff)
    }
}

/// The dead-letter stream of a namespace: `<NAMESPACE>_DEADLETTER` over `<namespace>.deadletter.>`.
pub fn dead_letter_stream(namespace: &str) -> StreamSpec {
    StreamSpec {
        name: crate::outbox::stream_name(namespace, "deadletter"),
        subjects: vec![format!("{namespace}.deadletter.>")],
        duplicate_window: Duration::from_secs(60 * 60),
    }
}

// === impl Consumer ===

impl<H: EventHandler> Consumer<H> {
    pub fn new(database: Database, bus: Bus, options: ConsumerOptions, handler: H) -> Consumer<H> {
        Consumer {
            database,
            bus,
            options,
            handler,
        }
    }

    /// Consumes until `shutdown` is cancelled. A delivery in progress finishes first; bus or
    /// database outages are logged and retried.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut retry_delay = Duration::from_millis(200);
        loop {
            let result = self.run_once(&shutdown).await;
            if shutdown.is_cancelled() {
                return;
            }
            if let Err(error) = result {
                tracing::warn!(
                    consumer = %self.options.name,
                    error.cause_chain = ?error,
                    error.message = %error,
                    "Consumer failed; reconnecting"
                );
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(retry_delay) => {}
            }
            retry_delay = (retry_delay * 2).min(Duration::from_secs(10));
        }
    }

    async fn run_once(&self, shutdown: &CancellationToken) -> anyhow::Result<()> {
        self.bus
            .ensure_stream(&dead_letter_stream(&self.options.namespace))
            .await?;
        let mut consumer = self
            .bus
            .consumer(&ConsumerSpec {
                stream: self.options.stream.clone(),
                durable_name: self.options.name.clone(),
                filter_subject: self.options.filter_subject.clone(),
                ack_wait: self.options.ack_wait,
            })
            .await?;
        loop {
            let deliveries = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                deliveries = consumer.fetch(self.options.batch_size, Duration::from_secs(5)) => deliveries?,
            };
            for delivery in deliveries {
                self.process(delivery).await?;
            }
        }
    }

    /// Handles one delivery and settles it. Errors are the bus's or the database's, never the
    /// handler's (those become retries).
    #[tracing::instrument(skip_all, fields(consumer = %self.options.name, subject = %delivery.subject, delivery_count = delivery.delivery_count))]
    pub async fn process(&self, delivery: Delivery) -> anyhow::Result<Outcome> {
        let event: CloudEvent = match serde_json::from_slice(&delivery.payload) {
            Ok(event) => event,
            Err(error) => {
                let reason = format!("not a CloudEvents JSON envelope: {error}");
                return self.dead_letter(delivery, None, &reason).await;
            }
        };
        let Ok(event_id) = Uuid::parse_str(&event.id) else {
            return self
                .dead_letter(delivery, Some(&event), "event id is not a UUID")
                .await;
        };
        let Ok(aggregate_id) = Uuid::parse_str(&event.subject) else {
            return self
                .dead_letter(delivery, Some(&event), "subject is not a UUID")
                .await;
        };
        let result = self.apply(&event, event_id, aggregate_id).await;
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(error) => {
                if delivery.delivery_count >= self.options.max_deliver {
                    let reason = format!("{error:#}");
                    return self.dead_letter(delivery, Some(&event), &reason).await;
                }
                tracing::warn!(error.cause_chain = ?error, error.message = %error, "Event handler failed; will retry");
                Outcome::Retry
            }
        };
        match outcome {
            Outcome::Applied | Outcome::Duplicate | Outcome::Stale => delivery.ack().await?,
            Outcome::Gap if delivery.delivery_count >= self.options.max_deliver => {
                let reason = "earlier versions of the aggregate never arrived";
                return self.dead_letter(delivery, Some(&event), reason).await;
            }
            Outcome::Gap | Outcome::Retry => {
                let delay = self.options.backoff_for(delivery.delivery_count);
                delivery.nak(delay).await?;
            }
            Outcome::DeadLettered => {}
        }
        tracing::debug!(?outcome, event_id = %event_id, "Event processed");
        Ok(outcome)
    }

    async fn apply(
        &self,
        event: &CloudEvent,
        event_id: Uuid,
        aggregate_id: Uuid,
    ) -> anyhow::Result<Outcome> {
        let consumer = self.options.name.as_str();
        let mut tx = self.database.begin().await.context("Failed to begin")?;
        let n_inserted = on_backend!(tx, conn => {
            sqlx::query(
                "INSERT INTO inbox_events (consumer, event_id, processed_at) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(consumer)
            .bind(event_id)
            .bind(Timestamp::now())
            .execute(conn)
            .await
            .map(|result| result.rows_affected())
        })
        .context("Failed to record the event in the inbox")?;
        if n_inserted == 0 {
            tx.rollback().await?;
            return Ok(Outcome::Duplicate);
        }
        let applied_version: Option<i64> = on_backend!(tx, conn => {
            sqlx::query_scalar(
                "SELECT version FROM consumer_aggregate_versions WHERE consumer = $1 AND aggregate_id = $2",
            )
            .bind(consumer)
            .bind(aggregate_id)
            .fetch_optional(conn)
            .await
        })
        .context("Failed to read the applied version")?;
        let applied_version = applied_version.unwrap_or(0);
        if event.aggregateversion <= applied_version {
            // Keep the inbox record: this event id is settled for good.
            tx.commit().await?;
            return Ok(Outcome::Stale);
        }
        if event.aggregateversion > applied_version + 1 {
            tx.rollback().await?;
            return Ok(Outcome::Gap);
        }
        self.handler.handle(&mut tx, event).await?;
        on_backend!(tx, conn => {
            sqlx::query(
                "INSERT INTO consumer_aggregate_versions (consumer, aggregate_id, version) VALUES ($1, $2, $3) \
                 ON CONFLICT (consumer, aggregate_id) DO UPDATE SET version = excluded.version",
            )
            .bind(consumer)
            .bind(aggregate_id)
            .bind(event.aggregateversion)
            .execute(conn)
            .await
            .map(|done| done.rows_affected())
        })
        .context("Failed to record the applied version")?;
        tx.commit()
            .await
            .context("Failed to commit the handled event")?;
        Ok(Outcome::Applied)
    }

    async fn dead_letter(
        &self,
        delivery: Delivery,
        event: Option<&CloudEvent>,
        reason: &str,
    ) -> anyhow::Result<Outcome> {
        tracing::error!(reason, "Dead-lettering a message");
        let mut headers = BTreeMap::new();
        headers.insert(
            "Emporium-Original-Subject".to_owned(),
            delivery.subject.clone(),
        );
        headers.insert(
            "Emporium-Error".to_owned(),
            reason.chars().take(512).collect(),
        );
        headers.insert(
            "Emporium-Delivery-Count".to_owned(),
            delivery.delivery_count.to_string(),
        );
        let id = match event {
            Some(event) => format!("{}:{}", self.options.name, event.id),
            None => format!("{}:seq:{}", self.options.name, delivery.stream_sequence),
        };
        self.bus
            .publish(OutgoingMessage {
                subject: self.options.dead_letter_subject(),
                id,
                headers,
                payload: delivery.payload.clone(),
            })
            .await
            .context("Failed to publish a dead letter")?;
        delivery.term().await?;
        Ok(Outcome::DeadLettered)
    }
}
