//! The `customer_id` claim: an account holding `customer` carries the customer record it owns in
//! its access tokens (what `Caller::require_owner` checks); a staff account never does, even with
//! a customer record linked.

use base64::Engine as _;
use chassis::auth::{Caller, KeySource, TokenVerifier};
use emporium_proto::identity::v1 as proto;
use sha2::Digest as _;
use test_support::{Backend, TestIssuer, both_backends};

use crate::browser::Browser;
use crate::helpers::{IdentityApp as _, OidcApp, PASSWORD, spawn_oidc_app, valid_account};

both_backends!(
    a_customer_access_token_carries_the_customer_id,
    a_staff_access_token_carries_no_customer_id,
);

const REDIRECT_URI: &str = "https://shop.test/callback";
const CUSTOMER_ID: &str = "0190c1d2-3e4f-7a5b-8c6d-7e8f9a0b1c2d";

async fn a_customer_access_token_carries_the_customer_id(backend: Backend) {
    let oidc = spawn_oidc_app(backend).await;
    register_shop(&oidc).await;
    let account = linked_account(&oidc, "ada@example.com", "customer").await;

    let caller = sign_in(&oidc, "ada@example.com").await;

    assert_eq!(caller.subject, account.id);
    assert!(caller.has_role("customer"));
    assert_eq!(caller.customer_id.as_deref(), Some(CUSTOMER_ID));
    assert!(
        caller
            .require_owner(CUSTOMER_ID, &["sales"], "customer")
            .is_ok()
    );
}

async fn a_staff_access_token_carries_no_customer_id(backend: Backend) {
    let oidc = spawn_oidc_app(backend).await;
    register_shop(&oidc).await;
    let account = linked_account(&oidc, "grace@example.com", "admin").await;

    let caller = sign_in(&oidc, "grace@example.com").await;

    assert_eq!(caller.subject, account.id);
    assert!(caller.has_role("admin"));
    assert_eq!(caller.customer_id, None);
}

/// Registers the public client `shop`.
async fn register_shop(oidc: &OidcApp) {
    let app = &oidc.app;
    app.client()
        .create_client(app.admin(proto::CreateClientRequest {
            client_id: "shop".to_owned(),
            name: "The Shop".to_owned(),
            r#type: proto::ClientType::Public as i32,
            redirect_uris: vec![REDIRECT_URI.to_owned()],
            post_logout_redirect_uris: Vec::new(),
            roles: Vec::new(),
        }))
        .await
        .expect("the public client is registered");
}

/// An account owning `CUSTOMER_ID` and holding `role`.
async fn linked_account(oidc: &OidcApp, email: &str, role: &str) -> proto::Account {
    let app = &oidc.app;
    let account = app
        .client()
        .create_account(app.admin(proto::CreateAccountRequest {
            customer_id: CUSTOMER_ID.to_owned(),
            ..valid_account(email)
        }))
        .await
        .expect("the account is created")
        .into_inner();
    app.client()
        .grant_role(app.admin(proto::GrantRoleRequest {
            account_id: account.id.clone(),
            role: role.to_owned(),
            expected_version: account.version,
        }))
        .await
        .expect("the role is granted")
        .into_inner()
}

/// Signs `email` in to `shop` with PKCE, exchanges the code, and verifies the access token
/// against the provider's JWKS.
async fn sign_in(oidc: &OidcApp, email: &str) -> Caller {
    let browser = Browser::new();
    let url = |path: &str| format!("{}{path}", oidc.issuer);
    let verifier = format!("verifier-{}-{}", uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", "shop")
        .append_pair("redirect_uri", REDIRECT_URI)
        .append_pair("scope", "openid")
        .append_pair("state", "state-123")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .finish();
    let signed_in = browser
        .sign_in(
            &format!("{}?{query}", url("/oauth2/authorize")),
            email,
            PASSWORD,
        )
        .await;
    assert_eq!(signed_in.status, 303, "signed in: {}", signed_in.body);
    let code = signed_in.location_param("code").expect("a code");
    let tokens = browser
        .post_form(
            &url("/oauth2/token"),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT_URI),
                ("client_id", "shop"),
                ("code_verifier", &verifier),
            ],
        )
        .await;
    assert_eq!(tokens.status, 200, "tokens: {}", tokens.body);
    let access_token = tokens.json()["access_token"]
        .as_str()
        .expect("an access token")
        .to_owned();
    TokenVerifier::new(
        &oidc.issuer,
        TestIssuer::AUDIENCE,
        KeySource::Url(url("/.well-known/jwks.json")),
    )
    .verify(&access_token)
    .await
    .expect("the access token verifies against the JWKS")
}
