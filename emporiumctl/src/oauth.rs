//! Logging in against a standard OAuth2/OIDC provider: discovery, authorization code + PKCE with a
//! loopback redirect (RFC 8252, RFC 7636), client credentials, refresh and revocation. Plain HTTP
//! only for now: this build has no TLS client.
//!
//! The browser is abstracted as a callback that receives the authorization URL, so tests drive a
//! login by "opening" that URL themselves.

use std::time::Duration;

use anyhow::Context;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde::Deserialize;
use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::credentials::Credentials;

/// The issuer `emporium up` serves.
pub const DEFAULT_ISSUER: &str = "http://localhost:8080";
/// The CLI's public client id.
pub const DEFAULT_CLIENT_ID: &str = "emporiumctl";
/// How long `login` waits for the browser by default.
pub const DEFAULT_LOGIN_TIMEOUT: Duration = Duration::from_secs(300);
/// How long one HTTP exchange with the provider may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(15);

/// The parts of `<issuer>/.well-known/openid-configuration` the CLI uses.
#[derive(Clone, Debug, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub token_endpoint: String,
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
}

/// A PKCE pair: the verifier stays here, the challenge goes in the authorization URL.
#[derive(Clone)]
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

/// How a browser login runs.
#[derive(Clone, Debug)]
pub struct BrowserLogin {
    pub issuer: String,
    pub client_id: String,
    pub scope: String,
    /// How long to wait for the browser's redirect.
    pub timeout: Duration,
}

/// A token endpoint's successful answer.
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<i64>,
}

/// A token endpoint's error answer (RFC 6749 §5.2).
#[derive(Deserialize)]
struct TokenErrorResponse {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

// === logins ===

/// Authorization code + PKCE: listens on `127.0.0.1:<random port>`, hands the authorization URL
/// to `open_browser`, waits for the redirect to `/callback`, checks `state` and exchanges the code.
pub async fn login_with_browser(
    login: &BrowserLogin,
    open_browser: impl FnOnce(&str),
) -> anyhow::Result<Credentials> {
    let discovery = discover(&login.issuer).await?;
    let authorization_endpoint = discovery
        .authorization_endpoint
        .as_deref()
        .context("The provider's discovery document names no authorization_endpoint")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("Failed to listen for the browser's redirect on 127.0.0.1")?;
    let port = listener
        .local_addr()
        .context("The redirect listener has no address")?
        .port();
    let redirect_uri = format!("http://127.0.0.1:{port}/callback");
    let pkce = Pkce::generate();
    let state = random_text(16);
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", &login.client_id)
        .append_pair("redirect_uri", &redirect_uri)
        .append_pair("scope", &login.scope)
        .append_pair("state", &state)
        .append_pair("code_challenge", &pkce.challenge)
        .append_pair("code_challenge_method", "S256")
        .finish();
    let separator = if authorization_endpoint.contains('?') {
        '&'
    } else {
        '?'
    };
    open_browser(&format!("{authorization_endpoint}{separator}{query}"));
    let code = tokio::time::timeout(login.timeout, receive_code(&listener, &state))
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "No answer from the browser within {}s; run `emporiumctl login` again",
                login.timeout.as_secs()
            )
        })??;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect_uri.as_str()),
        ("client_id", login.client_id.as_str()),
        ("code_verifier", pkce.verifier.as_str()),
    ];
    let tokens = request_tokens(&discovery.token_endpoint, &form, None).await?;
    Ok(credentials_from(
        &login.issuer,
        &login.client_id,
        tokens,
        None,
    ))
}

/// Client credentials for a confidential client, authenticated with HTTP Basic
/// (`client_secret_basic`).
pub async fn login_with_client_credentials(
    issuer: &str,
    client_id: &str,
    client_secret: &str,
) -> anyhow::Result<Credentials> {
    let discovery = discover(issuer).await?;
    let form = [("grant_type", "client_credentials")];
    let tokens = request_tokens(
        &discovery.token_endpoint,
        &form,
        Some(&basic_authorization(client_id, client_secret)),
    )
    .await?;
    Ok(credentials_from(issuer, client_id, tokens, None))
}

/// Trades the stored refresh token for new tokens; the provider may rotate the refresh token,
/// so the answer's replaces the old one.
pub async fn refresh(credentials: &Credentials) -> anyhow::Result<Credentials> {
    let refresh_token = credentials
        .refresh_token
        .as_deref()
        .context("No refresh token is stored")?;
    let discovery = discover(&credentials.issuer).await?;
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
        ("client_id", credentials.client_id.as_str()),
    ];
    let tokens = request_tokens(&discovery.token_endpoint, &form, None).await?;
    Ok(credentials_from(
        &credentials.issuer,
        &credentials.client_id,
        tokens,
        Some(refresh_token),
    ))
}

/// Revokes the stored refresh token (RFC 7009). A provider without a revocation endpoint is
/// not an error.
pub async fn revoke(credentials: &Credentials) -> anyhow::Result<()> {
    let Some(refresh_token) = credentials.refresh_token.as_deref() else {
        return Ok(());
    };
    let discovery = discover(&credentials.issuer).await?;
    let Some(revocation_endpoint) = discovery.revocation_endpoint else {
        return Ok(());
    };
    let form = [
        ("token", refresh_token),
        ("token_type_hint", "refresh_token"),
        ("client_id", credentials.client_id.as_str()),
    ];
    let (status, _) = post_form(&revocation_endpoint, &form, None).await?;
    anyhow::ensure!(
        status.is_success(),
        "The revocation endpoint answered {status}"
    );
    Ok(())
}

/// Fetches `<issuer>/.well-known/openid-configuration`.
pub async fn discover(issuer: &str) -> anyhow::Result<Discovery> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let (status, body) = send(http::Request::get(&url), Bytes::new(), &url).await?;
    anyhow::ensure!(
        status.is_success(),
        "{url} answered {status}: is {issuer} an OpenID provider?"
    );
    serde_json::from_slice(&body).with_context(|| format!("{url} is not a discovery document"))
}

// === impl Pkce ===

impl Pkce {
    /// A fresh verifier of 43 characters (32 random bytes) and its S256 challenge.
    pub fn generate() -> Pkce {
        Pkce::from_verifier(&random_text(32))
    }

    pub fn from_verifier(verifier: &str) -> Pkce {
        Pkce {
            verifier: verifier.to_owned(),
            challenge: pkce_challenge(verifier),
        }
    }
}

/// `BASE64URL(SHA256(verifier))`, without padding (RFC 7636 §4.2, method S256).
pub fn pkce_challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier))
}

/// `Basic base64(urlencode(id):urlencode(secret))`, as RFC 6749 §2.3.1 asks.
pub fn basic_authorization(client_id: &str, client_secret: &str) -> String {
    let encode = |text: &str| form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", encode(client_id), encode(client_secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

// === helpers ===

/// Accepts connections until the browser arrives at `/callback`; answers it with a small page.
async fn receive_code(
    listener: &tokio::net::TcpListener,
    expected_state: &str,
) -> anyhow::Result<String> {
    loop {
        let (mut stream, _) = listener
            .accept()
            .await
            .context("Failed to accept the browser's redirect")?;
        let Some(target) = read_request_target(&mut stream).await else {
            continue;
        };
        let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
        if path != "/callback" {
            // Browsers also ask for /favicon.ico and the like.
            let _ = respond(&mut stream, "404 Not Found", "Not found.").await;
            continue;
        }
        let parameters: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let parameter = |name: &str| {
            parameters
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        if parameter("state").as_deref() != Some(expected_state) {
            let _ = respond(
                &mut stream,
                "400 Bad Request",
                "Login failed: unexpected state.",
            )
            .await;
            anyhow::bail!("The browser came back with the wrong state; nothing was exchanged");
        }
        if let Some(error) = parameter("error") {
            let _ = respond(&mut stream, "400 Bad Request", "Login failed.").await;
            let description = parameter("error_description").unwrap_or_default();
            anyhow::bail!("The provider refused the login: {error} {description}");
        }
        let Some(code) = parameter("code") else {
            let _ = respond(&mut stream, "400 Bad Request", "Login failed: no code.").await;
            anyhow::bail!("The browser came back without a code");
        };
        let _ = respond(
            &mut stream,
            "200 OK",
            "Logged in to Emporium. You can close this tab.",
        )
        .await;
        return Ok(code);
    }
}

/// The target of an HTTP/1 request line (`GET <target> HTTP/1.1`), read from at most 16 KiB.
async fn read_request_target(stream: &mut tokio::net::TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buffer = [0u8; 2048];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") && head.len() < 16 * 1024 {
        let n_read = stream.read(&mut buffer).await.ok()?;
        if n_read == 0 {
            break;
        }
        head.extend_from_slice(&buffer[..n_read]);
    }
    let head = String::from_utf8_lossy(&head);
    let mut request_line = head.lines().next()?.split_whitespace();
    let _method = request_line.next()?;
    request_line.next().map(str::to_owned)
}

async fn respond(
    stream: &mut tokio::net::TcpStream,
    status: &str,
    message: &str,
) -> std::io::Result<()> {
    let body = format!(
        "<!doctype html><html><head><title>emporiumctl</title></head><body><p>{message}</p></body></html>"
    );
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// POSTs `form` to a token endpoint and reads the tokens, or the provider's error.
async fn request_tokens(
    token_endpoint: &str,
    form: &[(&str, &str)],
    authorization: Option<&str>,
) -> anyhow::Result<TokenResponse> {
    let (status, body) = post_form(token_endpoint, form, authorization).await?;
    if !status.is_success() {
        return match serde_json::from_slice::<TokenErrorResponse>(&body) {
            Ok(error) => Err(anyhow::anyhow!(
                "The provider refused: {}{}",
                error.error,
                error
                    .error_description
                    .map(|description| format!(" ({description})"))
                    .unwrap_or_default()
            )),
            Err(_) => Err(anyhow::anyhow!("The token endpoint answered {status}")),
        };
    }
    serde_json::from_slice(&body).context("The token endpoint's answer holds no access token")
}

async fn post_form(
    url: &str,
    form: &[(&str, &str)],
    authorization: Option<&str>,
) -> anyhow::Result<(http::StatusCode, Bytes)> {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let mut request = http::Request::post(url)
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(http::header::ACCEPT, "application/json");
    if let Some(authorization) = authorization {
        request = request.header(http::header::AUTHORIZATION, authorization);
    }
    send(request, Bytes::from(body), url).await
}

pub(crate) async fn send(
    request: http::request::Builder,
    body: Bytes,
    url: &str,
) -> anyhow::Result<(http::StatusCode, Bytes)> {
    if url.starts_with("https://") {
        anyhow::bail!(
            "{url}: TLS is not supported by this build of emporiumctl yet; use an http:// issuer"
        );
    }
    let request = request
        .body(Full::new(body))
        .with_context(|| format!("Invalid URL {url}"))?;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let response = tokio::time::timeout(HTTP_TIMEOUT, client.request(request))
        .await
        .with_context(|| format!("{url} did not answer within {}s", HTTP_TIMEOUT.as_secs()))?
        .with_context(|| format!("Cannot reach {url}"))?;
    let status = response.status();
    let body = tokio::time::timeout(HTTP_TIMEOUT, response.into_body().collect())
        .await
        .with_context(|| format!("{url} did not finish its answer"))?
        .with_context(|| format!("Failed to read the answer of {url}"))?
        .to_bytes();
    Ok((status, body))
}

fn credentials_from(
    issuer: &str,
    client_id: &str,
    tokens: TokenResponse,
    previous_refresh_token: Option<&str>,
) -> Credentials {
    let now = unix_now();
    let expires_at = token_expiry(&tokens.access_token)
        .or_else(|| tokens.expires_in.map(|seconds| now + seconds))
        .unwrap_or(now + 300);
    Credentials {
        issuer: issuer.to_owned(),
        client_id: client_id.to_owned(),
        access_token: tokens.access_token,
        refresh_token: tokens
            .refresh_token
            .or_else(|| previous_refresh_token.map(str::to_owned)),
        expires_at,
    }
}

/// The `exp` of a JWT, read without verifying it (only to know when to refresh).
fn token_expiry(token: &str) -> Option<i64> {
    crate::token_payload(token)?.get("exp")?.as_i64()
}

/// `n_bytes` random bytes, base64url without padding.
fn random_text(n_bytes: usize) -> String {
    use rand::RngCore;
    let mut bytes = vec![0u8; n_bytes];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
