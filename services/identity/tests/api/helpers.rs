//! `spawn_app` and the `TestApp` every test drives.

use std::time::Duration;

use chassis::settings::ServiceSettings;
use emporium_proto::identity::v1 as proto;
use identity::keys::{KeyEncryptionKey, KeyPolicy};
use identity::{Application, IdentityOptions};
use proto::identity_service_client::IdentityServiceClient;
use test_support::{Backend, TestBus, TestDatabase, TestIssuer, with_token};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// A password that satisfies the policy.
pub(crate) const PASSWORD: &str = "correct horse battery staple";

pub(crate) struct TestApp {
    pub(crate) client: IdentityServiceClient<Channel>,
    /// Where the gRPC API listens.
    pub(crate) addr: std::net::SocketAddr,
    /// Signs the tokens the service trusts.
    pub(crate) issuer: TestIssuer,
    /// A valid token for `admin-1` holding `admin`.
    pub(crate) admin_token: String,
    pub(crate) test_database: TestDatabase,
    _test_bus: TestBus,
    /// Cancels the service when the test ends, however it ends.
    _stop_on_drop: tokio_util::sync::DropGuard,
}

pub(crate) async fn spawn_app(backend: Backend) -> TestApp {
    spawn(backend, |_| {}).await
}

/// The service on a database that already exists (e.g. one an older version left).
pub(crate) async fn spawn_app_on(backend: Backend, test_database: TestDatabase) -> TestApp {
    spawn_on(backend, test_database, |_| {}).await
}

/// Builds the service, lets `before_serving` use it (e.g. take its HTTP routes), serves it.
async fn spawn(backend: Backend, before_serving: impl FnOnce(&Application)) -> TestApp {
    let test_database = TestDatabase::new(backend, "identity").await;
    spawn_on(backend, test_database, before_serving).await
}

async fn spawn_on(
    backend: Backend,
    test_database: TestDatabase,
    before_serving: impl FnOnce(&Application),
) -> TestApp {
    let test_bus = TestBus::new(backend).await;
    let bus = test_bus.connect().await;
    let issuer = TestIssuer::new();
    let settings = ServiceSettings {
        name: identity::NAME,
        grpc_addr: "127.0.0.1:0".parse().expect("a valid address"),
        database_url: test_database.secret_url(),
        namespace: test_bus.namespace.clone(),
        database_max_connections: None,
    };
    let application = Application::build_with(
        &settings,
        bus,
        Duration::from_secs(5),
        issuer.verifier(),
        identity_options(),
    )
    .await
    .expect("the identity service starts");
    before_serving(&application);
    let addr = application.local_addr();
    let shutdown = CancellationToken::new();
    tokio::spawn(application.run_until_stopped(shutdown.clone()));
    let client = IdentityServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("the identity service accepts connections");
    let admin_token = issuer.token("admin-1", &["admin"]);
    TestApp {
        client,
        addr,
        issuer,
        admin_token,
        test_database,
        _test_bus: test_bus,
        _stop_on_drop: shutdown.drop_guard(),
    }
}

impl TestApp {
    pub(crate) fn client(&self) -> IdentityServiceClient<Channel> {
        self.client.clone()
    }

    /// `message` as a request carrying the admin token.
    pub(crate) fn admin<T>(&self, message: T) -> tonic::Request<T> {
        with_token(message, &self.admin_token)
    }

    pub(crate) async fn create_account(&self, email: &str) -> proto::Account {
        self.client()
            .create_account(self.admin(valid_account(email)))
            .await
            .expect("the account is created")
            .into_inner()
    }

    pub(crate) async fn get_account(&self, id: &str) -> Result<proto::Account, tonic::Status> {
        self.client()
            .get_account(self.admin(proto::GetAccountRequest { id: id.to_owned() }))
            .await
            .map(tonic::Response::into_inner)
    }

    pub(crate) async fn account_total(&self) -> i64 {
        self.client()
            .list_accounts(self.admin(proto::ListAccountsRequest::default()))
            .await
            .expect("accounts are listed")
            .into_inner()
            .total_size
    }

    pub(crate) async fn create_role(&self, name: &str) -> proto::Role {
        self.client()
            .create_role(self.admin(proto::CreateRoleRequest {
                name: name.to_owned(),
                description: format!("The {name} role"),
            }))
            .await
            .expect("the role is created")
            .into_inner()
    }

    pub(crate) async fn create_client(
        &self,
        request: proto::CreateClientRequest,
    ) -> proto::CreateClientResponse {
        self.client()
            .create_client(self.admin(request))
            .await
            .expect("the client is created")
            .into_inner()
    }

    pub(crate) async fn get_client(&self, client_id: &str) -> Result<proto::Client, tonic::Status> {
        self.client()
            .get_client(self.admin(proto::GetClientRequest {
                client_id: client_id.to_owned(),
            }))
            .await
            .map(tonic::Response::into_inner)
    }

    pub(crate) async fn client_total(&self) -> i64 {
        self.client()
            .list_clients(self.admin(proto::ListClientsRequest::default()))
            .await
            .expect("clients are listed")
            .into_inner()
            .total_size
    }

    pub(crate) async fn events_of(
        &self,
        aggregate_id: &str,
    ) -> Vec<emporium_proto::audit::v1::Event> {
        self.client()
            .list_events(self.admin(emporium_proto::audit::v1::ListEventsRequest {
                aggregate_id: aggregate_id.to_owned(),
                page_size: 500,
                page_token: String::new(),
            }))
            .await
            .expect("events are listed")
            .into_inner()
            .events
    }
}

/// A fresh key encryption key and the default key policy.
pub(crate) fn identity_options() -> IdentityOptions {
    IdentityOptions {
        key_encryption_key: KeyEncryptionKey::generate().expect("the OS has randomness"),
        key_policy: KeyPolicy::default(),
    }
}

pub(crate) fn valid_account(email: &str) -> proto::CreateAccountRequest {
    proto::CreateAccountRequest {
        email: email.to_owned(),
        first_name: "Ada".to_owned(),
        last_name: "Lovelace".to_owned(),
        nickname: "ada".to_owned(),
        country: "GB".to_owned(),
        password: PASSWORD.to_owned(),
        customer_id: String::new(),
    }
}

/// The fields named by an INVALID_ARGUMENT (or ALREADY_EXISTS) status, sorted.
pub(crate) fn violated_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    let mut fields: Vec<String> = status
        .get_details_bad_request()
        .map(|bad_request| {
            bad_request
                .field_violations
                .into_iter()
                .map(|violation| violation.field)
                .collect()
        })
        .unwrap_or_default();
    fields.sort();
    fields
}

/// A public client with one redirect URI.
pub(crate) fn public_client(client_id: &str) -> proto::CreateClientRequest {
    proto::CreateClientRequest {
        client_id: client_id.to_owned(),
        name: "Storefront".to_owned(),
        r#type: proto::ClientType::Public.into(),
        redirect_uris: vec!["https://shop.example.com/callback".to_owned()],
        post_logout_redirect_uris: vec!["https://shop.example.com/".to_owned()],
        roles: Vec::new(),
    }
}

/// A confidential client holding `roles`, with no redirect URI.
pub(crate) fn confidential_client(client_id: &str, roles: &[&str]) -> proto::CreateClientRequest {
    proto::CreateClientRequest {
        client_id: client_id.to_owned(),
        name: "Invoicing worker".to_owned(),
        r#type: proto::ClientType::Confidential.into(),
        redirect_uris: Vec::new(),
        post_logout_redirect_uris: Vec::new(),
        roles: roles.iter().map(|role| (*role).to_owned()).collect(),
    }
}

/// The identity service with its OAuth2/OIDC provider served over HTTP on port 0, the issuer
/// being that server's origin. The provider reads time from a manual clock the test can move.
pub(crate) struct OidcApp {
    pub(crate) app: TestApp,
    pub(crate) issuer: String,
    pub(crate) clock: identity::oauth::Clock,
    _server: tokio_util::sync::DropGuard,
}

pub(crate) async fn spawn_oidc_app(backend: Backend) -> OidcApp {
    spawn_oidc_app_with(backend, |_| {}).await
}

/// [`spawn_oidc_app`] with the provider's settings changed by `configure` first.
pub(crate) async fn spawn_oidc_app_with(
    backend: Backend,
    configure: impl FnOnce(&mut identity::oauth::OAuthSettings),
) -> OidcApp {
    use identity::oauth::{Clock, OAuthSettings};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener
        .set_nonblocking(true)
        .expect("a non-blocking listener");
    let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
    let origin = format!("http://{}", listener.local_addr().expect("a bound address"));
    let clock = Clock::manual(time::OffsetDateTime::now_utc());
    let mut router = None;
    let mut settings = OAuthSettings::new(&origin, TestIssuer::AUDIENCE);
    configure(&mut settings);
    let app = spawn(backend, |application| {
        router = Some(application.service().http_router(settings, clock.clone()));
    })
    .await;
    let router = router.expect("the routes were taken");
    let server_stop = CancellationToken::new();
    let stopped = server_stop.clone();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(stopped.cancelled_owned())
        .await
    });
    OidcApp {
        app,
        issuer: origin,
        clock,
        _server: server_stop.drop_guard(),
    }
}
