//! `emporium deadletter`: the real binary, pointed at the test's bus through the environment as an
//! operator would, lists, shows and re-drives what a consumer in this process parked; after the
//! redrive the consumer, now fixed, applies the event once.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use chassis::bus::{BusSettings, OutgoingMessage};
use chassis::cloudevents::CloudEvent;
use chassis::consumer::{Consumer, ConsumerOptions, EventHandler};
use chassis::outbox::EventRoute;
use chassis::storage::{Database, Transaction};
use test_support::{Backend, TestBus, TestDatabase, both_backends, eventually};
use tokio_util::sync::CancellationToken;

both_backends!(the_cli_lists_shows_and_redrives_a_dead_letter_which_is_then_applied_once);

const CONSUMER_NAME: &str = "cli-projection";
const PATIENCE: Duration = Duration::from_secs(30);

async fn the_cli_lists_shows_and_redrives_a_dead_letter_which_is_then_applied_once(
    backend: Backend,
) {
    // Arrange: a consumer that refuses its first event until told otherwise.
    let test_bus = TestBus::new(backend).await;
    let bus = test_bus.connect().await;
    let namespace = test_bus.namespace.clone();
    let route = EventRoute::new("catalog", &namespace);
    bus.ensure_stream(&route.stream()).await.unwrap();
    let test_database = TestDatabase::new(backend, "projection").await;
    let database = Database::connect(test_database.url(), catalog::MIGRATIONS)
        .await
        .unwrap();
    let handler = CountingHandler::default();
    handler.refusing.store(true, Ordering::SeqCst);
    let options = ConsumerOptions {
        max_deliver: 1,
        backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        ..ConsumerOptions::new(
            CONSUMER_NAME,
            &route.stream().name,
            &format!("{namespace}.catalog.product.>"),
            &namespace,
        )
    };
    let shutdown = CancellationToken::new();
    let _stop_consumer = shutdown.clone().drop_guard();
    let consumer = tokio::spawn(
        Consumer::new(database.clone(), bus.clone(), options, handler.clone())
            .run(shutdown.clone()),
    );
    let event = crate::product_created(uuid::Uuid::new_v4());
    bus.publish(OutgoingMessage {
        subject: format!("{namespace}.catalog.product.created"),
        id: event.id.clone(),
        headers: BTreeMap::new(),
        payload: serde_json::to_vec(&event).unwrap().into(),
    })
    .await
    .unwrap();
    let cli = Cli::new(&test_bus);
    let listed = eventually(PATIENCE, "the CLI to list the dead letter", || async {
        let listed = cli.json(&["deadletter", "list", "--output", "json"]).await;
        (listed.as_array().is_some_and(|list| !list.is_empty())).then_some(listed)
    })
    .await;

    // Act and assert: list, show, redrive.
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["consumer"], CONSUMER_NAME);
    assert_eq!(listed[0]["event"]["id"], event.id.as_str());
    assert_eq!(listed[0]["handler_failures"], 1);
    let sequence = listed[0]["sequence"].as_u64().unwrap().to_string();
    let table = cli.stdout(&["deadletter", "list"]).await;
    assert!(
        table.starts_with("SEQ") && table.contains(CONSUMER_NAME) && table.contains(&event.id),
        "{table}"
    );
    let shown = cli.stdout(&["deadletter", "show", &sequence]).await;
    assert!(shown.contains("refused on purpose"), "{shown}");
    assert!(shown.contains("\"name\": \"Sencha\""), "{shown}");
    let missing = cli.run(&["deadletter", "show", "999999"]).await;
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no dead letter with sequence 999999"),
        "{missing:?}"
    );
    let unselected = cli.run(&["deadletter", "redrive"]).await;
    assert_eq!(unselected.status.code(), Some(2), "{unselected:?}");

    handler.refusing.store(false, Ordering::SeqCst);
    let redriven = cli
        .json(&[
            "deadletter",
            "redrive",
            "--consumer",
            CONSUMER_NAME,
            "--output",
            "json",
        ])
        .await;
    assert_eq!(redriven.as_array().map(Vec::len), Some(1), "{redriven}");
    eventually(PATIENCE, "the re-driven event to be applied", || async {
        (handler.n_applied.load(Ordering::SeqCst) >= 1).then_some(())
    })
    .await;
    let after = cli.json(&["deadletter", "list", "--output", "json"]).await;
    assert_eq!(after, serde_json::json!([]));
    assert_eq!(
        cli.stdout(&["deadletter", "redrive", "--all"]).await.trim(),
        "No dead letters matched; nothing re-driven."
    );
    shutdown.cancel();
    consumer.await.unwrap();
    assert_eq!(handler.n_applied.load(Ordering::SeqCst), 1);
}

// === helpers ===

#[derive(Clone, Default)]
struct CountingHandler {
    refusing: Arc<AtomicBool>,
    n_applied: Arc<AtomicUsize>,
}

impl EventHandler for CountingHandler {
    async fn handle(&self, _tx: &mut Transaction, _event: &CloudEvent) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.refusing.load(Ordering::SeqCst),
            "the handler refused on purpose"
        );
        self.n_applied.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Runs `emporium` with the environment that points it at the test's bus.
struct Cli {
    variables: Vec<(&'static str, String)>,
}

impl Cli {
    fn new(test_bus: &TestBus) -> Cli {
        let mut variables = vec![
            ("EMPORIUM_NAMESPACE", test_bus.namespace.clone()),
            ("EMPORIUM_LOG", "warn".to_owned()),
        ];
        match &test_bus.settings {
            BusSettings::Embedded { path } => {
                let data_dir = path.parent().map(PathBuf::from).unwrap_or_default();
                variables.push(("EMPORIUM_BUS_URL", "embedded".to_owned()));
                variables.push(("EMPORIUM_DATA_DIR", data_dir.display().to_string()));
            }
            BusSettings::Nats { url, .. } => variables.push(("EMPORIUM_BUS_URL", url.clone())),
        }
        Cli { variables }
    }

    async fn run(&self, arguments: &[&str]) -> Output {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_emporium"));
        command.args(arguments).env_clear();
        for (name, value) in &self.variables {
            command.env(name, value);
        }
        command.output().await.expect("emporium runs")
    }

    async fn stdout(&self, arguments: &[&str]) -> String {
        let output = self.run(arguments).await;
        assert!(output.status.success(), "{arguments:?}: {output:?}");
        String::from_utf8(output.stdout).expect("the output is UTF-8")
    }

    async fn json(&self, arguments: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.stdout(arguments).await).expect("the output is JSON")
    }
}
