//! The OAuth2 / OpenID Connect provider: discovery, the authorization endpoint with its
//! server-rendered sign-in page, the token endpoint (authorization code with PKCE, refresh tokens
//! with rotation and reuse detection, client credentials), revocation and sign-out. It issues the
//! access tokens every service verifies (EdDSA JWTs, see `chassis::auth`) and ID tokens for OIDC
//! clients. HTTP only: [`router`] is mounted on the suite's origin by the binary.
//!
//! What it keeps (sessions, codes, refresh tokens, failed sign-ins) lives in the identity
//! database, hashed, so replicas share it and a restart forgets nothing.

mod endpoints;
mod html;
mod params;
mod secrets;
mod store;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use chassis::auth::SigningKey;
use chassis::error::Error;
use chassis::proxies::TrustedProxies;
use chassis::storage::{Database, Timestamp};
use time::OffsetDateTime;

pub(crate) use endpoints::register_metrics;
pub use endpoints::router;

use crate::keys::SigningKeys;
use crate::service::Identity;

/// Paths of the provider's endpoints, relative to the issuer.
pub mod paths {
    pub const DISCOVERY: &str = "/.well-known/openid-configuration";
    pub const AUTHORIZE: &str = "/oauth2/authorize";
    pub const TOKEN: &str = "/oauth2/token";
    pub const REVOKE: &str = "/oauth2/revoke";
    pub const LOGOUT: &str = "/oauth2/logout";
}

/// How the provider behaves; [`OAuthSettings::new`] gives the production defaults.
#[derive(Clone, Debug)]
pub struct OAuthSettings {
    /// The issuer URL: the origin the provider is served on, without a trailing slash.
    pub issuer: String,
    /// The `aud` of access tokens: the suite's APIs.
    pub audience: String,
    pub access_token_lifetime: Duration,
    pub id_token_lifetime: Duration,
    pub refresh_token_lifetime: Duration,
    pub code_lifetime: Duration,
    pub session_lifetime: Duration,
    pub lockout: LockoutPolicy,
    /// The proxies whose `X-Forwarded-For` names the client (`EMPORIUM_TRUSTED_PROXIES`), for
    /// counting failed sign-ins per client address behind the gateway.
    pub trusted_proxies: TrustedProxies,
}

/// When failed sign-ins hold further attempts back. Emails count as typed (known or not), so the
/// answers reveal nothing about which accounts exist. Failures lock out the (email, address) pair
/// and the address; for the email alone they only slow attempts down (each failure past a
/// threshold doubles the wait before the next attempt, answered at once as 429 with
/// `Retry-After`, never by holding the request) up to a much higher limit. So someone guessing
/// from one place cannot lock the owner out elsewhere, and guesses from many places stay few.
#[derive(Clone, Debug)]
pub struct LockoutPolicy {
    /// Failures for one email from one client address within `window` before that pair is locked.
    pub max_failures_per_account_and_address: i64,
    /// Failures from one client address (any email) within `window` before it is locked.
    pub max_failures_per_address: i64,
    /// Failures for one email from all addresses within `window` before it is locked everywhere.
    pub max_failures_per_account: i64,
    /// Failures for one email (from anywhere) within `window` that cost no wait; the next must
    /// wait one second after the last failure, and each further failure doubles that.
    pub free_failures_per_account: i64,
    /// The longest wait between attempts for one email.
    pub max_delay: Duration,
    pub window: Duration,
}

impl LockoutPolicy {
    /// How long an attempt for an email with `failures` recent failures waits after the last
    /// one: nothing up to [`Self::free_failures_per_account`], then 1 s, 2 s, 4 s, … up to
    /// [`Self::max_delay`].
    pub fn delay_after(&self, failures: i64) -> Duration {
        let past_free = failures - self.free_failures_per_account;
        if past_free < 0 {
            return Duration::ZERO;
        }
        let doublings = u32::try_from(past_free.min(32)).unwrap_or(32);
        Duration::from_secs(1u64 << doublings).min(self.max_delay)
    }
}

impl OAuthSettings {
    pub fn new(issuer: &str, audience: &str) -> OAuthSettings {
        OAuthSettings {
            issuer: issuer.trim_end_matches('/').to_owned(),
            audience: audience.to_owned(),
            access_token_lifetime: Duration::from_secs(10 * 60),
            id_token_lifetime: Duration::from_secs(10 * 60),
            refresh_token_lifetime: Duration::from_secs(30 * 24 * 60 * 60),
            code_lifetime: Duration::from_secs(2 * 60),
            session_lifetime: Duration::from_secs(12 * 60 * 60),
            lockout: LockoutPolicy {
                max_failures_per_account_and_address: 5,
                max_failures_per_address: 30,
                max_failures_per_account: 100,
                free_failures_per_account: 10,
                max_delay: Duration::from_secs(30),
                window: Duration::from_secs(15 * 60),
            },
            trusted_proxies: TrustedProxies::none(),
        }
    }

    /// The longest any token signed by the provider stays valid (for key retirement).
    pub fn longest_token_lifetime(&self) -> Duration {
        self.access_token_lifetime.max(self.id_token_lifetime)
    }

    fn secure_cookies(&self) -> bool {
        self.issuer.starts_with("https://")
    }
}

/// Where the provider reads the time: the system clock, or a clock tests move by hand.
#[derive(Clone, Debug, Default)]
pub struct Clock(Option<Arc<Mutex<OffsetDateTime>>>);

impl Clock {
    pub fn system() -> Clock {
        Clock(None)
    }

    /// A clock that stands still at `start` until [`Clock::advance`] moves it.
    pub fn manual(start: OffsetDateTime) -> Clock {
        Clock(Some(Arc::new(Mutex::new(start))))
    }

    pub fn now(&self) -> OffsetDateTime {
        match &self.0 {
            None => OffsetDateTime::now_utc(),
            Some(time) => *time.lock().unwrap_or_else(|poisoned| poisoned.into_inner()),
        }
    }

    /// Moves a manual clock forward; does nothing to the system clock.
    pub fn advance(&self, by: Duration) {
        if let Some(time) = &self.0 {
            let mut time = time.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            *time += by;
        }
    }
}

/// The provider: cheap to clone, shared by the HTTP handlers.
#[derive(Clone, Debug)]
pub struct Provider(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    identity: Identity,
    database: Database,
    keys: SigningKeys,
    settings: OAuthSettings,
    clock: Clock,
}

/// A registered OAuth2 client as the provider needs it.
#[derive(Clone)]
pub(crate) struct RegisteredClient {
    pub(crate) client_id: String,
    pub(crate) name: String,
    pub(crate) public: bool,
    pub(crate) redirect_uris: Vec<String>,
    pub(crate) post_logout_redirect_uris: Vec<String>,
    pub(crate) roles: Vec<String>,
    pub(crate) disabled: bool,
    secret_hash: Option<String>,
}

impl std::fmt::Debug for RegisteredClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisteredClient")
            .field("client_id", &self.client_id)
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl RegisteredClient {
    /// Whether `uri` is one of the client's redirect URIs. Matching is exact, except that a
    /// registered loopback IP URI (`http://127.0.0.1/…`, `http://[::1]/…`) accepts any port, as
    /// RFC 8252 §7.3 requires for native apps such as the CLI.
    pub(crate) fn accepts_redirect_uri(&self, uri: &str) -> bool {
        self.redirect_uris
            .iter()
            .any(|registered| registered == uri || loopback_matches(registered, uri))
    }

    /// Whether `secret` is this confidential client's secret.
    pub(crate) fn secret_matches(&self, secret: &str) -> bool {
        self.secret_hash
            .as_deref()
            .is_some_and(|hash| crate::domain::verify_client_secret(secret, hash))
    }
}

fn loopback_matches(registered: &str, presented: &str) -> bool {
    for host in ["http://127.0.0.1", "http://[::1]"] {
        let (Some(registered_rest), Some(presented_rest)) =
            (registered.strip_prefix(host), presented.strip_prefix(host))
        else {
            continue;
        };
        let strip_port = |rest: &str| -> Option<String> {
            match rest.strip_prefix(':') {
                Some(with_port) => {
                    let path_start = with_port.find('/').unwrap_or(with_port.len());
                    let (port, path) = with_port.split_at(path_start);
                    (!port.is_empty() && port.bytes().all(|byte| byte.is_ascii_digit()))
                        .then(|| path.to_owned())
                }
                None => Some(rest.to_owned()),
            }
        };
        return match (strip_port(registered_rest), strip_port(presented_rest)) {
            (Some(registered_path), Some(presented_path)) => registered_path == presented_path,
            _ => false,
        };
    }
    false
}

impl Provider {
    pub fn new(
        database: Database,
        keys: SigningKeys,
        settings: OAuthSettings,
        clock: Clock,
    ) -> Provider {
        Provider(Arc::new(Inner {
            identity: Identity::new(database.clone()),
            database,
            keys,
            settings,
            clock,
        }))
    }

    pub fn settings(&self) -> &OAuthSettings {
        &self.0.settings
    }

    fn now(&self) -> Timestamp {
        Timestamp::from(self.0.clock.now())
    }

    fn database(&self) -> &Database {
        &self.0.database
    }

    fn identity(&self) -> &Identity {
        &self.0.identity
    }

    fn keys(&self) -> &SigningKeys {
        &self.0.keys
    }

    async fn signing_key(&self) -> Result<SigningKey, Error> {
        self.0.keys.current(self.0.clock.now()).await
    }

    async fn load_client(&self, client_id: &str) -> Result<Option<RegisteredClient>, Error> {
        let mut tx = self.0.database.begin_read().await?;
        let found = crate::store::find_client_credentials(&mut tx, client_id).await?;
        tx.commit().await?;
        Ok(found.map(|credentials| {
            let client = credentials.client;
            RegisteredClient {
                client_id: client.client_id.as_str().to_owned(),
                name: client.name.to_string(),
                public: matches!(client.kind, crate::domain::ClientKind::Public),
                redirect_uris: client
                    .redirect_uris
                    .iter()
                    .map(|uri| uri.as_str().to_owned())
                    .collect(),
                post_logout_redirect_uris: client
                    .post_logout_redirect_uris
                    .iter()
                    .map(|uri| uri.as_str().to_owned())
                    .collect(),
                roles: client
                    .roles
                    .iter()
                    .map(|role| role.as_str().to_owned())
                    .collect(),
                disabled: client.disabled,
                secret_hash: credentials.secret_hash,
            }
        }))
    }

    /// The browser's live session, from its cookie: the cookie's digest and the session.
    async fn current_session(
        &self,
        headers: &HeaderMap,
        now: Timestamp,
    ) -> Result<Option<(String, store::Session)>, Error> {
        let Some(cookie) = endpoints::cookie(headers, endpoints::SESSION_COOKIE) else {
            return Ok(None);
        };
        let id_hash = secrets::digest(&cookie);
        let mut tx = self.0.database.begin_read().await?;
        let session = store::find_session(&mut tx, &id_hash, now).await?;
        tx.commit().await?;
        Ok(session.map(|session| (id_hash, session)))
    }
}

/// `at` plus `by`.
fn later(at: Timestamp, by: Duration) -> Timestamp {
    Timestamp::from(at.into_inner() + by)
}

/// `at` minus `by`.
fn earlier(at: Timestamp, by: Duration) -> Timestamp {
    Timestamp::from(at.into_inner() - by)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(redirect_uris: &[&str]) -> RegisteredClient {
        RegisteredClient {
            client_id: "c".to_owned(),
            name: "C".to_owned(),
            public: true,
            redirect_uris: redirect_uris.iter().map(|uri| (*uri).to_owned()).collect(),
            post_logout_redirect_uris: Vec::new(),
            roles: Vec::new(),
            disabled: false,
            secret_hash: None,
        }
    }

    #[test]
    fn redirect_uris_match_exactly() {
        let client = client(&["https://shop.test/callback"]);
        assert!(client.accepts_redirect_uri("https://shop.test/callback"));
        assert!(!client.accepts_redirect_uri("https://shop.test/callback/"));
        assert!(!client.accepts_redirect_uri("https://shop.test/callback?x=1"));
        assert!(!client.accepts_redirect_uri("https://shop.test.evil/callback"));
        assert!(!client.accepts_redirect_uri("https://shop.test:444/callback"));
    }

    #[test]
    fn loopback_redirect_uris_accept_any_port_but_the_same_path() {
        let client = client(&["http://127.0.0.1/callback"]);
        assert!(client.accepts_redirect_uri("http://127.0.0.1:53121/callback"));
        assert!(client.accepts_redirect_uri("http://127.0.0.1/callback"));
        assert!(!client.accepts_redirect_uri("http://127.0.0.1:53121/other"));
        assert!(!client.accepts_redirect_uri("http://127.0.0.1.evil.test/callback"));
        assert!(!client.accepts_redirect_uri("http://127.0.0.1:53121@evil.test/callback"));
        assert!(!client.accepts_redirect_uri("http://localhost:53121/callback"));
    }
}
