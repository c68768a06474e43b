//! Account CRUD, validation, email uniqueness, optimistic concurrency, listing and batch reads.

use emporium_proto::identity::v1 as proto;
use test_support::{Backend, backend_independent, both_backends, violated_fields};
use tonic::Code;

use crate::helpers::{IdentityApp as _, spawn_app, valid_account};

both_backends!(
    a_created_account_can_be_read_back_without_any_password,
    emails_are_unique_whatever_their_case,
    an_update_changes_only_the_given_fields,
    an_update_with_a_stale_version_is_aborted_and_changes_nothing,
    a_deleted_account_is_gone,
    batch_get_answers_in_request_order_and_names_the_missing,
    lists_filter_by_country_and_text_and_page_with_a_total,
    later_pages_report_the_count_taken_by_the_first,
);

// What these check happens before storage or the bus is reached: once is enough.
backend_independent!(every_invalid_field_is_reported_and_nothing_changes,);

async fn a_created_account_can_be_read_back_without_any_password(backend: Backend) {
    let app = spawn_app(backend).await;

    let created = app.create_account("  Ada@Example.COM ").await;
    let read = app.get_account(&created.id).await.unwrap();

    assert_eq!(read, created);
    assert_eq!(read.email, "ada@example.com");
    assert_eq!(read.first_name, "Ada");
    assert_eq!(read.country, "GB");
    assert!(!read.disabled);
    assert!(read.roles.is_empty());
    assert_eq!(read.version, 1);
    assert_eq!(read.create_time, read.update_time);
}

async fn every_invalid_field_is_reported_and_nothing_changes(backend: Backend) {
    let app = spawn_app(backend).await;
    let valid = valid_account("ada@example.com");
    let cases: Vec<(proto::CreateAccountRequest, Vec<&str>)> = vec![
        (
            proto::CreateAccountRequest {
                email: "not an email".to_owned(),
                ..valid.clone()
            },
            vec!["email"],
        ),
        (
            proto::CreateAccountRequest {
                email: String::new(),
                ..valid.clone()
            },
            vec!["email"],
        ),
        (
            proto::CreateAccountRequest {
                country: "fr".to_owned(),
                ..valid.clone()
            },
            vec!["country"],
        ),
        (
            proto::CreateAccountRequest {
                country: "FRA".to_owned(),
                ..valid.clone()
            },
            vec!["country"],
        ),
        (
            proto::CreateAccountRequest {
                password: "short".to_owned(),
                ..valid.clone()
            },
            vec!["password"],
        ),
        (
            proto::CreateAccountRequest {
                first_name: "   ".to_owned(),
                ..valid.clone()
            },
            vec!["first_name"],
        ),
        (
            proto::CreateAccountRequest {
                last_name: String::new(),
                nickname: "n".repeat(101),
                ..valid.clone()
            },
            vec!["last_name", "nickname"],
        ),
        (
            proto::CreateAccountRequest {
                email: "x".to_owned(),
                first_name: String::new(),
                country: "fr".to_owned(),
                password: "short".to_owned(),
                ..valid.clone()
            },
            vec!["country", "email", "first_name", "password"],
        ),
    ];

    for (request, expected_fields) in cases {
        let status = app
            .client()
            .create_account(app.admin(request))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(violated_fields(&status), expected_fields, "{status:?}");
        assert!(!status.message().contains("short"), "{status:?}");
    }
    assert_eq!(app.account_total().await, 0);
}

async fn emails_are_unique_whatever_their_case(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = app.create_account("ada@example.com").await;
    let other = app.create_account("grace@example.com").await;

    let created = app
        .client()
        .create_account(app.admin(valid_account("ADA@Example.com")))
        .await
        .unwrap_err();
    let updated = app
        .client()
        .update_account(app.admin(proto::UpdateAccountRequest {
            id: other.id.clone(),
            expected_version: 1,
            email: Some("Ada@EXAMPLE.com".to_owned()),
            ..Default::default()
        }))
        .await
        .unwrap_err();

    for status in [created, updated] {
        assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
        assert_eq!(violated_fields(&status), ["email"]);
    }
    assert_eq!(app.account_total().await, 2);
    assert_eq!(app.get_account(&first.id).await.unwrap().version, 1);
    assert_eq!(
        app.get_account(&other.id).await.unwrap().email,
        "grace@example.com"
    );
}

async fn an_update_changes_only_the_given_fields(backend: Backend) {
    let app = spawn_app(backend).await;
    let account = app.create_account("ada@example.com").await;

    let updated = app
        .client()
        .update_account(app.admin(proto::UpdateAccountRequest {
            id: account.id.clone(),
            expected_version: 1,
            nickname: Some("Countess".to_owned()),
            country: Some("FR".to_owned()),
            disabled: Some(true),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();

    assert_eq!(updated.version, 2);
    assert_eq!(updated.nickname, "Countess");
    assert_eq!(updated.country, "FR");
    assert!(updated.disabled);
    assert_eq!(updated.email, account.email);
    assert_eq!(updated.first_name, account.first_name);
    assert_eq!(app.get_account(&account.id).await.unwrap(), updated);
}

async fn an_update_with_a_stale_version_is_aborted_and_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let account = app.create_account("ada@example.com").await;
    app.client()
        .update_account(app.admin(proto::UpdateAccountRequest {
            id: account.id.clone(),
            expected_version: 1,
            first_name: Some("Augusta".to_owned()),
            ..Default::default()
        }))
        .await
        .unwrap();

    let stale_update = app
        .client()
        .update_account(app.admin(proto::UpdateAccountRequest {
            id: account.id.clone(),
            expected_version: 1,
            first_name: Some("Stale".to_owned()),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    let stale_password = app
        .client()
        .set_password(app.admin(proto::SetPasswordRequest {
            id: account.id.clone(),
            expected_version: 1,
            password: "another long password".to_owned(),
        }))
        .await
        .unwrap_err();
    let stale_delete = app
        .client()
        .delete_account(app.admin(proto::DeleteAccountRequest {
            id: account.id.clone(),
            expected_version: 1,
        }))
        .await
        .unwrap_err();

    for status in [stale_update, stale_password, stale_delete] {
        assert_eq!(status.code(), Code::Aborted, "{status:?}");
    }
    let read = app.get_account(&account.id).await.unwrap();
    assert_eq!(read.first_name, "Augusta");
    assert_eq!(read.version, 2);
}

async fn a_deleted_account_is_gone(backend: Backend) {
    let app = spawn_app(backend).await;
    let account = app.create_account("ada@example.com").await;

    app.client()
        .delete_account(app.admin(proto::DeleteAccountRequest {
            id: account.id.clone(),
            expected_version: 1,
        }))
        .await
        .unwrap();

    let status = app.get_account(&account.id).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(app.account_total().await, 0);
    // The email is free again.
    app.create_account("ada@example.com").await;
}

async fn batch_get_answers_in_request_order_and_names_the_missing(backend: Backend) {
    let app = spawn_app(backend).await;
    let ada = app.create_account("ada@example.com").await;
    let grace = app.create_account("grace@example.com").await;
    let missing = uuid::Uuid::new_v4().to_string();

    let response = app
        .client()
        .batch_get_accounts(app.admin(proto::BatchGetAccountsRequest {
            ids: vec![grace.id.clone(), missing.clone(), ada.id.clone()],
        }))
        .await
        .unwrap()
        .into_inner();

    let emails: Vec<&str> = response
        .accounts
        .iter()
        .map(|account| account.email.as_str())
        .collect();
    assert_eq!(emails, ["grace@example.com", "ada@example.com"]);
    assert_eq!(response.missing_ids, [missing]);
}

async fn lists_filter_by_country_and_text_and_page_with_a_total(backend: Backend) {
    let app = spawn_app(backend).await;
    for (email, country, nickname) in [
        ("ada@example.com", "GB", "countess"),
        ("grace@example.com", "US", "amazing"),
        ("alan@example.com", "GB", "prof"),
        ("edsger@example.com", "NL", "ewd"),
    ] {
        app.client()
            .create_account(app.admin(proto::CreateAccountRequest {
                country: country.to_owned(),
                nickname: nickname.to_owned(),
                ..valid_account(email)
            }))
            .await
            .unwrap();
    }

    let british = app
        .client()
        .list_accounts(app.admin(proto::ListAccountsRequest {
            country: "GB".to_owned(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let by_nickname = app
        .client()
        .list_accounts(app.admin(proto::ListAccountsRequest {
            query: "AMAZ".to_owned(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let mut emails = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = app
            .client()
            .list_accounts(app.admin(proto::ListAccountsRequest {
                page_size: 3,
                page_token: page_token.clone(),
                direction: proto::SortDirection::Desc as i32,
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.total_size, 4);
        emails.extend(page.accounts.into_iter().map(|account| account.email));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }

    let british_emails: Vec<&str> = british
        .accounts
        .iter()
        .map(|account| account.email.as_str())
        .collect();
    assert_eq!(british_emails, ["ada@example.com", "alan@example.com"]);
    assert_eq!(british.total_size, 2);
    assert_eq!(by_nickname.accounts.len(), 1);
    assert_eq!(by_nickname.accounts[0].email, "grace@example.com");
    assert_eq!(
        emails,
        [
            "grace@example.com",
            "edsger@example.com",
            "alan@example.com",
            "ada@example.com"
        ]
    );
}

async fn later_pages_report_the_count_taken_by_the_first(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_account("ada@example.com").await;
    app.create_account("alan@example.com").await;
    let list = |page_token: &str, query: &str| {
        app.admin(proto::ListAccountsRequest {
            page_size: 1,
            page_token: page_token.to_owned(),
            query: query.to_owned(),
            ..Default::default()
        })
    };
    let first = app
        .client()
        .list_accounts(list("", ""))
        .await
        .unwrap()
        .into_inner();
    app.create_account("grace@example.com").await;

    let second = app
        .client()
        .list_accounts(list(&first.next_page_token, ""))
        .await
        .unwrap()
        .into_inner();
    let other_filter = app
        .client()
        .list_accounts(list(&first.next_page_token, "ada"))
        .await
        .unwrap_err();
    let fresh = app
        .client()
        .list_accounts(list("", ""))
        .await
        .unwrap()
        .into_inner();

    assert!(first.total_size >= 2, "{}", first.total_size);
    assert_eq!(
        second.total_size, first.total_size,
        "page 2 reports the count its first page took"
    );
    assert_eq!(violated_fields(&other_filter), ["page_token"]);
    assert_eq!(
        fresh.total_size,
        first.total_size + 1,
        "a new first page counts again"
    );
}
