//! Consumers of the catalog's events (a test projection of product names): duplicates and
//! disorder end right; a database outage longer than every retry parks nothing; a handler that
//! refuses an event parks it, and a redrive applies it exactly once; latest-version-wins and
//! strict ordering; one failing delivery does not hold up its batch.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chassis::bus::{Bus, OutgoingMessage};
use chassis::cloudevents::CloudEvent;
use chassis::consumer::{
    Consumer, ConsumerCounts, ConsumerOptions, ConsumerStats, EventHandler, VersionOrdering,
    prune_inbox,
};
use chassis::deadletter::{self, DeadLetter, DeadLetterFilter};
use chassis::event_data;
use chassis::on_backend;
use chassis::storage::{Database, Timestamp, Transaction};
use emporium_proto::catalog::v1::Product;
use test_support::{Backend, PostgresCluster, TestDatabase, both_backends, eventually};
use tokio_util::sync::CancellationToken;

use crate::helpers::{CatalogApp as _, TestApp, spawn_app};

both_backends!(
    a_consumer_given_duplicates_and_disorder_ends_in_the_right_state,
    a_database_outage_longer_than_every_retry_dead_letters_nothing,
    a_refused_event_is_dead_lettered_and_a_redrive_applies_it_exactly_once,
    latest_version_wins_applies_the_first_version_seen_and_skips_older_ones,
    strict_sequence_dead_letters_a_gap_after_its_timeout,
    one_failing_delivery_does_not_hold_up_the_rest_of_its_batch,
    the_inbox_is_pruned_past_the_duplicate_window_and_keeps_recent_event_ids,
    a_message_that_is_no_cloudevent_is_dead_lettered_at_once_and_later_events_flow,
    a_handler_runs_in_a_child_of_its_events_trace_context,
);

/// How long a test waits for something the consumer should do soon.
const PATIENCE: Duration = Duration::from_secs(30);

async fn a_consumer_given_duplicates_and_disorder_ends_in_the_right_state(backend: Backend) {
    let app = spawn_app(backend).without_relay().await;
    let database = app.database().await;
    create_projection_table(&database, "product_names").await;
    let namespace = app.test_bus.namespace.clone();
    let product_id = uuid::Uuid::new_v4();
    let versions: Vec<CloudEvent> = (1..=3)
        .map(|version| envelope(product_id, version, &format!("v{version}")))
        .collect();
    // Delivery order: 2, 1, 3, then 1 and 2 again (as redeliveries would).
    let deliveries = [
        &versions[1],
        &versions[0],
        &versions[2],
        &versions[0],
        &versions[1],
    ];
    let subject = format!("{namespace}.catalog.scrambled.product");
    let messages: Vec<OutgoingMessage> = deliveries
        .iter()
        .enumerate()
        .map(|(index, event)| OutgoingMessage {
            subject: subject.clone(),
            id: format!("{}#{index}", event.id),
            headers: BTreeMap::new(),
            payload: serde_json::to_vec(event).unwrap().into(),
        })
        .chain([OutgoingMessage {
            subject: subject.clone(),
            id: "poison".to_owned(),
            headers: BTreeMap::new(),
            payload: b"this is not a CloudEvent".to_vec().into(),
        }])
        .collect();
    app.bus.publish_batch(messages).await.unwrap();
    let projection = NameProjection::new("product_names");
    // Strict: each version applied on top of the one before, as delta events need.
    let options = ConsumerOptions {
        ordering: VersionOrdering::StrictSequence {
            gap_timeout: PATIENCE,
        },
        ..fast_options(&app, "test-projection", "catalog.scrambled.>")
    };
    let consumer = RunningConsumer::start(&database, &app.bus, options, projection.clone());

    let name = eventually(PATIENCE, "the projection to reach v3", || async {
        projected_name(&database, "product_names", product_id)
            .await
            .filter(|name| name == "v3")
    })
    .await;
    let dead_letters = eventually(PATIENCE, "the poison message to be parked", || async {
        let dead_letters = dead_letters_of(&app, "test-projection").await;
        (!dead_letters.is_empty()).then_some(dead_letters)
    })
    .await;
    consumer.stop().await;

    assert_eq!(name, "v3");
    assert_eq!(
        projection.n_applied(),
        3,
        "each version applied exactly once"
    );
    let payloads: Vec<String> = dead_letters
        .iter()
        .map(|dead_letter| String::from_utf8_lossy(&dead_letter.payload).into_owned())
        .collect();
    assert_eq!(payloads, ["this is not a CloudEvent"]);
    assert_eq!(dead_letters[0].original_subject.as_deref(), Some(&*subject));
    assert!(
        dead_letters[0]
            .reason
            .contains("not a CloudEvents JSON envelope"),
        "{dead_letters:?}"
    );
}

async fn a_database_outage_longer_than_every_retry_dead_letters_nothing(backend: Backend) {
    // Arrange: the catalog on its own database; the projection on a database that can go down.
    let app = spawn_app(backend).await;
    let mut consumer_database = OutageDatabase::new(backend).await;
    let database = consumer_database.database().await;
    create_projection_table(&database, "product_names").await;
    let projection = NameProjection::new("product_names");
    let options = fast_options(&app, "outage-projection", "catalog.product.>");
    let max_deliver = options.max_deliver;
    let consumer = RunningConsumer::start(&database, &app.bus, options, projection.clone());
    let category = app.create_category("Tea").await;
    let sencha = app
        .create_product(&category.id, "TEA-1", "Sencha", 1299)
        .await;
    let sencha_id = uuid::Uuid::parse_str(&sencha.id).unwrap();
    eventually(PATIENCE, "the product to be projected", || async {
        projected_name(&database, "product_names", sencha_id).await
    })
    .await;

    // Act: the projection's database goes down while the catalog keeps changing.
    consumer_database.go_down().await;
    rename_product(&app, &sencha.id, 1, "Sencha Superior").await;
    rename_product(&app, &sencha.id, 2, "Sencha Supreme").await;
    let matcha = app
        .create_product(&category.id, "TEA-2", "Matcha", 1899)
        .await;
    let matcha_id = uuid::Uuid::parse_str(&matcha.id).unwrap();
    // Far more failed attempts than max_deliver allows handler failures.
    let n_failures_during_outage = 3 * max_deliver;
    eventually(
        PATIENCE,
        "the consumer to fail again and again on the outage",
        || async {
            let counts = consumer.counts();
            let n_failures =
                counts.infrastructure_failures + counts.handler_failures + counts.dead_lettered;
            (n_failures >= n_failures_during_outage).then_some(())
        },
    )
    .await;
    consumer_database.come_back().await;

    // Assert: everything applied, nothing parked.
    eventually(PATIENCE, "every change to be projected", || async {
        let sencha = projected_name(&database, "product_names", sencha_id).await;
        let matcha = projected_name(&database, "product_names", matcha_id).await;
        (sencha.as_deref() == Some("Sencha Supreme") && matcha.as_deref() == Some("Matcha"))
            .then_some(())
    })
    .await;
    let counts = consumer.stop().await;
    assert_eq!(counts.dead_lettered, 0, "{counts:?}");
    assert_eq!(counts.handler_failures, 0, "{counts:?}");
    assert!(dead_letters_of(&app, "outage-projection").await.is_empty());
}

async fn a_message_that_is_no_cloudevent_is_dead_lettered_at_once_and_later_events_flow(
    backend: Backend,
) {
    let app = spawn_app(backend).without_relay().await;
    let database = app.database().await;
    create_projection_table(&database, "product_names").await;
    let projection = NameProjection::new("product_names");
    let _consumer = RunningConsumer::start(
        &database,
        &app.bus,
        fast_options(&app, "projection", "catalog.product.>"),
        projection.clone(),
    );
    let product_id = uuid::Uuid::new_v4();
    let mut no_uuid_subject = envelope(product_id, 1, "Sencha");
    no_uuid_subject.subject = "not-a-uuid".to_owned();
    let subject = format!("{}.catalog.product.created", app.test_bus.namespace);
    app.bus
        .publish_batch(vec![
            OutgoingMessage {
                subject: subject.clone(),
                id: uuid::Uuid::new_v4().to_string(),
                headers: BTreeMap::new(),
                payload: b"\x00\xffnot json at all".to_vec().into(),
            },
            message(&app, "catalog.product.created", &no_uuid_subject),
        ])
        .await
        .unwrap();
    publish(
        &app,
        "catalog.product.created",
        &[&envelope(product_id, 1, "Sencha")],
    )
    .await;

    eventually(PATIENCE, "the event behind them to be applied", || async {
        projected_name(&database, "product_names", product_id).await
    })
    .await;
    let dead_letters = eventually(PATIENCE, "both to be dead-lettered", || async {
        let dead_letters = dead_letters_of(&app, "projection").await;
        (dead_letters.len() >= 2).then_some(dead_letters)
    })
    .await;
    assert_eq!(dead_letters.len(), 2, "{dead_letters:?}");
    let garbage = &dead_letters[0];
    assert!(
        garbage.reason.contains("not a CloudEvents JSON envelope"),
        "{garbage:?}"
    );
    assert!(garbage.event.is_none());
    assert_eq!(garbage.payload.as_ref(), b"\x00\xffnot json at all");
    assert_eq!(garbage.original_subject.as_deref(), Some(subject.as_str()));
    assert_eq!(garbage.handler_failures, None);
    let bad_subject = &dead_letters[1];
    assert!(
        bad_subject.reason.contains("subject is not a UUID"),
        "{bad_subject:?}"
    );
    assert_eq!(
        bad_subject.event.as_ref().map(|event| event.id.as_str()),
        Some(no_uuid_subject.id.as_str())
    );
    // Parked without a retry: the handler only ever saw the good event.
    assert_eq!(projection.n_attempts(), 1);
}

async fn a_refused_event_is_dead_lettered_and_a_redrive_applies_it_exactly_once(backend: Backend) {
    // Arrange: two consumers of the same events; one refuses them for now.
    let app = spawn_app(backend).without_relay().await;
    let database = app.database().await;
    create_projection_table(&database, "refused_names").await;
    create_projection_table(&database, "healthy_names").await;
    let refusing = NameProjection::new("refused_names");
    refusing.refuse(true);
    let healthy = NameProjection::new("healthy_names");
    let refusing_options = fast_options(&app, "refusing-projection", "catalog.product.>");
    let max_deliver = refusing_options.max_deliver;
    let refusing_consumer =
        RunningConsumer::start(&database, &app.bus, refusing_options, refusing.clone());
    let healthy_consumer = RunningConsumer::start(
        &database,
        &app.bus,
        fast_options(&app, "healthy-projection", "catalog.product.>"),
        healthy.clone(),
    );
    let product_id = uuid::Uuid::new_v4();
    let created = envelope(product_id, 1, "Sencha");
    publish(&app, "catalog.product.created", &[&created]).await;
    let dead_letters = eventually(PATIENCE, "the refused event to be parked", || async {
        let dead_letters = dead_letters_of(&app, "refusing-projection").await;
        (!dead_letters.is_empty()).then_some(dead_letters)
    })
    .await;
    eventually(PATIENCE, "the healthy consumer to apply it", || async {
        projected_name(&database, "healthy_names", product_id).await
    })
    .await;
    assert_eq!(dead_letters.len(), 1, "{dead_letters:?}");
    let dead_letter = &dead_letters[0];
    assert_eq!(
        dead_letter.event.as_ref().map(|event| event.id.as_str()),
        Some(created.id.as_str())
    );
    assert!(
        dead_letter.reason.contains("refused on purpose"),
        "{dead_letter:?}"
    );
    assert_eq!(dead_letter.handler_failures, Some(max_deliver));
    assert_eq!(refusing.n_attempts(), max_deliver);

    // Act: the handler is fixed, and its dead letters re-driven.
    refusing.refuse(false);
    let redriven = deadletter::redrive(
        &app.bus,
        &app.test_bus.namespace,
        &DeadLetterFilter::consumer("refusing-projection"),
    )
    .await
    .unwrap();

    // Assert: applied once where it was refused; skipped as a duplicate where it was applied.
    assert_eq!(redriven.len(), 1);
    eventually(PATIENCE, "the re-driven event to be applied", || async {
        projected_name(&database, "refused_names", product_id).await
    })
    .await;
    eventually(PATIENCE, "the healthy consumer to skip it", || async {
        (healthy_consumer.counts().duplicates >= 1).then_some(())
    })
    .await;
    assert!(
        dead_letters_of(&app, "refusing-projection")
            .await
            .is_empty()
    );
    let again = deadletter::redrive(
        &app.bus,
        &app.test_bus.namespace,
        &DeadLetterFilter::consumer("refusing-projection"),
    )
    .await
    .unwrap();
    assert!(again.is_empty(), "a redrive applies once: {again:?}");
    // A later event flows behind it, so anything still queued has been seen.
    publish(
        &app,
        "catalog.product.updated",
        &[&envelope(product_id, 2, "Sencha Superior")],
    )
    .await;
    for (table, projection) in [("refused_names", &refusing), ("healthy_names", &healthy)] {
        eventually(PATIENCE, "the later event to be applied", || async {
            projected_name(&database, table, product_id)
                .await
                .filter(|name| name == "Sencha Superior")
        })
        .await;
        assert_eq!(
            projection.n_applied(),
            2,
            "{table}: each event applied once"
        );
    }
    refusing_consumer.stop().await;
    healthy_consumer.stop().await;
}

async fn a_handler_runs_in_a_child_of_its_events_trace_context(backend: Backend) {
    let app = spawn_app(backend).without_relay().await;
    let database = app.database().await;
    create_projection_table(&database, "traced_names").await;
    let traced = CloudEvent {
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned()),
        ..envelope(uuid::Uuid::new_v4(), 1, "traced")
    };
    let untraced = envelope(uuid::Uuid::new_v4(), 1, "untraced");
    publish(&app, "catalog.traced.product", &[&traced, &untraced]).await;
    let projection = NameProjection::new("traced_names");
    let options = fast_options(&app, "test-traced", "catalog.traced.>");
    let consumer = RunningConsumer::start(&database, &app.bus, options, projection.clone());

    eventually(PATIENCE, "both events to be applied", || async {
        (projection.n_applied() == 2).then_some(())
    })
    .await;
    consumer.stop().await;

    // (trace id, span id) of each handling, in whatever order they ran.
    let mut contexts: Vec<(String, String)> = projection
        .traceparents()
        .into_iter()
        .map(|traceparent| {
            let traceparent = traceparent.expect("every handling has a trace context");
            let parts: Vec<&str> = traceparent.split('-').collect();
            (parts[1].to_owned(), parts[2].to_owned())
        })
        .collect();
    let traced_at = contexts
        .iter()
        .position(|(trace_id, _)| trace_id == "4bf92f3577b34da6a3ce929d0e0e4736")
        .expect("the traced event's handling continues its trace");
    let (_, traced_span_id) = contexts.remove(traced_at);
    assert_ne!(traced_span_id, "00f067aa0ba902b7", "in a span of its own");
    assert_eq!(traced_span_id.len(), 16);
    let [(untraced_trace_id, _)] = contexts.as_slice() else {
        panic!("two handlings, one per event: {contexts:?}");
    };
    assert_eq!(
        untraced_trace_id.len(),
        32,
        "an event without one starts a trace"
    );
}

async fn latest_version_wins_applies_the_first_version_seen_and_skips_older_ones(backend: Backend) {
    // Arrange: history the consumer never saw before version 3 (it started late).
    let app = spawn_app(backend).without_relay().await;
    let database = app.database().await;
    create_projection_table(&database, "product_names").await;
    let product_id = uuid::Uuid::new_v4();
    let versions: Vec<CloudEvent> = (1..=4)
        .map(|version| envelope(product_id, version, &format!("v{version}")))
        .collect();
    publish(
        &app,
        "catalog.product.updated",
        &[&versions[2], &versions[0], &versions[1]],
    )
    .await;
    let projection = NameProjection::new("product_names");
    let options = fast_options(&app, "latest-projection", "catalog.product.>");
    assert_eq!(options.ordering, VersionOrdering::LatestVersionWins);

    // Act
    let consumer = RunningConsumer::start(&database, &app.bus, options, projection.clone());
    eventually(PATIENCE, "all three versions to be settled", || async {
        let counts = consumer.counts();
        (counts.applied + counts.stale >= 3).then_some(())
    })
    .await;
    let after_three = projected_name(&database, "product_names", product_id).await;
    publish(&app, "catalog.product.updated", &[&versions[3]]).await;
    eventually(PATIENCE, "version 4 to be applied", || async {
        projected_name(&database, "product_names", product_id)
            .await
            .filter(|name| name == "v4")
    })
    .await;

    // Assert
    let counts = consumer.stop().await;
    assert_eq!(after_three.as_deref(), Some("v3"));
    assert_eq!((counts.applied, counts.stale), (2, 2), "{counts:?}");
    assert_eq!(projection.n_applied(), 2);
    assert!(dead_letters_of(&app, "latest-projection").await.is_empty());
}

async fn strict_sequence_dead_letters_a_gap_after_its_timeout(backend: Backend) {
    // Arrange: version 2 never comes.
    let app = spawn_app(backend).without_relay().await;
    let database = app.database().await;
    create_projection_table(&database, "product_names").await;
    let product_id = uuid::Uuid::new_v4();
    let first = envelope(product_id, 1, "v1");
    let third = envelope(product_id, 3, "v3");
    let gap_timeout = Duration::from_millis(500);
    let projection = NameProjection::new("product_names");
    let options = ConsumerOptions {
        ordering: VersionOrdering::StrictSequence { gap_timeout },
        ..fast_options(&app, "strict-projection", "catalog.product.>")
    };
    let consumer = RunningConsumer::start(&database, &app.bus, options, projection.clone());
    let started = Instant::now();

    // Act
    publish(&app, "catalog.product.updated", &[&first, &third]).await;
    let dead_letters = eventually(PATIENCE, "version 3 to be parked", || async {
        let dead_letters = dead_letters_of(&app, "strict-projection").await;
        (!dead_letters.is_empty()).then_some(dead_letters)
    })
    .await;
    let parked_after = started.elapsed();

    // Assert
    let counts = consumer.stop().await;
    assert!(
        parked_after >= gap_timeout,
        "parked after {parked_after:?}, before the gap timeout"
    );
    assert!(counts.gaps >= 1, "{counts:?}");
    assert_eq!(dead_letters.len(), 1);
    let reason = &dead_letters[0].reason;
    assert_eq!(
        dead_letters[0]
            .event
            .as_ref()
            .map(|event| event.id.as_str()),
        Some(third.id.as_str())
    );
    assert!(
        reason.contains("version 3") && reason.contains("for version 2, which never arrived"),
        "{reason}"
    );
    assert_eq!(
        projected_name(&database, "product_names", product_id)
            .await
            .as_deref(),
        Some("v1")
    );
    assert_eq!(projection.n_applied(), 1);
}

async fn one_failing_delivery_does_not_hold_up_the_rest_of_its_batch(backend: Backend) {
    // Arrange: a message first in the batch that the consumer cannot settle: it is no
    // CloudEvent, and its dead letter (the payload plus the reason headers) is more than the bus
    // takes. Behind it, three good events. The ack wait is far longer than the test waits.
    let app = spawn_app(backend).without_relay().await;
    let database = app.database().await;
    create_projection_table(&database, "product_names").await;
    let namespace = &app.test_bus.namespace;
    let unsettleable = OutgoingMessage {
        subject: format!("{namespace}.catalog.product.garbled"),
        id: "too-big-to-park".to_owned(),
        headers: BTreeMap::new(),
        payload: vec![b'x'; chassis::bus::embedded::MAX_MESSAGE_SIZE - 100].into(),
    };
    let product_ids: Vec<uuid::Uuid> = (0..3).map(|_| uuid::Uuid::new_v4()).collect();
    let events: Vec<CloudEvent> = product_ids
        .iter()
        .map(|product_id| envelope(*product_id, 1, "Sencha"))
        .collect();
    let mut messages = vec![unsettleable];
    messages.extend(
        events
            .iter()
            .map(|event| message(&app, "catalog.product.created", event)),
    );
    app.bus.publish_batch(messages).await.unwrap();
    let projection = NameProjection::new("product_names");
    let options = ConsumerOptions {
        ack_wait: Duration::from_secs(60),
        ..fast_options(&app, "batch-projection", "catalog.product.>")
    };

    // Act
    let consumer = RunningConsumer::start(&database, &app.bus, options, projection.clone());

    // Assert: well within the ack wait, the good ones are applied.
    eventually(
        Duration::from_secs(15),
        "the rest of the batch to be applied",
        || async {
            for product_id in &product_ids {
                projected_name(&database, "product_names", *product_id).await?;
            }
            Some(())
        },
    )
    .await;
    let counts = consumer.stop().await;
    assert_eq!(projection.n_applied(), 3);
    assert!(counts.infrastructure_failures >= 1, "{counts:?}");
    assert_eq!(counts.dead_lettered, 0, "{counts:?}");
}

// === helpers ===

/// A projection of product names into `table`, which can be told to refuse every event.
#[derive(Clone)]
struct NameProjection {
    table: &'static str,
    n_applied: Arc<AtomicUsize>,
    n_attempts: Arc<AtomicUsize>,
    refusing: Arc<AtomicBool>,
    /// The trace context each handling ran in.
    traceparents: Arc<std::sync::Mutex<Vec<Option<String>>>>,
}

impl NameProjection {
    fn new(table: &'static str) -> NameProjection {
        NameProjection {
            table,
            n_applied: Arc::new(AtomicUsize::new(0)),
            n_attempts: Arc::new(AtomicUsize::new(0)),
            refusing: Arc::new(AtomicBool::new(false)),
            traceparents: Arc::default(),
        }
    }

    fn traceparents(&self) -> Vec<Option<String>> {
        self.traceparents.lock().unwrap().clone()
    }

    fn refuse(&self, refusing: bool) {
        self.refusing.store(refusing, Ordering::SeqCst);
    }

    fn n_applied(&self) -> u64 {
        self.n_applied.load(Ordering::SeqCst) as u64
    }

    fn n_attempts(&self) -> u64 {
        self.n_attempts.load(Ordering::SeqCst) as u64
    }
}

impl EventHandler for NameProjection {
    async fn handle(&self, tx: &mut Transaction, event: &CloudEvent) -> anyhow::Result<()> {
        self.n_attempts.fetch_add(1, Ordering::SeqCst);
        self.traceparents
            .lock()
            .unwrap()
            .push(chassis::telemetry::current_traceparent());
        anyhow::ensure!(
            !self.refusing.load(Ordering::SeqCst),
            "the projection refused on purpose"
        );
        // Decoded with the generated type the event's `dataschema` names.
        let name = event.decode_data::<Product>()?.name;
        // The table names are fixed by the tests.
        let statement = format!(
            "INSERT INTO {} (product_id, name) VALUES ($1, $2) \
             ON CONFLICT (product_id) DO UPDATE SET name = excluded.name",
            self.table
        );
        on_backend!(tx, conn => {
            sqlx::query(sqlx::AssertSqlSafe(statement.clone()))
                .bind(event.subject.as_str())
                .bind(name.as_str())
                .execute(conn)
                .await
                .map(|done| done.rows_affected())
        })?;
        self.n_applied.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// A consumer running in the background, stopped when dropped.
struct RunningConsumer {
    stats: Arc<ConsumerStats>,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RunningConsumer {
    fn start(
        database: &Database,
        bus: &Bus,
        options: ConsumerOptions,
        handler: NameProjection,
    ) -> RunningConsumer {
        let consumer = Consumer::new(database.clone(), bus.clone(), options, handler);
        let stats = consumer.stats();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(consumer.run(shutdown.clone()));
        RunningConsumer {
            stats,
            shutdown,
            task: Some(task),
        }
    }

    fn counts(&self) -> ConsumerCounts {
        self.stats.counts()
    }

    async fn stop(mut self) -> ConsumerCounts {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("the consumer stops cleanly");
        }
        self.counts()
    }
}

impl Drop for RunningConsumer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn the_inbox_is_pruned_past_the_duplicate_window_and_keeps_recent_event_ids(
    backend: Backend,
) {
    // Arrange: two events handled; one of them, by its inbox row, a day and an hour ago.
    let app = spawn_app(backend).without_relay().await;
    let database = app.database().await;
    create_projection_table(&database, "product_names").await;
    let old = envelope(uuid::Uuid::new_v4(), 1, "old");
    let recent = envelope(uuid::Uuid::new_v4(), 1, "recent");
    publish(&app, "catalog.product.created", &[&old, &recent]).await;
    let options = fast_options(&app, "pruned-projection", "catalog.product.>");
    let projection = NameProjection::new("product_names");
    let consumer = RunningConsumer::start(&database, &app.bus, options.clone(), projection.clone());
    eventually(PATIENCE, "both events to be applied", || async {
        (consumer.counts().applied >= 2).then_some(())
    })
    .await;
    consumer.stop().await;
    let day_and_an_hour_ago = Timestamp::from(
        Timestamp::now().into_inner()
            - chassis::outbox::DUPLICATE_WINDOW
            - Duration::from_secs(3600),
    );
    let old_id: uuid::Uuid = old.id.parse().unwrap();
    let mut tx = database.begin().await.unwrap();
    on_backend!(tx, conn => {
        sqlx::query("UPDATE inbox_events SET processed_at = $1 WHERE consumer = $2 AND event_id = $3")
            .bind(day_and_an_hour_ago)
            .bind("pruned-projection")
            .bind(old_id)
            .execute(conn)
            .await
            .map(|done| done.rows_affected())
    })
    .unwrap();
    tx.commit().await.unwrap();

    // Act: a running consumer prunes its inbox as it starts.
    let consumer = RunningConsumer::start(&database, &app.bus, options, projection);
    let remaining = eventually(PATIENCE, "the old inbox row to be pruned", || async {
        let ids = inbox_ids(&database, "pruned-projection").await;
        (ids.len() == 1).then_some(ids)
    })
    .await;
    consumer.stop().await;
    let two_days_on =
        Timestamp::from(Timestamp::now().into_inner() + Duration::from_secs(2 * 86_400));
    let n_young = prune_inbox(&database, "pruned-projection", Timestamp::now())
        .await
        .unwrap();
    let n_later = prune_inbox(&database, "pruned-projection", two_days_on)
        .await
        .unwrap();

    // Assert
    assert_eq!(remaining, vec![recent.id.parse::<uuid::Uuid>().unwrap()]);
    assert_eq!(n_young, 0, "a recent row stays");
    assert_eq!(n_later, 1, "once past the window it goes too");
    assert!(inbox_ids(&database, "pruned-projection").await.is_empty());
}

async fn inbox_ids(database: &Database, consumer: &str) -> Vec<uuid::Uuid> {
    let mut tx = database.begin_read().await.unwrap();
    let ids: Vec<uuid::Uuid> = on_backend!(tx, conn => {
        sqlx::query_scalar("SELECT event_id FROM inbox_events WHERE consumer = $1")
            .bind(consumer)
            .fetch_all(conn)
            .await
    })
    .unwrap();
    tx.commit().await.unwrap();
    ids
}

/// The projection's database, which the test can take down and bring back: on PostgreSQL a
/// server of the test's own, stopped and started; on SQLite a file whose write lock another
/// connection holds.
enum OutageDatabase {
    Sqlite {
        test_database: TestDatabase,
        lock_holder: Option<sqlx::SqliteConnection>,
    },
    Postgres {
        cluster: PostgresCluster,
        url: String,
    },
}

impl OutageDatabase {
    /// How long the projection's queries wait for a connection or the write lock before they
    /// fail: short, so the outage shows as failures within the test's time.
    const WAIT: Duration = Duration::from_millis(250);

    async fn new(backend: Backend) -> OutageDatabase {
        match backend {
            Backend::SqliteEmbedded => OutageDatabase::Sqlite {
                test_database: TestDatabase::new(backend, "projection").await,
                lock_holder: None,
            },
            Backend::PostgresNats => {
                let cluster = PostgresCluster::start().await;
                let url = cluster.create_database("projection").await;
                OutageDatabase::Postgres { cluster, url }
            }
        }
    }

    fn url(&self) -> &str {
        match self {
            OutageDatabase::Sqlite { test_database, .. } => test_database.url(),
            OutageDatabase::Postgres { url, .. } => url,
        }
    }

    /// A migrated pool with short waits.
    async fn database(&self) -> Database {
        let database = Database::open_with_timeout(self.url(), Self::WAIT)
            .await
            .expect("the projection's database opens");
        database
            .migrate(catalog::MIGRATIONS)
            .await
            .expect("the projection's database migrates");
        database
    }

    async fn go_down(&mut self) {
        match self {
            OutageDatabase::Sqlite {
                test_database,
                lock_holder,
            } => {
                use sqlx::Connection;
                let mut connection = sqlx::SqliteConnection::connect(test_database.url())
                    .await
                    .expect("a second connection opens");
                sqlx::query("BEGIN IMMEDIATE")
                    .execute(&mut connection)
                    .await
                    .expect("the write lock is taken");
                *lock_holder = Some(connection);
            }
            OutageDatabase::Postgres { cluster, .. } => cluster.stop().await,
        }
    }

    async fn come_back(&mut self) {
        match self {
            OutageDatabase::Sqlite { lock_holder, .. } => {
                use sqlx::Connection;
                let mut connection = lock_holder.take().expect("the database is down");
                sqlx::query("ROLLBACK")
                    .execute(&mut connection)
                    .await
                    .expect("the write lock is released");
                connection.close().await.expect("the connection closes");
            }
            OutageDatabase::Postgres { cluster, .. } => cluster.restart().await,
        }
    }
}

/// Backoffs of milliseconds, so that retries happen within a test; three handler failures park.
fn fast_options(app: &TestApp, name: &str, filter: &str) -> ConsumerOptions {
    let namespace = &app.test_bus.namespace;
    ConsumerOptions {
        backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        max_deliver: 3,
        ..ConsumerOptions::new(
            name,
            &app.stream_name(),
            &format!("{namespace}.{filter}"),
            namespace,
        )
    }
}

async fn create_projection_table(database: &Database, table: &str) {
    let mut tx = database.begin().await.unwrap();
    let statement =
        format!("CREATE TABLE {table} (product_id TEXT PRIMARY KEY, name TEXT NOT NULL)");
    on_backend!(tx, conn => {
        sqlx::query(sqlx::AssertSqlSafe(statement.clone()))
            .execute(conn)
            .await
            .map(|done| done.rows_affected())
    })
    .unwrap();
    tx.commit().await.unwrap();
}

async fn projected_name(
    database: &Database,
    table: &str,
    product_id: uuid::Uuid,
) -> Option<String> {
    let mut tx = database.begin_read().await.ok()?;
    let statement = format!("SELECT name FROM {table} WHERE product_id = $1");
    let name: Option<String> = on_backend!(tx, conn => {
        sqlx::query_scalar(sqlx::AssertSqlSafe(statement.clone()))
            .bind(product_id.to_string())
            .fetch_optional(conn)
            .await
    })
    .ok()?;
    tx.commit().await.ok()?;
    name
}

async fn dead_letters_of(app: &TestApp, consumer: &str) -> Vec<DeadLetter> {
    deadletter::list(
        &app.bus,
        &app.test_bus.namespace,
        &DeadLetterFilter::consumer(consumer),
    )
    .await
    .expect("dead letters can be listed")
}

async fn rename_product(app: &TestApp, id: &str, expected_version: i64, name: &str) {
    app.client()
        .update_product(emporium_proto::catalog::v1::UpdateProductRequest {
            id: id.to_owned(),
            expected_version,
            name: Some(name.to_owned()),
            ..Default::default()
        })
        .await
        .expect("the product is renamed");
}

/// Publishes the events, each under its own id, on `<namespace>.<subject>`.
async fn publish(app: &TestApp, subject: &str, events: &[&CloudEvent]) {
    let messages = events
        .iter()
        .map(|event| message(app, subject, event))
        .collect();
    app.bus.publish_batch(messages).await.unwrap();
}

fn message(app: &TestApp, subject: &str, event: &CloudEvent) -> OutgoingMessage {
    OutgoingMessage {
        subject: format!("{}.{subject}", app.test_bus.namespace),
        id: event.id.clone(),
        headers: BTreeMap::new(),
        payload: serde_json::to_vec(event).unwrap().into(),
    }
}

fn envelope(aggregate_id: uuid::Uuid, version: i64, name: &str) -> CloudEvent {
    CloudEvent {
        specversion: "1.0".to_owned(),
        id: uuid::Uuid::new_v4().to_string(),
        source: "/emporium/catalog".to_owned(),
        event_type: "emporium.catalog.product.updated".to_owned(),
        subject: aggregate_id.to_string(),
        time: "2026-11-23T12:00:00.000000Z".to_owned(),
        datacontenttype: "application/json".to_owned(),
        dataschema: Some(event_data::schema_for::<Product>()),
        data: event_data::to_json(&Product {
            id: aggregate_id.to_string(),
            name: name.to_owned(),
            version,
            ..Product::default()
        }),
        aggregateversion: version,
        aggregatetype: "product".to_owned(),
        traceparent: None,
        actor: None,
        actorclientid: None,
    }
}
