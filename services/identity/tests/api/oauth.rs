//! The OAuth2 / OpenID Connect provider over real HTTP: an unmodified OIDC client library runs
//! the authorization code flow with PKCE; the sign-in page, lock-out, codes, refresh-token
//! rotation and reuse detection, revocation, client credentials and sign-out are driven the way a
//! browser or a client would drive them. Every test runs on both backends.

use std::time::Duration;

use base64::Engine as _;
use chassis::auth::{KeySource, TokenVerifier};
use chassis::proxies::TrustedProxies;
use emporium_proto::identity::v1 as proto;
use identity::oauth::OAuthSettings;
use sha2::Digest as _;
use test_support::{Backend, TestIssuer, backend_independent, both_backends};

use crate::browser::{Browser, Page};
use crate::helpers::{IdentityApp as _, OidcApp, PASSWORD, spawn_oidc_app_with};

both_backends!(
    an_unmodified_oidc_client_completes_the_code_flow_with_pkce,
    an_unknown_email_and_a_wrong_password_get_the_same_answer,
    a_malformed_email_gets_the_wrong_password_answer_and_locks_nothing_out,
    failed_sign_ins_lock_an_email_out_from_that_address_until_the_window_passes,
    failed_sign_ins_from_one_address_lock_that_address_out,
    a_user_locked_out_from_one_address_can_still_sign_in_from_another,
    failures_for_one_email_from_many_addresses_slow_it_down_then_lock_it,
    a_code_is_single_use_and_its_replay_revokes_what_it_issued,
    a_code_needs_the_matching_verifier_and_redirect_uri,
    refresh_tokens_rotate_and_a_reused_one_revokes_the_family,
    revoking_a_refresh_token_revokes_its_family,
    client_credentials_tokens_carry_the_client_roles,
    a_signed_in_browser_is_not_asked_again_until_it_signs_out,
    secrets_never_reach_the_logs,
);

// What these check happens before storage or the bus is reached: once is enough.
backend_independent!(
    public_clients_must_send_an_s256_challenge,
    an_unregistered_client_or_redirect_uri_gets_an_error_page_not_a_redirect,
    the_pages_are_sent_with_the_security_headers,
    markup_in_a_client_name_an_email_or_a_client_id_is_escaped,
    forwarded_for_is_ignored_from_an_untrusted_peer,
);

const EMAIL: &str = "ada@example.com";
const REDIRECT_URI: &str = "https://shop.test/callback";
const SIGNED_OUT_URI: &str = "https://shop.test/signed-out";

struct Fixture {
    oidc: OidcApp,
    browser: Browser,
    account: proto::Account,
    /// The confidential client `billing`'s secret.
    billing_secret: String,
}

/// A provider with an account (`catalog-manager`), a public client `shop` and a confidential
/// client `billing` holding `sales`.
async fn fixture(backend: Backend) -> Fixture {
    fixture_with(backend, |_| {}).await
}

/// [`fixture`] with the provider's settings changed by `configure`.
async fn fixture_with(backend: Backend, configure: impl FnOnce(&mut OAuthSettings)) -> Fixture {
    let oidc = spawn_oidc_app_with(backend, configure).await;
    let app = &oidc.app;
    let account = app.create_account(EMAIL).await;
    let account = app
        .client()
        .grant_role(app.admin(proto::GrantRoleRequest {
            account_id: account.id.clone(),
            role: "catalog-manager".to_owned(),
            expected_version: account.version,
        }))
        .await
        .expect("the role is granted")
        .into_inner();
    app.client()
        .create_client(app.admin(proto::CreateClientRequest {
            client_id: "shop".to_owned(),
            name: "The Shop".to_owned(),
            r#type: proto::ClientType::Public as i32,
            redirect_uris: vec![REDIRECT_URI.to_owned()],
            post_logout_redirect_uris: vec![SIGNED_OUT_URI.to_owned()],
            roles: Vec::new(),
        }))
        .await
        .expect("the public client is registered");
    let billing_secret = app
        .client()
        .create_client(app.admin(proto::CreateClientRequest {
            client_id: "billing".to_owned(),
            name: "Billing".to_owned(),
            r#type: proto::ClientType::Confidential as i32,
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            roles: vec!["sales".to_owned()],
        }))
        .await
        .expect("the confidential client is registered")
        .into_inner()
        .client_secret;
    Fixture {
        oidc,
        browser: Browser::new(),
        account,
        billing_secret,
    }
}

/// A PKCE verifier and its S256 challenge.
fn pkce() -> (String, String) {
    let verifier = format!("verifier-{}-{}", uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

impl Fixture {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.oidc.issuer)
    }

    /// The authorization URL for `shop` with `challenge`, plus `extra` parameters.
    fn authorize_url(&self, challenge: &str, extra: &[(&str, &str)]) -> String {
        let mut serializer = form_urlencoded::Serializer::new(String::new());
        serializer
            .append_pair("response_type", "code")
            .append_pair("client_id", "shop")
            .append_pair("redirect_uri", REDIRECT_URI)
            .append_pair("scope", "openid email profile")
            .append_pair("state", "state-123")
            .append_pair("nonce", "nonce-456")
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256");
        for (name, value) in extra {
            serializer.append_pair(name, value);
        }
        format!("{}?{}", self.url("/oauth2/authorize"), serializer.finish())
    }

    /// Opens `authorize_url`, expects the sign-in page, and submits it.
    async fn sign_in(&self, authorize_url: &str, email: &str, password: &str) -> Page {
        self.browser.sign_in(authorize_url, email, password).await
    }

    /// Signs in (unless the browser's session still does) and returns the code and the PKCE
    /// verifier.
    async fn code(&self) -> (String, String) {
        let (verifier, challenge) = pkce();
        let url = self.authorize_url(&challenge, &[]);
        let page = match self.browser.get(&url).await {
            page if page.status == 303 => page,
            _ => self.sign_in(&url, EMAIL, PASSWORD).await,
        };
        assert_eq!(page.status, 303, "signed in: {}", page.body);
        (page.location_param("code").expect("a code"), verifier)
    }

    async fn exchange(&self, code: &str, verifier: &str) -> Page {
        self.browser
            .post_form(
                &self.url("/oauth2/token"),
                &[
                    ("grant_type", "authorization_code"),
                    ("code", code),
                    ("redirect_uri", REDIRECT_URI),
                    ("client_id", "shop"),
                    ("code_verifier", verifier),
                ],
            )
            .await
    }

    /// Signs in and exchanges the code: the token response.
    async fn tokens(&self) -> serde_json::Value {
        let (code, verifier) = self.code().await;
        let page = self.exchange(&code, &verifier).await;
        assert_eq!(page.status, 200, "tokens: {}", page.body);
        page.json()
    }

    async fn refresh(&self, refresh_token: &str) -> Page {
        self.browser
            .post_form(
                &self.url("/oauth2/token"),
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh_token),
                    ("client_id", "shop"),
                ],
            )
            .await
    }

    fn verifier(&self) -> TokenVerifier {
        TokenVerifier::new(
            &self.oidc.issuer,
            TestIssuer::AUDIENCE,
            KeySource::Url(self.url("/.well-known/jwks.json")),
        )
    }
}

fn text(value: &serde_json::Value, field: &str) -> String {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {value}"))
        .to_owned()
}

/// openidconnect's HTTP client seam, over hyper.
fn http_client() -> impl Fn(
    openidconnect::HttpRequest,
) -> std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<openidconnect::HttpResponse, std::io::Error>>
            + Send,
    >,
> {
    use http_body_util::{BodyExt, Full};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<bytes::Bytes>>();
    move |request: openidconnect::HttpRequest| {
        let client = client.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let request = http::Request::from_parts(parts, Full::new(bytes::Bytes::from(body)));
            let response = client
                .request(request)
                .await
                .map_err(std::io::Error::other)?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(std::io::Error::other)?
                .to_bytes();
            Ok(http::Response::from_parts(parts, body.to_vec()))
        })
    }
}

async fn an_unmodified_oidc_client_completes_the_code_flow_with_pkce(backend: Backend) {
    use openidconnect::core::{
        CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreResponseType,
    };
    use openidconnect::{
        AuthenticationFlow, AuthorizationCode, ClientId, CsrfToken, IssuerUrl, Nonce,
        OAuth2TokenResponse as _, PkceCodeChallenge, RedirectUrl, Scope, TokenResponse as _,
    };
    let fixture = fixture(backend).await;
    let http = http_client();

    let metadata = CoreProviderMetadata::discover_async(
        IssuerUrl::new(fixture.oidc.issuer.clone()).unwrap(),
        &http,
    )
    .await
    .expect("discovery and the JWKS are served");
    let client =
        CoreClient::from_provider_metadata(metadata, ClientId::new("shop".to_owned()), None)
            .set_redirect_uri(RedirectUrl::new(REDIRECT_URI.to_owned()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (authorize_url, state, nonce) = client
        .authorize_url(
            AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".to_owned()))
        .add_scope(Scope::new("profile".to_owned()))
        .set_pkce_challenge(challenge)
        .url();
    let page = fixture
        .sign_in(authorize_url.as_str(), EMAIL, PASSWORD)
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert!(page.location().starts_with(REDIRECT_URI));
    assert_eq!(
        page.location_param("state").as_deref(),
        Some(state.secret().as_str())
    );
    assert_eq!(
        page.location_param("iss").as_deref(),
        Some(fixture.oidc.issuer.as_str())
    );
    let code = page.location_param("code").expect("a code");
    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .expect("the token endpoint is known")
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("the code is exchanged");
    let id_token_verifier = client
        .id_token_verifier()
        .set_allowed_algs(vec![CoreJwsSigningAlgorithm::EdDsa]);
    let claims = tokens
        .id_token()
        .expect("an ID token")
        .claims(&id_token_verifier, &nonce)
        .expect("the ID token is valid");

    assert_eq!(claims.subject().as_str(), fixture.account.id);
    assert_eq!(claims.email().map(|email| email.as_str()), Some(EMAIL));
    let caller = fixture
        .verifier()
        .verify(tokens.access_token().secret())
        .await
        .expect("the access token verifies against the JWKS");
    assert_eq!(caller.subject, fixture.account.id);
    assert_eq!(caller.client_id, "shop");
    assert!(caller.has_role("catalog-manager"));
    assert!(tokens.refresh_token().is_some());
}

async fn public_clients_must_send_an_s256_challenge(backend: Backend) {
    let fixture = fixture(backend).await;
    let base = format!(
        "{}?response_type=code&client_id=shop&state=s1&redirect_uri={}",
        fixture.url("/oauth2/authorize"),
        form_urlencoded::byte_serialize(REDIRECT_URI.as_bytes()).collect::<String>()
    );

    let without = fixture.browser.get(&base).await;
    let plain = fixture
        .browser
        .get(&format!(
            "{base}&code_challenge={}&code_challenge_method=plain",
            "a".repeat(43)
        ))
        .await;

    for page in [&without, &plain] {
        assert_eq!(page.status, 303);
        assert!(page.location().starts_with(REDIRECT_URI));
        assert_eq!(
            page.location_param("error").as_deref(),
            Some("invalid_request")
        );
        assert_eq!(page.location_param("state").as_deref(), Some("s1"));
        assert!(page.location_param("code").is_none());
    }
}

async fn an_unregistered_client_or_redirect_uri_gets_an_error_page_not_a_redirect(
    backend: Backend,
) {
    let fixture = fixture(backend).await;
    let (_, challenge) = pkce();
    let other_uri = fixture
        .authorize_url(&challenge, &[])
        .replace("shop.test%2Fcallback", "evil.test%2Fcallback");
    let other_client = fixture
        .authorize_url(&challenge, &[])
        .replace("client_id=shop", "client_id=nobody");

    for url in [other_uri, other_client] {
        let page = fixture.browser.get(&url).await;
        assert_eq!(page.status, 400, "{}", page.body);
        assert!(page.headers.get(http::header::LOCATION).is_none());
        assert!(page.body.contains("role=\"alert\""));
    }
}

async fn the_pages_are_sent_with_the_security_headers(backend: Backend) {
    let fixture = fixture(backend).await;
    let (_, challenge) = pkce();
    let sign_in_page = fixture
        .browser
        .get(&fixture.authorize_url(&challenge, &[]))
        .await;
    let error_page = fixture
        .browser
        .get(&fixture.url("/oauth2/authorize?client_id=nobody"))
        .await;
    let sign_out_page = fixture.browser.get(&fixture.url("/oauth2/logout")).await;

    assert_eq!(sign_in_page.status, 200, "{}", sign_in_page.body);
    assert_eq!(error_page.status, 400, "{}", error_page.body);
    assert_eq!(sign_out_page.status, 200, "{}", sign_out_page.body);
    for page in [&sign_in_page, &error_page, &sign_out_page] {
        let header = |name: &str| page.headers[name].to_str().unwrap().to_owned();
        assert_eq!(header("content-type"), "text/html; charset=utf-8");
        assert_eq!(
            header("content-security-policy"),
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
        );
        assert_eq!(header("x-frame-options"), "DENY");
        assert_eq!(header("cache-control"), "no-store");
        assert_eq!(header("referrer-policy"), "no-referrer");
        assert_eq!(header("x-content-type-options"), "nosniff");
        assert!(page.body.starts_with("<!DOCTYPE html>"), "{}", page.body);
    }
    for page in [&sign_in_page, &sign_out_page] {
        let csrf_cookie = page.headers["set-cookie"].to_str().unwrap();
        assert!(csrf_cookie.starts_with("emporium_csrf="), "{csrf_cookie}");
        for attribute in [
            "HttpOnly",
            "SameSite=Strict",
            "Path=/oauth2",
            "Max-Age=3600",
        ] {
            assert!(
                csrf_cookie.contains(attribute),
                "{attribute} in {csrf_cookie}"
            );
        }
        // The issuer is plain http here; an https issuer's cookies are Secure.
        assert!(!csrf_cookie.contains("Secure"), "{csrf_cookie}");
    }
}

async fn markup_in_a_client_name_an_email_or_a_client_id_is_escaped(backend: Backend) {
    let fixture = fixture(backend).await;
    let app = &fixture.oidc.app;
    app.client()
        .update_client(app.admin(proto::UpdateClientRequest {
            client_id: "shop".to_owned(),
            expected_version: 1,
            name: Some("<script>alert('name')</script>".to_owned()),
            ..Default::default()
        }))
        .await
        .expect("the client is renamed");
    let (_, challenge) = pkce();
    let url = fixture.authorize_url(&challenge, &[]);

    let sign_in_page = fixture.browser.get(&url).await;
    let echoed_email = fixture
        .sign_in(
            &url,
            "\"><script>alert('email')</script>",
            "wrong password, again",
        )
        .await;
    let unknown_client = fixture
        .browser
        .get(
            &fixture
                .url("/oauth2/authorize?client_id=%3Cscript%3Ealert(%27client%27)%3C%2Fscript%3E"),
        )
        .await;

    assert_eq!(sign_in_page.status, 200);
    assert_eq!(echoed_email.status, 401, "{}", echoed_email.body);
    assert_eq!(unknown_client.status, 400, "{}", unknown_client.body);
    for (page, escaped) in [
        (&sign_in_page, "&lt;script&gt;alert('name')&lt;/script&gt;"),
        (
            &echoed_email,
            "value=\"&quot;&gt;&lt;script&gt;alert('email')&lt;/script&gt;\"",
        ),
        (
            &unknown_client,
            "&lt;script&gt;alert('client')&lt;/script&gt;",
        ),
    ] {
        assert!(!page.body.contains("<script"), "{}", page.body);
        assert!(page.body.contains(escaped), "{escaped} in {}", page.body);
    }
}

async fn an_unknown_email_and_a_wrong_password_get_the_same_answer(backend: Backend) {
    let fixture = fixture(backend).await;
    let (_, challenge) = pkce();
    let url = fixture.authorize_url(&challenge, &[]);

    let unknown = fixture.sign_in(&url, "nobody@example.com", PASSWORD).await;
    let wrong = fixture
        .sign_in(&url, EMAIL, "not the password at all")
        .await;

    assert_eq!(unknown.status, 401);
    assert_eq!(wrong.status, unknown.status);
    let normalize = |page: &Page, email: &str| {
        let csrf = page
            .hidden_fields()
            .into_iter()
            .find(|(name, _)| name == "csrf_token")
            .expect("a CSRF token")
            .1;
        page.body.replace(&csrf, "CSRF").replace(email, "EMAIL")
    };
    assert_eq!(
        normalize(&unknown, "nobody@example.com"),
        normalize(&wrong, EMAIL)
    );
    assert!(wrong.body.contains("The email or password is incorrect."));
}

async fn a_malformed_email_gets_the_wrong_password_answer_and_locks_nothing_out(backend: Backend) {
    let fixture = fixture(backend).await;
    let (_, challenge) = pkce();
    let url = fixture.authorize_url(&challenge, &[]);
    let too_long = format!("{}@example.com", "a".repeat(300));
    let malformed = [
        "nul\0byte@example.com",
        "bell\u{7}@example.com",
        "no-domain",
        too_long.as_str(),
    ];

    // Each one more often than an email may fail from one address: none of them is recorded.
    let mut pages = Vec::new();
    for email in malformed {
        for _ in 0..6 {
            pages.push(fixture.sign_in(&url, email, "wrong password, again").await);
        }
    }
    let admin = fixture.sign_in(&url, EMAIL, PASSWORD).await;

    for page in &pages {
        assert_eq!(page.status, 401, "{}", page.body);
        assert!(page.body.contains("The email or password is incorrect."));
    }
    assert_eq!(
        admin.status, 303,
        "the address is not locked out: {}",
        admin.body
    );
}

async fn failed_sign_ins_lock_an_email_out_from_that_address_until_the_window_passes(
    backend: Backend,
) {
    let fixture = fixture(backend).await;
    let (_, challenge) = pkce();
    let url = fixture.authorize_url(&challenge, &[]);
    for _ in 0..5 {
        let page = fixture.sign_in(&url, EMAIL, "wrong password, again").await;
        assert_eq!(page.status, 401);
    }

    let locked = fixture.sign_in(&url, EMAIL, PASSWORD).await;
    // An unknown email locks out the same way, so the lock-out reveals nothing either.
    for _ in 0..5 {
        fixture
            .sign_in(&url, "ghost@example.com", "wrong password, again")
            .await;
    }
    let ghost = fixture.sign_in(&url, "ghost@example.com", PASSWORD).await;
    fixture.oidc.clock.advance(Duration::from_secs(16 * 60));
    let after_window = fixture.sign_in(&url, EMAIL, PASSWORD).await;

    assert_eq!(locked.status, 429);
    assert!(
        locked
            .body
            .contains("Too many failed sign-in attempts. Wait 15 minutes")
    );
    assert_eq!(ghost.status, 429);
    assert_eq!(after_window.status, 303, "{}", after_window.body);
    assert!(after_window.location_param("code").is_some());
}

async fn failed_sign_ins_from_one_address_lock_that_address_out(backend: Backend) {
    let fixture = fixture(backend).await;
    let (_, challenge) = pkce();
    let url = fixture.authorize_url(&challenge, &[]);
    // 30 failures, each for a different email, so no single email is locked.
    for attempt in 0..30 {
        let page = fixture
            .sign_in(
                &url,
                &format!("guess{attempt}@example.com"),
                "wrong password, again",
            )
            .await;
        assert_eq!(page.status, 401);
    }

    let locked = fixture.sign_in(&url, EMAIL, PASSWORD).await;

    assert_eq!(locked.status, 429);
    assert!(locked.body.contains("Too many failed sign-in attempts"));
}

/// A provider behind a proxy on the loopback address, whose `X-Forwarded-For` it believes.
async fn behind_a_trusted_proxy(
    backend: Backend,
    configure: impl FnOnce(&mut OAuthSettings),
) -> Fixture {
    fixture_with(backend, |settings| {
        settings.trusted_proxies = TrustedProxies::parse("127.0.0.1, ::1").unwrap();
        configure(settings);
    })
    .await
}

async fn a_user_locked_out_from_one_address_can_still_sign_in_from_another(backend: Backend) {
    let fixture = behind_a_trusted_proxy(backend, |_| {}).await;
    let (_, challenge) = pkce();
    let url = fixture.authorize_url(&challenge, &[]);
    fixture
        .browser
        .forward_for(Some("198.51.100.23, 203.0.113.1"));
    for _ in 0..5 {
        let page = fixture.sign_in(&url, EMAIL, "wrong password, again").await;
        assert_eq!(page.status, 401);
    }

    let locked = fixture.sign_in(&url, EMAIL, PASSWORD).await;
    // The client wrote its own first entry; only the proxy's last one counts.
    fixture
        .browser
        .forward_for(Some("198.51.100.23, 203.0.113.2"));
    let elsewhere = fixture.sign_in(&url, EMAIL, PASSWORD).await;

    assert_eq!(locked.status, 429);
    assert!(locked.body.contains("Wait 15 minutes"), "{}", locked.body);
    assert_eq!(elsewhere.status, 303, "{}", elsewhere.body);
    assert!(elsewhere.location_param("code").is_some());
}

async fn forwarded_for_is_ignored_from_an_untrusted_peer(backend: Backend) {
    let fixture = fixture(backend).await;
    let (_, challenge) = pkce();
    let url = fixture.authorize_url(&challenge, &[]);
    fixture.browser.forward_for(Some("203.0.113.1"));
    for _ in 0..5 {
        let page = fixture.sign_in(&url, EMAIL, "wrong password, again").await;
        assert_eq!(page.status, 401);
    }

    fixture.browser.forward_for(Some("203.0.113.2"));
    let claimed_elsewhere = fixture.sign_in(&url, EMAIL, PASSWORD).await;

    assert_eq!(claimed_elsewhere.status, 429, "{}", claimed_elsewhere.body);
}

async fn failures_for_one_email_from_many_addresses_slow_it_down_then_lock_it(backend: Backend) {
    let fixture = behind_a_trusted_proxy(backend, |settings| {
        settings.lockout.free_failures_per_account = 3;
        settings.lockout.max_failures_per_account = 6;
    })
    .await;
    let (_, challenge) = pkce();
    let url = fixture.authorize_url(&challenge, &[]);
    let clock = &fixture.oidc.clock;
    let from = |address: u8, password: &'static str| {
        fixture
            .browser
            .forward_for(Some(&format!("203.0.113.{address}")));
        fixture.sign_in(&url, EMAIL, password)
    };
    for address in 1..=3 {
        assert_eq!(from(address, "wrong password, again").await.status, 401);
    }

    // Each failure past the free three doubles the wait before the next attempt, wherever from.
    let first_wait = from(4, PASSWORD).await;
    clock.advance(Duration::from_secs(1));
    let after_first_wait = from(4, "wrong password, again").await;
    let second_wait = from(5, PASSWORD).await;
    clock.advance(Duration::from_secs(2));
    let after_second_wait = from(5, PASSWORD).await;

    assert_eq!(first_wait.status, 429, "{}", first_wait.body);
    assert_eq!(first_wait.headers["retry-after"], "1");
    assert!(
        first_wait.body.contains("Wait 1 second"),
        "{}",
        first_wait.body
    );
    assert_eq!(after_first_wait.status, 401, "{}", after_first_wait.body);
    assert_eq!(second_wait.status, 429);
    assert_eq!(second_wait.headers["retry-after"], "2");
    // A success clears the email's failures.
    assert_eq!(after_second_wait.status, 303, "{}", after_second_wait.body);

    // Waiting out every delay, six failures from six addresses reach the email's limit.
    fixture.browser.forget_cookies();
    for address in 10..16 {
        clock.advance(Duration::from_secs(30));
        assert_eq!(from(address, "wrong password, again").await.status, 401);
    }
    clock.advance(Duration::from_secs(30));
    let locked = from(16, PASSWORD).await;

    assert_eq!(locked.status, 429, "{}", locked.body);
    assert!(locked.body.contains("Wait 15 minutes"), "{}", locked.body);
    assert_eq!(locked.headers["retry-after"], "900");
}

async fn a_code_is_single_use_and_its_replay_revokes_what_it_issued(backend: Backend) {
    let fixture = fixture(backend).await;
    let (code, verifier) = fixture.code().await;
    let first = fixture.exchange(&code, &verifier).await;
    assert_eq!(first.status, 200);
    let refresh_token = text(&first.json(), "refresh_token");

    let replay = fixture.exchange(&code, &verifier).await;
    let refresh = fixture.refresh(&refresh_token).await;

    assert_eq!(replay.status, 400);
    assert_eq!(text(&replay.json(), "error"), "invalid_grant");
    assert_eq!(refresh.status, 400, "the replay revoked the refresh token");
    assert_eq!(text(&refresh.json(), "error"), "invalid_grant");
}

async fn a_code_needs_the_matching_verifier_and_redirect_uri(backend: Backend) {
    let fixture = fixture(backend).await;
    let (code, _) = fixture.code().await;
    let (other_verifier, _) = pkce();
    let wrong_verifier = fixture.exchange(&code, &other_verifier).await;

    let (code, verifier) = fixture.code().await;
    let wrong_redirect = fixture
        .browser
        .post_form(
            &fixture.url("/oauth2/token"),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", "https://shop.test/other"),
                ("client_id", "shop"),
                ("code_verifier", &verifier),
            ],
        )
        .await;

    for page in [&wrong_verifier, &wrong_redirect] {
        assert_eq!(page.status, 400);
        assert_eq!(text(&page.json(), "error"), "invalid_grant");
        assert!(page.json().get("access_token").is_none());
    }
    assert_eq!(
        wrong_verifier
            .headers
            .get(http::header::CACHE_CONTROL)
            .unwrap(),
        "no-store"
    );
}

async fn refresh_tokens_rotate_and_a_reused_one_revokes_the_family(backend: Backend) {
    let fixture = fixture(backend).await;
    let tokens = fixture.tokens().await;
    let first_refresh = text(&tokens, "refresh_token");

    let rotated = fixture.refresh(&first_refresh).await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let second_refresh = text(&rotated.json(), "refresh_token");
    let access_token = text(&rotated.json(), "access_token");
    let reused = fixture.refresh(&first_refresh).await;
    let after_reuse = fixture.refresh(&second_refresh).await;

    assert_ne!(second_refresh, first_refresh);
    let caller = fixture.verifier().verify(&access_token).await.unwrap();
    assert_eq!(caller.subject, fixture.account.id);
    assert_eq!(reused.status, 400);
    assert_eq!(text(&reused.json(), "error"), "invalid_grant");
    assert_eq!(after_reuse.status, 400, "reuse revoked the whole family");
    assert_eq!(text(&after_reuse.json(), "error"), "invalid_grant");
}

async fn revoking_a_refresh_token_revokes_its_family(backend: Backend) {
    let fixture = fixture(backend).await;
    let tokens = fixture.tokens().await;
    let refresh_token = text(&tokens, "refresh_token");
    let revoke = |token: String| {
        let fixture = &fixture;
        async move {
            fixture
                .browser
                .post_form(
                    &fixture.url("/oauth2/revoke"),
                    &[("token", &token), ("client_id", "shop")],
                )
                .await
        }
    };

    let revoked = revoke(refresh_token.clone()).await;
    let unknown = revoke("not-a-token".to_owned()).await;
    let refresh = fixture.refresh(&refresh_token).await;

    assert_eq!(revoked.status, 200);
    assert_eq!(
        unknown.status, 200,
        "RFC 7009: unknown tokens are not an error"
    );
    assert_eq!(refresh.status, 400);
    assert_eq!(text(&refresh.json(), "error"), "invalid_grant");
}

async fn client_credentials_tokens_carry_the_client_roles(backend: Backend) {
    let fixture = fixture(backend).await;
    let token_url = fixture.url("/oauth2/token");
    let grant = [("grant_type", "client_credentials")];

    let issued = fixture
        .browser
        .post_form_basic(&token_url, ("billing", &fixture.billing_secret), &grant)
        .await;
    let wrong_secret = fixture
        .browser
        .post_form_basic(&token_url, ("billing", "not-the-secret"), &grant)
        .await;
    let public = fixture
        .browser
        .post_form(
            &token_url,
            &[("grant_type", "client_credentials"), ("client_id", "shop")],
        )
        .await;

    assert_eq!(issued.status, 200, "{}", issued.body);
    let tokens = issued.json();
    assert!(tokens.get("refresh_token").is_none());
    assert!(tokens.get("id_token").is_none());
    let caller = fixture
        .verifier()
        .verify(&text(&tokens, "access_token"))
        .await
        .expect("the token verifies");
    assert_eq!(caller.subject, "billing");
    assert_eq!(caller.roles, vec!["sales".to_owned()]);
    assert_eq!(wrong_secret.status, 401);
    assert_eq!(text(&wrong_secret.json(), "error"), "invalid_client");
    assert!(
        wrong_secret
            .headers
            .contains_key(http::header::WWW_AUTHENTICATE)
    );
    assert_eq!(public.status, 400);
    assert_eq!(text(&public.json(), "error"), "unauthorized_client");
}

async fn a_signed_in_browser_is_not_asked_again_until_it_signs_out(backend: Backend) {
    let fixture = fixture(backend).await;
    let tokens = fixture.tokens().await;
    let (_, challenge) = pkce();
    let again = fixture
        .browser
        .get(&fixture.authorize_url(&challenge, &[]))
        .await;
    assert_eq!(again.status, 303, "the session signs the browser in");
    assert!(again.location_param("code").is_some());

    let unregistered = fixture
        .browser
        .get(&format!(
            "{}?id_token_hint={}&post_logout_redirect_uri={}",
            fixture.url("/oauth2/logout"),
            text(&tokens, "id_token"),
            "https%3A%2F%2Fevil.test%2F"
        ))
        .await;
    let signed_out = fixture
        .browser
        .get(&format!(
            "{}?id_token_hint={}&post_logout_redirect_uri={}&state=bye",
            fixture.url("/oauth2/logout"),
            text(&tokens, "id_token"),
            form_urlencoded::byte_serialize(SIGNED_OUT_URI.as_bytes()).collect::<String>()
        ))
        .await;
    let refresh = fixture.refresh(&text(&tokens, "refresh_token")).await;
    let after = fixture
        .browser
        .get(&fixture.authorize_url(&challenge, &[]))
        .await;

    assert_eq!(unregistered.status, 400);
    assert_eq!(signed_out.status, 303);
    assert_eq!(signed_out.location(), format!("{SIGNED_OUT_URI}?state=bye"));
    assert!(fixture.browser.cookie("emporium_session").is_none());
    assert_eq!(
        refresh.status, 400,
        "signing out revoked the session's tokens"
    );
    assert_eq!(after.status, 200, "the sign-in page again");
    assert!(after.body.contains("<label for=\"password\">"));
    fixture.browser.forget_cookies();
}

async fn secrets_never_reach_the_logs(backend: Backend) {
    let logs = crate::logs::capture();
    let fixture = fixture(backend).await;
    let (_, challenge) = pkce();
    let url = fixture.authorize_url(&challenge, &[]);
    let wrong_password = "a wrong password that must not be logged";
    fixture.sign_in(&url, EMAIL, wrong_password).await;
    let tokens = fixture.tokens().await;
    let refreshed = fixture
        .refresh(&text(&tokens, "refresh_token"))
        .await
        .json();
    fixture.refresh(&text(&tokens, "refresh_token")).await; // a reuse, logged as a warning
    let machine = fixture
        .browser
        .post_form_basic(
            &fixture.url("/oauth2/token"),
            ("billing", &fixture.billing_secret),
            &[("grant_type", "client_credentials")],
        )
        .await
        .json();

    let captured = logs.contents();
    assert!(
        captured.contains("Rotated a refresh token"),
        "logs were captured"
    );
    for secret in [
        PASSWORD.to_owned(),
        wrong_password.to_owned(),
        fixture.billing_secret.clone(),
        text(&tokens, "access_token"),
        text(&tokens, "refresh_token"),
        text(&tokens, "id_token"),
        text(&refreshed, "refresh_token"),
        text(&machine, "access_token"),
    ] {
        assert!(!captured.contains(&secret), "a secret reached the logs");
    }
}
