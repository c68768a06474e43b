//! The admin console as production runs it: `serve identity`, `serve catalog` and `serve
//! gateway` as three processes on PostgreSQL and NATS JetStream, the gateway serving the built
//! console (`EMPORIUM_ADMIN_DIR`) and reaching each process's ops API (`EMPORIUM_OPS_ORIGINS`),
//! its browser client registered at identity as an operator does it. `tests/browser/
//! admin_split.mjs` signs in (on identity's own origin), runs the catalog, reads a history and
//! the Operations page, and signs out.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use emporium_proto::identity::v1 as identity_proto;
use emporiumctl::oauth::{BrowserLogin, login_with_browser};
use test_support::{Backend, TestBus, TestDatabase};

use crate::admin::built_console;
use crate::up::{Browser, free_addr, get};

const ADMIN_EMAIL: &str = "ops@example.com";
const ADMIN_PASSWORD: &str = "the split deployment's admin password";
const KEY_ENCRYPTION_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// One `emporium serve` process, its output in a log file (shown when the test fails), killed
/// when dropped.
struct Serve {
    child: Child,
    log: PathBuf,
}

impl Serve {
    fn start(what: &str, env: &[(&str, String)], scratch: &Path) -> Serve {
        let log = scratch.join(format!("{what}.log"));
        let output = std::fs::File::create(&log).expect("a log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_emporium"));
        command.args(["serve", what]);
        // Nothing from the environment the tests run in may change what the process talks to.
        for (name, _) in std::env::vars() {
            if name.starts_with("EMPORIUM_") || name == "RUST_LOG" {
                command.env_remove(name);
            }
        }
        let child = command
            .envs(env.iter().map(|(name, value)| (name, value)))
            .env("EMPORIUM_LOG", "info")
            .stdout(Stdio::null())
            .stderr(output.try_clone().expect("the log file"))
            .spawn()
            .expect("emporium starts");
        Serve { child, log }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `url` answers 200, or fails with the logs of `process`.
async fn until_ok(url: &str, process: &Serve) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        if let Some((200, _)) = get(url).await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{url} did not answer 200; the process's logs:\n{}",
            process.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_console_runs_on_postgresql_and_nats_behind_serve_gateway() {
    let (console, screenshots) = built_console();
    let scratch = test_support::temp_dir("admin-split");
    let identity_db = TestDatabase::new(Backend::PostgresNats, "identity").await;
    let catalog_db = TestDatabase::new(Backend::PostgresNats, "catalog").await;
    let bus = TestBus::new(Backend::PostgresNats).await;

    let identity_http = free_addr();
    let issuer = format!("http://{identity_http}");
    let (identity_grpc, identity_ops) = (free_addr(), free_addr());
    let (catalog_grpc, catalog_ops) = (free_addr(), free_addr());
    let gateway_http = free_addr();
    // Another host name than identity's: the browser keeps the two origins' cookies apart.
    let public_url = format!(
        "http://localhost:{}",
        gateway_http.rsplit(':').next().unwrap()
    );
    let common = [
        ("EMPORIUM_BUS_URL", test_support::nats_url()),
        ("EMPORIUM_NAMESPACE", bus.namespace.clone()),
        ("EMPORIUM_AUTH_ISSUER", issuer.clone()),
    ];

    let identity = Serve::start(
        "identity",
        &[
            common.as_slice(),
            &[
                (
                    "EMPORIUM_IDENTITY_DATABASE_URL",
                    identity_db.url().to_owned(),
                ),
                ("EMPORIUM_IDENTITY_GRPC_ADDR", identity_grpc.clone()),
                ("EMPORIUM_HTTP_ADDR", identity_http.clone()),
                ("EMPORIUM_METRICS_ADDR", identity_ops.clone()),
                (
                    "EMPORIUM_IDENTITY_KEY_ENCRYPTION_KEY",
                    KEY_ENCRYPTION_KEY.to_owned(),
                ),
                ("EMPORIUM_ADMIN_EMAIL", ADMIN_EMAIL.to_owned()),
                ("EMPORIUM_ADMIN_PASSWORD", ADMIN_PASSWORD.to_owned()),
            ],
        ]
        .concat(),
        &scratch,
    );
    until_ok(
        &format!("{issuer}/.well-known/openid-configuration"),
        &identity,
    )
    .await;
    let catalog = Serve::start(
        "catalog",
        &[
            common.as_slice(),
            &[
                ("EMPORIUM_CATALOG_DATABASE_URL", catalog_db.url().to_owned()),
                ("EMPORIUM_CATALOG_GRPC_ADDR", catalog_grpc.clone()),
                ("EMPORIUM_METRICS_ADDR", catalog_ops.clone()),
            ],
        ]
        .concat(),
        &scratch,
    );
    until_ok(&format!("http://{catalog_ops}/readyz"), &catalog).await;

    // The operator registers the gateway's browser client, signed in with the CLI as the admin.
    let admin = login_with_browser(
        &BrowserLogin {
            issuer: issuer.clone(),
            client_id: "emporiumctl".to_owned(),
            scope: "openid".to_owned(),
            timeout: Duration::from_secs(60),
        },
        |url| {
            let url = url.to_owned();
            tokio::spawn(async move {
                Browser::new()
                    .sign_in(&url, ADMIN_EMAIL, ADMIN_PASSWORD)
                    .await
            });
        },
    )
    .await
    .expect("the admin signs in with the CLI");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{identity_grpc}"))
        .unwrap()
        .connect()
        .await
        .expect("identity's gRPC address answers");
    let registered = identity_proto::identity_service_client::IdentityServiceClient::new(channel)
        .create_client(test_support::with_token(
            identity_proto::CreateClientRequest {
                client_id: "emporium-gateway".to_owned(),
                name: "Emporium gateway".to_owned(),
                r#type: identity_proto::ClientType::Confidential.into(),
                redirect_uris: vec![format!("{public_url}/auth/callback")],
                post_logout_redirect_uris: vec![format!("{public_url}/")],
                roles: Vec::new(),
            },
            &admin.access_token,
        ))
        .await
        .expect("the gateway's client is registered")
        .into_inner();

    let gateway = Serve::start(
        "gateway",
        &[
            common.as_slice(),
            &[
                ("EMPORIUM_HTTP_ADDR", gateway_http.clone()),
                ("EMPORIUM_IDENTITY_URL", format!("http://{identity_grpc}")),
                ("EMPORIUM_CATALOG_URL", format!("http://{catalog_grpc}")),
                ("EMPORIUM_PUBLIC_URL", public_url.clone()),
                ("EMPORIUM_GATEWAY_CLIENT_SECRET", registered.client_secret),
                ("EMPORIUM_ADMIN_DIR", console.display().to_string()),
                (
                    "EMPORIUM_OPS_ORIGINS",
                    format!("identity=http://{identity_ops},catalog=http://{catalog_ops}"),
                ),
            ],
        ]
        .concat(),
        &scratch,
    );
    until_ok(&format!("http://{gateway_http}/readyz"), &gateway).await;

    crate::assert_node_check_passes(
        "browser",
        "admin_split.mjs",
        vec![
            ("EMPORIUM_ORIGIN", public_url),
            ("EMPORIUM_IDENTITY_ORIGIN", issuer),
            ("EMPORIUM_ADMIN_EMAIL", ADMIN_EMAIL.to_owned()),
            ("EMPORIUM_ADMIN_PASSWORD", ADMIN_PASSWORD.to_owned()),
            ("EMPORIUM_SCREENSHOTS", screenshots.display().to_string()),
        ],
    )
    .await;
    drop((gateway, catalog, identity));
    let _ = std::fs::remove_dir_all(&scratch);
}
