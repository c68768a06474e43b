//! Events: one per change, in version order, never carrying a password; account reads leave an
//! `accessed` audit event naming the caller.

use emporium_proto::identity::v1 as proto;
use test_support::{Backend, both_backends, event_data};

use crate::helpers::{IdentityApp as _, PASSWORD, spawn_app};

both_backends!(
    every_change_records_one_event_in_version_order,
    a_change_event_names_the_caller_and_its_client,
    reading_an_account_records_who_accessed_it,
    listing_accounts_records_who_accessed_each_account_returned,
    no_password_ever_appears_in_events_or_errors,
);

async fn every_change_records_one_event_in_version_order(backend: Backend) {
    let app = spawn_app(backend).await;
    let account = app.create_account("ada@example.com").await;
    app.client()
        .update_account(app.admin(proto::UpdateAccountRequest {
            id: account.id.clone(),
            expected_version: 1,
            disabled: Some(true),
            ..Default::default()
        }))
        .await
        .unwrap();
    app.client()
        .set_password(app.admin(proto::SetPasswordRequest {
            id: account.id.clone(),
            expected_version: 2,
            password: "a brand new passphrase".to_owned(),
        }))
        .await
        .unwrap();
    app.client()
        .delete_account(app.admin(proto::DeleteAccountRequest {
            id: account.id.clone(),
            expected_version: 3,
        }))
        .await
        .unwrap();

    let events = app.events_of(&account.id).await;

    let summary: Vec<(&str, i64, &str)> = events
        .iter()
        .map(|event| {
            (
                event.r#type.as_str(),
                event.aggregate_version,
                event.actor.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("emporium.identity.account.created", 1, "admin-1"),
            ("emporium.identity.account.updated", 2, "admin-1"),
            ("emporium.identity.account.password_changed", 3, "admin-1"),
            ("emporium.identity.account.deleted", 4, "admin-1"),
        ]
    );
    let password_change: proto::Account = event_data(&events[2]);
    assert_eq!(password_change.version, 3);
    assert!(password_change.disabled);
    let deleted: proto::Account = event_data(&events[3]);
    assert_eq!((deleted.id, deleted.version), (account.id.clone(), 4));
}

async fn a_change_event_names_the_caller_and_its_client(backend: Backend) {
    let app = spawn_app(backend).await;
    let account = app.create_account("ada@example.com").await;
    let admin_token = app.issuer.token_with(&chassis::auth::Claims {
        client_id: "backoffice".to_owned(),
        ..app.issuer.claims("admin-7", &["admin"])
    });

    app.client()
        .update_account(test_support::with_token(
            proto::UpdateAccountRequest {
                id: account.id.clone(),
                expected_version: 1,
                nickname: Some("ada".to_owned()),
                ..Default::default()
            },
            &admin_token,
        ))
        .await
        .unwrap();

    let events = app.events_of(&account.id).await;
    let actors: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|event| {
            (
                event.r#type.as_str(),
                event.actor.as_str(),
                event.actor_client_id.as_str(),
            )
        })
        .collect();
    assert_eq!(
        actors,
        [
            ("emporium.identity.account.created", "admin-1", "test"),
            ("emporium.identity.account.updated", "admin-7", "backoffice"),
        ]
    );
}

async fn reading_an_account_records_who_accessed_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let account = app.create_account("ada@example.com").await;
    let auditor = app.issuer.token("auditor-7", &["admin"]);

    app.client()
        .get_account(test_support::with_token(
            proto::GetAccountRequest {
                id: account.id.clone(),
            },
            &auditor,
        ))
        .await
        .unwrap();
    app.client()
        .batch_get_accounts(app.admin(proto::BatchGetAccountsRequest {
            ids: vec![account.id.clone()],
        }))
        .await
        .unwrap();

    let accesses: Vec<(i64, proto::AccountAccessed)> = app
        .events_of(&account.id)
        .await
        .into_iter()
        .filter(|event| event.r#type == "emporium.identity.audit.account.accessed")
        .map(|event| {
            (
                event.aggregate_version,
                event_data::<proto::AccountAccessed>(&event),
            )
        })
        .collect();
    assert_eq!(
        accesses,
        [
            (1, accessed(&account.id, "auditor-7")),
            (1, accessed(&account.id, "admin-1")),
        ]
    );
}

async fn listing_accounts_records_who_accessed_each_account_returned(backend: Backend) {
    let app = spawn_app(backend).await;
    let ada = app.create_account("ada@example.com").await;
    let grace = app.create_account("grace@example.com").await;
    let linus = app.create_account("linus@example.com").await;
    let auditor = app.issuer.token("auditor-7", &["admin"]);

    let page = app
        .client()
        .list_accounts(test_support::with_token(
            proto::ListAccountsRequest {
                page_size: 2,
                ..Default::default()
            },
            &auditor,
        ))
        .await
        .unwrap()
        .into_inner();

    let listed: Vec<&str> = page
        .accounts
        .iter()
        .map(|account| account.id.as_str())
        .collect();
    assert_eq!(listed, [ada.id.as_str(), grace.id.as_str()]);
    for account in [&ada, &grace, &linus] {
        let accesses: Vec<proto::AccountAccessed> = app
            .events_of(&account.id)
            .await
            .into_iter()
            .filter(|event| event.r#type == "emporium.identity.audit.account.accessed")
            .map(|event| {
                assert_eq!(event.actor, "auditor-7");
                event_data(&event)
            })
            .collect();
        let expected = if account.id == linus.id {
            Vec::new()
        } else {
            vec![accessed(&account.id, "auditor-7")]
        };
        assert_eq!(accesses, expected, "accesses of {}", account.email);
    }
}

async fn no_password_ever_appears_in_events_or_errors(backend: Backend) {
    let app = spawn_app(backend).await;
    let account = app.create_account("ada@example.com").await;
    let new_password = "a brand new passphrase";
    app.client()
        .set_password(app.admin(proto::SetPasswordRequest {
            id: account.id.clone(),
            expected_version: 1,
            password: new_password.to_owned(),
        }))
        .await
        .unwrap();
    let too_long = "p".repeat(129);
    let refused = app
        .client()
        .set_password(app.admin(proto::SetPasswordRequest {
            id: account.id.clone(),
            expected_version: 2,
            password: too_long.clone(),
        }))
        .await
        .unwrap_err();
    let stale = app
        .client()
        .set_password(app.admin(proto::SetPasswordRequest {
            id: account.id.clone(),
            expected_version: 1,
            password: "yet another passphrase".to_owned(),
        }))
        .await
        .unwrap_err();
    app.get_account(&account.id).await.unwrap();

    let events = app.events_of(&account.id).await;

    assert_eq!(events.len(), 3, "{events:?}");
    for event in &events {
        for secret in [PASSWORD, new_password, "$argon2", "password_hash"] {
            assert!(
                !event.data_json.contains(secret),
                "{secret} in {}",
                event.data_json
            );
        }
    }
    for status in [refused, stale] {
        let text = format!("{status:?}");
        assert!(!text.contains(&too_long), "{text}");
        assert!(!text.contains("yet another passphrase"), "{text}");
    }
    let debug = format!(
        "{:?}",
        proto::SetPasswordRequest {
            id: account.id.clone(),
            expected_version: 1,
            password: new_password.to_owned(),
        }
    );
    assert!(!debug.contains(new_password), "{debug}");
}

fn accessed(account_id: &str, accessed_by: &str) -> proto::AccountAccessed {
    proto::AccountAccessed {
        account_id: account_id.to_owned(),
        accessed_by: accessed_by.to_owned(),
    }
}
