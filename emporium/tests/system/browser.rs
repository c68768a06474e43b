//! A browser signed in through the gateway (`emporium up`): code + PKCE against identity with
//! the gateway as the confidential client, a session cookie the page's JavaScript cannot read
//! and no token anywhere the browser sees, mutations refused when they come from another site,
//! and a sign-out that ends the session, identity's too (signing in again asks for the
//! password); a visitor who has not signed in reads the catalog and
//! nothing else.

use crate::up::{ADMIN_EMAIL, Browser, Suite, generated_password};

const CREATE_TEA: &str =
    r#"{"query": "mutation { createCategory(data: { name: \"Tea\" }) { name } }"}"#;
const COUNT: &str = r#"{"query": "{ categoriesConnection(first: 1) { aggregate { count } } }"}"#;
const ACCOUNTS: &str = r#"{"query": "{ accounts(first: 1) { email } }"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_signs_in_through_the_gateway_without_ever_holding_a_token() {
    // Arrange
    let scratch = std::env::temp_dir().join(format!("emporium-bff-{}", uuid::Uuid::new_v4()));
    let suite = Suite::new(&scratch);
    let mut up = suite.start();
    let password = generated_password(&up.banner());
    let origin = suite.issuer.clone();
    let graphql = format!("{origin}/graphql");
    let mut browser = Browser::new();
    let mut seen = String::new();

    // Act: sign in.
    let (status, authorize, _) = browser
        .send(
            "GET",
            &format!("{origin}/auth/login?return_to=/admin/"),
            Vec::new(),
        )
        .await;
    assert_eq!(status, 303, "the login sends the browser to identity");
    let authorize = authorize.expect("a redirect");
    assert!(
        authorize.starts_with(&format!("{origin}/oauth2/authorize?"))
            && authorize.contains("client_id=emporium-gateway")
            && authorize.contains("code_challenge_method=S256"),
        "{authorize}"
    );
    let callback = browser
        .submit_sign_in(&authorize, ADMIN_EMAIL, &password)
        .await;
    let (status, landing, body) = browser.send("GET", &callback, Vec::new()).await;
    seen.push_str(&body);
    assert_eq!(status, 303, "{body}");
    assert_eq!(landing.as_deref(), Some("/admin/"));
    let (status, _, session) = browser
        .send("GET", &format!("{origin}/auth/session"), Vec::new())
        .await;
    seen.push_str(&session);
    assert_eq!(status, 200);
    let session: serde_json::Value = serde_json::from_str(&session).unwrap();

    // A mutation from the page, as `fetch` sends it: the cookie and this origin.
    let same_site = [
        ("content-type", "application/json"),
        ("origin", origin.as_str()),
    ];
    let (status, _, created) = browser
        .send_with("POST", &graphql, &same_site, CREATE_TEA.into())
        .await;
    seen.push_str(&created);
    // The same request from another site, and one that says nothing of where it comes from.
    let (cross_status, _, cross) = browser
        .send_with(
            "POST",
            &graphql,
            &[
                ("content-type", "application/json"),
                ("origin", "https://evil.example"),
            ],
            CREATE_TEA.into(),
        )
        .await;
    let (silent_status, _, _) = browser
        .send_with(
            "POST",
            &graphql,
            &[("content-type", "application/json")],
            CREATE_TEA.into(),
        )
        .await;
    let (_, _, count) = browser
        .send_with("POST", &graphql, &same_site, COUNT.into())
        .await;
    // A visitor who has not signed in (no cookie, no token): the catalog is open to read
    // through the gateway's visitor token, and nothing else.
    let mut visitor = Browser::new();
    let json = [("content-type", "application/json")];
    let (_, _, visitor_count) = visitor
        .send_with("POST", &graphql, &json, COUNT.into())
        .await;
    let (_, _, visitor_accounts) = visitor
        .send_with("POST", &graphql, &json, ACCOUNTS.into())
        .await;
    let (_, _, visitor_create) = visitor
        .send_with("POST", &graphql, &json, CREATE_TEA.into())
        .await;

    // Sign out, on to identity to end its session too, and back.
    let (logout_status, end_session, _) = browser
        .send_with(
            "POST",
            &format!("{origin}/auth/logout"),
            &[("origin", origin.as_str())],
            Vec::new(),
        )
        .await;
    let end_session = end_session.expect("sign-out goes on to identity");
    let (ended_status, back, _) = browser.send("GET", &end_session, Vec::new()).await;
    // Signing in again asks for the password: identity no longer knows this browser.
    let (_, authorize_again, _) = browser
        .send("GET", &format!("{origin}/auth/login"), Vec::new())
        .await;
    let (again_status, _, sign_in_again) = browser
        .send("GET", &authorize_again.expect("a redirect"), Vec::new())
        .await;
    let (_, _, after_logout) = browser
        .send("GET", &format!("{origin}/auth/session"), Vec::new())
        .await;
    let (_, _, refused) = browser
        .send_with("POST", &graphql, &same_site, CREATE_TEA.into())
        .await;
    up.stop();

    // Assert
    assert_eq!(session["signedIn"], true, "{session}");
    assert!(
        session["roles"]
            .as_array()
            .is_some_and(|roles| roles.iter().any(|role| role == "admin")),
        "{session}"
    );
    assert_eq!(status, 200);
    assert!(
        created.contains(r#""createCategory":{"name":"Tea"}"#),
        "{created}"
    );
    assert_eq!(cross_status, 403, "{cross}");
    assert!(cross.contains("FORBIDDEN"), "{cross}");
    assert_eq!(silent_status, 403);
    assert!(
        count.contains(r#""count":"1""#),
        "only the same-site mutation changed anything: {count}"
    );
    assert!(
        visitor_count.contains(r#""count":"1""#),
        "a visitor reads the catalog: {visitor_count}"
    );
    assert!(
        visitor_accounts.contains("FORBIDDEN"),
        "a visitor reads no accounts: {visitor_accounts}"
    );
    assert!(
        visitor_create.contains("UNAUTHENTICATED"),
        "a visitor changes nothing: {visitor_create}"
    );
    let session_cookie = browser
        .set_cookies
        .iter()
        .find(|line| {
            line.starts_with("emporium-session=") && !line.starts_with("emporium-session=;")
        })
        .expect("a session cookie");
    assert!(
        session_cookie.contains("HttpOnly") && session_cookie.contains("SameSite=Lax"),
        "{session_cookie}"
    );
    // No token ever reached the browser: no JWT (`eyJ…`) in any body or cookie it was given.
    assert!(!seen.contains("eyJ"), "a token reached the browser: {seen}");
    assert!(
        browser.set_cookies.iter().all(|line| !line.contains("eyJ")),
        "{:?}",
        browser.set_cookies
    );
    assert_eq!(logout_status, 303);
    assert!(
        end_session.starts_with(&format!("{origin}/oauth2/logout?id_token_hint=")),
        "{end_session}"
    );
    assert_eq!(
        (ended_status, back.as_deref()),
        (303, Some(format!("{origin}/").as_str()))
    );
    assert!(
        again_status == 200 && sign_in_again.contains(r#"name="password""#),
        "{again_status}: {sign_in_again}"
    );
    assert!(
        after_logout.contains(r#""signedIn":false"#),
        "{after_logout}"
    );
    assert!(refused.contains("UNAUTHENTICATED"), "{refused}");
    let _ = std::fs::remove_dir_all(&scratch);
}
