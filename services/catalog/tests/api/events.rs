//! Events: one per change, atomically with it; CloudEvents on the bus; exactly once through a
//! relay crash. What consumers do with them is in `consumers.rs`.

use std::collections::HashSet;
use std::time::Duration;

use chassis::bus::{Bus, OutgoingMessage};
use chassis::on_backend;
use chassis::outbox::{self, EventKind, EventRoute, NewEvent, Relay};
use chassis::storage::Database;
use cloudevents::AttributesReader;
use emporium_proto::catalog::v1::{self as proto, events};
use test_support::{Backend, both_backends, event_data, eventually};
use tokio_util::sync::CancellationToken;

use crate::helpers::{CatalogApp as _, spawn_app};

both_backends!(
    every_change_records_one_event_in_version_order,
    a_rolled_back_transaction_records_nothing,
    a_second_change_event_at_one_version_is_refused,
    audit_events_may_share_a_version,
    events_reach_the_bus_as_cloudevents,
    a_relay_crash_mid_stream_loses_and_duplicates_nothing,
    a_backlog_of_many_batches_reaches_the_bus_once_in_outbox_order_through_a_relay_crash,
    an_event_the_bus_refuses_is_parked_and_later_events_flow,
    the_relay_recreates_a_deleted_stream,
);

async fn every_change_records_one_event_in_version_order(backend: Backend) {
    let app = spawn_app(backend).await;
    let category = app.create_category("Tea").await;
    let product = app
        .create_product(&category.id, "TEA-1", "Sencha", 1299)
        .await;
    app.client()
        .update_product(proto::UpdateProductRequest {
            id: product.id.clone(),
            expected_version: 1,
            stock_on_hand: Some(3),
            ..Default::default()
        })
        .await
        .unwrap();
    app.client()
        .delete_product(proto::DeleteProductRequest {
            id: product.id.clone(),
            expected_version: 2,
        })
        .await
        .unwrap();

    let events = app.events_of(&product.id).await;

    let summary: Vec<(&str, i64)> = events
        .iter()
        .map(|event| (event.r#type.as_str(), event.aggregate_version))
        .collect();
    assert_eq!(
        summary,
        [
            ("emporium.catalog.product.created", 1),
            ("emporium.catalog.product.updated", 2),
            ("emporium.catalog.product.deleted", 3),
        ]
    );
    let updated: proto::Product = event_data(&events[1]);
    assert_eq!((updated.sku.as_str(), updated.stock_on_hand), ("TEA-1", 3));
    let deleted: proto::Product = event_data(&events[2]);
    assert_eq!(deleted.version, 3, "a deletion is one more version");
    assert!(
        events
            .iter()
            .all(|event| event.traceparent.starts_with("00-")),
        "{events:?}"
    );
}

async fn a_rolled_back_transaction_records_nothing(backend: Backend) {
    let app = spawn_app(backend).without_relay().await;
    let database = app.database().await;
    let aggregate_id = uuid::Uuid::new_v4();
    let mut tx = database.begin().await.unwrap();
    outbox::record(&mut tx, test_event(aggregate_id, 1, "rolled back"))
        .await
        .unwrap();

    tx.rollback().await.unwrap();

    assert!(app.events_of(&aggregate_id.to_string()).await.is_empty());
    assert_eq!(outbox::unpublished_count(&database).await.unwrap(), 0);
}

async fn a_second_change_event_at_one_version_is_refused(backend: Backend) {
    let app = spawn_app(backend).without_relay().await;
    let database = app.database().await;
    let aggregate_id = uuid::Uuid::new_v4();
    let mut first_writer = database.begin().await.unwrap();
    outbox::record(&mut first_writer, test_event(aggregate_id, 1, "first"))
        .await
        .unwrap();
    first_writer.commit().await.unwrap();

    // A write path that changed the record without locking its row, and so computed the same
    // next version as the first writer.
    let mut second_writer = database.begin().await.unwrap();
    let error = outbox::record(&mut second_writer, test_event(aggregate_id, 1, "second"))
        .await
        .expect_err("a second change event at version 1 is refused");
    second_writer.rollback().await.unwrap();

    // Opaque to a caller (INTERNAL), explicit in the log.
    let chassis::error::Error::Unexpected(cause) = error else {
        panic!("expected an unexpected error, got {error:?}");
    };
    let message = format!("{cause:#}");
    assert!(
        message.contains(&format!(
            "A change event for product {aggregate_id} at version 1 is already recorded"
        )),
        "{message}"
    );
    let versions: Vec<i64> = app
        .events_of(&aggregate_id.to_string())
        .await
        .iter()
        .map(|event| event.aggregate_version)
        .collect();
    assert_eq!(versions, [1]);
}

async fn audit_events_may_share_a_version(backend: Backend) {
    let app = spawn_app(backend).without_relay().await;
    let database = app.database().await;
    let aggregate_id = uuid::Uuid::new_v4();
    let mut tx = database.begin().await.unwrap();
    outbox::record(&mut tx, test_event(aggregate_id, 1, "created"))
        .await
        .unwrap();
    for _ in 0..2 {
        outbox::record(
            &mut tx,
            NewEvent {
                event_type: "emporium.catalog.audit.product.read",
                kind: EventKind::Audit,
                ..test_event(aggregate_id, 1, "read")
            },
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();

    let events: Vec<(String, i64)> = app
        .events_of(&aggregate_id.to_string())
        .await
        .into_iter()
        .map(|event| (event.r#type, event.aggregate_version))
        .collect();
    assert_eq!(
        events,
        [
            ("emporium.catalog.product.updated".to_owned(), 1),
            ("emporium.catalog.audit.product.read".to_owned(), 1),
            ("emporium.catalog.audit.product.read".to_owned(), 1),
        ]
    );
}

async fn events_reach_the_bus_as_cloudevents(backend: Backend) {
    let app = spawn_app(backend).await;
    let category = app.create_category("Tea").await;
    let product = app
        .create_product(&category.id, "TEA-1", "Sencha", 1299)
        .await;
    app.client()
        .update_product(proto::UpdateProductRequest {
            id: product.id.clone(),
            expected_version: 1,
            name: Some("Sencha Superior".to_owned()),
            ..Default::default()
        })
        .await
        .unwrap();

    let events = app.read_stream("catalog.>", 3).await;

    assert_eq!(events.len(), 3, "{events:?}");
    let recorded = app.events_of(&product.id).await;
    for (published, recorded) in events[1..].iter().zip(&recorded) {
        let json = serde_json::to_vec(published).unwrap();
        let parsed: cloudevents::Event =
            serde_json::from_slice(&json).expect("the CloudEvents SDK parses it");
        assert_eq!(parsed.specversion().as_str(), "1.0");
        assert_eq!(parsed.id(), recorded.id);
        assert_eq!(parsed.ty(), recorded.r#type);
        assert_eq!(parsed.source().as_str(), "/emporium/catalog");
        assert_eq!(parsed.subject(), Some(product.id.as_str()));
        assert_eq!(parsed.datacontenttype(), Some("application/json"));
        assert!(parsed.time().is_some());
        assert_eq!(
            parsed
                .extension("aggregateversion")
                .map(ToString::to_string),
            Some(recorded.aggregate_version.to_string())
        );
        assert!(parsed.extension("traceparent").is_some());
        assert_eq!(
            parsed.extension("actor").map(ToString::to_string),
            Some("catalog-manager-1".to_owned())
        );
        assert_eq!(
            parsed.extension("actorclientid").map(ToString::to_string),
            Some("test".to_owned())
        );
    }
    assert_eq!(
        events[2].decode_data::<proto::Product>().unwrap().name,
        "Sencha Superior"
    );
    assert_eq!(
        events[2].dataschema.as_deref(),
        Some("urn:emporium:proto:emporium.catalog.v1.Product")
    );
}

async fn a_relay_crash_mid_stream_loses_and_duplicates_nothing(backend: Backend) {
    let app = spawn_app(backend).without_relay().await;
    let category = app.create_category("Tea").await;
    let n_products = 150;
    for index in 0..n_products {
        app.create_product(&category.id, &format!("SKU-{index:03}"), "Tea", 1)
            .await;
    }
    let n_events = n_products + 1;
    let database = app.database().await;
    let route = EventRoute::new(catalog::NAME, &app.test_bus.namespace);

    // A relay that died after publishing the first 40 events, before marking them.
    let first_events = unpublished(&database, 40).await;
    let messages: Vec<OutgoingMessage> = first_events
        .iter()
        .map(|event| route.message(event).unwrap())
        .collect();
    app.bus.publish_batch(messages).await.unwrap();
    // A relay that is killed while it works through the rest, then one that finishes the job.
    kill_relay_then_drain(
        &app.bus,
        &database,
        route,
        "the relay to make progress",
        || async { outbox::unpublished_count(&database).await.unwrap() < n_events as i64 },
    )
    .await;

    let events = app.read_stream("catalog.>", n_events).await;
    let ids: HashSet<&str> = events.iter().map(|event| event.id.as_str()).collect();
    assert_eq!(events.len(), n_events, "every event delivered exactly once");
    assert_eq!(ids.len(), n_events);
    let subjects: HashSet<&str> = events.iter().map(|event| event.subject.as_str()).collect();
    assert_eq!(subjects.len(), n_events, "one creation per record");
}

/// More than two of the relay's batches (256 events each): on PostgreSQL they are pipelined in
/// one transaction, the bus taking one batch while the database marks the one before and reads
/// the one after. A relay killed once the first batch is on the bus, then restarted, leaves
/// every event on the stream once, in the outbox's order.
async fn a_backlog_of_many_batches_reaches_the_bus_once_in_outbox_order_through_a_relay_crash(
    backend: Backend,
) {
    let app = spawn_app(backend).without_relay().await;
    let database = app.database().await;
    let aggregate_id = uuid::Uuid::new_v4();
    let n_events = 700;
    let mut tx = database.begin().await.unwrap();
    let mut recorded = Vec::with_capacity(n_events);
    for version in 1..=n_events as i64 {
        let event = test_event(aggregate_id, version, &format!("Version {version}"));
        recorded.push(outbox::record(&mut tx, event).await.unwrap().to_string());
    }
    tx.commit().await.unwrap();
    let route = EventRoute::new(catalog::NAME, &app.test_bus.namespace);
    let on_the_bus = || async {
        app.bus
            .read_stream(
                &app.stream_name(),
                &format!("{}.>", app.test_bus.namespace),
                1,
                n_events,
            )
            .await
            .map_or(0, |messages| messages.len())
    };

    kill_relay_then_drain(
        &app.bus,
        &database,
        route,
        "the first batch on the bus",
        || async { on_the_bus().await > 256 },
    )
    .await;

    assert_eq!(outbox::unpublished_count(&database).await.unwrap(), 0);
    let events = app.read_stream("catalog.>", n_events).await;
    let ids: Vec<&str> = events.iter().map(|event| event.id.as_str()).collect();
    assert_eq!(ids.len(), n_events, "every event once, none twice");
    let first_out_of_order = ids
        .iter()
        .zip(&recorded)
        .position(|(id, recorded)| id != recorded);
    assert_eq!(
        first_out_of_order, None,
        "the stream holds the events in the outbox's order"
    );
}

async fn an_event_the_bus_refuses_is_parked_and_later_events_flow(backend: Backend) {
    let app = spawn_app(backend).without_relay().await;
    let database = app.database().await;
    let aggregate_id = uuid::Uuid::new_v4();
    // Version 1 is larger than either bus takes (both refuse more than 1 MiB); version 2 is not.
    let mut tx = database.begin().await.unwrap();
    let oversized = outbox::record(
        &mut tx,
        test_event(aggregate_id, 1, &"x".repeat(2 * 1024 * 1024)),
    )
    .await
    .unwrap();
    let next_version = outbox::record(&mut tx, test_event(aggregate_id, 2, "After"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let category = app.create_category("Tea").await;
    let route = EventRoute::new(catalog::NAME, &app.test_bus.namespace);

    let relay_shutdown = CancellationToken::new();
    let relay = tokio::spawn(
        Relay::new(database.clone(), app.bus.clone(), route).run(relay_shutdown.clone()),
    );
    eventually(Duration::from_secs(20), "the outbox to drain", || async {
        (outbox::unpublished_count(&database).await.unwrap() == 0).then_some(())
    })
    .await;
    relay_shutdown.cancel();
    relay.await.unwrap();

    // The refused event is parked with its reason and stays in the history; the rest flowed.
    assert_eq!(outbox::parked_count(&database).await.unwrap(), 1);
    let history = outbox::list_events(&database, aggregate_id, 0, 10)
        .await
        .unwrap();
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[0].id, oversized);
    assert!(history[0].parked_at.is_some());
    assert!(history[0].published_at.is_none());
    let reason = history[0].park_reason.as_deref().unwrap_or_default();
    assert!(reason.contains("exceeds the bus's maximum"), "{reason}");
    assert_eq!(history[1].id, next_version);
    assert!(history[1].published_at.is_some());
    assert!(history[1].parked_at.is_none());
    let listed: Vec<String> = app
        .events_of(&aggregate_id.to_string())
        .await
        .into_iter()
        .map(|event| event.id)
        .collect();
    assert_eq!(listed, [oversized.to_string(), next_version.to_string()]);

    let events = app.read_stream("catalog.>", 2).await;
    let ids: Vec<&str> = events.iter().map(|event| event.id.as_str()).collect();
    let category_event = &app.events_of(&category.id).await[0].id;
    assert_eq!(ids, [next_version.to_string().as_str(), category_event]);
}

async fn the_relay_recreates_a_deleted_stream(backend: Backend) {
    let app = spawn_app(backend).await;
    let database = app.database().await;
    let before = app.create_category("Tea").await;
    eventually(
        Duration::from_secs(20),
        "the first event to be published",
        || async { (outbox::unpublished_count(&database).await.unwrap() == 0).then_some(()) },
    )
    .await;

    // An operator deletes the stream under the running service.
    app.test_bus.delete_stream(&app.stream_name()).await;
    let after = app.create_category("Coffee").await;
    eventually(
        Duration::from_secs(20),
        "the later event to be published",
        || async { (outbox::unpublished_count(&database).await.unwrap() == 0).then_some(()) },
    )
    .await;

    // The stream was created again and holds the later event (the earlier one went with it).
    let events = app.read_stream("catalog.>", 1).await;
    let ids: Vec<&str> = events.iter().map(|event| event.id.as_str()).collect();
    let after_event = &app.events_of(&after.id).await[0].id;
    assert_eq!(ids, [after_event.as_str()]);
    assert_ne!(app.events_of(&before.id).await[0].id, *after_event);
}

// === helpers ===

/// Runs a relay until `progress` holds (`what`), kills it there, then runs another until the
/// outbox is drained.
async fn kill_relay_then_drain<F, Fut>(
    bus: &Bus,
    database: &Database,
    route: EventRoute,
    what: &str,
    mut progress: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let relay = tokio::spawn(
        Relay::new(database.clone(), bus.clone(), route.clone()).run(CancellationToken::new()),
    );
    eventually(Duration::from_secs(20), what, || {
        let progressed = progress();
        async move { progressed.await.then_some(()) }
    })
    .await;
    relay.abort();
    let _ = relay.await;

    let restarted_shutdown = CancellationToken::new();
    let restarted = tokio::spawn(
        Relay::new(database.clone(), bus.clone(), route).run(restarted_shutdown.clone()),
    );
    eventually(Duration::from_secs(20), "the outbox to drain", || async {
        outbox::oldest_unpublished(database)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    restarted_shutdown.cancel();
    restarted.await.unwrap();
}

async fn unpublished(database: &Database, limit: i64) -> Vec<outbox::EventRecord> {
    let mut tx = database.begin_read().await.unwrap();
    let events = on_backend!(tx, conn => {
        sqlx::query_as::<_, outbox::EventRecord>(
            "SELECT sequence, id, aggregate_type, aggregate_id, aggregate_version, event_type, data, \
             traceparent, actor, actor_client_id, occurred_at, published_at \
             FROM outbox_events WHERE published_at IS NULL ORDER BY sequence LIMIT $1",
        )
        .bind(limit)
        .fetch_all(conn)
        .await
    })
    .unwrap();
    tx.commit().await.unwrap();
    events
}

fn test_event(aggregate_id: uuid::Uuid, version: i64, name: &str) -> NewEvent {
    let product = proto::Product {
        id: aggregate_id.to_string(),
        name: name.to_owned(),
        version,
        ..proto::Product::default()
    };
    NewEvent::new(events::PRODUCT_UPDATED, aggregate_id, version, &product)
}
