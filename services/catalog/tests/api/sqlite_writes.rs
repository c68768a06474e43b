//! SQLite writers queue in the process for the file's write lock: none of them ever meets it
//! taken, so none waits in SQLite's busy handler. Shown with a busy timeout of zero, where a
//! writer that met the lock taken would fail at once with SQLITE_BUSY. Writers that queue
//! together share one commit (one fsync), and one writer's failure stays its own.

use catalog::domain::{
    CategoryName, Currency, Description, Money, NewCategory, NewProduct, Product, ProductName, Sku,
    StockQuantity,
};
use catalog::service::Catalog;
use chassis::outbox::{self, Actor, EventRoute, Relay};
use std::time::{Duration, Instant};

use catalog::store;
use chassis::error::Error;
use chassis::storage::{Database, Timestamp, WriteQueueStats};
use test_support::{Backend, TestBus, TestDatabase};

/// Concurrent creates, as many as the pool has connections and more.
const N_WRITERS: usize = 16;
const N_CREATES_PER_WRITER: usize = 25;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_and_the_relay_never_meet_sqlites_write_lock() {
    // Arrange: the catalog's use cases on one pool, the relay on a second pool of the same
    // file (as a test or `emporium migrate` opens one), both failing at once on a taken lock.
    let test_database = TestDatabase::new(Backend::SqliteEmbedded, "catalog").await;
    let test_bus = TestBus::new(Backend::SqliteEmbedded).await;
    let bus = test_bus.connect().await;
    let service_database = Database::open_without_busy_wait(test_database.url())
        .await
        .expect("the database opens");
    service_database
        .migrate(catalog::MIGRATIONS)
        .await
        .expect("the database migrates");
    let relay_database = Database::open_without_busy_wait(test_database.url())
        .await
        .expect("a second pool opens");
    let route = EventRoute::new(catalog::NAME, &test_bus.namespace);
    bus.ensure_stream(&route.stream())
        .await
        .expect("the stream is created");
    let relay = Relay::new(relay_database.clone(), bus.clone(), route);
    let catalog = Catalog::new(service_database.clone());
    let actor = Actor {
        subject: "catalog-manager-1".to_owned(),
        client_id: "test".to_owned(),
    };
    let category = catalog
        .create_category(
            NewCategory {
                name: CategoryName::parse("Tea").unwrap(),
                description: Description::parse("All about tea").unwrap(),
            },
            &actor,
        )
        .await
        .expect("the category is created");

    // Act: writers create products while the relay publishes and marks, and a third pool
    // migrates the file again.
    let writers: Vec<_> = (0..N_WRITERS)
        .map(|writer| {
            let catalog = catalog.clone();
            let actor = actor.clone();
            tokio::spawn(async move {
                for index in 0..N_CREATES_PER_WRITER {
                    catalog
                        .create_product(new_product(category.id, writer, index), &actor)
                        .await
                        .expect("a create never fails on a busy database");
                }
            })
        })
        .collect();
    let migration = tokio::spawn({
        let url = test_database.url().to_owned();
        async move {
            let database = Database::open_without_busy_wait(&url)
                .await
                .expect("a third pool opens");
            database
                .migrate(catalog::MIGRATIONS)
                .await
                .expect("a migration never fails on a busy database");
        }
    });
    let mut n_published = 0;
    loop {
        let all_written =
            writers.iter().all(|writer| writer.is_finished()) && migration.is_finished();
        n_published += relay
            .publish_pending()
            .await
            .expect("the relay never fails on a busy database");
        if all_written && outbox::unpublished_count(&relay_database).await.unwrap() == 0 {
            break;
        }
        // Let the writers commit more before the next batch.
        tokio::task::yield_now().await;
    }
    for writer in writers {
        writer.await.expect("every writer finishes");
    }
    migration.await.expect("the migration finishes");

    // Assert: every event was published, each once.
    assert_eq!(n_published, 1 + N_WRITERS * N_CREATES_PER_WRITER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_queued_behind_a_write_share_its_commit_and_a_failing_one_fails_alone() {
    // Arrange: one write open, holding the turn; two more queue behind it, one of which will
    // break a unique constraint.
    let (_test_database, database, category_id) = catalog_database().await;
    let before = stats(&database);
    let mut first = database.begin().await.expect("a write begins");
    store::insert_product_in(&mut first, &product(category_id, 0, 0))
        .await
        .expect("the first product is inserted");
    let duplicate = tokio::spawn({
        let database = database.clone();
        async move {
            let mut tx = database.begin().await.expect("a write begins");
            let inserted = store::insert_product_in(&mut tx, &product(category_id, 0, 0)).await;
            tx.rollback().await.expect("the write rolls back");
            inserted
        }
    });
    let second = tokio::spawn({
        let database = database.clone();
        async move {
            let mut tx = database.begin().await.expect("a write begins");
            store::insert_product_in(&mut tx, &product(category_id, 0, 1)).await?;
            tx.commit().await.map_err(Error::from)
        }
    });
    wait_until_writers_wait(&database, 2).await;

    // Act
    let first_committed = first.commit().await;
    let duplicate_inserted = duplicate.await.expect("the duplicate's task finishes");
    let second_committed = second.await.expect("the second's task finishes");

    // Assert: one commit made both good writes durable; the duplicate failed on its own.
    first_committed.expect("the first write commits");
    second_committed.expect("the second write commits");
    assert!(
        matches!(duplicate_inserted, Err(Error::AlreadyExists { .. })),
        "the duplicate SKU is refused, got {duplicate_inserted:?}"
    );
    let after = stats(&database);
    assert_eq!(after.group_commits - before.group_commits, 1, "{after:?}");
    assert_eq!(
        after.writes_committed - before.writes_committed,
        2,
        "{after:?}"
    );
    assert_eq!(skus_on_disk(&database).await, ["SKU-00-000", "SKU-00-001"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_dropped_unfinished_is_undone_and_its_group_still_commits() {
    // Arrange: one write open; behind it one that will be cancelled mid-transaction (its task
    // aborted while it holds the turn) and one that commits.
    let (_test_database, database, category_id) = catalog_database().await;
    let before = stats(&database);
    let mut first = database.begin().await.expect("a write begins");
    store::insert_product_in(&mut first, &product(category_id, 1, 0))
        .await
        .expect("the first product is inserted");
    let (inserted_sender, inserted) = tokio::sync::oneshot::channel();
    let cancelled = tokio::spawn({
        let database = database.clone();
        async move {
            let mut tx = database.begin().await.expect("a write begins");
            store::insert_product_in(&mut tx, &product(category_id, 1, 1))
                .await
                .expect("the product is inserted");
            let _ = inserted_sender.send(());
            std::future::pending::<()>().await;
        }
    });
    let last = tokio::spawn({
        let database = database.clone();
        async move {
            let mut tx = database.begin().await.expect("a write begins");
            store::insert_product_in(&mut tx, &product(category_id, 1, 2)).await?;
            tx.commit().await.map_err(Error::from)
        }
    });
    wait_until_writers_wait(&database, 2).await;

    // Act: the first commits, which lets the second run; the second is cancelled.
    let first_committed = tokio::spawn(first.commit());
    inserted
        .await
        .expect("the cancelled write inserted its product");
    cancelled.abort();

    // Assert: the first and the last are durable, the cancelled one's product is gone.
    first_committed
        .await
        .expect("the first's task finishes")
        .expect("the first write commits");
    last.await
        .expect("the last's task finishes")
        .expect("the last write commits");
    let after = stats(&database);
    assert_eq!(after.group_commits - before.group_commits, 1, "{after:?}");
    assert_eq!(
        after.writes_committed - before.writes_committed,
        2,
        "{after:?}"
    );
    assert_eq!(skus_on_disk(&database).await, ["SKU-01-000", "SKU-01-002"]);
}

/// A migrated catalog database on SQLite with one category; the test database must outlive the
/// pool.
async fn catalog_database() -> (TestDatabase, Database, uuid::Uuid) {
    let test_database = TestDatabase::new(Backend::SqliteEmbedded, "catalog").await;
    let database = Database::connect(test_database.url(), catalog::MIGRATIONS)
        .await
        .expect("the database opens and migrates");
    let category = Catalog::new(database.clone())
        .create_category(
            NewCategory {
                name: CategoryName::parse("Tea").unwrap(),
                description: Description::parse("All about tea").unwrap(),
            },
            &Actor {
                subject: "catalog-manager-1".to_owned(),
                client_id: "test".to_owned(),
            },
        )
        .await
        .expect("the category is created");
    (test_database, database, category.id)
}

fn stats(database: &Database) -> WriteQueueStats {
    database
        .write_queue_stats()
        .expect("a SQLite database has a write queue")
}

async fn wait_until_writers_wait(database: &Database, n_writers: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats(database).writers_waiting < n_writers {
        assert!(
            Instant::now() < deadline,
            "{n_writers} writers never queued: {:?}",
            stats(database)
        );
        tokio::task::yield_now().await;
    }
}

/// The SKUs a reader on another connection sees: what was committed, in order.
async fn skus_on_disk(database: &Database) -> Vec<String> {
    let mut tx = database.begin_read().await.expect("a read begins");
    let skus = chassis::on_backend!(tx, conn => {
        sqlx::query_scalar::<_, String>("SELECT sku FROM products ORDER BY sku")
            .fetch_all(conn)
            .await
    })
    .expect("the products are read");
    tx.commit().await.expect("the read ends");
    skus
}

fn new_product(category_id: uuid::Uuid, writer: usize, index: usize) -> NewProduct {
    NewProduct {
        sku: Sku::parse(&format!("SKU-{writer:02}-{index:03}")).unwrap(),
        name: ProductName::parse("Sencha").unwrap(),
        description: Description::parse("Sencha, freshly stocked").unwrap(),
        category_id,
        price: Money {
            amount_minor: 1299,
            currency: Currency::parse("EUR").unwrap(),
        },
        stock_on_hand: StockQuantity::parse(10).unwrap(),
    }
}

/// [`new_product`], as created now.
fn product(category_id: uuid::Uuid, writer: usize, index: usize) -> Product {
    new_product(category_id, writer, index).into_product(uuid::Uuid::now_v7(), Timestamp::now())
}
