//! `emporium up` the way a new user meets it: the real binary on an empty data directory prints
//! the admin's generated password once; signing in through the real sign-in page gives the CLI a
//! token; with it the catalog accepts changes, without it refuses them; a restart keeps the
//! admin, the clients, the signing key and the login, and creates nothing again. Every service
//! answers on the one gRPC address `up` prints. (`up` is the embedded mode by definition, so this
//! runs on SQLite and the embedded bus only.)

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use emporiumctl::credentials::CredentialStore;
use emporiumctl::oauth::{BrowserLogin, login_with_browser};
use emporiumctl::{Cli, run};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;

pub(crate) const ADMIN_EMAIL: &str = "admin@emporium.localhost";

// Multi-threaded: `Up::stop` blocks its thread waiting for the process, and the client
// connections must still be driven meanwhile, or the server's drain waits for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_user_signs_in_with_the_cli_and_changes_the_catalog() {
    let scratch = std::env::temp_dir().join(format!("emporium-up-{}", uuid::Uuid::new_v4()));
    let suite = Suite::new(&scratch);

    let mut first = suite.start();
    let banner = first.banner();
    let password = generated_password(&banner);
    assert!(banner.iter().any(|line| line.contains(ADMIN_EMAIL)));

    let config_dir = scratch.join("ctl");
    let issuer = suite.issuer.clone();
    let credentials = login_with_browser(
        &BrowserLogin {
            issuer: issuer.clone(),
            client_id: "emporiumctl".to_owned(),
            scope: "openid offline_access".to_owned(),
            timeout: Duration::from_secs(60),
        },
        |url| {
            let url = url.to_owned();
            let password = password.clone();
            tokio::spawn(async move { Browser::new().sign_in(&url, ADMIN_EMAIL, &password).await });
        },
    )
    .await
    .expect("the CLI's browser login completes");
    CredentialStore::new(&config_dir)
        .save(&credentials)
        .expect("the login is stored");

    let created = suite
        .ctl(&config_dir, &["category", "create", "--name", "Tea"])
        .await;
    let anonymous = suite
        .ctl(&scratch.join("nobody"), &["category", "list"])
        .await;
    assert!(created.is_ok(), "signed in, the admin creates: {created:?}");
    assert!(created.unwrap().contains("Tea"));
    let refused = anonymous.expect_err("without a login the catalog refuses");
    assert!(refused.contains("not signed in"), "{refused}");
    // The GraphQL gateway on the same origin: the CLI's token lists what the CLI made; without a
    // token the catalog refuses the mutation, and the code says so.
    let listed = graphql(
        &suite.http_addr,
        Some(&credentials.access_token),
        "{ categories(first: 10) { name } }",
    )
    .await;
    assert_eq!(
        listed["data"]["categories"],
        serde_json::json!([{ "name": "Tea" }]),
        "{listed}"
    );
    let refused = graphql(
        &suite.http_addr,
        None,
        r#"mutation { createCategory(data: { name: "Coffee" }) { id } }"#,
    )
    .await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{refused}"
    );
    // The admin's ops view: both services serving (the origin is the login's issuer).
    let status = suite
        .ctl(&config_dir, &["ops", "status"])
        .await
        .expect("the admin reads the ops status");
    for service in ["identity", "catalog"] {
        assert!(
            status.lines().any(|line| {
                let mut cells = line.split_whitespace();
                cells.next() == Some(service) && cells.next() == Some("SERVING")
            }),
            "{service} SERVING in:\n{status}"
        );
    }
    // Kept in memory (no OTLP endpoint): the create's trace, its use case beneath its call and
    // its transaction beneath that.
    let traces = suite
        .ctl(&config_dir, &["ops", "traces", "--output", "json"])
        .await
        .expect("the admin reads the recent traces");
    let traces: serde_json::Value = serde_json::from_str(&traces).expect("JSON");
    assert_eq!(traces["kept_in_memory"], true, "{traces}");
    let create = traces["traces"]
        .as_array()
        .and_then(|traces| {
            traces.iter().find(|trace| {
                trace["root_span_name"] == "emporium.catalog.v1.CatalogService/CreateCategory"
            })
        })
        .unwrap_or_else(|| panic!("no CreateCategory trace in {traces}"));
    let tree = suite
        .ctl(
            &config_dir,
            &[
                "ops",
                "traces",
                "--trace-id",
                create["trace_id"].as_str().unwrap_or_default(),
            ],
        )
        .await
        .expect("the admin reads one trace");
    let call_line = tree
        .lines()
        .position(|line| {
            line.trim_start()
                .starts_with("emporium.catalog.v1.CatalogService/CreateCategory")
        })
        .unwrap_or_else(|| panic!("no call span in:\n{tree}"));
    let under_call: Vec<&str> = tree.lines().skip(call_line + 1).collect();
    assert!(
        under_call
            .windows(2)
            .any(|lines| lines[0].starts_with("    create_category")
                && lines[1].starts_with("      transaction")),
        "the use case under the call, its transaction under it, in:\n{tree}"
    );
    // What happened is counted: the sign-in, the token, the catalog's write transaction.
    let (_, _, metrics) = Browser::new()
        .send(
            "GET",
            &format!("http://{}/metrics", suite.http_addr),
            Vec::new(),
        )
        .await;
    crate::assert_promtool_accepts(&metrics);
    for series in [
        r#"emporium_graphql_requests_total{outcome="ok"} 1"#,
        r#"emporium_graphql_requests_total{outcome="error"} 1"#,
        r#"emporium_identity_sign_ins_total{outcome="success"} 1"#,
        r#"emporium_identity_sign_ins_total{outcome="wrong_credentials"} 0"#,
        r#"emporium_identity_tokens_issued_total{grant_type="authorization_code"} 1"#,
    ] {
        assert!(
            metrics.lines().any(|line| line == series),
            "no {series} in:\n{metrics}"
        );
    }
    let commits = metrics
        .lines()
        .find(|line| {
            line.starts_with("emporium_db_transaction_seconds_count{")
                && line.contains(r#"service="catalog""#)
                && line.contains(r#"outcome="commit""#)
        })
        .and_then(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no catalog commits counted in:\n{metrics}"));
    assert!(commits >= 1.0, "{commits} catalog commits");

    first.stop();
    let mut second = suite.start();
    let banner = second.banner();
    assert!(
        !banner.iter().any(|line| line.contains("password")),
        "a restart creates no admin again: {banner:?}"
    );
    let listed = suite.ctl(&config_dir, &["category", "list"]).await;
    assert!(
        listed
            .expect("the stored login still works")
            .contains("Tea")
    );
    second.stop();
    let _ = std::fs::remove_dir_all(&scratch);
}

/// `up` serves every service on one address: health reports each by name, reflection lists
/// them all, and the banner names that address. The HTTP origin's `/readyz` agrees with health.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_serves_every_service_on_one_address() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let scratch = std::env::temp_dir().join(format!("emporium-up-one-{}", uuid::Uuid::new_v4()));
    let suite = Suite::new(&scratch);
    let mut up = suite.start();

    let banner = up.banner();
    let addr: std::net::SocketAddr = suite.grpc_addr.parse().expect("an address");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("a valid endpoint")
        .connect()
        .await
        .expect("up accepts connections on EMPORIUM_GRPC_ADDR");
    let mut health = HealthClient::new(channel.clone());
    let mut statuses = Vec::new();
    for service in [
        "emporium.identity.v1.IdentityService",
        "emporium.catalog.v1.CatalogService",
        "",
    ] {
        let status = health
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .map(|response| response.into_inner().status);
        statuses.push((service, status.map_err(|status| status.code())));
    }
    let names = test_support::reflected_service_names(addr).await;
    // A call without a token: refused before its handler, and counted with its code.
    let refused =
        emporium_proto::catalog::v1::catalog_service_client::CatalogServiceClient::new(channel)
            .list_products(emporium_proto::catalog::v1::ListProductsRequest::default())
            .await
            .map(drop)
            .map_err(|status| status.code());
    let (readyz_status, _, readyz) = Browser::new()
        .send(
            "GET",
            &format!("http://{}/readyz", suite.http_addr),
            Vec::new(),
        )
        .await;
    let (metrics_status, _, metrics) = Browser::new()
        .send(
            "GET",
            &format!("http://{}/metrics", suite.http_addr),
            Vec::new(),
        )
        .await;
    up.stop();
    let _ = std::fs::remove_dir_all(&scratch);

    assert!(
        banner
            .iter()
            .any(|line| line.contains(&format!("gRPC  http://{addr}"))),
        "the banner names the one address: {banner:?}"
    );
    for (service, status) in statuses {
        assert_eq!(
            status,
            Ok(ServingStatus::Serving as i32),
            "health of {service:?}"
        );
    }
    assert_eq!(
        (
            readyz_status,
            serde_json::from_str::<serde_json::Value>(&readyz).expect("/readyz answers JSON")
        ),
        (
            200,
            serde_json::json!({
                "status": "SERVING",
                "services": {
                    "emporium.catalog.v1.CatalogService": "SERVING",
                    "emporium.identity.v1.IdentityService": "SERVING",
                },
            })
        ),
        "/readyz on the HTTP origin"
    );
    assert_eq!(metrics_status, 200, "/metrics on the HTTP origin");
    crate::assert_promtool_accepts(&metrics);
    // The three health checks above, counted by method and code.
    let handled_checks = metrics
        .lines()
        .find(|line| {
            line.starts_with("grpc_server_handled_total{")
                && line.contains(r#"grpc_service="grpc.health.v1.Health""#)
                && line.contains(r#"grpc_method="Check""#)
                && line.contains(r#"grpc_code="OK""#)
        })
        .unwrap_or_else(|| panic!("no count of health checks in:\n{metrics}"));
    assert!(handled_checks.ends_with(" 3"), "{handled_checks}");
    // Every hosted service's outbox and pool, read at the scrape, and the process collector.
    for service in ["identity", "catalog"] {
        for gauge in [
            "emporium_outbox_unpublished_events",
            "emporium_outbox_oldest_unpublished_age_seconds",
            "emporium_outbox_parked_events",
            "emporium_db_pool_max_connections",
        ] {
            let series = format!(r#"{gauge}{{service="{service}"}} "#);
            assert!(metrics.contains(&series), "no {series} in:\n{metrics}");
        }
    }
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(
            metrics
                .lines()
                .any(|line| line.starts_with(&format!("{name} "))),
            "no {name} in:\n{metrics}"
        );
    }
    assert_eq!(refused, Err(tonic::Code::Unauthenticated));
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("grpc_server_handled_total{")
                && line.contains(r#"grpc_method="ListProducts""#)
                && line.contains(r#"grpc_code="Unauthenticated""#)
                && line.ends_with(" 1")),
        "the refused call is counted by its code:\n{metrics}"
    );
    assert!(
        metrics.contains("# TYPE grpc_server_handling_seconds histogram"),
        "{metrics}"
    );
    assert_eq!(
        names,
        [
            "emporium.catalog.v1.CatalogService",
            "emporium.identity.v1.IdentityService",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ]
    );
}

/// `serve identity` in production: refuses to start without the key encryption key; with it and
/// `EMPORIUM_ADMIN_PASSWORD`, creates the first admin and the CLI's client, so the admin can sign
/// in with `emporiumctl login`; it prints no password anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_identity_creates_the_first_admin_only_from_the_environment() {
    let scratch = std::env::temp_dir().join(format!("emporium-serve-{}", uuid::Uuid::new_v4()));
    let suite = Suite::new(&scratch);
    let serve = |key: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_emporium"));
        command
            .args(["serve", "identity"])
            .env("EMPORIUM_DATA_DIR", &suite.data_dir)
            .env("EMPORIUM_HTTP_ADDR", &suite.http_addr)
            .env("EMPORIUM_AUTH_ISSUER", &suite.issuer)
            .env("EMPORIUM_IDENTITY_GRPC_ADDR", &suite.identity_addr)
            .env("EMPORIUM_ADMIN_EMAIL", "ops@example.com")
            .env("EMPORIUM_ADMIN_PASSWORD", "a long admin password")
            .env("EMPORIUM_LOG", "info")
            .env_remove("EMPORIUM_IDENTITY_KEY_ENCRYPTION_KEY")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(key) = key {
            command.env("EMPORIUM_IDENTITY_KEY_ENCRYPTION_KEY", key);
        }
        command
    };

    let refused = serve(None).output().expect("emporium runs");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("EMPORIUM_IDENTITY_KEY_ENCRYPTION_KEY is not set")
    );

    let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    let mut identity = Up {
        child: serve(Some(key)).spawn().expect("emporium starts"),
    };
    test_support::eventually(
        Duration::from_secs(60),
        "the provider to answer discovery",
        || async { emporiumctl::oauth::discover(&suite.issuer).await.ok() },
    )
    .await;
    let credentials = login_with_browser(
        &BrowserLogin {
            issuer: suite.issuer.clone(),
            client_id: "emporiumctl".to_owned(),
            scope: "openid offline_access".to_owned(),
            timeout: Duration::from_secs(60),
        },
        |url| {
            let url = url.to_owned();
            tokio::spawn(async move {
                Browser::new()
                    .sign_in(&url, "ops@example.com", "a long admin password")
                    .await
            });
        },
    )
    .await;
    identity.stop_without_check();
    let logs = {
        let mut stderr = identity.child.stderr.take().expect("stderr is piped");
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut text).expect("the logs are text");
        text
    };
    let _ = std::fs::remove_dir_all(&scratch);

    let credentials = credentials.expect("the admin signs in with the CLI");
    let payload = credentials.access_token.split('.').nth(1).expect("a JWT");
    let claims = base64_url_decode(payload);
    assert!(claims.contains("\"roles\":[\"admin\"]"), "{claims}");
    assert!(logs.contains("Created the first admin account"), "{logs}");
    assert!(
        !logs.contains("a long admin password"),
        "the password is never logged"
    );
    assert!(!logs.contains(key), "the key is never logged");
}

fn base64_url_decode(text: &str) -> String {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .expect("base64url");
    String::from_utf8(bytes).expect("JSON text")
}

/// One installation: a data directory and free ports.
pub(crate) struct Suite {
    data_dir: PathBuf,
    pub(crate) issuer: String,
    pub(crate) http_addr: String,
    /// Where `serve identity` listens.
    identity_addr: String,
    /// Where `up` serves every service.
    grpc_addr: String,
}

impl Suite {
    pub(crate) fn new(scratch: &Path) -> Suite {
        let http_addr = free_addr();
        Suite {
            data_dir: scratch.join("data"),
            issuer: format!("http://{http_addr}"),
            http_addr,
            identity_addr: free_addr(),
            grpc_addr: free_addr(),
        }
    }

    pub(crate) fn start(&self) -> Up {
        self.start_with(&[])
    }

    /// `up` with the variables `env` set besides the suite's own.
    pub(crate) fn start_with(&self, env: &[(&str, &Path)]) -> Up {
        let child = Command::new(env!("CARGO_BIN_EXE_emporium"))
            .arg("up")
            .env("EMPORIUM_DATA_DIR", &self.data_dir)
            .env("EMPORIUM_HTTP_ADDR", &self.http_addr)
            .env("EMPORIUM_AUTH_ISSUER", &self.issuer)
            .env("EMPORIUM_GRPC_ADDR", &self.grpc_addr)
            .env_remove("EMPORIUM_IDENTITY_GRPC_ADDR")
            .env_remove("EMPORIUM_CATALOG_GRPC_ADDR")
            .env("EMPORIUM_LOG", "info")
            .env_remove("EMPORIUM_ADMIN_PASSWORD")
            .env_remove("EMPORIUM_ADMIN_EMAIL")
            .env_remove("EMPORIUM_IDENTITY_KEY_ENCRYPTION_KEY")
            .env_remove("EMPORIUM_ADMIN_DIR")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(
                std::fs::File::create(self.data_dir.with_file_name("up.log"))
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            )
            .spawn()
            .expect("emporium starts");
        Up { child }
    }

    /// Runs an emporiumctl command against this suite: its output, or its error message.
    async fn ctl(&self, config_dir: &Path, args: &[&str]) -> Result<String, String> {
        let mut argv = vec![
            "emporiumctl".to_owned(),
            "--server".to_owned(),
            format!("http://{}", self.grpc_addr),
            "--config-dir".to_owned(),
            config_dir.display().to_string(),
        ];
        argv.extend(args.iter().map(|arg| (*arg).to_owned()));
        let cli = Cli::try_parse_from(argv).expect("a valid command line");
        let mut out = Vec::new();
        match run(cli, &mut out).await {
            Ok(()) => Ok(String::from_utf8_lossy(&out).into_owned()),
            Err(error) => Err(error.to_string()),
        }
    }
}

pub(crate) struct Up {
    child: Child,
}

impl Up {
    /// The banner, up to "Stop with Ctrl-C." (the suite is serving by then).
    pub(crate) fn banner(&mut self) -> Vec<String> {
        let stdout = self.child.stdout.take().expect("stdout is piped");
        let mut lines = Vec::new();
        let mut reader = BufReader::new(stdout).lines();
        for line in reader.by_ref() {
            let line = line.expect("the banner is text");
            let done = line.starts_with("Stop with Ctrl-C.");
            lines.push(line);
            if done {
                // Keep reading whatever follows, as a terminal would: a closed pipe is not what
                // a user's terminal looks like.
                std::thread::spawn(move || reader.for_each(drop));
                return lines;
            }
        }
        panic!("emporium up exited before it was up: {lines:?}");
    }

    /// SIGTERM, then wait for a clean exit.
    pub(crate) fn stop(&mut self) {
        let status = self.stop_without_check();
        assert!(status.success(), "emporium exits cleanly: {status}");
    }

    fn stop_without_check(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        // Drain a piped stdout so the process can never block writing to it.
        if let Some(stdout) = self.child.stdout.take() {
            std::thread::spawn(move || std::io::Read::bytes(stdout).for_each(drop));
        }
        self.child.wait().expect("emporium exits")
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The admin's password a first start's banner prints (once).
pub(crate) fn generated_password(banner: &[String]) -> String {
    banner
        .iter()
        .find_map(|line| line.trim().strip_prefix("with the password"))
        .map(|rest| rest.trim().to_owned())
        .expect("the first start prints the admin's password")
}

pub(crate) fn free_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("an address").to_string()
}

/// GETs `url`: the status and the body; `None` when nothing answers.
pub(crate) async fn get(url: &str) -> Option<(u16, String)> {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let request = http::Request::get(url)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client.request(request).await.ok()?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// POSTs `query` to the origin's `/graphql`, with `token` as the bearer token if given.
pub(crate) async fn graphql(
    http_addr: &str,
    token: Option<&str>,
    query: &str,
) -> serde_json::Value {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{http_addr}/graphql"))
        .header("content-type", "application/json");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let body = serde_json::json!({ "query": query }).to_string();
    let response = client
        .request(request.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .expect("the origin answers");
    assert_eq!(response.status(), 200, "/graphql answers 200");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).expect("a JSON answer")
}

/// Just enough of a browser: keeps cookies, submits the sign-in form, follows the redirect to
/// the CLI's loopback listener.
pub(crate) struct Browser {
    client: Client<HttpConnector, Full<Bytes>>,
    cookies: Vec<String>,
    /// Every `Set-Cookie` line received, in order.
    pub(crate) set_cookies: Vec<String>,
}

impl Browser {
    pub(crate) fn new() -> Browser {
        Browser {
            client: Client::builder(hyper_util::rt::TokioExecutor::new()).build_http(),
            cookies: Vec::new(),
            set_cookies: Vec::new(),
        }
    }

    pub(crate) async fn sign_in(mut self, authorize_url: &str, email: &str, password: &str) {
        let location = self.submit_sign_in(authorize_url, email, password).await;
        let (status, _, _) = self.send("GET", &location, Vec::new()).await;
        assert_eq!(status, 200, "the CLI received the code");
    }

    /// Opens identity's sign-in page at `authorize_url`, submits it, and returns where
    /// identity sends the browser with the code.
    pub(crate) async fn submit_sign_in(
        &mut self,
        authorize_url: &str,
        email: &str,
        password: &str,
    ) -> String {
        let (status, _, page) = self.send("GET", authorize_url, Vec::new()).await;
        assert_eq!(status, 200, "the sign-in page");
        let form = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            for input in page.split("<input type=\"hidden\" ").skip(1) {
                let attribute = |name: &str| {
                    let start = input.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                    let end = start + input[start..].find('"').unwrap();
                    input[start..end]
                        .replace("&amp;", "&")
                        .replace("&quot;", "\"")
                };
                form.append_pair(&attribute("name"), &attribute("value"));
            }
            form.append_pair("email", email)
                .append_pair("password", password);
            form.finish()
        };
        let origin = authorize_url.split("/oauth2/").next().unwrap();
        let (status, location, _) = self
            .send(
                "POST",
                &format!("{origin}/oauth2/authorize"),
                form.into_bytes(),
            )
            .await;
        assert_eq!(status, 303, "signed in");
        location.expect("a redirect")
    }

    pub(crate) async fn send(
        &mut self,
        method: &str,
        url: &str,
        body: Vec<u8>,
    ) -> (u16, Option<String>, String) {
        let headers: &[(&str, &str)] = if method == "POST" {
            &[("content-type", "application/x-www-form-urlencoded")]
        } else {
            &[]
        };
        self.send_with(method, url, headers, body).await
    }

    /// Sends a request with `headers` and the cookies it holds, keeping the cookies the answer
    /// sets (a cookie set empty is dropped); the `Set-Cookie` lines as sent are kept in
    /// `set_cookies`.
    pub(crate) async fn send_with(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (u16, Option<String>, String) {
        let mut request = http::Request::builder().method(method).uri(url);
        if !self.cookies.is_empty() {
            request = request.header("cookie", self.cookies.join("; "));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self
            .client
            .request(request.body(Full::new(Bytes::from(body))).unwrap())
            .await
            .expect("the server answers");
        for cookie in response.headers().get_all("set-cookie") {
            let line = cookie.to_str().unwrap().to_owned();
            let pair = line.split(';').next().unwrap().to_owned();
            let name = pair.split('=').next().unwrap().to_owned();
            self.cookies
                .retain(|held| held.split('=').next() != Some(name.as_str()));
            if !pair.ends_with('=') {
                self.cookies.push(pair);
            }
            self.set_cookies.push(line);
        }
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get("location")
            .map(|value| value.to_str().unwrap().to_owned());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            location,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }
}
