//! On PostgreSQL a commit in one process wakes the relay of another at once (LISTEN/NOTIFY),
//! instead of at its next poll, and keeps doing so after the relay's listener was cut off.

use std::time::Duration;

use catalog::domain::{CategoryName, Description, NewCategory};
use catalog::service::Catalog;
use chassis::bus::{Consumer, ConsumerSpec};
use chassis::outbox::{self, Actor, EventRoute, Relay};
use chassis::storage::{Database, OUTBOX_CHANNEL};
use test_support::{Backend, TestBus, TestDatabase, eventually};
use tokio_util::sync::CancellationToken;

/// Far longer than the test may take: an event the relay publishes came from a wake-up.
const POLL_INTERVAL: Duration = Duration::from_secs(600);
/// Far above the latency of a wake-up, far below the poll interval.
const DEADLINE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_in_another_process_wakes_the_relay_on_postgres() {
    // Arrange: two pools on one database, as two replicas have; the relay runs on the first.
    let test_database = TestDatabase::new(Backend::PostgresNats, "catalog").await;
    let test_bus = TestBus::new(Backend::PostgresNats).await;
    let bus = test_bus.connect().await;
    let relaying = Database::connect(test_database.url(), catalog::MIGRATIONS)
        .await
        .expect("the first replica's pool opens");
    let writing = Database::open(test_database.url())
        .await
        .expect("the second replica's pool opens");
    let route = EventRoute::new(catalog::NAME, &test_bus.namespace);
    bus.ensure_stream(&route.stream())
        .await
        .expect("the stream is created");
    let mut consumer = bus
        .consumer(&ConsumerSpec {
            stream: route.stream().name,
            durable_name: "test-reader".to_owned(),
            filter_subject: format!("{}.catalog.>", test_bus.namespace),
            ack_wait: Duration::from_secs(30),
        })
        .await
        .expect("a consumer is created");
    let catalog = Catalog::new(writing.clone());
    // A first change, published when the relay starts: then it waits, listening.
    create_category(&catalog, "Tea").await;
    let relay_shutdown = CancellationToken::new();
    let relay = tokio::spawn(
        Relay::new(relaying.clone(), bus.clone(), route)
            .with_poll_interval(POLL_INTERVAL)
            .run(relay_shutdown.clone()),
    );
    assert_eq!(published_names(&mut consumer, 1).await, ["Tea"]);
    eventually(DEADLINE, "the relay to mark what it published", || async {
        (outbox::unpublished_count(&relaying).await.unwrap() == 0).then_some(())
    })
    .await;
    let first_listener = listener_pid(&writing, None)
        .await
        .expect("the relay listens");

    // Act: a change commits through the second pool.
    create_category(&catalog, "Coffee").await;

    // Assert: published long before the relay's next poll.
    assert_eq!(
        published_names(&mut consumer, 1).await,
        ["Coffee"],
        "the relay was not woken by the other pool's commit"
    );

    // Act: the relay's listener is cut off, then another change commits.
    terminate(&writing, first_listener).await;
    eventually(DEADLINE, "the relay to listen again", || {
        listener_pid(&writing, Some(first_listener))
    })
    .await;
    create_category(&catalog, "Matcha").await;

    // Assert
    assert_eq!(
        published_names(&mut consumer, 1).await,
        ["Matcha"],
        "the relay was not woken after its listener was lost"
    );
    relay_shutdown.cancel();
    relay.await.expect("the relay stops");
}

/// The listener holds one of the pool's connections for as long as it listens; closing the
/// pool (as the readiness test does, and shutdown after the relay) must not wait on it forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_pool_under_a_listening_relay_returns() {
    let test_database = TestDatabase::new(Backend::PostgresNats, "catalog").await;
    let test_bus = TestBus::new(Backend::PostgresNats).await;
    let bus = test_bus.connect().await;
    let relaying = Database::connect(test_database.url(), catalog::MIGRATIONS)
        .await
        .expect("the pool opens");
    let observer = Database::open(test_database.url())
        .await
        .expect("a second pool opens");
    let route = EventRoute::new(catalog::NAME, &test_bus.namespace);
    let relay_shutdown = CancellationToken::new();
    let _relay = tokio::spawn(
        Relay::new(relaying.clone(), bus.clone(), route)
            .with_poll_interval(POLL_INTERVAL)
            .run(relay_shutdown.clone()),
    );
    eventually(DEADLINE, "the relay to listen", || async {
        listener_pid(&observer, None).await
    })
    .await;

    let closed = tokio::time::timeout(DEADLINE, relaying.close()).await;

    assert!(
        closed.is_ok(),
        "closing the pool waited on the relay's listener"
    );
    eventually(DEADLINE, "the listener's session to end", || async {
        listener_pid(&observer, None).await.is_none().then_some(())
    })
    .await;
    relay_shutdown.cancel();
}

async fn create_category(catalog: &Catalog, name: &str) {
    let actor = Actor {
        subject: "catalog-manager-1".to_owned(),
        client_id: "test".to_owned(),
    };
    catalog
        .create_category(
            NewCategory {
                name: CategoryName::parse(name).unwrap(),
                description: Description::parse(&format!("All about {name}")).unwrap(),
            },
            &actor,
        )
        .await
        .expect("the category is created");
}

/// The backend of a session listening on the outbox channel, other than `except`.
async fn listener_pid(database: &Database, except: Option<i32>) -> Option<i32> {
    let mut tx = database.begin_read().await.unwrap();
    let pid = chassis::on_backend!(tx, conn => {
        sqlx::query_scalar::<_, i32>(
            "SELECT pid FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE $1 AND pid <> $2",
        )
        .bind(format!("LISTEN \"{OUTBOX_CHANNEL}\"%"))
        .bind(except.unwrap_or(0))
        .fetch_optional(conn)
        .await
    })
    .unwrap();
    tx.commit().await.unwrap();
    pid
}

async fn terminate(database: &Database, pid: i32) {
    let mut tx = database.begin().await.unwrap();
    let terminated = chassis::on_backend!(tx, conn => {
        sqlx::query_scalar::<_, bool>("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .fetch_one(conn)
            .await
    })
    .unwrap();
    tx.commit().await.unwrap();
    assert!(terminated, "the listener's backend is terminated");
}

/// The names in the next `expected` events on the bus, waiting at most [`DEADLINE`].
async fn published_names(consumer: &mut Consumer, expected: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut names = Vec::new();
    while names.len() < expected && tokio::time::Instant::now() < deadline {
        for delivery in consumer
            .fetch(expected, Duration::from_millis(500))
            .await
            .expect("fetch works")
        {
            let event: chassis::cloudevents::CloudEvent =
                serde_json::from_slice(&delivery.payload).expect("a CloudEvent");
            let category = event
                .decode_data::<emporium_proto::catalog::v1::Category>()
                .expect("a category's data");
            names.push(category.name);
            delivery.ack().await.expect("ack works");
        }
    }
    names
}
