//! Browser sessions against a stand-in OpenID provider (discovery, token and revocation
//! endpoints on a local port, recording what the gateway sent): the code exchanged with the
//! client's credentials and the PKCE verifier, a token about to expire refreshed before use, a
//! refresh token the provider refuses signing the browser out, and sign-out revoking; and a
//! process's ops API (a stand-in, recording what it was sent) reached with the session's token.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use base64::Engine as _;
use http_body_util::BodyExt as _;
use sha2::Digest as _;
use tower::ServiceExt as _;

/// What the stand-in provider was sent, and how it answers.
#[derive(Default)]
struct Provider {
    /// Every token request's form, in order.
    token_requests: Vec<Vec<(String, String)>>,
    authorization: Vec<String>,
    revoked: Vec<String>,
    /// The access tokens' lifetime in seconds (0: expired at once, so refreshed on every use).
    expires_in: u64,
    /// Whether refresh grants are refused (`invalid_grant`).
    refuse_refresh: bool,
    /// The roles of the client-credentials tokens it gives.
    client_roles: Vec<&'static str>,
}

async fn start_provider(provider: Arc<Mutex<Provider>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let discovery = serde_json::json!({
        "issuer": origin,
        "authorization_endpoint": format!("{origin}/authorize"),
        "token_endpoint": format!("{origin}/token"),
        "revocation_endpoint": format!("{origin}/revoke"),
        "end_session_endpoint": format!("{origin}/end-session"),
    });
    let token_provider = Arc::clone(&provider);
    let router = axum::Router::new()
        .route(
            "/.well-known/openid-configuration",
            axum::routing::get(move || async move { axum::Json(discovery) }),
        )
        .route(
            "/token",
            axum::routing::post(move |headers: http::HeaderMap, body: String| async move {
                let form: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
                    .into_owned()
                    .collect();
                let mut provider = token_provider.lock().unwrap();
                provider.authorization.push(
                    headers
                        .get("authorization")
                        .map(|value| value.to_str().unwrap().to_owned())
                        .unwrap_or_default(),
                );
                let n = provider.token_requests.len();
                let grant = |name: &str| {
                    form.iter()
                        .any(|(key, value)| key == "grant_type" && value == name)
                };
                let refresh = grant("refresh_token");
                let roles = if grant("client_credentials") {
                    provider.client_roles.clone()
                } else {
                    vec!["admin"]
                };
                provider.token_requests.push(form);
                if refresh && provider.refuse_refresh {
                    return (
                        http::StatusCode::BAD_REQUEST,
                        axum::Json(serde_json::json!({ "error": "invalid_grant" })),
                    );
                }
                (
                    http::StatusCode::OK,
                    axum::Json(serde_json::json!({
                        "access_token": fake_jwt(n, &roles),
                        "token_type": "Bearer",
                        "expires_in": provider.expires_in,
                        "refresh_token": format!("refresh-{n}"),
                        "id_token": format!("id-{n}"),
                    })),
                )
            }),
        )
        .route(
            "/revoke",
            axum::routing::post(move |body: String| async move {
                let token = form_urlencoded::parse(body.as_bytes())
                    .find(|(key, _)| key == "token")
                    .map(|(_, value)| value.into_owned())
                    .unwrap_or_default();
                provider.lock().unwrap().revoked.push(token);
                http::StatusCode::OK
            }),
        );
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    origin
}

/// An access token's shape with claims naming which token request made it and its roles (never
/// verified: the gateway only reads who is signed in from it, and whether its own is a
/// visitor's).
fn fake_jwt(n: usize, roles: &[&str]) -> String {
    let encode = |json: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json.to_string())
    };
    format!(
        "{}.{}.signature",
        encode(serde_json::json!({ "alg": "EdDSA", "typ": "at+jwt" })),
        encode(serde_json::json!({ "sub": format!("user-{n}"), "roles": roles, "exp": 0 }))
    )
}

fn gateway(provider_origin: &str) -> axum::Router {
    gateway_with_ops(provider_origin, Vec::new())
}

fn gateway_with_ops(provider_origin: &str, ops: Vec<gateway::ops::OpsOrigin>) -> axum::Router {
    let pool =
        contract::decode_pool(emporium_proto::FILE_DESCRIPTOR_SET).expect("the contract decodes");
    let limits = Default::default();
    let gateway = gateway::build(&pool, gateway::Upstream::new(), None, &limits).unwrap();
    let sessions = gateway::BrowserSessions::new(gateway::BrowserSignIn {
        issuer: provider_origin.to_owned(),
        client_id: "emporium-gateway".to_owned(),
        client_secret: "the gateway's secret".to_owned().into(),
        public_origin: "http://localhost:8080".to_owned(),
        http: chassis::http_client::HttpClient::new(&[]).unwrap(),
    })
    .with_ops(ops);
    gateway::router(gateway, &limits, Some(sessions), false)
}

/// GETs `path` with `cookies`: status, `Location`, the `Set-Cookie` pairs, the body.
async fn get(
    router: &axum::Router,
    path: &str,
    cookies: &[String],
) -> (u16, String, Vec<String>, String) {
    send(router, http::Request::get(path), cookies).await
}

async fn send(
    router: &axum::Router,
    mut request: http::request::Builder,
    cookies: &[String],
) -> (u16, String, Vec<String>, String) {
    if !cookies.is_empty() {
        request = request.header("cookie", cookies.join("; "));
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let set_cookies = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|value| {
            value
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        location,
        set_cookies,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

fn parameter(url: &str, name: &str) -> String {
    let query = url
        .split_once('?')
        .map(|(_, query)| query)
        .unwrap_or_default();
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
        .unwrap_or_else(|| panic!("{url} has no {name}"))
}

/// Signs a browser in: its session cookie.
async fn sign_in(router: &axum::Router) -> String {
    let (status, authorize, login_cookies, _) =
        get(router, "/auth/login?return_to=/admin/", &[]).await;
    assert_eq!(status, 303);
    let state = parameter(&authorize, "state");
    let (status, landing, session_cookies, body) = get(
        router,
        &format!("/auth/callback?code=the-code&state={state}"),
        &login_cookies,
    )
    .await;
    assert_eq!((status, landing.as_str()), (303, "/admin/"), "{body}");
    session_cookies
        .into_iter()
        .find(|cookie| cookie.starts_with("emporium-session="))
        .expect("a session cookie")
}

#[tokio::test]
async fn the_code_is_exchanged_with_the_clients_credentials_and_the_pkce_verifier() {
    let provider = Arc::new(Mutex::new(Provider {
        expires_in: 600,
        ..Provider::default()
    }));
    let router = gateway(&start_provider(Arc::clone(&provider)).await);

    let (_, authorize, login_cookies, _) = get(&router, "/auth/login", &[]).await;
    let state = parameter(&authorize, "state");
    let challenge = parameter(&authorize, "code_challenge");
    let (status, landing, _, _) = get(
        &router,
        &format!("/auth/callback?code=the-code&state={state}"),
        &login_cookies,
    )
    .await;

    assert_eq!((status, landing.as_str()), (303, "/"));
    assert_eq!(parameter(&authorize, "client_id"), "emporium-gateway");
    assert_eq!(
        parameter(&authorize, "redirect_uri"),
        "http://localhost:8080/auth/callback"
    );
    let provider = provider.lock().unwrap();
    let form = &provider.token_requests[0];
    let value = |name: &str| {
        form.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .unwrap_or_default()
    };
    assert_eq!(value("grant_type"), "authorization_code");
    assert_eq!(value("code"), "the-code");
    let verifier = value("code_verifier");
    assert_eq!(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(verifier.as_bytes())),
        challenge,
        "the verifier answers the challenge"
    );
    let basic =
        base64::engine::general_purpose::STANDARD.encode("emporium-gateway:the+gateway%27s+secret");
    assert_eq!(provider.authorization[0], format!("Basic {basic}"));
}

#[tokio::test]
async fn a_callback_without_this_browsers_login_cookie_is_refused() {
    let provider = Arc::new(Mutex::new(Provider::default()));
    let router = gateway(&start_provider(Arc::clone(&provider)).await);

    let (_, authorize, _, _) = get(&router, "/auth/login", &[]).await;
    let state = parameter(&authorize, "state");
    // Another browser (no login cookie) brings the code back.
    let (status, _, cookies, _) = get(
        &router,
        &format!("/auth/callback?code=the-code&state={state}"),
        &[],
    )
    .await;

    assert_eq!(status, 400);
    assert!(cookies.is_empty(), "{cookies:?}");
    assert!(provider.lock().unwrap().token_requests.is_empty());
}

#[tokio::test]
async fn a_token_about_to_expire_is_refreshed_and_a_refused_refresh_signs_out() {
    // Tokens that expire at once: each use refreshes first.
    let provider = Arc::new(Mutex::new(Provider::default()));
    let router = gateway(&start_provider(Arc::clone(&provider)).await);
    let session = sign_in(&router).await;

    let (_, _, _, first) = get(&router, "/auth/session", std::slice::from_ref(&session)).await;
    let (_, _, _, second) = get(&router, "/auth/session", std::slice::from_ref(&session)).await;
    provider.lock().unwrap().refuse_refresh = true;
    let (_, _, _, refused) = get(&router, "/auth/session", std::slice::from_ref(&session)).await;
    provider.lock().unwrap().refuse_refresh = false;
    let (_, _, _, after) = get(&router, "/auth/session", std::slice::from_ref(&session)).await;

    // Token request 0 was the code's; 1 and 2 refreshed with the refresh token in hand.
    assert!(first.contains(r#""subject":"user-1""#), "{first}");
    assert!(second.contains(r#""subject":"user-2""#), "{second}");
    assert!(refused.contains(r#""signedIn":false"#), "{refused}");
    assert!(
        after.contains(r#""signedIn":false"#),
        "the session is gone: {after}"
    );
    let provider = provider.lock().unwrap();
    let refreshed_with: Vec<&str> = provider.token_requests[1..]
        .iter()
        .filter_map(|form| {
            form.iter()
                .find(|(key, _)| key == "refresh_token")
                .map(|(_, value)| value.as_str())
        })
        .collect();
    assert_eq!(refreshed_with, ["refresh-0", "refresh-1", "refresh-2"]);
}

#[tokio::test]
async fn signing_out_revokes_ends_the_providers_session_and_only_from_this_site() {
    let provider = Arc::new(Mutex::new(Provider {
        expires_in: 600,
        ..Provider::default()
    }));
    let provider_origin = start_provider(Arc::clone(&provider)).await;
    let router = gateway(&provider_origin);
    let session = sign_in(&router).await;
    let logout =
        |origin: &'static str| http::Request::post("/auth/logout").header("origin", origin);

    let (cross_status, _, _, _) = send(
        &router,
        logout("https://evil.example"),
        std::slice::from_ref(&session),
    )
    .await;
    let (_, _, _, still) = get(&router, "/auth/session", std::slice::from_ref(&session)).await;
    let (status, location, cleared, _) = send(
        &router,
        logout("http://localhost:8080"),
        std::slice::from_ref(&session),
    )
    .await;
    let (_, _, _, after) = get(&router, "/auth/session", std::slice::from_ref(&session)).await;

    assert_eq!(cross_status, 403);
    assert!(still.contains(r#""signedIn":true"#), "{still}");
    // On to the provider, to end its session of this user too, and back to this origin.
    assert_eq!(status, 303);
    assert_eq!(
        location,
        format!(
            "{provider_origin}/end-session?id_token_hint=id-0&client_id=emporium-gateway\
             &post_logout_redirect_uri=http%3A%2F%2Flocalhost%3A8080%2F"
        )
    );
    assert_eq!(cleared, ["emporium-session="]);
    assert!(after.contains(r#""signedIn":false"#), "{after}");
    assert_eq!(provider.lock().unwrap().revoked, ["refresh-0"]);
}

/// POSTs the GraphQL `query` to `/graphql` with `headers`, as a program would (no cookie).
async fn post_graphql(router: &axum::Router, query: &str, headers: &[(&str, &str)]) -> u16 {
    let mut request = http::Request::post("/graphql").header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = serde_json::json!({ "query": query }).to_string();
    let response = router
        .clone()
        .oneshot(request.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    response.status().as_u16()
}

/// The grant types of the token requests `provider` was sent.
fn grants(provider: &Mutex<Provider>) -> Vec<String> {
    provider
        .lock()
        .unwrap()
        .token_requests
        .iter()
        .filter_map(|form| {
            form.iter()
                .find(|(key, _)| key == "grant_type")
                .map(|(_, value)| value.clone())
        })
        .collect()
}

#[tokio::test]
async fn a_visitors_queries_share_one_client_credentials_token_and_a_mutation_gets_none() {
    let provider = Arc::new(Mutex::new(Provider {
        expires_in: 600,
        client_roles: vec!["visitor"],
        ..Provider::default()
    }));
    let router = gateway(&start_provider(Arc::clone(&provider)).await);

    post_graphql(&router, "{ products(first: 1) { id } }", &[]).await;
    post_graphql(&router, "query { categories(first: 1) { id } }", &[]).await;
    let after_queries = grants(&provider);
    post_graphql(
        &router,
        r#"mutation { deleteProduct(where: { id: "x" }) { id } }"#,
        &[],
    )
    .await;
    post_graphql(
        &router,
        "{ products(first: 1) { id } }",
        &[("authorization", "Bearer a-callers-own-token")],
    )
    .await;

    // One token for both visitor queries, asked with the client's credentials; none for the
    // mutation (refused as unauthenticated) nor for a caller with a token of its own.
    assert_eq!(after_queries, ["client_credentials"]);
    assert_eq!(grants(&provider), ["client_credentials"]);
    let basic =
        base64::engine::general_purpose::STANDARD.encode("emporium-gateway:the+gateway%27s+secret");
    assert_eq!(
        provider.lock().unwrap().authorization,
        [format!("Basic {basic}")]
    );
}

#[tokio::test]
async fn a_token_that_is_no_visitors_is_not_asked_for_again_on_every_visit() {
    let provider = Arc::new(Mutex::new(Provider {
        expires_in: 600,
        client_roles: vec!["admin", "visitor"],
        ..Provider::default()
    }));
    let router = gateway(&start_provider(Arc::clone(&provider)).await);

    post_graphql(&router, "{ products(first: 1) { id } }", &[]).await;
    post_graphql(&router, "{ products(first: 1) { id } }", &[]).await;

    assert_eq!(grants(&provider), ["client_credentials"]);
}

/// What a stand-in ops API was sent: each request's method, path and query, `authorization`
/// and body.
type OpsRequests = Arc<Mutex<Vec<(String, String, String, String)>>>;

async fn start_ops_api(requests: OpsRequests) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let router = axum::Router::new().fallback(
        move |method: http::Method, uri: http::Uri, headers: http::HeaderMap, body: String| async move {
            let authorization = headers
                .get("authorization")
                .map(|value| value.to_str().unwrap().to_owned())
                .unwrap_or_default();
            requests
                .lock()
                .unwrap()
                .push((method.to_string(), uri.to_string(), authorization, body));
            (http::StatusCode::ACCEPTED, r#"{"answered":true}"#)
        },
    );
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    origin
}

#[tokio::test]
async fn a_sessions_browser_reaches_a_processs_ops_api_with_the_sessions_token() {
    let provider = Arc::new(Mutex::new(Provider {
        expires_in: 600,
        ..Provider::default()
    }));
    let requests = OpsRequests::default();
    let ops = gateway::ops::OpsOrigin {
        name: "suite".to_owned(),
        url: start_ops_api(Arc::clone(&requests)).await,
    };
    let router = gateway_with_ops(&start_provider(Arc::clone(&provider)).await, vec![ops]);
    let session = sign_in(&router).await;
    let cookie = std::slice::from_ref(&session);
    let redrive = |origin: &'static str| {
        http::Request::post("/admin/api/ops/suite/v1/dead-letters/redrive")
            .header("origin", origin)
            .header("content-type", "application/json")
    };
    let post = |request: http::request::Builder, cookies: &[String]| {
        let mut request = request;
        if !cookies.is_empty() {
            request = request.header("cookie", cookies.join("; "));
        }
        router
            .clone()
            .oneshot(request.body(Body::from(r#"{"sequence":1}"#)).unwrap())
    };

    let (_, _, _, directory) = get(&router, "/admin/api/ops", &[]).await;
    let (status, _, _, answer) =
        get(&router, "/admin/api/ops/suite/v1/traces?limit=5", cookie).await;
    let redriven = post(redrive("http://localhost:8080"), cookie)
        .await
        .unwrap();
    let cross_site = post(redrive("https://evil.example"), cookie).await.unwrap();
    let (signed_out, _, _, _) = get(&router, "/admin/api/ops/suite/v1/status", &[]).await;
    let (unknown, _, _, _) = get(&router, "/admin/api/ops/other/v1/status", cookie).await;

    // The processes and the role their ops API admits; the answer as the process gave it.
    let directory: serde_json::Value = serde_json::from_str(&directory).unwrap();
    assert_eq!(
        directory,
        serde_json::json!({ "processes": ["suite"], "roles": ["admin"] })
    );
    assert_eq!((status, answer.as_str()), (202, r#"{"answered":true}"#));
    assert_eq!(redriven.status(), 202);
    // Refused by the gateway, never forwarded: a change from another site, no session, no
    // such process.
    assert_eq!(cross_site.status(), 403);
    assert_eq!(signed_out, 401);
    assert_eq!(unknown, 404);
    let token = format!("Bearer {}", fake_jwt(0, &["admin"]));
    assert_eq!(
        *requests.lock().unwrap(),
        [
            (
                "GET".to_owned(),
                "/ops/v1/traces?limit=5".to_owned(),
                token.clone(),
                String::new()
            ),
            (
                "POST".to_owned(),
                "/ops/v1/dead-letters/redrive".to_owned(),
                token,
                r#"{"sequence":1}"#.to_owned()
            ),
        ]
    );
}
