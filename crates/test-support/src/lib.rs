//! Test helpers shared by every service's integration tests: each test gets its own throwaway
//! database and bus namespace, on either backend pair, so test bodies are written once and run
//! on both. The real servers are required for the PostgreSQL + NATS half: a test that cannot
//! reach them fails with the reason, it is never skipped. [`spawn_service`] starts any service
//! for a test on them: the one harness the services' API tests share.

mod app;
mod contract_access;
mod host;
mod postgres_cluster;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine as _;
use chassis::bus::{Bus, BusSettings, NatsStreamSettings};
use futures::StreamExt;
use secrecy::SecretString;
use uuid::Uuid;

pub use app::{Spawn, TestApp, service_settings, spawn_service};
pub use contract_access::assert_access_matches_contract;
pub use host::{HostedServices, host_on_one_port};
pub use postgres_cluster::PostgresCluster;

/// Which storage and bus a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// SQLite files and the embedded bus: the one-machine mode.
    SqliteEmbedded,
    /// PostgreSQL and NATS JetStream: the production mode.
    PostgresNats,
}

/// Writes each test body once and runs it on both backends:
/// `both_backends!(creates_a_product);` expects `async fn creates_a_product(backend: Backend)`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite_embedded() {
                    super::$name($crate::Backend::SqliteEmbedded).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres_nats() {
                    super::$name($crate::Backend::PostgresNats).await
                }
            }
        )+
    };
}

/// Runs each test body once, on SQLite and the embedded bus, for tests whose subject is reached
/// before storage or the bus is (token and role checks, validation, the server's own
/// behaviour): `backend_independent!(refuses_a_forged_token);` expects
/// `async fn refuses_a_forged_token(backend: Backend)`, like [`both_backends!`], so a test moves
/// between the two lists without being rewritten.
#[macro_export]
macro_rules! backend_independent {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn any_backend() {
                    super::$name($crate::Backend::SqliteEmbedded).await
                }
            }
        )+
    };
}

/// A database that exists for one test: a SQLite file in a fresh directory, or a fresh
/// PostgreSQL database, dropped when this is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    url: String,
    cleanup: DatabaseCleanup,
}

#[derive(Debug)]
enum DatabaseCleanup {
    Directory(PathBuf),
    Postgres { admin_url: String, name: String },
}

/// A bus namespace that exists for one test, on the embedded bus or the shared NATS server.
#[derive(Debug)]
pub struct TestBus {
    pub settings: BusSettings,
    /// Unique per test: subjects are `<namespace>.<service>.…`, streams `<NAMESPACE>_…`.
    pub namespace: String,
    directory: Option<PathBuf>,
}

/// The PostgreSQL server tests use (`EMPORIUM_TEST_POSTGRES_URL`, default the local one).
pub fn postgres_admin_url() -> String {
    std::env::var("EMPORIUM_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The NATS server tests use (`EMPORIUM_TEST_NATS_URL`, default the local one).
pub fn nats_url() -> String {
    std::env::var("EMPORIUM_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// A fresh directory under the system temp dir.
pub fn temp_dir(prefix: &str) -> PathBuf {
    let directory = std::env::temp_dir()
        .join("emporium-tests")
        .join(format!("{prefix}-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&directory).expect("the temp dir is writable");
    directory
}

// === impl TestDatabase ===

impl TestDatabase {
    pub async fn new(backend: Backend, service: &str) -> TestDatabase {
        match backend {
            Backend::SqliteEmbedded => {
                let directory = temp_dir(service);
                TestDatabase {
                    url: format!(
                        "sqlite://{}",
                        directory.join(format!("{service}.db")).display()
                    ),
                    cleanup: DatabaseCleanup::Directory(directory),
                }
            }
            Backend::PostgresNats => {
                let admin_url = postgres_admin_url();
                let name = format!("test_{service}_{}", Uuid::new_v4().simple());
                create_postgres_database(&admin_url, &name).await;
                let url = replace_database(&admin_url, &name);
                TestDatabase {
                    url,
                    cleanup: DatabaseCleanup::Postgres { admin_url, name },
                }
            }
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn secret_url(&self) -> SecretString {
        SecretString::from(self.url.clone())
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match &self.cleanup {
            DatabaseCleanup::Directory(directory) => {
                let _ = std::fs::remove_dir_all(directory);
            }
            DatabaseCleanup::Postgres { admin_url, name } => {
                let admin_url = admin_url.clone();
                let name = name.clone();
                // Drop runs inside the test's runtime; a fresh thread may block on its own.
                let _ = std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build();
                    if let Ok(runtime) = runtime {
                        runtime.block_on(drop_postgres_database(&admin_url, &name));
                    }
                })
                .join();
            }
        }
    }
}

async fn create_postgres_database(admin_url: &str, name: &str) {
    use sqlx::Connection;
    let mut connection = sqlx::PgConnection::connect(admin_url)
        .await
        .unwrap_or_else(|error| panic!("PostgreSQL is required ({admin_url}): {error}"));
    // The name is generated above from a UUID: safe to splice.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut connection)
        .await
        .expect("the test database can be created");
}

async fn drop_postgres_database(admin_url: &str, name: &str) {
    use sqlx::Connection;
    if let Ok(mut connection) = sqlx::PgConnection::connect(admin_url).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .execute(&mut connection)
        .await;
    }
}

fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let prefix = match base.rfind('/') {
        Some(index) if index > "postgres://".len() => &base[..index],
        _ => base,
    };
    match query {
        Some(query) => format!("{prefix}/{name}?{query}"),
        None => format!("{prefix}/{name}"),
    }
}

// === impl TestBus ===

impl TestBus {
    pub async fn new(backend: Backend) -> TestBus {
        let namespace = format!("t{}", &Uuid::new_v4().simple().to_string()[..12]);
        match backend {
            Backend::SqliteEmbedded => {
                let directory = temp_dir("bus");
                TestBus {
                    settings: BusSettings::Embedded {
                        path: directory.join("bus.db"),
                    },
                    namespace,
                    directory: Some(directory),
                }
            }
            Backend::PostgresNats => TestBus {
                settings: BusSettings::Nats {
                    url: nats_url(),
                    streams: NatsStreamSettings::default(),
                },
                namespace,
                directory: None,
            },
        }
    }

    /// Connects to the bus; panics with the reason if NATS is unreachable.
    pub async fn connect(&self) -> Bus {
        Bus::connect(&self.settings)
            .await
            .unwrap_or_else(|error| panic!("the bus is required ({:?}): {error:#}", self.settings))
    }

    /// Deletes a stream with its messages and consumers, as an operator would from outside the
    /// service (`nats stream rm`, or by hand in the embedded bus's file).
    pub async fn delete_stream(&self, name: &str) {
        match &self.settings {
            BusSettings::Nats { url, .. } => {
                let client = async_nats::connect(url).await.expect("NATS is reachable");
                async_nats::jetstream::new(client)
                    .delete_stream(name)
                    .await
                    .expect("the stream is deleted");
            }
            BusSettings::Embedded { path } => {
                use sqlx::Connection;
                let url = format!("sqlite://{}", path.display());
                let mut connection = sqlx::SqliteConnection::connect(&url)
                    .await
                    .expect("the embedded bus file opens");
                sqlx::query("PRAGMA busy_timeout = 5000")
                    .execute(&mut connection)
                    .await
                    .expect("the busy timeout is set");
                let mut transaction = connection.begin().await.expect("a transaction begins");
                for sql in [
                    "DELETE FROM pending WHERE stream = $1",
                    "DELETE FROM consumers WHERE stream = $1",
                    "DELETE FROM messages WHERE stream = $1",
                    "DELETE FROM streams WHERE name = $1",
                ] {
                    sqlx::query(sql)
                        .bind(name)
                        .execute(&mut *transaction)
                        .await
                        .expect("the stream is deleted");
                }
                transaction.commit().await.expect("the deletion commits");
            }
        }
    }
}

impl Drop for TestBus {
    fn drop(&mut self) {
        if let Some(directory) = &self.directory {
            let _ = std::fs::remove_dir_all(directory);
        }
        if let BusSettings::Nats { url, .. } = &self.settings {
            let url = url.clone();
            let prefix = format!("{}_", self.namespace.to_uppercase());
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(runtime) = runtime {
                    runtime.block_on(delete_nats_streams(&url, &prefix));
                }
            })
            .join();
        }
    }
}

async fn delete_nats_streams(url: &str, prefix: &str) {
    let Ok(client) = async_nats::connect(url).await else {
        return;
    };
    let jetstream = async_nats::jetstream::new(client);
    let mut names = jetstream.stream_names();
    let mut ours = Vec::new();
    while let Some(Ok(name)) = names.next().await {
        if name.starts_with(prefix) {
            ours.push(name);
        }
    }
    for name in ours {
        let _ = jetstream.delete_stream(&name).await;
    }
}

/// The invariant every record's event log keeps: its history opens with `.created` at version 1
/// and counts up by one, each version once (pass change events only, oldest first).
pub fn assert_history_starts_at_creation(
    history: &[emporium_proto::audit::v1::Event],
    record: &str,
) {
    let first = history
        .first()
        .unwrap_or_else(|| panic!("{record} has no history"));
    assert!(
        first.r#type.ends_with(".created"),
        "{record} starts with {}",
        first.r#type
    );
    let versions: Vec<i64> = history
        .iter()
        .map(|event| event.aggregate_version)
        .collect();
    let expected: Vec<i64> = (1..=history.len() as i64).collect();
    assert_eq!(versions, expected, "{record}");
}

/// A recorded event's data decoded as the generated message `M`, as a consumer would: the
/// event's `data_schema` must name `M`, and `data_json` must be its proto3 JSON mapping.
pub fn event_data<M: prost::Message + prost::Name + Default>(
    event: &emporium_proto::audit::v1::Event,
) -> M {
    assert_eq!(
        event.data_schema,
        chassis::event_data::schema_for::<M>(),
        "the schema of {} {}",
        event.r#type,
        event.id
    );
    let json: serde_json::Value =
        serde_json::from_str(&event.data_json).expect("event data is JSON");
    chassis::event_data::from_json(&json)
        .unwrap_or_else(|error| panic!("{} {}: {error}", event.r#type, event.id))
}

/// Polls `condition` until it returns `Some`, failing the test after `timeout`. The way tests
/// wait for asynchronous outcomes: never a bare sleep.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut condition: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = condition().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Issues access tokens the way the identity service does, with its own key, for tests of
/// services that enforce tokens.
#[derive(Debug)]
pub struct TestIssuer {
    pub key: chassis::auth::SigningKey,
}

/// Attaches `authorization: Bearer <token>` to every call of a tonic client:
/// `CatalogServiceClient::with_interceptor(channel, BearerToken::new(&token))`.
#[derive(Clone, Debug)]
pub struct BearerToken {
    value: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
}

/// A TestIssuer's JWKS served over HTTP, for a service in another process that fetches its keys
/// (`EMPORIUM_AUTH_JWKS_URL`). Stops serving when dropped.
#[derive(Debug)]
pub struct JwksServer {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

// === impl TestIssuer ===

impl TestIssuer {
    pub const ISSUER: &'static str = "http://emporium.test";
    pub const AUDIENCE: &'static str = "emporium";

    pub fn new() -> TestIssuer {
        TestIssuer {
            key: chassis::auth::SigningKey::generate().expect("a key can be generated"),
        }
    }

    /// A verifier that trusts this issuer only.
    pub fn verifier(&self) -> std::sync::Arc<chassis::auth::TokenVerifier> {
        std::sync::Arc::new(chassis::auth::TokenVerifier::new(
            Self::ISSUER,
            Self::AUDIENCE,
            chassis::auth::KeySource::Fixed(chassis::auth::key_set(&[&self.key])),
        ))
    }

    /// A valid five-minute token for `subject` holding `roles`.
    pub fn token(&self, subject: &str, roles: &[&str]) -> String {
        self.token_with(&self.claims(subject, roles))
    }

    /// A token that expired two minutes ago.
    pub fn expired_token(&self, subject: &str, roles: &[&str]) -> String {
        let claims = self.claims(subject, roles);
        self.token_with(&chassis::auth::Claims {
            exp: claims.iat - 120,
            ..claims
        })
    }

    /// The claims of a valid five-minute token for `subject` holding `roles`: change some with
    /// struct update syntax and sign them with [`Self::token_with`].
    pub fn claims(&self, subject: &str, roles: &[&str]) -> chassis::auth::Claims {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_secs();
        // Seconds since 1970 fit an i64 for the next 292 billion years.
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        chassis::auth::Claims {
            iss: Self::ISSUER.to_owned(),
            sub: subject.to_owned(),
            aud: Self::AUDIENCE.to_owned(),
            exp: now + 300,
            iat: now,
            jti: Uuid::new_v4().to_string(),
            client_id: "test".to_owned(),
            roles: roles.iter().map(|role| (*role).to_owned()).collect(),
            customer_id: None,
        }
    }

    /// Signs `claims` with this issuer's key as an access token (`typ: at+jwt`).
    pub fn token_with(&self, claims: &chassis::auth::Claims) -> String {
        self.key.sign(claims).expect("a token can be signed")
    }

    /// Signs `claims` with this issuer's key as an ID token (`typ: JWT`), which no service may
    /// take as a bearer token.
    pub fn id_token_with(&self, claims: &chassis::auth::Claims) -> String {
        self.key
            .sign_with_type(claims, "JWT")
            .expect("a token can be signed")
    }

    /// The Ed25519 public key's raw bytes, as the JWKS publishes them: what an attacker would use
    /// as an HMAC secret in an algorithm-confusion attack.
    pub fn public_key_bytes(&self) -> Vec<u8> {
        let jwk = serde_json::to_value(self.key.public_jwk()).expect("a JWK serializes");
        let x = jwk["x"].as_str().expect("an OKP key has x");
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(x)
            .expect("x is base64url")
    }

    /// Serves this issuer's JWKS on a random local port.
    pub async fn serve_jwks(&self) -> JwksServer {
        let document = serde_json::to_string(&chassis::auth::key_set(&[&self.key]))
            .expect("a key set serializes");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a local port can be bound");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let router = axum::Router::new().route(
            "/.well-known/jwks.json",
            axum::routing::get(move || {
                let document = document.clone();
                async move { ([("content-type", "application/json")], document) }
            }),
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        JwksServer {
            url: format!("http://{addr}/.well-known/jwks.json"),
            task,
        }
    }
}

impl Default for TestIssuer {
    fn default() -> TestIssuer {
        TestIssuer::new()
    }
}

// === impl BearerToken ===

impl BearerToken {
    pub fn new(token: &str) -> BearerToken {
        BearerToken {
            value: format!("Bearer {token}")
                .parse()
                .expect("a token is valid header text"),
        }
    }
}

impl tonic::service::Interceptor for BearerToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.value.clone());
        Ok(request)
    }
}

// === impl JwksServer ===

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Adds `authorization: Bearer <token>` to a request.
pub fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}")
            .parse()
            .expect("a token is valid header text"),
    );
    request
}

/// The field violations of an INVALID_ARGUMENT (or ALREADY_EXISTS) status, as `(field, reason)`
/// (none when the status carries no `google.rpc.BadRequest`).
pub fn field_violations(status: &tonic::Status) -> Vec<(String, String)> {
    use tonic_types::StatusExt as _;
    status
        .get_details_bad_request()
        .map(|bad_request| {
            bad_request
                .field_violations
                .into_iter()
                .map(|violation| (violation.field, violation.description))
                .collect()
        })
        .unwrap_or_default()
}

/// The fields an INVALID_ARGUMENT (or ALREADY_EXISTS) status names, sorted.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    let mut fields: Vec<String> = field_violations(status)
        .into_iter()
        .map(|(field, _)| field)
        .collect();
    fields.sort();
    fields
}

/// The services a gRPC server's reflection lists (`grpc.reflection.v1` `ListServices`), sorted:
/// what a reflection-driven client (grpcurl, a generic console) believes the port serves.
pub async fn reflected_service_names(addr: std::net::SocketAddr) -> Vec<String> {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("a valid endpoint")
        .connect()
        .await
        .expect("the server accepts connections");
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .expect("reflection answers")
        .into_inner();
    let response = responses
        .next()
        .await
        .expect("one response")
        .expect("a good response");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("expected a service list, got {response:?}");
    };
    let mut names: Vec<String> = list
        .service
        .into_iter()
        .map(|service| service.name)
        .collect();
    names.sort();
    names
}

/// An unsigned token (`alg: none`) carrying `claims`: `base64url(header).base64url(claims).`
pub fn unsigned_token(claims: &chassis::auth::Claims) -> String {
    let encode = |json: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json.to_string())
    };
    let header = serde_json::json!({ "alg": "none", "typ": "JWT" });
    let payload = serde_json::to_value(claims).expect("claims serialize");
    format!("{}.{}.", encode(&header), encode(&payload))
}

/// A token carrying `claims`, signed with HS256 using `secret`: with a public key as the secret,
/// the algorithm-confusion attack. Built by hand: the chassis's jsonwebtoken provider knows only
/// EdDSA, as it should.
pub fn hs256_token(claims: &chassis::auth::Claims, secret: &[u8]) -> String {
    use hmac::{KeyInit as _, Mac as _};
    let encode = |json: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json.to_string())
    };
    let header = serde_json::json!({ "alg": "HS256", "typ": "at+jwt" });
    let payload = serde_json::to_value(claims).expect("claims serialize");
    let signing_input = format!("{}.{}", encode(&header), encode(&payload));
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(signing_input.as_bytes());
    let signature =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}
