//! OAuth2 clients: registration of public and confidential clients, the secret shown once and
//! kept only as a hash, validation, uniqueness, optimistic concurrency, listing, deletion, events
//! and the admin-only rule.

use chassis::storage::Database;
use emporium_proto::identity::v1 as proto;
use identity::domain::verify_client_secret;
use identity::store;
use test_support::{
    Backend, backend_independent, both_backends, event_data, violated_fields, with_token,
};
use tonic::Code;

use crate::helpers::{IdentityApp as _, TestApp, confidential_client, public_client, spawn_app};

both_backends!(
    a_public_client_is_created_without_a_secret,
    a_confidential_client_gets_its_secret_once_and_only_the_hash_is_kept,
    resetting_the_secret_invalidates_the_old_one,
    a_public_client_has_no_secret_to_reset,
    an_unknown_role_is_refused_and_nothing_is_created,
    client_ids_are_unique,
    an_update_changes_only_the_given_fields,
    an_update_must_keep_the_rules_of_the_clients_type,
    an_update_with_a_stale_version_is_aborted_and_changes_nothing,
    a_deleted_client_is_gone,
    lists_are_ordered_by_client_id_and_paged,
    a_batch_of_clients_comes_in_request_order_with_the_missing_ids,
    callers_without_a_token_are_unauthenticated_and_non_admins_denied,
    every_change_records_one_event_without_the_secret,
    a_role_held_by_a_client_cannot_be_deleted,
);

// What these check happens before storage or the bus is reached: once is enough.
backend_independent!(every_invalid_field_is_reported_and_nothing_is_created,);

async fn a_public_client_is_created_without_a_secret(backend: Backend) {
    let app = spawn_app(backend).await;

    let created = app.create_client(public_client("storefront")).await;
    let client = created.client.clone().unwrap();
    let read = app.get_client("storefront").await.unwrap();

    assert_eq!(created.client_secret, "");
    assert_eq!(read, client);
    assert_eq!(read.client_id, "storefront");
    assert_eq!(read.name, "Storefront");
    assert_eq!(read.r#type, i32::from(proto::ClientType::Public));
    assert_eq!(read.redirect_uris, ["https://shop.example.com/callback"]);
    assert_eq!(
        read.post_logout_redirect_uris,
        ["https://shop.example.com/"]
    );
    assert!(read.roles.is_empty());
    assert!(!read.disabled);
    assert_eq!(read.version, 1);
    assert_eq!(read.create_time, read.update_time);
    assert!(uuid::Uuid::parse_str(&read.id).is_ok());
    assert_eq!(stored_secret_hash(&app, "storefront").await, None);
}

async fn a_confidential_client_gets_its_secret_once_and_only_the_hash_is_kept(backend: Backend) {
    let app = spawn_app(backend).await;

    let created = app
        .create_client(confidential_client(
            "invoicing",
            &["sales", "catalog-manager"],
        ))
        .await;
    let secret = created.client_secret.clone();
    let read = app.get_client("invoicing").await.unwrap();
    let listed = app
        .client()
        .list_clients(app.admin(proto::ListClientsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let stored_hash = stored_secret_hash(&app, "invoicing")
        .await
        .expect("a confidential client has a secret hash");
    let (other_secret, _) = identity::domain::ClientSecret::generate();

    assert_eq!(secret.len(), 43, "32 bytes in base64url without padding");
    assert_eq!(read.r#type, i32::from(proto::ClientType::Confidential));
    assert_eq!(read.roles, ["catalog-manager", "sales"]);
    assert!(read.redirect_uris.is_empty());
    assert_eq!(listed.clients, std::slice::from_ref(&read));
    for text in [
        format!("{read:?}"),
        format!("{listed:?}"),
        format!("{created:?}"),
    ] {
        assert!(!text.contains(&secret), "{text}");
        assert!(!text.contains(&stored_hash), "{text}");
    }
    assert_ne!(stored_hash, secret);
    assert!(verify_client_secret(&secret, &stored_hash));
    assert!(!verify_client_secret(
        secrecy::ExposeSecret::expose_secret(&other_secret),
        &stored_hash
    ));
    assert!(!verify_client_secret(&stored_hash, &stored_hash));
}

async fn resetting_the_secret_invalidates_the_old_one(backend: Backend) {
    let app = spawn_app(backend).await;
    let created = app
        .create_client(confidential_client("invoicing", &[]))
        .await;

    let reset = app
        .client()
        .reset_client_secret(app.admin(proto::ResetClientSecretRequest {
            client_id: "invoicing".to_owned(),
            expected_version: 1,
        }))
        .await
        .unwrap()
        .into_inner();
    let stale = app
        .client()
        .reset_client_secret(app.admin(proto::ResetClientSecretRequest {
            client_id: "invoicing".to_owned(),
            expected_version: 1,
        }))
        .await
        .unwrap_err();
    let stored_hash = stored_secret_hash(&app, "invoicing").await.unwrap();

    assert_ne!(reset.client_secret, created.client_secret);
    assert_eq!(reset.client.as_ref().unwrap().version, 2);
    assert!(!format!("{reset:?}").contains(&reset.client_secret));
    assert!(verify_client_secret(&reset.client_secret, &stored_hash));
    assert!(!verify_client_secret(&created.client_secret, &stored_hash));
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");
    assert_eq!(app.get_client("invoicing").await.unwrap().version, 2);
}

async fn a_public_client_has_no_secret_to_reset(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_client(public_client("storefront")).await;

    let status = app
        .client()
        .reset_client_secret(app.admin(proto::ResetClientSecretRequest {
            client_id: "storefront".to_owned(),
            expected_version: 1,
        }))
        .await
        .unwrap_err();
    let missing = app
        .client()
        .reset_client_secret(app.admin(proto::ResetClientSecretRequest {
            client_id: "nobody".to_owned(),
            expected_version: 1,
        }))
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    assert_eq!(app.get_client("storefront").await.unwrap().version, 1);
    assert_eq!(stored_secret_hash(&app, "storefront").await, None);
}

async fn every_invalid_field_is_reported_and_nothing_is_created(backend: Backend) {
    let app = spawn_app(backend).await;
    let public = public_client("storefront");
    let cases: Vec<(proto::CreateClientRequest, Vec<&str>)> = vec![
        (
            proto::CreateClientRequest {
                client_id: "Store Front".to_owned(),
                ..public.clone()
            },
            vec!["client_id"],
        ),
        (
            proto::CreateClientRequest {
                name: " ".to_owned(),
                ..public.clone()
            },
            vec!["name"],
        ),
        (
            proto::CreateClientRequest {
                r#type: proto::ClientType::Unspecified.into(),
                ..public.clone()
            },
            vec!["type"],
        ),
        (
            proto::CreateClientRequest {
                redirect_uris: vec!["http://shop.example.com/callback".to_owned()],
                ..public.clone()
            },
            vec!["redirect_uris[0]"],
        ),
        (
            proto::CreateClientRequest {
                redirect_uris: vec![
                    "http://localhost:3000/callback".to_owned(),
                    "https://shop.example.com/callback#token".to_owned(),
                ],
                ..public.clone()
            },
            vec!["redirect_uris[1]"],
        ),
        (
            proto::CreateClientRequest {
                post_logout_redirect_uris: vec!["https://ada@shop.example.com/".to_owned()],
                ..public.clone()
            },
            vec!["post_logout_redirect_uris[0]"],
        ),
        (
            proto::CreateClientRequest {
                redirect_uris: vec!["https://shop.example.com/callback".to_owned(); 11],
                ..public.clone()
            },
            vec!["redirect_uris"],
        ),
        (
            proto::CreateClientRequest {
                redirect_uris: Vec::new(),
                ..public.clone()
            },
            vec!["redirect_uris"],
        ),
        (
            proto::CreateClientRequest {
                roles: vec!["sales".to_owned()],
                ..public.clone()
            },
            vec!["roles"],
        ),
        (
            proto::CreateClientRequest {
                roles: vec!["sales".to_owned(), "Not A Role".to_owned()],
                ..confidential_client("invoicing", &[])
            },
            vec!["roles[1]"],
        ),
        (
            proto::CreateClientRequest {
                client_id: ".hidden".to_owned(),
                redirect_uris: Vec::new(),
                roles: vec!["sales".to_owned()],
                ..public.clone()
            },
            vec!["client_id", "redirect_uris", "roles"],
        ),
    ];

    for (request, expected_fields) in cases {
        let status = app
            .client()
            .create_client(app.admin(request))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(violated_fields(&status), expected_fields, "{status:?}");
    }
    assert_eq!(app.client_total().await, 0);
}

async fn an_unknown_role_is_refused_and_nothing_is_created(backend: Backend) {
    let app = spawn_app(backend).await;

    let status = app
        .client()
        .create_client(app.admin(confidential_client("invoicing", &["sales", "nobody"])))
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(violated_fields(&status), ["roles"]);
    assert!(status.message().contains("nobody"), "{status:?}");
    assert_eq!(app.client_total().await, 0);
    assert_eq!(
        app.get_client("invoicing").await.unwrap_err().code(),
        Code::NotFound
    );
}

async fn client_ids_are_unique(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = app.create_client(public_client("storefront")).await;

    let status = app
        .client()
        .create_client(app.admin(confidential_client("storefront", &[])))
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
    assert_eq!(violated_fields(&status), ["client_id"]);
    assert_eq!(app.client_total().await, 1);
    assert_eq!(
        app.get_client("storefront").await.unwrap(),
        first.client.unwrap()
    );
}

async fn an_update_changes_only_the_given_fields(backend: Backend) {
    let app = spawn_app(backend).await;
    let created = app
        .create_client(confidential_client("invoicing", &["sales"]))
        .await
        .client
        .unwrap();

    let updated = app
        .client()
        .update_client(app.admin(proto::UpdateClientRequest {
            client_id: "invoicing".to_owned(),
            expected_version: 1,
            name: Some("Invoicing".to_owned()),
            redirect_uris: Some(proto::StringList {
                values: vec!["http://127.0.0.1:8080/cb".to_owned()],
            }),
            roles: Some(proto::StringList {
                values: vec!["catalog-manager".to_owned(), "admin".to_owned()],
            }),
            disabled: Some(true),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let cleared = app
        .client()
        .update_client(app.admin(proto::UpdateClientRequest {
            client_id: "invoicing".to_owned(),
            expected_version: 2,
            roles: Some(proto::StringList::default()),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();

    assert_eq!(updated.version, 2);
    assert_eq!(updated.name, "Invoicing");
    assert_eq!(updated.redirect_uris, ["http://127.0.0.1:8080/cb"]);
    assert_eq!(updated.roles, ["admin", "catalog-manager"]);
    assert!(updated.disabled);
    assert_eq!(
        updated.post_logout_redirect_uris,
        created.post_logout_redirect_uris
    );
    assert_eq!(updated.create_time, created.create_time);
    assert_eq!(cleared.version, 3);
    assert!(cleared.roles.is_empty());
    assert_eq!(cleared.name, "Invoicing");
    assert_eq!(cleared.redirect_uris, updated.redirect_uris);
    assert_eq!(app.get_client("invoicing").await.unwrap(), cleared);
}

async fn an_update_must_keep_the_rules_of_the_clients_type(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_client(public_client("storefront")).await;
    app.create_client(confidential_client("invoicing", &[]))
        .await;

    let public_with_roles = app
        .client()
        .update_client(app.admin(proto::UpdateClientRequest {
            client_id: "storefront".to_owned(),
            expected_version: 1,
            roles: Some(proto::StringList {
                values: vec!["sales".to_owned()],
            }),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    let public_without_redirect = app
        .client()
        .update_client(app.admin(proto::UpdateClientRequest {
            client_id: "storefront".to_owned(),
            expected_version: 1,
            redirect_uris: Some(proto::StringList::default()),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    let bad_values = app
        .client()
        .update_client(app.admin(proto::UpdateClientRequest {
            client_id: "storefront".to_owned(),
            expected_version: 0,
            name: Some(String::new()),
            post_logout_redirect_uris: Some(proto::StringList {
                values: vec![
                    "https://shop.example.com/".to_owned(),
                    "ftp://x/".to_owned(),
                ],
            }),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    let unknown_role = app
        .client()
        .update_client(app.admin(proto::UpdateClientRequest {
            client_id: "invoicing".to_owned(),
            expected_version: 1,
            roles: Some(proto::StringList {
                values: vec!["nobody".to_owned()],
            }),
            ..Default::default()
        }))
        .await
        .unwrap_err();

    assert_eq!(violated_fields(&public_with_roles), ["roles"]);
    assert_eq!(violated_fields(&public_without_redirect), ["redirect_uris"]);
    assert_eq!(
        violated_fields(&bad_values),
        ["expected_version", "name", "post_logout_redirect_uris[1]"]
    );
    assert_eq!(violated_fields(&unknown_role), ["roles"]);
    for status in [
        public_with_roles,
        public_without_redirect,
        bad_values,
        unknown_role,
    ] {
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    }
    assert_eq!(app.get_client("storefront").await.unwrap().version, 1);
    let invoicing = app.get_client("invoicing").await.unwrap();
    assert_eq!(invoicing.version, 1);
    assert!(invoicing.roles.is_empty());
}

async fn an_update_with_a_stale_version_is_aborted_and_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_client(public_client("storefront")).await;
    app.client()
        .update_client(app.admin(proto::UpdateClientRequest {
            client_id: "storefront".to_owned(),
            expected_version: 1,
            name: Some("Shop".to_owned()),
            ..Default::default()
        }))
        .await
        .unwrap();

    let stale_update = app
        .client()
        .update_client(app.admin(proto::UpdateClientRequest {
            client_id: "storefront".to_owned(),
            expected_version: 1,
            name: Some("Stale".to_owned()),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    let stale_delete = app
        .client()
        .delete_client(app.admin(proto::DeleteClientRequest {
            client_id: "storefront".to_owned(),
            expected_version: 1,
        }))
        .await
        .unwrap_err();
    let missing = app
        .client()
        .update_client(app.admin(proto::UpdateClientRequest {
            client_id: "nobody".to_owned(),
            expected_version: 1,
            name: Some("Nobody".to_owned()),
            ..Default::default()
        }))
        .await
        .unwrap_err();

    assert_eq!(stale_update.code(), Code::Aborted, "{stale_update:?}");
    assert_eq!(stale_delete.code(), Code::Aborted, "{stale_delete:?}");
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    let read = app.get_client("storefront").await.unwrap();
    assert_eq!(read.name, "Shop");
    assert_eq!(read.version, 2);
}

async fn a_deleted_client_is_gone(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_client(confidential_client("invoicing", &["sales"]))
        .await;

    app.client()
        .delete_client(app.admin(proto::DeleteClientRequest {
            client_id: "invoicing".to_owned(),
            expected_version: 1,
        }))
        .await
        .unwrap();

    let status = app.get_client("invoicing").await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert_eq!(app.client_total().await, 0);
    let again = app
        .client()
        .delete_client(app.admin(proto::DeleteClientRequest {
            client_id: "invoicing".to_owned(),
            expected_version: 0,
        }))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound, "{again:?}");
    // The client_id is free again.
    app.create_client(public_client("invoicing")).await;
}

async fn lists_are_ordered_by_client_id_and_paged(backend: Backend) {
    let app = spawn_app(backend).await;
    for client_id in ["web", "android", "invoicing", "cli"] {
        app.create_client(public_client(client_id)).await;
    }

    let mut client_ids = Vec::new();
    let mut page_token = String::new();
    let mut n_pages = 0;
    loop {
        let page = app
            .client()
            .list_clients(app.admin(proto::ListClientsRequest {
                page_size: 3,
                page_token: page_token.clone(),
            }))
            .await
            .unwrap()
            .into_inner();
        n_pages += 1;
        assert_eq!(page.total_size, 4);
        client_ids.extend(page.clients.into_iter().map(|client| client.client_id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let bad_token = app
        .client()
        .list_clients(app.admin(proto::ListClientsRequest {
            page_size: 3,
            page_token: "not a token".to_owned(),
        }))
        .await
        .unwrap_err();

    assert_eq!(client_ids, ["android", "cli", "invoicing", "web"]);
    assert_eq!(n_pages, 2);
    assert_eq!(bad_token.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&bad_token), ["page_token"]);
}

async fn callers_without_a_token_are_unauthenticated_and_non_admins_denied(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_client(confidential_client("invoicing", &[]))
        .await;
    let manager = app.issuer.token("manager-1", &["catalog-manager"]);

    let unauthenticated = [
        app.client()
            .create_client(public_client("storefront"))
            .await
            .unwrap_err(),
        app.client()
            .get_client(proto::GetClientRequest {
                client_id: "invoicing".to_owned(),
            })
            .await
            .unwrap_err(),
        app.client()
            .reset_client_secret(proto::ResetClientSecretRequest {
                client_id: "invoicing".to_owned(),
                expected_version: 1,
            })
            .await
            .unwrap_err(),
    ];
    let denied = [
        app.client()
            .create_client(with_token(public_client("storefront"), &manager))
            .await
            .unwrap_err(),
        app.client()
            .get_client(with_token(
                proto::GetClientRequest {
                    client_id: "invoicing".to_owned(),
                },
                &manager,
            ))
            .await
            .unwrap_err(),
        app.client()
            .list_clients(with_token(proto::ListClientsRequest::default(), &manager))
            .await
            .unwrap_err(),
        app.client()
            .update_client(with_token(
                proto::UpdateClientRequest {
                    client_id: "invoicing".to_owned(),
                    expected_version: 1,
                    disabled: Some(true),
                    ..Default::default()
                },
                &manager,
            ))
            .await
            .unwrap_err(),
        app.client()
            .reset_client_secret(with_token(
                proto::ResetClientSecretRequest {
                    client_id: "invoicing".to_owned(),
                    expected_version: 1,
                },
                &manager,
            ))
            .await
            .unwrap_err(),
        app.client()
            .delete_client(with_token(
                proto::DeleteClientRequest {
                    client_id: "invoicing".to_owned(),
                    expected_version: 0,
                },
                &manager,
            ))
            .await
            .unwrap_err(),
    ];

    for status in unauthenticated {
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
    for status in denied {
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    }
    assert_eq!(app.client_total().await, 1);
    let read = app.get_client("invoicing").await.unwrap();
    assert_eq!(read.version, 1);
    assert!(!read.disabled);
}

async fn every_change_records_one_event_without_the_secret(backend: Backend) {
    let app = spawn_app(backend).await;
    let created = app
        .create_client(confidential_client("invoicing", &["sales"]))
        .await;
    let client = created.client.clone().unwrap();
    app.client()
        .update_client(app.admin(proto::UpdateClientRequest {
            client_id: "invoicing".to_owned(),
            expected_version: 1,
            disabled: Some(true),
            ..Default::default()
        }))
        .await
        .unwrap();
    let reset = app
        .client()
        .reset_client_secret(app.admin(proto::ResetClientSecretRequest {
            client_id: "invoicing".to_owned(),
            expected_version: 2,
        }))
        .await
        .unwrap()
        .into_inner();
    let stored_hash = stored_secret_hash(&app, "invoicing").await.unwrap();
    app.client()
        .delete_client(app.admin(proto::DeleteClientRequest {
            client_id: "invoicing".to_owned(),
            expected_version: 3,
        }))
        .await
        .unwrap();

    let events = app.events_of(&client.id).await;

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
            ("emporium.identity.client.created", 1, "admin-1"),
            ("emporium.identity.client.updated", 2, "admin-1"),
            ("emporium.identity.client.secret_reset", 3, "admin-1"),
            ("emporium.identity.client.deleted", 4, "admin-1"),
        ]
    );
    let first: proto::Client = event_data(&events[0]);
    assert_eq!(first.client_id, "invoicing");
    assert_eq!(first.r#type(), proto::ClientType::Confidential);
    assert_eq!(first.roles, ["sales"]);
    for event in &events {
        for secret in [
            created.client_secret.as_str(),
            reset.client_secret.as_str(),
            stored_hash.as_str(),
            "secret_hash",
        ] {
            assert!(
                !event.data_json.contains(secret),
                "{secret} in {}",
                event.data_json
            );
        }
    }
}

async fn a_role_held_by_a_client_cannot_be_deleted(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_role("warehouse").await;
    app.create_client(confidential_client("shipping", &["warehouse"]))
        .await;

    let refused = app
        .client()
        .delete_role(app.admin(proto::DeleteRoleRequest {
            name: "warehouse".to_owned(),
            expected_version: 0,
        }))
        .await
        .unwrap_err();
    app.client()
        .update_client(app.admin(proto::UpdateClientRequest {
            client_id: "shipping".to_owned(),
            expected_version: 1,
            roles: Some(proto::StringList::default()),
            ..Default::default()
        }))
        .await
        .unwrap();
    app.client()
        .delete_role(app.admin(proto::DeleteRoleRequest {
            name: "warehouse".to_owned(),
            expected_version: 0,
        }))
        .await
        .unwrap();

    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("client"), "{refused:?}");
    let role = app
        .client()
        .get_role(app.admin(proto::GetRoleRequest {
            name: "warehouse".to_owned(),
        }))
        .await
        .unwrap_err();
    assert_eq!(role.code(), Code::NotFound);
}

/// The secret hash the store keeps for `client_id`, read the way the token endpoint will.
async fn stored_secret_hash(app: &TestApp, client_id: &str) -> Option<String> {
    let database = Database::open(app.test_database.url())
        .await
        .expect("the test database opens");
    let mut tx = database.begin().await.expect("a transaction begins");
    let credentials = store::find_client_credentials(&mut tx, client_id)
        .await
        .expect("the client is read")
        .expect("the client exists");
    tx.commit().await.expect("the read commits");
    if let Some(secret_hash) = &credentials.secret_hash {
        let debug = format!("{credentials:?}");
        assert!(!debug.contains(secret_hash.as_str()), "{debug}");
    }
    credentials.secret_hash
}

async fn a_batch_of_clients_comes_in_request_order_with_the_missing_ids(backend: Backend) {
    let app = spawn_app(backend).await;
    for client_id in ["web", "android"] {
        app.create_client(public_client(client_id)).await;
    }
    let batch = |client_ids: &[&str]| proto::BatchGetClientsRequest {
        client_ids: client_ids.iter().map(|id| (*id).to_owned()).collect(),
    };

    let found = app
        .client()
        .batch_get_clients(app.admin(batch(&["web", "ios", "android"])))
        .await
        .unwrap()
        .into_inner();
    let invalid = app
        .client()
        .batch_get_clients(app.admin(batch(&["", "web"])))
        .await
        .unwrap_err();

    let client_ids: Vec<&str> = found
        .clients
        .iter()
        .map(|client| client.client_id.as_str())
        .collect();
    assert_eq!(client_ids, ["web", "android"]);
    assert_eq!(found.missing_client_ids, ["ios"]);
    assert!(found.clients.iter().all(|client| client.version == 1));
    assert_eq!(invalid.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&invalid), ["client_ids[0]"]);
}
