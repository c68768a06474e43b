//! The `emporium` binary tested as a whole, the way operators and new users meet it: one
//! integration binary (one link step) with a module per concern.

mod admin;
mod admin_fixture;
mod admin_split;
mod browser;
mod deadletter;
mod faults;
mod gateway;
mod graphiql;
mod graphql_js;
mod one_address;
mod ops;
mod up;

/// `promtool check metrics` (Debian's prometheus package, which `./scripts/test` installs)
/// accepts `exposition`.
pub(crate) fn assert_promtool_accepts(exposition: &str) {
    use std::io::Write as _;
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs (./scripts/test installs Debian's prometheus package)");
    promtool
        .stdin
        .take()
        .expect("a piped stdin")
        .write_all(exposition.as_bytes())
        .expect("promtool reads the metrics");
    let output = promtool.wait_with_output().expect("promtool finishes");
    assert!(
        output.status.success(),
        "promtool check metrics refused /metrics:\n{}{}\n{exposition}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A catalog `product.created` CloudEvent about `product_id`, with an id of its own.
pub(crate) fn product_created(product_id: uuid::Uuid) -> chassis::cloudevents::CloudEvent {
    chassis::cloudevents::CloudEvent {
        specversion: "1.0".to_owned(),
        id: uuid::Uuid::new_v4().to_string(),
        source: "/emporium/catalog".to_owned(),
        event_type: "emporium.catalog.product.created".to_owned(),
        subject: product_id.to_string(),
        time: "2026-11-23T12:00:00.000000Z".to_owned(),
        datacontenttype: "application/json".to_owned(),
        dataschema: Some("urn:emporium:proto:emporium.catalog.v1.Product".to_owned()),
        data: serde_json::json!({ "name": "Sencha" }),
        aggregateversion: 1,
        aggregatetype: "product".to_owned(),
        traceparent: None,
        actor: None,
        actorclientid: None,
    }
}

/// Runs `node script` in `tests/<dir>` (its packages installed there by `./scripts/test`) with
/// `env`, and asserts that it succeeded and printed `ok` last.
pub(crate) async fn assert_node_check_passes(dir: &str, script: &str, env: Vec<(&str, String)>) {
    let client_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(dir);
    assert!(
        client_dir.join("node_modules").is_dir(),
        "the check's packages are missing: ./scripts/test installs them (npm ci in {})",
        client_dir.display()
    );
    let env: Vec<(String, String)> = env
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
    let program = script.to_owned();
    let checked = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(program)
            .current_dir(&client_dir)
            .envs(env)
            .output()
            .expect("node runs (./scripts/test installs Node.js)")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&checked.stdout);
    let stderr = String::from_utf8_lossy(&checked.stderr);
    assert!(
        checked.status.success(),
        "{dir}/{script} failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.trim_end().ends_with("ok"), "{stdout}");
}
