//! The provider's HTTP endpoints. Errors follow the specs: a request that cannot be trusted to go
//! back to the client (unknown client, unregistered redirect URI) is answered with an error page;
//! every other authorization error is sent to the client's redirect URI (RFC 6749 §4.1.2.1); token
//! endpoint errors are JSON (§5.2). Nothing here logs a password, code, token or secret.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use chassis::auth::{Claims, SigningKey, roles};
use chassis::error::Error;
use chassis::storage::Timestamp;
use cookie::{Cookie, SameSite};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::html::{self, SignInPage};
use super::params::{self, Params, Repeated};
use super::store::{self, CodeGrant, Exchange, RefreshGrant};
use super::{Provider, RegisteredClient, earlier, later, paths, secrets};
use crate::domain::{Account, Email};

pub(super) const SESSION_COOKIE: &str = "emporium_session";
const CSRF_COOKIE: &str = "emporium_csrf";

/// The scopes the provider knows.
const SCOPES: &[&str] = &["openid", "profile", "email", "offline_access"];

/// The authorization request parameters carried through the sign-in form.
const AUTHORIZATION_PARAMETERS: &[&str] = &[
    "client_id",
    "redirect_uri",
    "response_type",
    "response_mode",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
];

/// The provider's routes (discovery, authorize, token, revoke, logout).
pub fn router(provider: Provider) -> axum::Router {
    axum::Router::new()
        .route(paths::DISCOVERY, get(discovery))
        .route(paths::AUTHORIZE, get(authorize).post(sign_in))
        .route(paths::TOKEN, post(token))
        .route(paths::REVOKE, post(revoke))
        .route(paths::LOGOUT, get(logout_page).post(logout))
        .with_state(provider)
}

// === discovery ===

async fn discovery(State(provider): State<Provider>) -> Response {
    let issuer = &provider.settings().issuer;
    let document = serde_json::json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}{}", paths::AUTHORIZE),
        "token_endpoint": format!("{issuer}{}", paths::TOKEN),
        "revocation_endpoint": format!("{issuer}{}", paths::REVOKE),
        "end_session_endpoint": format!("{issuer}{}", paths::LOGOUT),
        "jwks_uri": format!("{issuer}{}", crate::http::JWKS_PATH),
        "scopes_supported": SCOPES,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["EdDSA"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "azp", "email", "name", "given_name", "family_name", "nickname"],
        "authorization_response_iss_parameter_supported": true,
    });
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(document),
    )
        .into_response()
}

// === authorize ===

/// A validated authorization request.
struct AuthorizationRequest {
    client: RegisteredClient,
    redirect_uri: String,
    scope: Vec<String>,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
    prompt: Option<String>,
}

/// Why an authorization request was refused, and where the answer goes.
enum AuthorizeError {
    /// Shown to the user: there is no trustworthy redirect URI to send it to.
    Page(String),
    /// Sent back to the client's redirect URI.
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: String,
    },
    Internal(Error),
}

impl From<Error> for AuthorizeError {
    fn from(error: Error) -> Self {
        AuthorizeError::Internal(error)
    }
}

impl AuthorizeError {
    fn into_response(self, provider: &Provider) -> Response {
        match self {
            AuthorizeError::Page(message) => html::respond(
                StatusCode::BAD_REQUEST,
                html::error_page("This sign-in request cannot be completed", &message),
                &[],
            ),
            AuthorizeError::Redirect {
                redirect_uri,
                state,
                error,
                description,
            } => {
                let mut pairs = vec![
                    ("error", error),
                    ("error_description", description.as_str()),
                ];
                if let Some(state) = &state {
                    pairs.push(("state", state));
                }
                pairs.push(("iss", &provider.settings().issuer));
                redirect(
                    &params::with_query(&redirect_uri, &params::encode(pairs)),
                    &[],
                )
            }
            AuthorizeError::Internal(error) => internal_error_page(&error),
        }
    }
}

async fn parse_authorization_request(
    provider: &Provider,
    params: &Params,
) -> Result<AuthorizationRequest, AuthorizeError> {
    let page_get = |name: &str| {
        params.get(name).map_err(|Repeated(name)| {
            AuthorizeError::Page(format!("The parameter {name} was sent more than once."))
        })
    };
    let client_id = page_get("client_id")?.ok_or_else(|| {
        AuthorizeError::Page(
            "The request does not say which application is asking (client_id is missing)."
                .to_owned(),
        )
    })?;
    let client = match provider.load_client(client_id).await? {
        Some(client) if !client.disabled => client,
        _ => {
            return Err(AuthorizeError::Page(format!(
                "The application \u{201c}{client_id}\u{201d} is not registered, or is disabled."
            )));
        }
    };
    let redirect_uri = page_get("redirect_uri")?
        .ok_or_else(|| AuthorizeError::Page("The request has no redirect_uri.".to_owned()))?;
    if !client.accepts_redirect_uri(redirect_uri) {
        return Err(AuthorizeError::Page(
            "The redirect_uri is not one registered for this application.".to_owned(),
        ));
    }
    // From here on the redirect URI is trusted: errors go back to the client.
    let state = params.get("state").ok().flatten().map(str::to_owned);
    let refuse = |error: &'static str, description: String| AuthorizeError::Redirect {
        redirect_uri: redirect_uri.to_owned(),
        state: state.clone(),
        error,
        description,
    };
    let get = |name: &str| {
        params.get(name).map_err(|Repeated(name)| {
            refuse("invalid_request", format!("{name} was sent more than once"))
        })
    };
    get("state")?;
    if state.as_ref().is_some_and(|state| state.len() > 1024) {
        return Err(refuse(
            "invalid_request",
            "state is longer than 1024 characters".to_owned(),
        ));
    }
    match get("response_type")? {
        Some("code") => {}
        None => {
            return Err(refuse(
                "invalid_request",
                "response_type is required".to_owned(),
            ));
        }
        Some(_) => {
            return Err(refuse(
                "unsupported_response_type",
                "only response_type=code is supported".to_owned(),
            ));
        }
    }
    if get("response_mode")?.is_some_and(|mode| mode != "query") {
        return Err(refuse(
            "invalid_request",
            "only response_mode=query is supported".to_owned(),
        ));
    }
    if get("request")?.is_some() || get("request_uri")?.is_some() {
        return Err(refuse(
            "request_not_supported",
            "request objects are not supported".to_owned(),
        ));
    }
    let scope = parse_scope(get("scope")?).map_err(|reason| refuse("invalid_scope", reason))?;
    let code_challenge = match (get("code_challenge")?, get("code_challenge_method")?) {
        (None, None) if client.public => {
            return Err(refuse(
                "invalid_request",
                "PKCE is required: send code_challenge with code_challenge_method=S256".to_owned(),
            ));
        }
        (None, None) => None,
        (None, Some(_)) => {
            return Err(refuse(
                "invalid_request",
                "code_challenge_method was sent without code_challenge".to_owned(),
            ));
        }
        (Some(challenge), Some("S256")) if secrets::is_valid_challenge(challenge) => {
            Some(challenge.to_owned())
        }
        (Some(_), Some("S256")) => {
            return Err(refuse(
                "invalid_request",
                "code_challenge must be 43 base64url characters (an S256 challenge)".to_owned(),
            ));
        }
        (Some(_), _) => {
            return Err(refuse(
                "invalid_request",
                "code_challenge_method must be S256 (plain is not accepted)".to_owned(),
            ));
        }
    };
    let nonce = get("nonce")?.map(str::to_owned);
    if nonce.as_ref().is_some_and(|nonce| nonce.len() > 512) {
        return Err(refuse(
            "invalid_request",
            "nonce is longer than 512 characters".to_owned(),
        ));
    }
    let prompt = get("prompt")?.map(str::to_owned);
    if let Some(prompt) = &prompt {
        let values: Vec<&str> = prompt.split(' ').collect();
        if values.contains(&"none") && values.len() > 1 {
            return Err(refuse(
                "invalid_request",
                "prompt=none cannot be combined with other values".to_owned(),
            ));
        }
    }
    Ok(AuthorizationRequest {
        client,
        redirect_uri: redirect_uri.to_owned(),
        scope,
        state,
        nonce,
        code_challenge,
        prompt,
    })
}

/// The requested scopes, each known, without repeats.
fn parse_scope(scope: Option<&str>) -> Result<Vec<String>, String> {
    let mut scopes: Vec<String> = Vec::new();
    for value in scope
        .unwrap_or_default()
        .split(' ')
        .filter(|value| !value.is_empty())
    {
        if !SCOPES.contains(&value) {
            return Err(format!(
                "unknown scope {value:?}; supported: {}",
                SCOPES.join(" ")
            ));
        }
        if !scopes.iter().any(|known| known == value) {
            scopes.push(value.to_owned());
        }
    }
    Ok(scopes)
}

/// The scopes of a grant as stored (space-separated, already validated).
fn stored_scopes(stored: &str) -> Vec<String> {
    stored
        .split(' ')
        .filter(|scope| !scope.is_empty())
        .map(str::to_owned)
        .collect()
}

impl AuthorizationRequest {
    fn prompts(&self, value: &str) -> bool {
        self.prompt
            .as_deref()
            .is_some_and(|prompt| prompt.split(' ').any(|item| item == value))
    }
}

/// `GET /oauth2/authorize`: a signed-in browser gets its code at once; otherwise the sign-in page.
async fn authorize(
    State(provider): State<Provider>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let params = Params::parse(query.unwrap_or_default().as_bytes());
    let request = match parse_authorization_request(&provider, &params).await {
        Ok(request) => request,
        Err(error) => return error.into_response(&provider),
    };
    let now = provider.now();
    let session = match provider.current_session(&headers, now).await {
        Ok(session) => session,
        Err(error) => return internal_error_page(&error),
    };
    if let Some((session_hash, session)) = session
        && !request.prompts("login")
    {
        match issue_code(
            &provider,
            &request,
            session.account_id,
            session.auth_time,
            Some(session_hash),
            now,
        )
        .await
        {
            Ok(Some(location)) => return redirect(&location, &[]),
            Ok(None) => {} // the account is gone or disabled: sign in again
            Err(error) => return internal_error_page(&error),
        }
    }
    if request.prompts("none") {
        return AuthorizeError::Redirect {
            redirect_uri: request.redirect_uri,
            state: request.state,
            error: "login_required",
            description: "the user is not signed in".to_owned(),
        }
        .into_response(&provider);
    }
    sign_in_form(&provider, &request, &params, "", None, StatusCode::OK)
}

/// `POST /oauth2/authorize`: the sign-in form.
async fn sign_in(
    State(provider): State<Provider>,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !is_form(&headers) {
        return html::respond(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            html::error_page(
                "Sign-in failed",
                "The sign-in form was sent in an unexpected format.",
            ),
            &[],
        );
    }
    let params = Params::parse(&body);
    let request = match parse_authorization_request(&provider, &params).await {
        Ok(request) => request,
        Err(error) => return error.into_response(&provider),
    };
    let email = params
        .get("email")
        .ok()
        .flatten()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let password = params
        .get("password")
        .ok()
        .flatten()
        .unwrap_or_default()
        .to_owned();
    if !csrf_token_matches(&headers, &params) {
        return sign_in_form(
            &provider,
            &request,
            &params,
            &email,
            Some("This sign-in form has expired. Please sign in again."),
            StatusCode::BAD_REQUEST,
        );
    }
    if email.is_empty() || password.is_empty() {
        return sign_in_form(
            &provider,
            &request,
            &params,
            &email,
            Some("Enter your email and your password."),
            StatusCode::BAD_REQUEST,
        );
    }
    // The one answer to a malformed email, an unknown one, a wrong password or a disabled
    // account: the page must not tell which emails have accounts.
    let wrong_credentials = || {
        sign_in_form(
            &provider,
            &request,
            &params,
            &email,
            Some("The email or password is incorrect."),
            StatusCode::UNAUTHORIZED,
        )
    };
    // No account has a malformed email (a NUL or control character, no domain, over 254
    // characters), so it gets the wrong-credentials answer at once: no password is hashed,
    // nothing is recorded, and such text never reaches the database.
    let Ok(parsed_email) = Email::parse(&email) else {
        tracing::info!(client_id = %request.client.client_id, "A sign-in failed: not an email address");
        count_sign_in("wrong_credentials");
        return wrong_credentials();
    };
    let account_key = parsed_email.as_str().to_owned();
    let address_key = address_key(address);
    let now = provider.now();
    let refusal = match admit_attempt(&provider, &account_key, &address_key, now).await {
        Ok(Admission::Admitted) => None,
        Ok(Admission::LockedOut) => {
            count_sign_in("locked_out");
            let minutes = provider.settings().lockout.window.as_secs().div_ceil(60);
            Some((
                format!(
                    "Too many failed sign-in attempts. Wait {minutes} minutes, then try again."
                ),
                provider.settings().lockout.window,
            ))
        }
        Ok(Admission::Delayed(wait)) => {
            count_sign_in("throttled");
            let seconds = wait.as_secs().max(1);
            let unit = if seconds == 1 { "second" } else { "seconds" };
            Some((
                format!(
                    "Too many failed sign-in attempts for this email. Wait {seconds} {unit}, then try again."
                ),
                Duration::from_secs(seconds),
            ))
        }
        Err(error) => return internal_error_page(&error),
    };
    if let Some((message, retry_after)) = refusal {
        tracing::warn!(client_id = %request.client.client_id, "Refused a sign-in: too many failed attempts");
        let mut response = sign_in_form(
            &provider,
            &request,
            &params,
            &email,
            Some(&message),
            StatusCode::TOO_MANY_REQUESTS,
        );
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(retry_after.as_secs()),
        );
        return response;
    }
    let verified = provider
        .identity()
        .verify_password(&email, SecretString::from(password))
        .await;
    let account = match verified {
        Ok(Some(account)) => account,
        Ok(None) => {
            // The attempt was recorded as a failure when it was admitted.
            tracing::info!(client_id = %request.client.client_id, "A sign-in failed");
            count_sign_in("wrong_credentials");
            return wrong_credentials();
        }
        Err(error) => return internal_error_page(&error),
    };
    let session_id = secrets::generate();
    let session_hash = secrets::digest(&session_id);
    let started = async {
        let mut tx = provider.database().begin().await?;
        store::clear_failures(&mut tx, &account_key).await?;
        let expires_at = later(now, provider.settings().session_lifetime);
        store::insert_session(&mut tx, &session_hash, account.id, now, expires_at).await?;
        tx.commit().await?;
        issue_code(
            &provider,
            &request,
            account.id,
            now,
            Some(session_hash.clone()),
            now,
        )
        .await
    };
    match started.await {
        Ok(Some(location)) => {
            tracing::info!(client_id = %request.client.client_id, account_id = %account.id, "Signed in");
            count_sign_in("success");
            let session_cookie = cookie_header(
                &provider,
                SESSION_COOKIE,
                &session_id,
                SameSite::Lax,
                provider.settings().session_lifetime.as_secs(),
            );
            let clear_csrf = cookie_header(&provider, CSRF_COOKIE, "", SameSite::Strict, 0);
            redirect(&location, &[session_cookie, clear_csrf])
        }
        Ok(None) => internal_error_page(&Error::Unexpected(anyhow::anyhow!(
            "The account vanished during sign-in"
        ))),
        Err(error) => internal_error_page(&error),
    }
}

/// The sign-in outcomes and grant types `/metrics` counts.
const SIGN_IN_OUTCOMES: [&str; 4] = ["success", "wrong_credentials", "locked_out", "throttled"];
const GRANT_TYPES: [&str; 3] = ["authorization_code", "refresh_token", "client_credentials"];

/// Describes the provider's series at `/metrics` and starts each at zero, so a rate over a
/// quiet period reads 0, not nothing.
pub(crate) fn register_metrics() {
    ::metrics::describe_counter!(
        "emporium_identity_sign_ins_total",
        "Sign-in attempts at the provider's form, by outcome (success, wrong_credentials, locked_out, throttled)."
    );
    ::metrics::describe_counter!(
        "emporium_identity_tokens_issued_total",
        "Access tokens the token endpoint issued, by grant type."
    );
    for outcome in SIGN_IN_OUTCOMES {
        ::metrics::counter!("emporium_identity_sign_ins_total", "outcome" => outcome).increment(0);
    }
    for grant_type in GRANT_TYPES {
        ::metrics::counter!("emporium_identity_tokens_issued_total", "grant_type" => grant_type)
            .increment(0);
    }
}

/// Counts a sign-in attempt at `/metrics` by its outcome: `success`, `wrong_credentials` (an
/// unknown or malformed email, a wrong password, a disabled account), `locked_out` (a lockout
/// limit was reached) or `throttled` (the email's growing delay has not passed).
fn count_sign_in(outcome: &'static str) {
    ::metrics::counter!("emporium_identity_sign_ins_total", "outcome" => outcome).increment(1);
}

/// The sign-in page for `request`, with a fresh CSRF token.
fn sign_in_form(
    provider: &Provider,
    request: &AuthorizationRequest,
    params: &Params,
    email: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let hidden = present(params, AUTHORIZATION_PARAMETERS);
    let csrf_token = secrets::generate();
    let page = html::sign_in_page(&SignInPage {
        client_name: &request.client.name,
        hidden: &hidden,
        csrf_token: &csrf_token,
        email,
        error,
    });
    let csrf_cookie = cookie_header(provider, CSRF_COOKIE, &csrf_token, SameSite::Strict, 3600);
    html::respond(status, page, &[csrf_cookie])
}

/// Whether a sign-in attempt may have its password checked.
enum Admission {
    /// Yes; it is already counted as a failure, which a success clears.
    Admitted,
    /// No: the (email, address) pair, the address or the email reached its limit.
    LockedOut,
    /// No: the email's recent failures ask for this much more waiting first.
    Delayed(Duration),
}

/// Decides on an attempt for `account_key` from `address_key` and, if it is admitted, records it
/// as a failure, all in one transaction under the email's guard: attempts for one email are
/// decided one at a time, so a burst of concurrent guesses cannot slip past a limit while the
/// passwords are being checked.
async fn admit_attempt(
    provider: &Provider,
    account_key: &str,
    address_key: &str,
    now: Timestamp,
) -> Result<Admission, Error> {
    let policy = &provider.settings().lockout;
    let since = earlier(now, policy.window);
    let mut tx = provider.database().begin().await?;
    store::prune_failures(&mut tx, since).await?;
    store::lock_email_attempts(&mut tx, account_key).await?;
    let recent = store::recent_failures(&mut tx, account_key, address_key, since).await?;
    if recent.by_pair >= policy.max_failures_per_account_and_address
        || recent.by_address >= policy.max_failures_per_address
        || recent.by_email >= policy.max_failures_per_account
    {
        return Ok(Admission::LockedOut);
    }
    if let Some(last) = recent.last_for_email {
        let allowed_at = later(last, policy.delay_after(recent.by_email));
        if allowed_at > now {
            let wait = allowed_at.into_inner() - now.into_inner();
            let wait = Duration::from_secs_f64(wait.as_seconds_f64().ceil());
            return Ok(Admission::Delayed(wait));
        }
    }
    store::record_failure(&mut tx, account_key, address_key, now).await?;
    tx.commit().await?;
    Ok(Admission::Admitted)
}

/// The key failures from `address` are counted under: the address, or for IPv6 its /64 network
/// (what one subscriber is usually given, so rotating within it gains nothing).
fn address_key(address: Option<IpAddr>) -> String {
    match address {
        None => "unknown".to_owned(),
        Some(IpAddr::V4(address)) => address.to_string(),
        Some(IpAddr::V6(address)) => {
            let segments = address.segments();
            let network = std::net::Ipv6Addr::new(
                segments[0],
                segments[1],
                segments[2],
                segments[3],
                0,
                0,
                0,
                0,
            );
            format!("{network}/64")
        }
    }
}

/// Records a code for the signed-in account and returns where to send the browser, or `None`
/// when the account no longer exists or is disabled.
async fn issue_code(
    provider: &Provider,
    request: &AuthorizationRequest,
    account_id: Uuid,
    auth_time: Timestamp,
    session_hash: Option<String>,
    now: Timestamp,
) -> Result<Option<String>, Error> {
    let code = secrets::generate();
    let grant = CodeGrant {
        client_id: request.client.client_id.clone(),
        account_id,
        session_hash,
        redirect_uri: request.redirect_uri.clone(),
        scope: request.scope.join(" "),
        nonce: request.nonce.clone(),
        code_challenge: request.code_challenge.clone(),
        auth_time,
        expires_at: later(now, provider.settings().code_lifetime),
        family_id: Uuid::now_v7(),
    };
    let mut tx = provider.database().begin().await?;
    let account = crate::store::get_account(&mut tx, account_id).await?;
    if account.is_none_or(|account| account.disabled) {
        return Ok(None);
    }
    store::prune_codes(
        &mut tx,
        earlier(now, std::time::Duration::from_secs(24 * 60 * 60)),
    )
    .await?;
    store::insert_code(&mut tx, &secrets::digest(&code), &grant).await?;
    tx.commit().await?;
    let mut pairs = vec![("code", code.as_str())];
    if let Some(state) = &request.state {
        pairs.push(("state", state));
    }
    pairs.push(("iss", &provider.settings().issuer));
    Ok(Some(params::with_query(
        &request.redirect_uri,
        &params::encode(pairs),
    )))
}

// === token ===

/// An error from the token or revocation endpoint (RFC 6749 §5.2).
#[derive(Debug)]
struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
    /// The client tried HTTP Basic authentication: answer 401 with a challenge.
    basic_challenge: bool,
}

impl OAuthError {
    fn new(error: &'static str, description: impl Into<String>) -> OAuthError {
        OAuthError {
            status: StatusCode::BAD_REQUEST,
            error,
            description: description.into(),
            basic_challenge: false,
        }
    }

    fn invalid_request(description: impl Into<String>) -> OAuthError {
        OAuthError::new("invalid_request", description)
    }

    fn invalid_grant(description: impl Into<String>) -> OAuthError {
        OAuthError::new("invalid_grant", description)
    }

    fn invalid_client(basic_challenge: bool) -> OAuthError {
        OAuthError {
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_client",
            description: "client authentication failed".to_owned(),
            basic_challenge,
        }
    }
}

impl From<Error> for OAuthError {
    fn from(error: Error) -> Self {
        tracing::error!(error.message = %error, error.cause_chain = ?error, "The token endpoint failed");
        OAuthError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error: "server_error",
            description: "the server failed; try again".to_owned(),
            basic_challenge: false,
        }
    }
}

impl From<sqlx::Error> for OAuthError {
    fn from(error: sqlx::Error) -> Self {
        OAuthError::from(Error::from(error))
    }
}

impl From<Repeated> for OAuthError {
    fn from(Repeated(name): Repeated) -> Self {
        OAuthError::invalid_request(format!("{name} was sent more than once"))
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body =
            serde_json::json!({ "error": self.error, "error_description": self.description });
        let mut response = (self.status, no_store(), Json(body)).into_response();
        if self.basic_challenge && self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"emporium\""),
            );
        }
        response
    }
}

#[derive(Debug, Serialize)]
struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    scope: String,
}

/// The claims of an ID token (OpenID Connect Core §2).
#[derive(Debug, Serialize, Deserialize)]
struct IdTokenClaims {
    iss: String,
    sub: String,
    aud: String,
    exp: i64,
    iat: i64,
    auth_time: i64,
    azp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    given_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    family_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nickname: Option<String>,
}

/// `POST /oauth2/token`.
async fn token(State(provider): State<Provider>, headers: HeaderMap, body: Bytes) -> Response {
    match exchange(&provider, &headers, &body).await {
        Ok(response) => (no_store(), Json(response)).into_response(),
        Err(error) => {
            tracing::info!(error = error.error, reason = %error.description, "Refused a token request");
            error.into_response()
        }
    }
}

async fn exchange(
    provider: &Provider,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<TokenResponse, OAuthError> {
    if !is_form(headers) {
        return Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let params = Params::parse(body);
    let client = authenticate_client(provider, headers, &params).await?;
    let (grant_type, issued) = match params.get("grant_type")? {
        Some("authorization_code") => (
            "authorization_code",
            authorization_code_grant(provider, &client, &params).await,
        ),
        Some("refresh_token") => (
            "refresh_token",
            refresh_token_grant(provider, &client, &params).await,
        ),
        Some("client_credentials") => (
            "client_credentials",
            client_credentials_grant(provider, &client).await,
        ),
        Some(other) => {
            return Err(OAuthError::new(
                "unsupported_grant_type",
                format!("grant_type {other:?} is not supported"),
            ));
        }
        None => return Err(OAuthError::invalid_request("grant_type is required")),
    };
    if issued.is_ok() {
        ::metrics::counter!("emporium_identity_tokens_issued_total", "grant_type" => grant_type)
            .increment(1);
    }
    issued
}

/// The client making a token or revocation request, authenticated by `client_secret_basic`,
/// `client_secret_post` or, for public clients, `none` (its `client_id` alone).
async fn authenticate_client(
    provider: &Provider,
    headers: &HeaderMap,
    params: &Params,
) -> Result<RegisteredClient, OAuthError> {
    let basic = basic_credentials(headers)?;
    let body_client_id = params.get("client_id")?;
    let body_secret = params.get("client_secret")?;
    let (client_id, secret, used_basic) = match (basic, body_secret) {
        (Some(_), Some(_)) => {
            return Err(OAuthError::invalid_request(
                "use one client authentication method, not two",
            ));
        }
        (Some((client_id, secret)), None) => {
            if body_client_id.is_some_and(|body_client_id| body_client_id != client_id) {
                return Err(OAuthError::invalid_request(
                    "client_id differs from the authenticated client",
                ));
            }
            (client_id, Some(secret), true)
        }
        (None, secret) => {
            let client_id = body_client_id.ok_or_else(|| OAuthError::invalid_client(false))?;
            (client_id.to_owned(), secret.map(str::to_owned), false)
        }
    };
    let client = provider
        .load_client(&client_id)
        .await?
        .filter(|client| !client.disabled)
        .ok_or_else(|| OAuthError::invalid_client(used_basic))?;
    let authenticated = match (&secret, client.public) {
        (Some(secret), false) => client.secret_matches(secret),
        (None, true) => true,
        _ => false,
    };
    if authenticated {
        Ok(client)
    } else {
        Err(OAuthError::invalid_client(used_basic))
    }
}

/// `Authorization: Basic …` credentials, form-urlencoded inside (RFC 6749 §2.3.1).
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed = || OAuthError::invalid_client(true);
    let value = value.to_str().map_err(|_| malformed())?;
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return Err(malformed());
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(malformed());
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (client_id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
    let decode = |text: &str| -> String {
        form_urlencoded::parse(format!("v={text}").as_bytes())
            .next()
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default()
    };
    Ok(Some((decode(client_id), decode(secret))))
}

async fn authorization_code_grant(
    provider: &Provider,
    client: &RegisteredClient,
    params: &Params,
) -> Result<TokenResponse, OAuthError> {
    let code = params
        .get("code")?
        .ok_or_else(|| OAuthError::invalid_request("code is required"))?;
    let redirect_uri = params
        .get("redirect_uri")?
        .ok_or_else(|| OAuthError::invalid_request("redirect_uri is required"))?;
    let verifier = params.get("code_verifier")?;
    // Read the signing key before the write transaction: on SQLite that transaction holds the
    // only write lock, which creating a first key would wait for.
    let key = provider.signing_key().await?;
    let now = provider.now();
    let mut tx = provider.database().begin().await?;
    let grant = match store::redeem_code(&mut tx, &secrets::digest(code), now).await? {
        Exchange::Spent(grant) => grant,
        Exchange::Replayed(family_id) => {
            let revoked = store::revoke_family(&mut tx, family_id, now).await?;
            tx.commit().await?;
            tracing::warn!(client_id = %client.client_id, %family_id, revoked, "An authorization code was presented again; revoked the tokens issued for it");
            return Err(OAuthError::invalid_grant(
                "the authorization code was already used",
            ));
        }
        Exchange::Invalid => {
            return Err(OAuthError::invalid_grant(
                "the authorization code is not valid",
            ));
        }
    };
    // The code is spent whatever follows, so a guessed verifier gets one try.
    let refusal = if grant.client_id != client.client_id {
        Some("the authorization code was issued to another client")
    } else if grant.expires_at <= now {
        Some("the authorization code has expired")
    } else if grant.redirect_uri != redirect_uri {
        Some("redirect_uri differs from the one in the authorization request")
    } else {
        pkce_refusal(grant.code_challenge.as_deref(), verifier)
    };
    if let Some(refusal) = refusal {
        tx.commit().await?;
        return Err(OAuthError::invalid_grant(refusal));
    }
    let account = crate::store::get_account(&mut tx, grant.account_id).await?;
    let Some(account) = account.filter(|account| !account.disabled) else {
        tx.commit().await?;
        return Err(OAuthError::invalid_grant(
            "the account no longer exists or is disabled",
        ));
    };
    let refresh_token = secrets::generate();
    let refresh = RefreshGrant {
        family_id: grant.family_id,
        client_id: grant.client_id.clone(),
        account_id: account.id,
        session_hash: grant.session_hash.clone(),
        scope: grant.scope.clone(),
        auth_time: grant.auth_time,
    };
    let expires_at = later(now, provider.settings().refresh_token_lifetime);
    store::insert_refresh_token(
        &mut tx,
        &secrets::digest(&refresh_token),
        &refresh,
        now,
        expires_at,
    )
    .await?;
    tx.commit().await?;
    tracing::info!(client_id = %client.client_id, account_id = %account.id, "Issued tokens for an authorization code");
    let scope = stored_scopes(&grant.scope);
    user_tokens(
        provider,
        &key,
        client,
        &account,
        &scope,
        Some(refresh_token),
        grant.nonce,
        grant.auth_time,
        now,
    )
}

fn pkce_refusal(challenge: Option<&str>, verifier: Option<&str>) -> Option<&'static str> {
    match (challenge, verifier) {
        (Some(challenge), Some(verifier)) => {
            if !secrets::is_valid_verifier(verifier) {
                Some("code_verifier must be 43 to 128 unreserved characters")
            } else if !secrets::constant_time_eq(&secrets::pkce_challenge(verifier), challenge) {
                Some("code_verifier does not match the code_challenge")
            } else {
                None
            }
        }
        (Some(_), None) => Some("code_verifier is required"),
        (None, Some(_)) => {
            Some("code_verifier was sent, but the authorization request had no code_challenge")
        }
        (None, None) => None,
    }
}

async fn refresh_token_grant(
    provider: &Provider,
    client: &RegisteredClient,
    params: &Params,
) -> Result<TokenResponse, OAuthError> {
    let presented = params
        .get("refresh_token")?
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
    let requested = parse_scope(params.get("scope")?)
        .map_err(|reason| OAuthError::new("invalid_scope", reason))?;
    let key = provider.signing_key().await?;
    let now = provider.now();
    let mut tx = provider.database().begin().await?;
    let grant = match store::rotate_refresh_token(&mut tx, &secrets::digest(presented), now).await?
    {
        Exchange::Spent(grant) => grant,
        Exchange::Replayed(family_id) => {
            let revoked = store::revoke_family(&mut tx, family_id, now).await?;
            tx.commit().await?;
            tracing::warn!(client_id = %client.client_id, %family_id, revoked, "A refresh token was used twice; revoked every token of its sign-in");
            return Err(OAuthError::invalid_grant(
                "the refresh token was already used; every token of this sign-in is now revoked",
            ));
        }
        Exchange::Invalid => {
            return Err(OAuthError::invalid_grant(
                "the refresh token is not valid, has expired or was revoked",
            ));
        }
    };
    if grant.client_id != client.client_id {
        store::revoke_family(&mut tx, grant.family_id, now).await?;
        tx.commit().await?;
        tracing::warn!(client_id = %client.client_id, family_id = %grant.family_id, "A refresh token was presented by another client; revoked its family");
        return Err(OAuthError::invalid_grant(
            "the refresh token was issued to another client",
        ));
    }
    let granted = stored_scopes(&grant.scope);
    // Asking for less than was granted is allowed (RFC 6749 §6); asking for more is not.
    if let Some(extra) = requested.iter().find(|scope| !granted.contains(scope)) {
        return Err(OAuthError::new(
            "invalid_scope",
            format!("scope {extra:?} was not granted"),
        ));
    }
    let scope = if requested.is_empty() {
        granted
    } else {
        requested
    };
    let account = crate::store::get_account(&mut tx, grant.account_id).await?;
    let Some(account) = account.filter(|account| !account.disabled) else {
        store::revoke_family(&mut tx, grant.family_id, now).await?;
        tx.commit().await?;
        return Err(OAuthError::invalid_grant(
            "the account no longer exists or is disabled",
        ));
    };
    let refresh_token = secrets::generate();
    let expires_at = later(now, provider.settings().refresh_token_lifetime);
    store::insert_refresh_token(
        &mut tx,
        &secrets::digest(&refresh_token),
        &grant,
        now,
        expires_at,
    )
    .await?;
    tx.commit().await?;
    tracing::info!(client_id = %client.client_id, account_id = %account.id, "Rotated a refresh token");
    user_tokens(
        provider,
        &key,
        client,
        &account,
        &scope,
        Some(refresh_token),
        None,
        grant.auth_time,
        now,
    )
}

async fn client_credentials_grant(
    provider: &Provider,
    client: &RegisteredClient,
) -> Result<TokenResponse, OAuthError> {
    if client.public {
        return Err(OAuthError::new(
            "unauthorized_client",
            "a public client cannot use client_credentials",
        ));
    }
    let key = provider.signing_key().await?;
    let now = provider.now();
    let lifetime = provider.settings().access_token_lifetime;
    let claims = Claims {
        iss: provider.settings().issuer.clone(),
        sub: client.client_id.clone(),
        aud: provider.settings().audience.clone(),
        exp: later(now, lifetime).unix_timestamp(),
        iat: now.unix_timestamp(),
        jti: Uuid::new_v4().simple().to_string(),
        client_id: client.client_id.clone(),
        roles: client.roles.clone(),
        customer_id: None,
    };
    let access_token = key.sign(&claims).map_err(Error::Unexpected)?;
    tracing::info!(client_id = %client.client_id, "Issued a client-credentials token");
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: lifetime.as_secs(),
        refresh_token: None,
        id_token: None,
        scope: String::new(),
    })
}

/// An access token for `account`, and an ID token when `openid` was granted. The access token
/// carries the account's `customer_id` only while the account holds the `customer` role: staff
/// accounts never act as a customer, even with a customer record linked.
#[allow(clippy::too_many_arguments)]
fn user_tokens(
    provider: &Provider,
    key: &SigningKey,
    client: &RegisteredClient,
    account: &Account,
    scope: &[String],
    refresh_token: Option<String>,
    nonce: Option<String>,
    auth_time: Timestamp,
    now: Timestamp,
) -> Result<TokenResponse, OAuthError> {
    let settings = provider.settings();
    let is_customer = account.roles.iter().any(|role| role == roles::CUSTOMER);
    let claims = Claims {
        iss: settings.issuer.clone(),
        sub: account.id.to_string(),
        aud: settings.audience.clone(),
        exp: later(now, settings.access_token_lifetime).unix_timestamp(),
        iat: now.unix_timestamp(),
        jti: Uuid::new_v4().simple().to_string(),
        client_id: client.client_id.clone(),
        roles: account.roles.clone(),
        customer_id: account
            .customer_id
            .filter(|_| is_customer)
            .map(|id| id.to_string()),
    };
    let access_token = key.sign(&claims).map_err(Error::Unexpected)?;
    let has = |wanted: &str| scope.iter().any(|scope| scope == wanted);
    let id_token = if has("openid") {
        let profile = has("profile");
        let claims = IdTokenClaims {
            iss: settings.issuer.clone(),
            sub: account.id.to_string(),
            aud: client.client_id.clone(),
            exp: later(now, settings.id_token_lifetime).unix_timestamp(),
            iat: now.unix_timestamp(),
            auth_time: auth_time.unix_timestamp(),
            azp: client.client_id.clone(),
            nonce,
            email: has("email").then(|| account.email.clone()),
            name: profile.then(|| format!("{} {}", account.first_name, account.last_name)),
            given_name: profile.then(|| account.first_name.clone()),
            family_name: profile.then(|| account.last_name.clone()),
            nickname: (profile && !account.nickname.is_empty()).then(|| account.nickname.clone()),
        };
        Some(
            key.sign_with_type(&claims, "JWT")
                .map_err(Error::Unexpected)?,
        )
    } else {
        None
    };
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: settings.access_token_lifetime.as_secs(),
        refresh_token,
        id_token,
        scope: scope.join(" "),
    })
}

// === revocation ===

/// `POST /oauth2/revoke` (RFC 7009): revokes a refresh token and every token of its family.
/// Access tokens are short-lived JWTs and cannot be recalled; presenting one, or any unknown
/// token, succeeds without effect, as the RFC asks.
async fn revoke(State(provider): State<Provider>, headers: HeaderMap, body: Bytes) -> Response {
    let revoked = async {
        if !is_form(&headers) {
            return Err(OAuthError::invalid_request(
                "the body must be application/x-www-form-urlencoded",
            ));
        }
        let params = Params::parse(&body);
        let client = authenticate_client(&provider, &headers, &params).await?;
        let token = params
            .get("token")?
            .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
        let now = provider.now();
        let mut tx = provider.database().begin().await?;
        if let Some((family_id, owner)) =
            store::find_refresh_family(&mut tx, &secrets::digest(token)).await?
            && owner == client.client_id
        {
            let revoked = store::revoke_family(&mut tx, family_id, now).await?;
            tracing::info!(client_id = %client.client_id, %family_id, revoked, "Revoked a refresh token family");
        }
        tx.commit().await?;
        Ok(())
    };
    match revoked.await {
        Ok(()) => (StatusCode::OK, no_store()).into_response(),
        Err(error) => error.into_response(),
    }
}

// === logout ===

/// Where to send the browser after signing out, from a validated logout request.
struct LogoutRequest {
    /// `post_logout_redirect_uri` (registered for the client) with `state`.
    destination: Option<String>,
    /// The account the `id_token_hint` names, if one was given and is genuine.
    hinted_account: Option<String>,
}

async fn parse_logout_request(
    provider: &Provider,
    params: &Params,
) -> Result<LogoutRequest, Response> {
    let refuse = |message: &str| {
        html::respond(
            StatusCode::BAD_REQUEST,
            html::error_page("This sign-out request cannot be completed", message),
            &[],
        )
    };
    let repeated = |Repeated(name): Repeated| {
        refuse(&format!("The parameter {name} was sent more than once."))
    };
    let hint = match params.get("id_token_hint").map_err(repeated)? {
        Some(hint) => match verify_own_id_token(provider, hint).await {
            Ok(Some(claims)) => Some(claims),
            Ok(None) => return Err(refuse("The id_token_hint is not an ID token issued here.")),
            Err(error) => return Err(internal_error_page(&error)),
        },
        None => None,
    };
    let client_id = match (params.get("client_id").map_err(repeated)?, &hint) {
        (Some(client_id), Some(hint)) if client_id != hint.aud => {
            return Err(refuse("client_id does not match the id_token_hint."));
        }
        (Some(client_id), _) => Some(client_id.to_owned()),
        (None, Some(hint)) => Some(hint.aud.clone()),
        (None, None) => None,
    };
    let destination = match params.get("post_logout_redirect_uri").map_err(repeated)? {
        None => None,
        Some(uri) => {
            let Some(client_id) = client_id else {
                return Err(refuse(
                    "post_logout_redirect_uri needs a client_id or an id_token_hint to check it against.",
                ));
            };
            let client = match provider.load_client(&client_id).await {
                Ok(client) => client,
                Err(error) => return Err(internal_error_page(&error)),
            };
            if !client.is_some_and(|client| {
                client
                    .post_logout_redirect_uris
                    .iter()
                    .any(|registered| registered == uri)
            }) {
                return Err(refuse(
                    "The post_logout_redirect_uri is not one registered for this application.",
                ));
            }
            Some(match params.get("state").map_err(repeated)? {
                Some(state) => params::with_query(uri, &params::encode([("state", state)])),
                None => uri.to_owned(),
            })
        }
    };
    Ok(LogoutRequest {
        destination,
        hinted_account: hint.map(|hint| hint.sub),
    })
}

/// `GET /oauth2/logout` (OpenID Connect RP-Initiated Logout): signs out at once when the client
/// proves it with an `id_token_hint` for the signed-in account; otherwise asks the user first.
async fn logout_page(
    State(provider): State<Provider>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let params = Params::parse(query.unwrap_or_default().as_bytes());
    let request = match parse_logout_request(&provider, &params).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    let now = provider.now();
    let session = match provider.current_session(&headers, now).await {
        Ok(session) => session,
        Err(error) => return internal_error_page(&error),
    };
    let hint_matches = match (&request.hinted_account, &session) {
        (Some(hinted), Some((_, session))) => *hinted == session.account_id.to_string(),
        (Some(_), None) => true,
        (None, _) => false,
    };
    if hint_matches {
        return sign_out(&provider, &headers, request.destination, now).await;
    }
    let hidden = present(
        &params,
        &[
            "id_token_hint",
            "client_id",
            "post_logout_redirect_uri",
            "state",
        ],
    );
    let csrf_token = secrets::generate();
    let csrf_cookie = cookie_header(&provider, CSRF_COOKIE, &csrf_token, SameSite::Strict, 3600);
    html::respond(
        StatusCode::OK,
        html::sign_out_page(&hidden, &csrf_token),
        &[csrf_cookie],
    )
}

/// `POST /oauth2/logout`: the confirmation form.
async fn logout(State(provider): State<Provider>, headers: HeaderMap, body: Bytes) -> Response {
    let params = Params::parse(&body);
    if !is_form(&headers) || !csrf_token_matches(&headers, &params) {
        return html::respond(
            StatusCode::BAD_REQUEST,
            html::error_page(
                "Sign-out failed",
                "This sign-out form has expired. Go back and try again.",
            ),
            &[],
        );
    }
    let request = match parse_logout_request(&provider, &params).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    sign_out(&provider, &headers, request.destination, provider.now()).await
}

/// Ends the browser's session (revoking the refresh tokens issued in it) and clears its cookie.
async fn sign_out(
    provider: &Provider,
    headers: &HeaderMap,
    destination: Option<String>,
    now: Timestamp,
) -> Response {
    if let Some(session_id) = cookie(headers, SESSION_COOKIE) {
        let ended = async {
            let mut tx = provider.database().begin().await?;
            store::end_session(&mut tx, &secrets::digest(&session_id), now).await?;
            Ok::<_, Error>(tx.commit().await?)
        };
        if let Err(error) = ended.await {
            return internal_error_page(&error);
        }
        tracing::info!("Signed out");
    }
    let clear = cookie_header(provider, SESSION_COOKIE, "", SameSite::Lax, 0);
    match destination {
        Some(destination) => redirect(&destination, &[clear]),
        None => html::respond(StatusCode::OK, html::signed_out_page(), &[clear]),
    }
}

/// The claims of an ID token this provider signed (expired ones included: a hint may be old).
async fn verify_own_id_token(
    provider: &Provider,
    token: &str,
) -> Result<Option<IdTokenClaims>, Error> {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    chassis::auth::install_jwt_crypto();
    let Ok(header) = jsonwebtoken::decode_header(token) else {
        return Ok(None);
    };
    if header.alg != Algorithm::EdDSA {
        return Ok(None);
    }
    let key_set = provider.keys().key_set(provider.0.clock.now()).await?;
    let Some(jwk) = header.kid.as_deref().and_then(|kid| key_set.find(kid)) else {
        return Ok(None);
    };
    let Ok(key) = DecodingKey::from_jwk(jwk) else {
        return Ok(None);
    };
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.set_issuer(&[&provider.settings().issuer]);
    validation.set_required_spec_claims(&["iss", "sub", "aud"]);
    Ok(
        jsonwebtoken::decode::<IdTokenClaims>(token, &key, &validation)
            .ok()
            .map(|data| data.claims),
    )
}

// === helpers ===

/// The client's IP address, when the server was started with connection info: the peer, or the
/// address a trusted proxy's `X-Forwarded-For` names ([`chassis::proxies`]).
struct ClientAddress(Option<IpAddr>);

impl FromRequestParts<Provider> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        provider: &Provider,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(address)| address.ip());
        Ok(ClientAddress(peer.map(|peer| {
            provider
                .settings()
                .trusted_proxies
                .client_address(peer, &parts.headers)
        })))
    }
}

/// The parameters among `names` that the request carries, to send on as hidden form fields.
fn present<'a>(params: &'a Params, names: &[&'a str]) -> Vec<(&'a str, &'a str)> {
    names
        .iter()
        .filter_map(|name| params.get(name).ok().flatten().map(|value| (*name, value)))
        .collect()
}

/// Whether a form's `csrf_token` equals the CSRF cookie its page set (double submit).
fn csrf_token_matches(headers: &HeaderMap, params: &Params) -> bool {
    let form_token = params.get("csrf_token").ok().flatten().unwrap_or_default();
    let cookie_token = cookie(headers, CSRF_COOKIE).unwrap_or_default();
    !form_token.is_empty() && secrets::constant_time_eq(form_token, &cookie_token)
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media_type| {
            media_type
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// The value of cookie `name`, if the request carries it (parsed by the `cookie` crate; pairs
/// that do not parse are skipped).
pub(super) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|cookie| cookie.name() == name && !cookie.value().is_empty())
        .map(|cookie| cookie.value().to_owned())
}

/// A cookie to set: HttpOnly, scoped to the provider's paths, Secure on an https issuer.
/// `max_age` 0 deletes the cookie.
fn cookie_header(
    provider: &Provider,
    name: &'static str,
    value: &str,
    same_site: SameSite,
    max_age: u64,
) -> Cookie<'static> {
    Cookie::build((name, value.to_owned()))
        .path("/oauth2")
        .http_only(true)
        .same_site(same_site)
        .max_age(cookie::time::Duration::seconds(
            i64::try_from(max_age).unwrap_or(i64::MAX),
        ))
        .secure(provider.settings().secure_cookies())
        .build()
}

fn redirect(location: &str, cookies: &[Cookie<'_>]) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, location);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    html::set_cookies(headers, cookies);
    response
}

fn no_store() -> [(header::HeaderName, &'static str); 2] {
    [
        (header::CACHE_CONTROL, "no-store"),
        (header::PRAGMA, "no-cache"),
    ]
}

fn internal_error_page(error: &Error) -> Response {
    tracing::error!(error.message = %error, error.cause_chain = ?error, "The sign-in flow failed");
    html::respond(
        StatusCode::INTERNAL_SERVER_ERROR,
        html::error_page(
            "Something went wrong",
            "The server could not complete this request. Please try again in a moment.",
        ),
        &[],
    )
}
