//! The identity service's side of the test harness: `spawn_app` (the generic
//! `test_support::spawn_service` with fresh key options and an admin as the caller), what tests
//! call on the running service ([`IdentityApp`]: its client and a few domain steps), and the
//! service with its OAuth2/OIDC provider served over HTTP ([`spawn_oidc_app`]).

use emporium_proto::identity::v1 as proto;
use identity::keys::{KeyEncryptionKey, KeyPolicy};
use identity::{IdentityOptions, IdentityParts};
use proto::identity_service_client::IdentityServiceClient;
use test_support::{Backend, Spawn, TestIssuer};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// A password that satisfies the policy.
pub(crate) const PASSWORD: &str = "correct horse battery staple";

/// The running identity service a test drives.
pub(crate) type TestApp = test_support::TestApp<IdentityParts>;

/// The identity service with a fresh key encryption key, its default token (`app.token`) for
/// `admin-1` holding `admin`: `.await` it, or change it first (`.on_database(..)`).
pub(crate) fn spawn_app(backend: Backend) -> Spawn<IdentityParts> {
    test_support::spawn_service(backend, identity_options()).with_caller("admin-1", &["admin"])
}

/// What tests call on a running identity service.
pub(crate) trait IdentityApp {
    /// A client sending no token of its own: requests carry one ([`IdentityApp::admin`]).
    fn client(&self) -> IdentityServiceClient<Channel>;
    /// `message` as a request carrying the admin token.
    fn admin<T>(&self, message: T) -> tonic::Request<T>;
    async fn create_account(&self, email: &str) -> proto::Account;
    async fn get_account(&self, id: &str) -> Result<proto::Account, tonic::Status>;
    /// How many accounts the service lists.
    async fn account_total(&self) -> i64;
    async fn create_role(&self, name: &str) -> proto::Role;
    async fn create_client(
        &self,
        request: proto::CreateClientRequest,
    ) -> proto::CreateClientResponse;
    async fn get_client(&self, client_id: &str) -> Result<proto::Client, tonic::Status>;
    /// How many OAuth2 clients the service lists.
    async fn client_total(&self) -> i64;
}

impl IdentityApp for TestApp {
    fn client(&self) -> IdentityServiceClient<Channel> {
        IdentityServiceClient::new(self.channel())
    }

    fn admin<T>(&self, message: T) -> tonic::Request<T> {
        self.authorized(message)
    }

    async fn create_account(&self, email: &str) -> proto::Account {
        self.client()
            .create_account(self.admin(valid_account(email)))
            .await
            .expect("the account is created")
            .into_inner()
    }

    async fn get_account(&self, id: &str) -> Result<proto::Account, tonic::Status> {
        self.client()
            .get_account(self.admin(proto::GetAccountRequest { id: id.to_owned() }))
            .await
            .map(tonic::Response::into_inner)
    }

    async fn account_total(&self) -> i64 {
        self.client()
            .list_accounts(self.admin(proto::ListAccountsRequest::default()))
            .await
            .expect("accounts are listed")
            .into_inner()
            .total_size
    }

    async fn create_role(&self, name: &str) -> proto::Role {
        self.client()
            .create_role(self.admin(proto::CreateRoleRequest {
                name: name.to_owned(),
                description: format!("The {name} role"),
            }))
            .await
            .expect("the role is created")
            .into_inner()
    }

    async fn create_client(
        &self,
        request: proto::CreateClientRequest,
    ) -> proto::CreateClientResponse {
        self.client()
            .create_client(self.admin(request))
            .await
            .expect("the client is created")
            .into_inner()
    }

    async fn get_client(&self, client_id: &str) -> Result<proto::Client, tonic::Status> {
        self.client()
            .get_client(self.admin(proto::GetClientRequest {
                client_id: client_id.to_owned(),
            }))
            .await
            .map(tonic::Response::into_inner)
    }

    async fn client_total(&self) -> i64 {
        self.client()
            .list_clients(self.admin(proto::ListClientsRequest::default()))
            .await
            .expect("clients are listed")
            .into_inner()
            .total_size
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
    let mut settings = OAuthSettings::new(&origin, TestIssuer::AUDIENCE);
    configure(&mut settings);
    let (app, router) = spawn_app(backend)
        .start_with(|application| application.service().http_router(settings, clock.clone()))
        .await;
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
