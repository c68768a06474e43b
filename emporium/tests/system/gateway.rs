//! `emporium serve gateway`: the GraphQL gateway in a process of its own, calling a catalog at
//! the address `EMPORIUM_CATALOG_URL` gives, the caller's token passed through for the catalog
//! to verify; its subscriptions fed by the catalog's stream on NATS, over a WebSocket; its
//! `/readyz`, which a stop signal turns to 503.

use std::process::{Command, Stdio};
use std::time::Duration;

use catalog::CatalogParts;
use chassis::auth::roles;
use test_support::Backend;

use futures::{SinkExt as _, StreamExt as _};
use serde_json::json;
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest as _};

use crate::up::{Browser, free_addr, get, graphql};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_gateway_answers_for_the_services_at_their_urls() {
    let catalog = test_support::spawn_service::<CatalogParts>(Backend::SqliteEmbedded, ())
        .with_caller("catalog-manager-1", &[roles::CATALOG_MANAGER])
        .await;
    // Its embedded bus, which no service publishes to here.
    let data_dir = test_support::temp_dir("gateway");
    let (http_addr, _gateway) = serve_gateway(
        &catalog,
        &[("EMPORIUM_DATA_DIR", data_dir.to_str().unwrap())],
    )
    .await;

    let created = graphql(
        &http_addr,
        Some(&catalog.token),
        r#"mutation { createCategory(data: { name: "Tea" }) { id name } }"#,
    )
    .await;
    let listed = graphql(
        &http_addr,
        Some(&catalog.token),
        "{ categories(first: 5) { name } }",
    )
    .await;
    let anonymous = graphql(&http_addr, None, "{ categories(first: 5) { name } }").await;

    assert_eq!(
        created["data"]["createCategory"]["name"], "Tea",
        "{created}"
    );
    assert_eq!(
        listed["data"]["categories"],
        serde_json::json!([{ "name": "Tea" }])
    );
    assert_eq!(
        anonymous["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{anonymous}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_gateway_sends_each_change_to_its_websocket_subscriber() {
    // Arrange: the catalog on PostgreSQL and NATS, the gateway following its stream there and
    // verifying tokens with the issuer's published keys.
    let catalog = test_support::spawn_service::<CatalogParts>(Backend::PostgresNats, ())
        .with_caller("catalog-manager-1", &[roles::CATALOG_MANAGER])
        .await;
    let jwks = catalog.issuer.serve_jwks().await;
    let (http_addr, _gateway) = serve_gateway(
        &catalog,
        &[
            ("EMPORIUM_BUS_URL", &test_support::nats_url()),
            ("EMPORIUM_NAMESPACE", &catalog.test_bus.namespace),
            ("EMPORIUM_AUTH_ISSUER", test_support::TestIssuer::ISSUER),
            ("EMPORIUM_AUTH_JWKS_URL", &jwks.url),
        ],
    )
    .await;
    let created = graphql(
        &http_addr,
        Some(&catalog.token),
        r#"mutation { createCategory(data: { name: "Tea" }) { id version } }"#,
    )
    .await;
    let id = created["data"]["createCategory"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    catalog.read_stream("catalog.category.created", 1).await;

    // A graphql-transport-ws client: the token in `connection_init`, as a browser sends it.
    let mut request = format!("ws://{http_addr}/graphql")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        http::HeaderValue::from_static("graphql-transport-ws"),
    );
    let (mut socket, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("the WebSocket opens");
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        "graphql-transport-ws"
    );
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {}", catalog.token) } });
    socket.send(Message::text(init.to_string())).await.unwrap();
    assert_eq!(next_json(&mut socket).await["type"], "connection_ack");
    let subscribe = json!({ "id": "1", "type": "subscribe", "payload": {
        "query": format!(r#"subscription {{ categoryChanged(where: {{ node: {{ id: "{id}" }} }}) {{ mutation node {{ name version }} }} }}"#)
    } });
    socket
        .send(Message::text(subscribe.to_string()))
        .await
        .unwrap();
    test_support::eventually(
        Duration::from_secs(20),
        "the subscription to start",
        || async {
            let (_, _, metrics) = Browser::new()
                .send("GET", &format!("http://{http_addr}/metrics"), Vec::new())
                .await;
            metrics
                .contains("emporium_graphql_subscriptions 1")
                .then_some(())
        },
    )
    .await;

    // Act
    let updated = graphql(
        &http_addr,
        Some(&catalog.token),
        &format!(r#"mutation {{ updateCategory(where: {{ id: "{id}" }}, data: {{ expectedVersion: "1", name: "Green tea" }}) {{ version }} }}"#),
    )
    .await;

    // Assert
    assert_eq!(
        updated["data"]["updateCategory"]["version"], "2",
        "{updated}"
    );
    assert_eq!(
        next_json(&mut socket).await,
        json!({ "id": "1", "type": "next", "payload": { "data": { "categoryChanged": {
            "mutation": "UPDATED", "node": { "name": "Green tea", "version": "2" }
        } } } })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_gateway_is_ready_until_its_stop_signal_and_lists_the_streams_it_follows() {
    let catalog = test_support::spawn_service::<CatalogParts>(Backend::PostgresNats, ())
        .with_caller("catalog-manager-1", &[roles::CATALOG_MANAGER])
        .await;
    let (http_addr, gateway) = serve_gateway(
        &catalog,
        &[
            ("EMPORIUM_BUS_URL", &test_support::nats_url()),
            ("EMPORIUM_NAMESPACE", &catalog.test_bus.namespace),
            ("EMPORIUM_SHUTDOWN_DELAY_SECONDS", "30"),
        ],
    )
    .await;
    let stream = chassis::outbox::stream_name(&catalog.test_bus.namespace, "catalog");
    let readyz = format!("http://{http_addr}/readyz");

    let ready = test_support::eventually(
        Duration::from_secs(20),
        "the catalog's stream to be followed",
        || async {
            let (status, body) = get(&readyz).await?;
            let body: serde_json::Value = serde_json::from_str(&body).ok()?;
            (body["streams"][&stream] == "FOLLOWING").then_some((status, body))
        },
    )
    .await;
    let pid = gateway.0.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    // Within the shutdown delay: still answering, no longer ready.
    let draining =
        test_support::eventually(Duration::from_secs(20), "/readyz to answer 503", || async {
            let (status, body) = get(&readyz).await?;
            (status == 503).then_some(body)
        })
        .await;

    assert_eq!(ready.0, 200);
    assert_eq!(ready.1["status"], "SERVING", "{}", ready.1);
    assert!(sent.success());
    assert!(draining.contains(r#""status":"NOT_SERVING""#), "{draining}");
}

/// `emporium serve gateway` in front of `catalog`, with `settings` besides: its HTTP address,
/// once it listens, and the process, stopped when dropped.
async fn serve_gateway(
    catalog: &test_support::TestApp<CatalogParts>,
    settings: &[(&str, &str)],
) -> (String, KillOnDrop) {
    let http_addr = free_addr();
    let child = Command::new(env!("CARGO_BIN_EXE_emporium"))
        .args(["serve", "gateway"])
        .env("EMPORIUM_HTTP_ADDR", &http_addr)
        .env("EMPORIUM_CATALOG_URL", format!("http://{}", catalog.addr))
        .envs(settings.iter().copied())
        .env("EMPORIUM_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("emporium starts");
    let gateway = KillOnDrop(child);
    test_support::eventually(Duration::from_secs(60), "the gateway to listen", || async {
        tokio::net::TcpStream::connect(&http_addr).await.ok()
    })
    .await;
    (http_addr, gateway)
}

/// The next text message of `socket` as JSON, within 20 s.
async fn next_json<S>(socket: &mut S) -> serde_json::Value
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let message = tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .expect("a message within 20 s")
            .expect("the socket stays open")
            .expect("a WebSocket message");
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).expect("a JSON message");
        }
    }
}

/// Stops the gateway process when the test ends, passed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
