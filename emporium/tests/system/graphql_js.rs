//! The GraphQL API through unmodified third-party clients: `tests/graphql-js/check.mjs`
//! (graphql-js, graphql-ws; installed by `./scripts/test` with `npm ci`) against `emporium up`,
//! signed in as the admin with a token from the real sign-in page.

use std::time::Duration;

use emporiumctl::oauth::{BrowserLogin, login_with_browser};

use crate::up::{ADMIN_EMAIL, Browser, Suite, generated_password};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_js_and_graphql_ws_drive_every_resource_and_a_subscription() {
    let scratch = std::env::temp_dir().join(format!("emporium-gqljs-{}", uuid::Uuid::new_v4()));
    let suite = Suite::new(&scratch);
    let mut up = suite.start();
    let password = generated_password(&up.banner());
    let credentials = login_with_browser(
        &BrowserLogin {
            issuer: suite.issuer.clone(),
            client_id: "emporiumctl".to_owned(),
            scope: "openid".to_owned(),
            timeout: Duration::from_secs(60),
        },
        |url| {
            let url = url.to_owned();
            let password = password.clone();
            tokio::spawn(async move {
                let mut browser = Browser::new();
                let location = browser.submit_sign_in(&url, ADMIN_EMAIL, &password).await;
                browser.send("GET", &location, Vec::new()).await;
            });
        },
    )
    .await
    .expect("the admin signs in");

    crate::assert_node_check_passes(
        "graphql-js",
        "check.mjs",
        vec![
            ("EMPORIUM_GRAPHQL_URL", format!("{}/graphql", suite.issuer)),
            ("EMPORIUM_TOKEN", credentials.access_token),
        ],
    )
    .await;
    up.stop();
    let _ = std::fs::remove_dir_all(&scratch);
}
