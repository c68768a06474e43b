//! `<resource>Changed` subscriptions through the gateway in front of the real catalog (both
//! backends): the changes come from the catalog's stream on the bus, through the outbox relay,
//! to the subscribers the contract lets read them.

mod common;

use chassis::auth::roles;
use common::Gateway;
use serde_json::json;
use test_support::{Backend, both_backends};

both_backends!(
    a_subscriber_receives_each_change_to_a_product_with_its_category,
    a_subscription_receives_only_the_changes_its_where_asks_for,
    a_subscription_is_refused_to_callers_the_contract_does_not_let_read,
    a_subscription_ends_when_its_token_expires,
);

const PRODUCT_CHANGED: &str =
    "subscription { productChanged { mutation node { id name version category { name } } } }";

async fn a_subscriber_receives_each_change_to_a_product_with_its_category(backend: Backend) {
    // Arrange
    let gateway = Gateway::spawn(backend).await;
    let id = gateway.sencha().await;
    // The category's and the product's creations are on the bus, so they come before.
    gateway.app.read_stream("catalog.>", 2).await;
    let mut changes = gateway
        .subscribe(PRODUCT_CHANGED, Some(&gateway.app.token))
        .await;

    // Act
    gateway
        .run(&format!(
            r#"mutation {{ updateProduct(where: {{ id: "{id}" }}, data: {{ expectedVersion: "1", name: "Sencha Superior" }}) {{ version }} }}"#
        ))
        .await;
    let updated = changes.next().await;
    gateway
        .run(&format!(
            r#"mutation {{ deleteProduct(where: {{ id: "{id}" }}, data: {{ expectedVersion: "2" }}) }}"#
        ))
        .await;
    let deleted = changes.next().await;

    // Assert
    assert_eq!(
        updated,
        json!({ "data": { "productChanged": { "mutation": "UPDATED", "node": {
            "id": id, "name": "Sencha Superior", "version": "2", "category": { "name": "Tea" }
        } } } })
    );
    assert_eq!(deleted["data"]["productChanged"]["mutation"], "DELETED");
    assert_eq!(deleted["data"]["productChanged"]["node"]["id"], id.as_str());
    assert_eq!(deleted["data"]["productChanged"]["node"]["version"], "3");
}

async fn a_subscription_receives_only_the_changes_its_where_asks_for(backend: Backend) {
    // Arrange
    let gateway = Gateway::spawn(backend).await;
    let category_id = gateway.create_category("Tea").await;
    let watched = gateway
        .create_product(&category_id, "TEA-1", "Sencha")
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = gateway
        .create_product(&category_id, "TEA-2", "Bancha")
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut deletions = gateway
        .subscribe(
            &format!(
                r#"subscription {{ productChanged(where: {{ mutation_in: [DELETED], node: {{ id: "{watched}" }} }}) {{ mutation node {{ id }} }} }}"#
            ),
            Some(&gateway.app.token),
        )
        .await;

    // Act: an update of the watched product and the deletion of another come first.
    for (id, change) in [
        (
            &watched,
            r#"updateProduct(where: { id: "ID" }, data: { expectedVersion: "1", name: "Sencha Superior" }) { id }"#,
        ),
        (
            &other,
            r#"deleteProduct(where: { id: "ID" }, data: { expectedVersion: "1" })"#,
        ),
        (
            &watched,
            r#"deleteProduct(where: { id: "ID" }, data: { expectedVersion: "2" })"#,
        ),
    ] {
        gateway
            .run(&format!("mutation {{ {} }}", change.replace("ID", id)))
            .await;
    }

    // Assert
    assert_eq!(
        deletions.next().await,
        json!({ "data": { "productChanged": { "mutation": "DELETED", "node": { "id": watched } } } })
    );
}

async fn a_subscription_is_refused_to_callers_the_contract_does_not_let_read(backend: Backend) {
    let gateway = Gateway::spawn(backend).await;
    let issuer = &gateway.app.issuer;
    let mut other_audience = issuer.claims("admin-1", &[roles::ADMIN]);
    other_audience.aud = "another-api".to_owned();
    let accounts = "subscription { accountChanged { mutation node { id } } }";
    for (query, token, code) in [
        (PRODUCT_CHANGED, None, "UNAUTHENTICATED"),
        (
            PRODUCT_CHANGED,
            Some(issuer.expired_token("manager-1", &[roles::CATALOG_MANAGER])),
            "UNAUTHENTICATED",
        ),
        (
            PRODUCT_CHANGED,
            Some(issuer.token_with(&other_audience)),
            "UNAUTHENTICATED",
        ),
        // Accounts are for admins only (their Get RPC's rule).
        (
            accounts,
            Some(issuer.token("manager-1", &[roles::CATALOG_MANAGER])),
            "FORBIDDEN",
        ),
    ] {
        let mut refused = gateway.subscribe(query, token.as_deref()).await;
        let answer = refused.next().await;
        assert_eq!(
            answer["errors"][0]["extensions"]["code"], code,
            "{query} with {token:?}: {answer}"
        );
        assert!(refused.has_ended().await, "{query} with {token:?} goes on");
    }
    assert_eq!(gateway.live_subscriptions(), 0);
}

async fn a_subscription_ends_when_its_token_expires(backend: Backend) {
    // Arrange: a token past its `exp` but within the 30 s leeway verifiers allow for clock
    // skew, so accepted for two more seconds.
    const LEEWAY_SECONDS: i64 = 30;
    let gateway = Gateway::spawn(backend).await;
    let id = gateway.sencha().await;
    // The category's and the product's creations are on the bus, so they come before.
    gateway.app.read_stream("catalog.>", 2).await;
    let issuer = &gateway.app.issuer;
    let mut claims = issuer.claims("manager-1", &[roles::CATALOG_MANAGER]);
    claims.exp = unix_now() - LEEWAY_SECONDS + 2;
    let short_lived = issuer.token_with(&claims);
    let mut changes = gateway.subscribe(PRODUCT_CHANGED, Some(&short_lived)).await;

    // Act: a change once no verifier accepts the token any more.
    test_support::eventually(
        std::time::Duration::from_secs(10),
        "the token to expire",
        || async { (unix_now() > claims.exp + LEEWAY_SECONDS).then_some(()) },
    )
    .await;
    gateway
        .run(&format!(
            r#"mutation {{ updateProduct(where: {{ id: "{id}" }}, data: {{ expectedVersion: "1", name: "Sencha Superior" }}) {{ version }} }}"#
        ))
        .await;

    // Assert
    let answer = changes.next().await;
    assert_eq!(
        answer["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{answer}"
    );
    assert!(answer["data"].is_null() || answer["data"]["productChanged"].is_null());
    assert!(changes.has_ended().await);
}

fn unix_now() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is past 1970");
    i64::try_from(since_epoch.as_secs()).expect("seconds fit in i64")
}
