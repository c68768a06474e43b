//! SQLite writers queue in the process for the file's write lock: none of them ever meets it
//! taken, so none waits in SQLite's busy handler. Shown with a busy timeout of zero, where a
//! writer that met the lock taken would fail at once with SQLITE_BUSY.

use catalog::domain::{
    CategoryName, Currency, Description, Money, NewCategory, NewProduct, ProductName, Sku,
    StockQuantity,
};
use catalog::service::Catalog;
use chassis::outbox::{self, Actor, EventRoute, Relay};
use chassis::storage::Database;
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
