//! Every record's history starts at its creation: over a populated database, each account, role
//! and client (deleted ones included) has a change history that opens with its `.created` event at
//! version 1 and counts up by one to the row's version (or to its `.deleted` event). Built-in
//! roles too: they are seeded through the use case at start, and a database whose old migration
//! inserted them without events gets their missing `role.created` (version 1) at start, after
//! whatever the log already holds.

use chassis::storage::Database;
use emporium_proto::audit::v1::Event;
use emporium_proto::identity::v1 as proto;
use identity::domain::{RoleChanges, RoleDescription};
use identity::service::Identity;
use test_support::{
    Backend, TestDatabase, assert_history_starts_at_creation, both_backends, event_data,
};

use crate::helpers::{IdentityApp as _, TestApp, public_client, spawn_app};

both_backends!(
    every_record_history_starts_with_its_creation_and_has_no_gap,
    an_old_database_gets_the_missing_creation_events_of_its_built_in_roles,
);

async fn every_record_history_starts_with_its_creation_and_has_no_gap(backend: Backend) {
    let app = spawn_app(backend).await;
    let ada = app.create_account("ada@example.com").await;
    let grace = app.create_account("grace@example.com").await;
    let ada = app
        .client()
        .grant_role(app.admin(proto::GrantRoleRequest {
            account_id: ada.id.clone(),
            role: "sales".to_owned(),
            expected_version: ada.version,
        }))
        .await
        .unwrap()
        .into_inner();
    app.client()
        .update_account(app.admin(proto::UpdateAccountRequest {
            id: ada.id.clone(),
            expected_version: ada.version,
            nickname: Some("countess".to_owned()),
            ..Default::default()
        }))
        .await
        .unwrap();
    app.client()
        .delete_account(app.admin(proto::DeleteAccountRequest {
            id: grace.id.clone(),
            expected_version: grace.version,
        }))
        .await
        .unwrap();
    let warehouse = app.create_role("warehouse").await;
    app.client()
        .update_role(app.admin(proto::UpdateRoleRequest {
            name: warehouse.name.clone(),
            expected_version: warehouse.version,
            description: Some("Ships parcels".to_owned()),
        }))
        .await
        .unwrap();
    let temporary = app.create_role("temporary").await;
    app.client()
        .delete_role(app.admin(proto::DeleteRoleRequest {
            name: temporary.name.clone(),
            expected_version: temporary.version,
        }))
        .await
        .unwrap();
    app.client()
        .update_role(app.admin(proto::UpdateRoleRequest {
            name: "customer".to_owned(),
            expected_version: 1,
            description: Some("Buys things".to_owned()),
        }))
        .await
        .unwrap();
    let shop = app
        .create_client(public_client("shop"))
        .await
        .client
        .unwrap();
    app.client()
        .update_client(app.admin(proto::UpdateClientRequest {
            client_id: shop.client_id.clone(),
            expected_version: shop.version,
            name: Some("The Shop".to_owned()),
            ..Default::default()
        }))
        .await
        .unwrap();
    let gone = app
        .create_client(public_client("gone"))
        .await
        .client
        .unwrap();
    app.client()
        .delete_client(app.admin(proto::DeleteClientRequest {
            client_id: gone.client_id.clone(),
            expected_version: gone.version,
        }))
        .await
        .unwrap();

    let mut living: Vec<(String, i64)> = Vec::new();
    let roles = app
        .client()
        .list_roles(app.admin(proto::ListRolesRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .roles;
    assert_eq!(roles.len(), 6, "{roles:?}");
    living.extend(roles.into_iter().map(|role| (role.id, role.version)));
    let accounts = app
        .client()
        .list_accounts(app.admin(proto::ListAccountsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .accounts;
    living.extend(
        accounts
            .into_iter()
            .map(|account| (account.id, account.version)),
    );
    let clients = app
        .client()
        .list_clients(app.admin(proto::ListClientsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .clients;
    living.extend(
        clients
            .into_iter()
            .map(|client| (client.id, client.version)),
    );
    assert_eq!(living.len(), 6 + 1 + 1);

    for (id, version) in &living {
        let history = change_history(&app, id).await;
        assert_history_starts_at_creation(&history, id);
        assert_eq!(history.last().unwrap().aggregate_version, *version, "{id}");
        assert!(
            !history.last().unwrap().r#type.ends_with(".deleted"),
            "{id}"
        );
    }
    for id in [&grace.id, &temporary.id, &gone.id] {
        let history = change_history(&app, id).await;
        assert_history_starts_at_creation(&history, id);
        assert!(history.last().unwrap().r#type.ends_with(".deleted"), "{id}");
    }
}

async fn an_old_database_gets_the_missing_creation_events_of_its_built_in_roles(backend: Backend) {
    // As the previous version left it: the migration inserted the built-in roles without events,
    // and an admin then changed one of them (its first event is version 2).
    let test_database = TestDatabase::new(backend, "identity").await;
    let old = Identity::new(
        Database::connect(test_database.url(), identity::MIGRATIONS)
            .await
            .unwrap(),
    );
    old.update_role(
        "sales",
        RoleChanges {
            expected_version: 1,
            description: Some(RoleDescription::parse("Sells things").unwrap()),
        },
        &chassis::outbox::Actor {
            subject: "admin-1".to_owned(),
            client_id: "test".to_owned(),
        },
    )
    .await
    .unwrap();
    // Two replicas of the new version starting at once on it.
    let replica = || async {
        Identity::new(
            Database::connect(test_database.url(), identity::MIGRATIONS)
                .await
                .unwrap(),
        )
    };
    let (first, second) = (replica().await, replica().await);
    let (first_seeded, second_seeded) =
        tokio::join!(first.seed_builtin_roles(), second.seed_builtin_roles());
    first_seeded.unwrap();
    second_seeded.unwrap();
    for identity in [old, first, second] {
        identity.database().close().await;
    }

    let app = spawn_app(backend).on_database(test_database).await;

    let roles = app
        .client()
        .list_roles(app.admin(proto::ListRolesRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .roles;
    assert_eq!(roles.len(), 5);
    for role in &roles {
        // In version order: the event recorded at the upgrade comes after those recorded before
        // it in the log (history already published is never rewritten).
        let mut history = change_history(&app, &role.id).await;
        history.sort_by_key(|event| event.aggregate_version);
        assert_history_starts_at_creation(&history, &role.name);
        assert_eq!(history.last().unwrap().aggregate_version, role.version);
    }
    let sales = roles.iter().find(|role| role.name == "sales").unwrap();
    let mut history = change_history(&app, &sales.id).await;
    history.sort_by_key(|event| event.aggregate_version);
    let summary: Vec<(&str, i64, &str)> = history
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
            ("emporium.identity.role.created", 1, "emporium-identity"),
            ("emporium.identity.role.updated", 2, "admin-1"),
        ]
    );
    let created: proto::Role = event_data(&history[0]);
    assert_eq!(created.description, "Handles customers and orders");
    assert_eq!(created.version, 1);
    assert!(created.builtin);
    assert_eq!(created.create_time, created.update_time);
}

/// The record's change events, oldest first (audit events left out).
async fn change_history(app: &TestApp, id: &str) -> Vec<Event> {
    app.events_of(id)
        .await
        .into_iter()
        .filter(|event| !event.r#type.starts_with("emporium.identity.audit."))
        .collect()
}
