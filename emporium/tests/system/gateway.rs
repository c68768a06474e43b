//! `emporium serve gateway`: the GraphQL gateway in a process of its own, calling a catalog at
//! the address `EMPORIUM_CATALOG_URL` gives, the caller's token passed through for the catalog
//! to verify.

use std::process::{Command, Stdio};
use std::time::Duration;

use catalog::CatalogParts;
use chassis::auth::roles;
use test_support::Backend;

use crate::up::{free_addr, graphql};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_gateway_answers_for_the_services_at_their_urls() {
    let catalog = test_support::spawn_service::<CatalogParts>(Backend::SqliteEmbedded, ())
        .with_caller("catalog-manager-1", &[roles::CATALOG_MANAGER])
        .await;
    let http_addr = free_addr();
    let child = Command::new(env!("CARGO_BIN_EXE_emporium"))
        .args(["serve", "gateway"])
        .env("EMPORIUM_HTTP_ADDR", &http_addr)
        .env("EMPORIUM_CATALOG_URL", format!("http://{}", catalog.addr))
        .env("EMPORIUM_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("emporium starts");
    let _gateway = KillOnDrop(child);
    test_support::eventually(Duration::from_secs(60), "the gateway to listen", || async {
        tokio::net::TcpStream::connect(&http_addr).await.ok()
    })
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

/// Stops the gateway process when the test ends, passed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
