//! Browser sessions: the gateway as the backend-for-frontend of the suite's web apps. It signs
//! a browser in as a confidential OAuth client of identity (authorization code with PKCE, its
//! secret never leaving the gateway), keeps the tokens itself, and gives the browser only a
//! session cookie (`HttpOnly`, `SameSite=Lax`, `Secure` and `__Host-` on https): JavaScript never
//! sees a token. On each request carrying that cookie the gateway forwards the session's access
//! token, refreshing it first when it is about to expire.
//!
//! - `GET /auth/login?return_to=/admin/` sends the browser to identity's sign-in, and
//!   `GET /auth/callback` takes it back: the code is exchanged, the session made, the browser
//!   sent on to `return_to` (a path on this origin, nothing else).
//! - `POST /auth/logout` (a form's, the browser navigating) ends the session, revokes its refresh
//!   token at identity and sends the browser on to identity's end-session endpoint with the
//!   sign-in's ID token as `id_token_hint`, to be signed out there too, and back to this
//!   origin's `/` (to `/` at once when the provider has no such endpoint or the session no ID
//!   token).
//! - `GET /auth/session` says whether the browser is signed in, as whom and with which roles.
//!
//! Visitors who have not signed in browse with the gateway's own token: its client's
//! client-credentials token, which holds the role `visitor` alone (identity's set-up gives the
//! client that role), so the services admit it only to what is open to visitors.
//!
//! Cross-site request forgery: a request the cookie authenticates is served only when the
//! browser says it comes from this origin (`Origin`, or `Sec-Fetch-Site: same-origin`); one that
//! changes anything (a POST, a WebSocket) and says nothing is refused too. `SameSite=Lax` keeps
//! the cookie off cross-site POSTs in the first place; this check holds even where it does not.
//!
//! Sessions live in this gateway replica's memory (bounded, idle ones forgotten): replicas
//! behind a load balancer need sticky sessions, and a restart signs browsers out (docs/adr/0006).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chassis::http_client::HttpClient;

use crate::ops::OpsOrigin;
use rand::RngCore as _;
use secrecy::{ExposeSecret as _, SecretString};
use sha2::Digest as _;

/// How long a browser has to come back from identity's sign-in.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// A session unused this long is forgotten.
const IDLE_TIMEOUT: Duration = Duration::from_secs(12 * 60 * 60);
/// An access token this close to its expiry is refreshed before it is forwarded.
const REFRESH_MARGIN: Duration = Duration::from_secs(30);
/// How long after a failed request for the visitor token the gateway asks again.
const VISITOR_RETRY: Duration = Duration::from_secs(10);
/// The most sign-ins under way and sessions kept; past them the oldest go first.
const MAX_PENDING: usize = 10_000;
const MAX_SESSIONS: usize = 100_000;

/// The cookie bound to one sign-in under way (its `state`).
const LOGIN_COOKIE: &str = "emporium-login";

/// How the gateway signs browsers in: as `client_id` (a confidential client with
/// `client_secret`) of the OpenID provider at `issuer`, reached by browsers at `public_origin`
/// (`https://shop.example.com`; its `/auth/callback` is the client's redirect URI).
#[derive(Clone, Debug)]
pub struct BrowserSignIn {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: SecretString,
    pub public_origin: String,
    pub http: HttpClient,
}

/// The browser sessions of one gateway replica.
pub struct BrowserSessions {
    config: BrowserSignIn,
    /// Whether the origin is https: cookies are `Secure` and the session's `__Host-`.
    secure: bool,
    session_cookie: &'static str,
    /// The provider's endpoints, read from its discovery document on first use.
    endpoints: tokio::sync::OnceCell<Endpoints>,
    /// Sign-ins under way, by `state`.
    pending: Mutex<HashMap<String, Pending>>,
    /// By the SHA-256 of the session id the cookie holds.
    sessions: Mutex<HashMap<[u8; 32], Arc<Session>>>,
    /// The token the gateway calls with for visitors who have not signed in.
    visitor: tokio::sync::Mutex<Visitor>,
    /// The processes whose ops API a signed-in browser may read through the gateway.
    ops: Vec<OpsOrigin>,
}

/// The gateway's visitor token: its client's client-credentials token, used only while it holds
/// the role `visitor` and no other.
enum Visitor {
    /// Not asked for yet.
    Unknown,
    Held(Tokens),
    /// The last request failed (or gave a token that is no visitor's): not asked again before
    /// the instant, so a missing role or an unreachable provider costs one request in a while,
    /// not one per visitor.
    Failed(Instant),
}

#[derive(Clone, Debug, serde::Deserialize)]
struct Endpoints {
    authorization_endpoint: String,
    token_endpoint: String,
    revocation_endpoint: Option<String>,
    /// RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0).
    end_session_endpoint: Option<String>,
}

struct Pending {
    verifier: String,
    return_to: String,
    started: Instant,
}

struct Session {
    tokens: tokio::sync::Mutex<Tokens>,
    last_used: Mutex<Instant>,
}

struct Tokens {
    access: String,
    access_expires: Instant,
    refresh: Option<String>,
    /// The ID token of the sign-in, the `id_token_hint` that ends the provider's session too.
    id: Option<String>,
}

#[derive(serde::Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
    refresh_token: Option<String>,
    id_token: Option<String>,
}

/// Why a request the cookie authenticates is not served.
#[derive(Debug)]
pub struct CrossSite;

impl BrowserSessions {
    pub fn new(config: BrowserSignIn) -> BrowserSessions {
        let secure = config.public_origin.starts_with("https://");
        BrowserSessions {
            session_cookie: if secure {
                "__Host-emporium-session"
            } else {
                "emporium-session"
            },
            secure,
            config,
            endpoints: tokio::sync::OnceCell::new(),
            pending: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            visitor: tokio::sync::Mutex::new(Visitor::Unknown),
            ops: Vec::new(),
        }
    }

    /// Browsers signed in here may also use the ops API of `origins`, with their session's
    /// token ([`crate::ops`]).
    pub fn with_ops(mut self, origins: Vec<OpsOrigin>) -> BrowserSessions {
        self.ops = origins;
        self
    }

    /// The token to call with for a visitor who has not signed in: the gateway client's
    /// client-credentials token, asked for on first use and again before it expires; none when
    /// that token does not hold the role `visitor` alone (the client lacks it: visitors are not
    /// served) or the provider cannot be reached.
    pub async fn visitor_token(&self) -> Option<String> {
        let mut visitor = self.visitor.lock().await;
        match &*visitor {
            Visitor::Held(tokens) if tokens.access_expires > Instant::now() + REFRESH_MARGIN => {
                return Some(tokens.access.clone());
            }
            Visitor::Failed(until) if Instant::now() < *until => return None,
            _ => {}
        }
        let asked = self
            .token_request(&[("grant_type", "client_credentials")])
            .await;
        match asked {
            Ok(Some(tokens)) if holds_only_the_visitor_role(&tokens.access) => {
                let access = tokens.access.clone();
                *visitor = Visitor::Held(tokens);
                Some(access)
            }
            outcome => {
                match outcome {
                    Ok(Some(_)) => tracing::warn!(
                        client_id = %self.config.client_id,
                        "The gateway's client-credentials token holds roles other than visitor \
                         alone: visitors who have not signed in are not served"
                    ),
                    Ok(None) => tracing::warn!(
                        client_id = %self.config.client_id,
                        "The provider refused the gateway's client-credentials grant: visitors \
                         who have not signed in are not served"
                    ),
                    Err(error) => tracing::warn!(
                        error = %format!("{error:#}"),
                        "Could not get the gateway's visitor token"
                    ),
                }
                *visitor = Visitor::Failed(Instant::now() + VISITOR_RETRY);
                None
            }
        }
    }

    /// The routes under `/auth/`, and `/admin/api/ops` when browsers may use an ops API.
    pub fn router(self: Arc<Self>) -> axum::Router {
        let ops = (!self.ops.is_empty()).then(|| {
            crate::ops::routes(
                Arc::clone(&self),
                self.ops.clone(),
                self.config.http.untraced(),
            )
        });
        let router = axum::Router::new()
            .route("/auth/login", axum::routing::get(login))
            .route("/auth/callback", axum::routing::get(callback))
            .route("/auth/logout", axum::routing::post(logout))
            .route("/auth/session", axum::routing::get(session_status))
            .with_state(self);
        match ops {
            Some(ops) => router.merge(ops),
            None => router,
        }
    }

    /// The access token of the session `headers`' cookie names, refreshed if it is about to
    /// expire; none without a (live) session. `changes` says whether the request may change
    /// anything (a POST, a WebSocket): such a request must say it comes from this origin.
    pub async fn access_token(
        &self,
        headers: &HeaderMap,
        changes: bool,
    ) -> Result<Option<String>, CrossSite> {
        let Some(id) = cookie(headers, self.session_cookie) else {
            return Ok(None);
        };
        if !self.same_origin(headers, changes) {
            return Err(CrossSite);
        }
        let Some(session) = self.session(&id) else {
            return Ok(None);
        };
        let mut tokens = session.tokens.lock().await;
        if tokens.access_expires <= Instant::now() + REFRESH_MARGIN {
            match self.refresh(&tokens).await {
                Ok(Some(mut fresh)) => {
                    // A refresh gives no new ID token: the sign-in's stays the hint.
                    fresh.id = fresh.id.or_else(|| tokens.id.take());
                    *tokens = fresh;
                }
                Ok(None) => {
                    // The provider refused the refresh token (revoked, expired): signed out.
                    drop(tokens);
                    self.forget(&id);
                    return Ok(None);
                }
                Err(error) => {
                    tracing::warn!(error = %format!("{error:#}"), "Could not refresh a session's access token");
                    if tokens.access_expires <= Instant::now() {
                        return Ok(None);
                    }
                }
            }
        }
        Ok(Some(tokens.access.clone()))
    }

    /// Whether the browser says `headers`' request comes from this origin: its `Origin`, or
    /// else its `Sec-Fetch-Site`; a request that says neither passes only when it changes
    /// nothing.
    pub fn same_origin(&self, headers: &HeaderMap, changes: bool) -> bool {
        if let Some(origin) = headers.get(header::ORIGIN) {
            return origin.as_bytes() == self.config.public_origin.as_bytes();
        }
        match headers
            .get("sec-fetch-site")
            .and_then(|value| value.to_str().ok())
        {
            Some(site) => site == "same-origin" || (!changes && site == "none"),
            None => !changes,
        }
    }

    fn session(&self, id: &str) -> Option<Arc<Session>> {
        let key = digest(id);
        let mut sessions = lock(&self.sessions);
        let session = sessions.get(&key)?.clone();
        let mut last_used = lock(&session.last_used);
        if last_used.elapsed() > IDLE_TIMEOUT {
            drop(last_used);
            sessions.remove(&key);
            return None;
        }
        *last_used = Instant::now();
        drop(last_used);
        Some(session)
    }

    fn forget(&self, id: &str) -> Option<Arc<Session>> {
        lock(&self.sessions).remove(&digest(id))
    }

    async fn endpoints(&self) -> anyhow::Result<&Endpoints> {
        self.endpoints
            .get_or_try_init(|| async {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.config.issuer.trim_end_matches('/')
                );
                let answer = self.config.http.get(&url).await?;
                anyhow::ensure!(
                    answer.status.is_success(),
                    "{url} answered {}",
                    answer.status
                );
                serde_json::from_slice(&answer.body)
                    .with_context(|| format!("{url} is not a discovery document"))
            })
            .await
    }

    fn redirect_uri(&self) -> String {
        format!(
            "{}/auth/callback",
            self.config.public_origin.trim_end_matches('/')
        )
    }

    /// A token request with the client's credentials: the tokens, or `None` when the provider
    /// refused the grant (`invalid_grant`).
    async fn token_request(&self, form: &[(&str, &str)]) -> anyhow::Result<Option<Tokens>> {
        let endpoints = self.endpoints().await?;
        let asked = Instant::now();
        let answer = self
            .config
            .http
            .post_form(
                &endpoints.token_endpoint,
                Some((
                    &self.config.client_id,
                    self.config.client_secret.expose_secret(),
                )),
                form,
            )
            .await?;
        if answer.status == StatusCode::BAD_REQUEST
            && serde_json::from_slice::<serde_json::Value>(&answer.body)
                .is_ok_and(|error| error["error"] == "invalid_grant")
        {
            return Ok(None);
        }
        anyhow::ensure!(
            answer.status.is_success(),
            "the token endpoint answered {}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
        let tokens: TokenAnswer =
            serde_json::from_slice(&answer.body).context("The token answer is not JSON")?;
        Ok(Some(Tokens {
            access: tokens.access_token,
            access_expires: asked + Duration::from_secs(tokens.expires_in),
            refresh: tokens.refresh_token,
            id: tokens.id_token,
        }))
    }

    async fn refresh(&self, tokens: &Tokens) -> anyhow::Result<Option<Tokens>> {
        let Some(refresh) = &tokens.refresh else {
            return Ok(None);
        };
        self.token_request(&[("grant_type", "refresh_token"), ("refresh_token", refresh)])
            .await
    }

    /// The provider's `endpoint` ending its session of the user `id_token` names, then sending
    /// the browser back to this origin's `/` (the gateway client's registered
    /// post-logout redirect URI).
    fn end_session_url(&self, endpoint: &str, id_token: &str) -> String {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("id_token_hint", id_token)
            .append_pair("client_id", &self.config.client_id)
            .append_pair(
                "post_logout_redirect_uri",
                &format!("{}/", self.config.public_origin),
            )
            .finish();
        let separator = if endpoint.contains('?') { '&' } else { '?' };
        format!("{endpoint}{separator}{query}")
    }

    fn cookie_attributes(&self, path: &str, max_age: Option<Duration>) -> String {
        let mut attributes = format!("; Path={path}; HttpOnly; SameSite=Lax");
        if self.secure {
            attributes.push_str("; Secure");
        }
        if let Some(max_age) = max_age {
            attributes.push_str(&format!("; Max-Age={}", max_age.as_secs()));
        }
        attributes
    }
}

/// `GET /auth/login?return_to=…`: to identity's sign-in, with a new `state` and PKCE verifier.
async fn login(State(sessions): State<Arc<BrowserSessions>>, uri: axum::http::Uri) -> Response {
    let query = query_pairs(&uri);
    let return_to = query
        .get("return_to")
        .filter(|path| is_local_path(path))
        .cloned()
        .unwrap_or_else(|| "/".to_owned());
    let endpoints = match sessions.endpoints().await {
        Ok(endpoints) => endpoints,
        Err(error) => {
            tracing::warn!(error = %format!("{error:#}"), "Cannot reach the identity provider to sign a browser in");
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Signing in is not possible right now; try again in a moment.",
            );
        }
    };
    let state = random_token();
    let verifier = random_token();
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    {
        let mut pending = lock(&sessions.pending);
        pending.retain(|_, login| login.started.elapsed() < LOGIN_TIMEOUT);
        if pending.len() >= MAX_PENDING
            && let Some(oldest) = pending
                .iter()
                .min_by_key(|(_, login)| login.started)
                .map(|(state, _)| state.clone())
        {
            pending.remove(&oldest);
        }
        pending.insert(
            state.clone(),
            Pending {
                verifier,
                return_to,
                started: Instant::now(),
            },
        );
    }
    let redirect_uri = sessions.redirect_uri();
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("response_type", "code"),
            ("client_id", sessions.config.client_id.as_str()),
            ("redirect_uri", redirect_uri.as_str()),
            ("scope", "openid"),
            ("state", state.as_str()),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ])
        .finish();
    let location = format!("{}?{query}", endpoints.authorization_endpoint);
    let login_cookie = format!(
        "{LOGIN_COOKIE}={state}{}",
        sessions.cookie_attributes("/auth/", Some(LOGIN_TIMEOUT))
    );
    redirect(&location, &[login_cookie])
}

/// `GET /auth/callback?code=…&state=…`: the code exchanged for tokens, kept in a new session.
async fn callback(
    State(sessions): State<Arc<BrowserSessions>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let query = query_pairs(&uri);
    let Some(state) = query.get("state") else {
        return page(StatusCode::BAD_REQUEST, "This sign-in link is incomplete.");
    };
    // The state must be the one this browser was given: a code another browser's sign-in
    // produced (login CSRF) is refused.
    if cookie(&headers, LOGIN_COOKIE).as_deref() != Some(state.as_str()) {
        return page(
            StatusCode::BAD_REQUEST,
            "This sign-in was started in another browser or has expired; sign in again.",
        );
    }
    let pending = lock(&sessions.pending)
        .remove(state)
        .filter(|login| login.started.elapsed() < LOGIN_TIMEOUT);
    let Some(pending) = pending else {
        return page(
            StatusCode::BAD_REQUEST,
            "This sign-in has expired or was already used; sign in again.",
        );
    };
    if let Some(error) = query.get("error") {
        return page(
            StatusCode::BAD_REQUEST,
            &format!("Signing in did not complete: {error}."),
        );
    }
    let Some(code) = query.get("code") else {
        return page(StatusCode::BAD_REQUEST, "This sign-in link is incomplete.");
    };
    let redirect_uri = sessions.redirect_uri();
    let tokens = sessions
        .token_request(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &redirect_uri),
            ("code_verifier", &pending.verifier),
        ])
        .await;
    let tokens = match tokens {
        Ok(Some(tokens)) => tokens,
        Ok(None) => {
            return page(
                StatusCode::BAD_REQUEST,
                "This sign-in has expired or was already used; sign in again.",
            );
        }
        Err(error) => {
            tracing::warn!(error = %format!("{error:#}"), "Could not exchange a sign-in code");
            return page(
                StatusCode::BAD_GATEWAY,
                "Signing in is not possible right now; try again in a moment.",
            );
        }
    };
    let id = random_token();
    {
        let mut all = lock(&sessions.sessions);
        if all.len() >= MAX_SESSIONS {
            all.retain(|_, session| {
                session
                    .last_used
                    .lock()
                    .map(|last_used| last_used.elapsed() < IDLE_TIMEOUT)
                    .unwrap_or(false)
            });
        }
        if all.len() >= MAX_SESSIONS
            && let Some(oldest) = all
                .iter()
                .min_by_key(|(_, session)| *lock(&session.last_used))
                .map(|(key, _)| *key)
        {
            all.remove(&oldest);
        }
        all.insert(
            digest(&id),
            Arc::new(Session {
                tokens: tokio::sync::Mutex::new(tokens),
                last_used: Mutex::new(Instant::now()),
            }),
        );
    }
    let session_cookie = format!(
        "{}={id}{}",
        sessions.session_cookie,
        sessions.cookie_attributes("/", None)
    );
    let clear_login = format!(
        "{LOGIN_COOKIE}={}",
        sessions.cookie_attributes("/auth/", Some(Duration::ZERO))
    );
    redirect(&pending.return_to, &[session_cookie, clear_login])
}

/// `POST /auth/logout`: the session forgotten, its refresh token revoked, and the browser sent on
/// to end the provider's session.
async fn logout(State(sessions): State<Arc<BrowserSessions>>, headers: HeaderMap) -> Response {
    if !sessions.same_origin(&headers, true) {
        return page(
            StatusCode::FORBIDDEN,
            "A sign-out must come from this site.",
        );
    }
    let mut end_session = None;
    if let Some(session) =
        cookie(&headers, sessions.session_cookie).and_then(|id| sessions.forget(&id))
    {
        let (refresh, id_token) = {
            let tokens = session.tokens.lock().await;
            (tokens.refresh.clone(), tokens.id.clone())
        };
        if let Some(refresh) = refresh {
            revoke(&sessions, &refresh).await;
        }
        end_session = match (id_token, sessions.endpoints().await) {
            (Some(id_token), Ok(endpoints)) => endpoints
                .end_session_endpoint
                .as_deref()
                .map(|endpoint| sessions.end_session_url(endpoint, &id_token)),
            _ => None,
        };
    }
    let clear = format!(
        "{}={}",
        sessions.session_cookie,
        sessions.cookie_attributes("/", Some(Duration::ZERO))
    );
    // On to the provider, to be signed out there too: otherwise the next sign-in would be this
    // user again without a password. The ID token goes only there, in the redirect.
    let mut response = redirect(end_session.as_deref().unwrap_or("/"), &[]);
    if let Ok(value) = HeaderValue::from_str(&clear) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

async fn revoke(sessions: &BrowserSessions, refresh: &str) {
    let revoked = async {
        let endpoints = sessions.endpoints().await?;
        let url = endpoints
            .revocation_endpoint
            .as_deref()
            .context("the provider has no revocation endpoint")?;
        let answer = sessions
            .config
            .http
            .post_form(
                url,
                Some((
                    &sessions.config.client_id,
                    sessions.config.client_secret.expose_secret(),
                )),
                &[("token", refresh), ("token_type_hint", "refresh_token")],
            )
            .await?;
        anyhow::ensure!(
            answer.status.is_success(),
            "the revocation endpoint answered {}",
            answer.status
        );
        anyhow::Ok(())
    }
    .await;
    if let Err(error) = revoked {
        tracing::warn!(error = %format!("{error:#}"), "Could not revoke a signed-out session's refresh token");
    }
}

/// `GET /auth/session`: `{"signedIn": false}`, or who is signed in (`subject`, `roles`, and
/// `expiresAt`, when the access token in hand expires), never a token.
async fn session_status(
    State(sessions): State<Arc<BrowserSessions>>,
    headers: HeaderMap,
) -> Response {
    let token = sessions.access_token(&headers, false).await.ok().flatten();
    let claims = token.as_deref().and_then(unverified_claims);
    let answer = match claims {
        Some(claims) => serde_json::json!({
            "signedIn": true,
            "subject": claims["sub"],
            "roles": claims["roles"],
            "expiresAt": claims["exp"],
        }),
        None => serde_json::json!({ "signedIn": false }),
    };
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(answer)).into_response()
}

/// The claims of a token the gateway got from the token endpoint itself (so not verified
/// again): for saying who is signed in, and for withholding its own token when it is no
/// visitor's; never for admitting anyone to anything.
fn unverified_claims(token: &str) -> Option<serde_json::Value> {
    let payload = token.split('.').nth(1)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&json).ok()
}

/// Whether `path` is a path on this origin (`/admin/`), not a way to another site
/// (`//evil.example`, `/\evil.example`, `https://…`).
/// Whether `token`'s roles are the visitor role and no other. The token is not verified here:
/// it is the provider's answer to the gateway's own request, and the services verify it.
fn holds_only_the_visitor_role(token: &str) -> bool {
    let roles: Vec<String> = unverified_claims(token)
        .and_then(|claims| serde_json::from_value(claims["roles"].clone()).ok())
        .unwrap_or_default();
    contract::access::is_visitor(&roles)
}

fn is_local_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.starts_with("//")
        && !path.starts_with("/\\")
        && !path.chars().any(|c| c.is_control())
}

/// The parameters of `uri`'s query string (the first of each name).
fn query_pairs(uri: &axum::http::Uri) -> HashMap<String, String> {
    let mut pairs = HashMap::new();
    for (name, value) in form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()) {
        pairs
            .entry(name.into_owned())
            .or_insert_with(|| value.into_owned());
    }
    pairs
}

/// The value of the cookie `name` the request carries.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
        .filter(|value| !value.is_empty())
}

/// 32 random bytes, base64url: a `state`, a PKCE verifier (43 characters), a session id.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `mutex`'s guard, also after a panic elsewhere held it (every change under these locks is
/// one insert or remove, never left half done).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn digest(id: &str) -> [u8; 32] {
    sha2::Sha256::digest(id.as_bytes()).into()
}

fn redirect(location: &str, cookies: &[String]) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, value);
    }
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(cookie) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn page(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        message.to_owned(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue};
    use base64::Engine as _;

    use super::{
        BrowserSessions, BrowserSignIn, cookie, holds_only_the_visitor_role, is_local_path,
    };

    fn sessions(origin: &str) -> BrowserSessions {
        BrowserSessions::new(BrowserSignIn {
            issuer: "http://localhost:8080".to_owned(),
            client_id: "emporium-gateway".to_owned(),
            client_secret: "secret".to_owned().into(),
            public_origin: origin.to_owned(),
            http: chassis::http_client::HttpClient::new(&[]).unwrap(),
        })
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn only_this_origin_may_change_anything_with_the_cookie() {
        let sessions = sessions("https://shop.example.com");
        let same = headers(&[("origin", "https://shop.example.com")]);
        let other = headers(&[("origin", "https://evil.example")]);
        let fetch_same = headers(&[("sec-fetch-site", "same-origin")]);
        let fetch_cross = headers(&[("sec-fetch-site", "cross-site")]);
        let typed = headers(&[("sec-fetch-site", "none")]);
        let silent = HeaderMap::new();
        assert!(sessions.same_origin(&same, true));
        assert!(sessions.same_origin(&fetch_same, true));
        assert!(!sessions.same_origin(&other, true));
        assert!(!sessions.same_origin(&other, false));
        assert!(!sessions.same_origin(&fetch_cross, true));
        assert!(!sessions.same_origin(&fetch_cross, false));
        assert!(!sessions.same_origin(&typed, true));
        assert!(sessions.same_origin(&typed, false));
        assert!(!sessions.same_origin(&silent, true));
        assert!(sessions.same_origin(&silent, false));
    }

    #[test]
    fn only_a_token_holding_the_visitor_role_alone_is_a_visitors() {
        let token = |claims: serde_json::Value| {
            format!(
                "e30.{}.signature",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string())
            )
        };
        assert!(holds_only_the_visitor_role(&token(
            serde_json::json!({ "roles": ["visitor"] })
        )));
        for roles in [
            serde_json::json!([]),
            serde_json::json!(["visitor", "admin"]),
            serde_json::json!(["admin"]),
            serde_json::json!(null),
        ] {
            assert!(
                !holds_only_the_visitor_role(&token(serde_json::json!({ "roles": roles }))),
                "{roles}"
            );
        }
        assert!(!holds_only_the_visitor_role("not a token"));
    }

    #[test]
    fn return_to_is_a_path_on_this_origin_only() {
        assert!(is_local_path("/admin/"));
        assert!(is_local_path("/"));
        assert!(!is_local_path("//evil.example/"));
        assert!(!is_local_path("/\\evil.example"));
        assert!(!is_local_path("https://evil.example/"));
        assert!(!is_local_path("/admin\r\nSet-Cookie: x=y"));
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let headers = headers(&[("cookie", "a=1; emporium-session=abc; emporium-session-x=no")]);
        assert_eq!(cookie(&headers, "emporium-session").as_deref(), Some("abc"));
        assert_eq!(cookie(&headers, "missing"), None);
    }

    #[test]
    fn https_origins_get_secure_host_only_cookies() {
        let secure = sessions("https://shop.example.com");
        assert_eq!(secure.session_cookie, "__Host-emporium-session");
        assert!(secure.cookie_attributes("/", None).contains("; Secure"));
        let local = sessions("http://localhost:8080");
        assert_eq!(local.session_cookie, "emporium-session");
        assert!(!local.cookie_attributes("/", None).contains("Secure"));
        assert!(
            local
                .cookie_attributes("/", None)
                .contains("HttpOnly; SameSite=Lax")
        );
    }
}
