//! An account's link to the customer record it owns: set at creation, set or cleared by an
//! update, a UUID, never shared by two accounts, and in the account's events.

use emporium_proto::identity::v1 as proto;
use test_support::{Backend, both_backends, event_data, violated_fields};
use tonic::Code;

use crate::helpers::{IdentityApp as _, spawn_app, valid_account};

both_backends!(
    an_account_created_with_a_customer_id_reads_it_back,
    an_update_sets_and_clears_the_customer_id,
    a_customer_id_that_is_not_a_uuid_is_invalid,
    a_customer_id_is_owned_by_one_account_only,
);

const CUSTOMER_ID: &str = "0190c1d2-3e4f-7a5b-8c6d-7e8f9a0b1c2d";
const OTHER_CUSTOMER_ID: &str = "0190c1d2-3e4f-7a5b-8c6d-000000000002";

async fn an_account_created_with_a_customer_id_reads_it_back(backend: Backend) {
    let app = spawn_app(backend).await;

    let created = app
        .client()
        .create_account(app.admin(proto::CreateAccountRequest {
            customer_id: CUSTOMER_ID.to_owned(),
            ..valid_account("ada@example.com")
        }))
        .await
        .unwrap()
        .into_inner();
    let read = app.get_account(&created.id).await.unwrap();
    let unlinked = app.create_account("grace@example.com").await;

    assert_eq!(created.customer_id, CUSTOMER_ID);
    assert_eq!(read, created);
    assert_eq!(unlinked.customer_id, "");
}

async fn an_update_sets_and_clears_the_customer_id(backend: Backend) {
    let app = spawn_app(backend).await;
    let account = app.create_account("ada@example.com").await;

    let linked = app
        .client()
        .update_account(app.admin(proto::UpdateAccountRequest {
            id: account.id.clone(),
            expected_version: 1,
            customer_id: Some(CUSTOMER_ID.to_owned()),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let renamed = app
        .client()
        .update_account(app.admin(proto::UpdateAccountRequest {
            id: account.id.clone(),
            expected_version: 2,
            nickname: Some("Countess".to_owned()),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let unlinked = app
        .client()
        .update_account(app.admin(proto::UpdateAccountRequest {
            id: account.id.clone(),
            expected_version: 3,
            customer_id: Some(String::new()),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();

    assert_eq!(linked.customer_id, CUSTOMER_ID);
    assert_eq!(renamed.customer_id, CUSTOMER_ID, "an absent field keeps it");
    assert_eq!(unlinked.customer_id, "");
    assert_eq!(unlinked.version, 4);
    assert_eq!(app.get_account(&account.id).await.unwrap(), unlinked);
    let customer_ids: Vec<String> = app
        .events_of(&account.id)
        .await
        .iter()
        .filter(|event| event.r#type != "emporium.identity.audit.account.accessed")
        .map(|event| event_data::<proto::Account>(event).customer_id)
        .collect();
    assert_eq!(customer_ids, ["", CUSTOMER_ID, CUSTOMER_ID, "",]);
}

async fn a_customer_id_that_is_not_a_uuid_is_invalid(backend: Backend) {
    let app = spawn_app(backend).await;
    let account = app.create_account("ada@example.com").await;

    let created = app
        .client()
        .create_account(app.admin(proto::CreateAccountRequest {
            customer_id: "customer-42".to_owned(),
            ..valid_account("grace@example.com")
        }))
        .await
        .unwrap_err();
    let updated = app
        .client()
        .update_account(app.admin(proto::UpdateAccountRequest {
            id: account.id.clone(),
            expected_version: 1,
            customer_id: Some("customer-42".to_owned()),
            ..Default::default()
        }))
        .await
        .unwrap_err();

    for status in [created, updated] {
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(violated_fields(&status), ["customer_id"]);
    }
    assert_eq!(app.account_total().await, 1);
    assert_eq!(app.get_account(&account.id).await.unwrap(), account);
}

async fn a_customer_id_is_owned_by_one_account_only(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app
        .client()
        .create_account(app.admin(proto::CreateAccountRequest {
            customer_id: CUSTOMER_ID.to_owned(),
            ..valid_account("ada@example.com")
        }))
        .await
        .unwrap()
        .into_inner();
    let other = app
        .client()
        .create_account(app.admin(proto::CreateAccountRequest {
            customer_id: OTHER_CUSTOMER_ID.to_owned(),
            ..valid_account("grace@example.com")
        }))
        .await
        .unwrap()
        .into_inner();
    // Accounts without a customer record do not collide with each other.
    app.create_account("alan@example.com").await;
    app.create_account("edsger@example.com").await;

    let created = app
        .client()
        .create_account(app.admin(proto::CreateAccountRequest {
            customer_id: CUSTOMER_ID.to_owned(),
            ..valid_account("barbara@example.com")
        }))
        .await
        .unwrap_err();
    let updated = app
        .client()
        .update_account(app.admin(proto::UpdateAccountRequest {
            id: other.id.clone(),
            expected_version: 1,
            customer_id: Some(CUSTOMER_ID.to_owned()),
            ..Default::default()
        }))
        .await
        .unwrap_err();

    for status in [created, updated] {
        assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
        assert_eq!(violated_fields(&status), ["customer_id"]);
    }
    assert_eq!(app.account_total().await, 4);
    assert_eq!(app.get_account(&owner.id).await.unwrap(), owner);
    assert_eq!(app.get_account(&other.id).await.unwrap(), other);
}
