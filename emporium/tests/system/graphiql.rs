//! GraphiQL in a real browser: `tests/browser/graphiql.mjs` (playwright-core driving Debian's
//! chromium; both installed by `./scripts/test`) opens `/graphql` of `emporium up` as a visitor,
//! sees the schema in the documentation explorer and runs a query. The screenshot is kept
//! under `target/tmp/screenshots/`.

use std::path::Path;

use crate::up::Suite;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_builds_the_schema_and_runs_a_query_in_chromium() {
    let screenshots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&screenshots).expect("a directory for the screenshots");
    let scratch = std::env::temp_dir().join(format!("emporium-graphiql-{}", uuid::Uuid::new_v4()));
    let suite = Suite::new(&scratch);
    let mut up = suite.start();
    up.banner();

    crate::assert_node_check_passes(
        "browser",
        "graphiql.mjs",
        vec![
            ("EMPORIUM_GRAPHQL_URL", format!("{}/graphql", suite.issuer)),
            (
                "EMPORIUM_SCREENSHOT",
                screenshots.join("graphiql.png").display().to_string(),
            ),
        ],
    )
    .await;
    up.stop();
    let _ = std::fs::remove_dir_all(&scratch);
}
