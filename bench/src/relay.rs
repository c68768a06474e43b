//! The relay's backlog drain beside the bus's own publish rate. A catalog without its relay
//! records a backlog (one `product.created` per CreateProduct); then a relay starts and is timed
//! until the outbox is empty. The baseline publishes the very same messages (the relay's
//! CloudEvents, headers and de-duplication ids) to a throwaway stream of its own: on NATS with
//! async-nats, acknowledgements awaited in a sliding window (JetStream's pipelined rate); on the
//! embedded bus with `Bus::publish_batch` in batches of the relay's size (what the embedded bus
//! stores when nothing else is done).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chassis::auth::TokenVerifier;
use chassis::bus::{Bus, BusSettings, OutgoingMessage};
use chassis::outbox::{EventRoute, Relay};
use test_support::{Backend, TestBus};
use tokio_util::sync::CancellationToken;

use crate::under_test;

/// Publishes in flight at once in the baseline: the relay's batch size.
const WINDOW: usize = 256;

/// How fast a backlog drained, and how fast the bus took the same messages.
#[derive(Debug)]
pub(crate) struct RelayFigures {
    pub(crate) n_events: usize,
    pub(crate) relay: Duration,
    pub(crate) baseline: Duration,
    /// What the baseline is, in a few words.
    pub(crate) baseline_name: &'static str,
}

/// Records `n_products` creations with no relay running, then times a relay draining them and
/// the bus taking the same messages directly.
pub(crate) async fn measure(
    runtime: &tokio::runtime::Handle,
    backend: Backend,
    verifier: Arc<TokenVerifier>,
    token: &str,
    n_products: usize,
) -> anyhow::Result<RelayFigures> {
    let app = under_test::start(runtime, backend, verifier, false).await?;
    let category_id = app.create_category(token).await?;
    let ids = app.seed(token, &category_id, n_products).await?;

    // The baseline's messages: what the relay will publish, addressed to another namespace.
    let baseline_bus = TestBus::new(backend).await;
    let baseline_route = EventRoute::new(catalog::NAME, &baseline_bus.namespace);
    let mut messages = Vec::with_capacity(ids.len());
    for id in &ids {
        let id = uuid::Uuid::parse_str(id).context("The catalog returned a bad id")?;
        for event in chassis::outbox::list_events(&app.database, id, 0, 10).await? {
            messages.push(baseline_route.message(&event)?);
        }
    }
    let n_events = usize::try_from(chassis::outbox::unpublished_count(&app.database).await?)
        .context("A count is never negative")?;

    let relay = Relay::new(
        app.database.clone(),
        app.bus.clone(),
        EventRoute::new(catalog::NAME, &app.namespace),
    );
    let relay_shutdown = CancellationToken::new();
    let started = Instant::now();
    let relay_task = runtime.spawn(relay.run(relay_shutdown.clone()));
    app.wait_for_empty_outbox(Duration::from_secs(300)).await?;
    let relay_time = started.elapsed();
    relay_shutdown.cancel();
    relay_task.await.context("The relay panicked")?;
    app.stop().await?;

    let settings = baseline_bus.settings.clone();
    let baseline = runtime
        .spawn(async move { publish_directly(&settings, &baseline_route, messages).await })
        .await
        .context("The baseline publisher panicked")??;
    drop(baseline_bus);
    Ok(RelayFigures {
        n_events,
        relay: relay_time,
        baseline,
        baseline_name: match backend {
            Backend::SqliteEmbedded => "embedded bus, publish_batch of 256",
            Backend::PostgresNats => "JetStream, async-nats, 256 acks in flight",
        },
    })
}

/// Publishes `messages` to `route`'s stream (created first, not timed) and returns how long the
/// bus took to acknowledge them all.
async fn publish_directly(
    settings: &BusSettings,
    route: &EventRoute,
    messages: Vec<OutgoingMessage>,
) -> anyhow::Result<Duration> {
    let bus = Bus::connect(settings).await?;
    bus.ensure_stream(&route.stream()).await?;
    match settings {
        BusSettings::Embedded { .. } => {
            let started = Instant::now();
            let mut messages = messages.into_iter().peekable();
            while messages.peek().is_some() {
                let batch: Vec<OutgoingMessage> = messages.by_ref().take(WINDOW).collect();
                bus.publish_batch(batch).await?;
            }
            Ok(started.elapsed())
        }
        BusSettings::Nats { url, .. } => {
            let client = async_nats::connect(url.as_str())
                .await
                .context("NATS is required")?;
            let jetstream = async_nats::jetstream::new(client);
            let started = Instant::now();
            let mut in_flight: VecDeque<async_nats::jetstream::context::PublishAckFuture> =
                VecDeque::with_capacity(WINDOW);
            for message in messages {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert(async_nats::header::NATS_MESSAGE_ID, message.id.as_str());
                for (name, value) in &message.headers {
                    headers.insert(name.as_str(), value.as_str());
                }
                if in_flight.len() == WINDOW
                    && let Some(oldest) = in_flight.pop_front()
                {
                    oldest.await.context("NATS did not acknowledge a publish")?;
                }
                let pending = jetstream
                    .publish_with_headers(message.subject, headers, message.payload)
                    .await
                    .context("Failed to publish to NATS")?;
                in_flight.push_back(pending);
            }
            for pending in in_flight {
                pending
                    .await
                    .context("NATS did not acknowledge a publish")?;
            }
            Ok(started.elapsed())
        }
    }
}
