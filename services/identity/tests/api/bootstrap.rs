//! First-start set-up: replicas that start together on one database all succeed, and between them
//! create exactly one admin account (holding `admin` from its first event) and one of each client.

use chassis::storage::Database;
use emporium_proto::identity::v1 as proto;
use identity::bootstrap::Bootstrap;
use identity::service::Identity;
use secrecy::SecretString;
use test_support::{Backend, both_backends, event_data};

use crate::helpers::{IdentityApp as _, PASSWORD, TestApp, spawn_app};

both_backends!(two_replicas_bootstrapping_at_once_make_one_admin_and_one_of_each_client,);

const ADMIN_EMAIL: &str = "root@example.com";

async fn two_replicas_bootstrapping_at_once_make_one_admin_and_one_of_each_client(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let first = replica(&app).await;
    let second = replica(&app).await;
    let bootstrap = || {
        Bootstrap::for_suite(
            "http://localhost:8080",
            ADMIN_EMAIL,
            Some(SecretString::from(PASSWORD)),
        )
    };

    let (first_report, second_report) =
        tokio::join!(bootstrap().run(&first), bootstrap().run(&second));

    first.database().close().await;
    second.database().close().await;
    let first_report = first_report.expect("the first replica's set-up succeeds");
    let second_report = second_report.expect("the second replica's set-up succeeds");
    let n_admins_created = [&first_report, &second_report]
        .iter()
        .filter(|report| report.admin_created.is_some())
        .count();
    assert_eq!(n_admins_created, 1);
    let mut clients_created =
        [first_report.clients_created, second_report.clients_created].concat();
    clients_created.sort();
    assert_eq!(
        clients_created,
        ["emporium-admin", "emporium-storefront", "emporiumctl"]
    );
    let accounts = app
        .client()
        .list_accounts(app.admin(proto::ListAccountsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .accounts;
    assert_eq!(accounts.len(), 1, "{accounts:?}");
    let admin = &accounts[0];
    assert_eq!(admin.email, ADMIN_EMAIL);
    assert_eq!(admin.roles, ["admin"]);
    assert_eq!(admin.version, 1);
    let changes = change_events(&app, &admin.id).await;
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].r#type, "emporium.identity.account.created");
    assert_eq!(changes[0].aggregate_version, 1);
    let created: proto::Account = event_data(&changes[0]);
    assert_eq!(created.roles, ["admin"]);
    let clients = app
        .client()
        .list_clients(app.admin(proto::ListClientsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .clients;
    assert_eq!(clients.len(), 3, "{clients:?}");
    for client in &clients {
        let changes = change_events(&app, &client.id).await;
        let summary: Vec<(&str, i64)> = changes
            .iter()
            .map(|event| (event.r#type.as_str(), event.aggregate_version))
            .collect();
        assert_eq!(
            summary,
            [("emporium.identity.client.created", 1)],
            "{}",
            client.client_id
        );
    }
}

/// The use cases over a pool of their own, as another replica would have.
async fn replica(app: &TestApp) -> Identity {
    let database = Database::connect(app.test_database.url(), identity::MIGRATIONS)
        .await
        .expect("the replica connects");
    Identity::new(database)
}

/// The record's change events (audit events left out).
async fn change_events(app: &TestApp, id: &str) -> Vec<emporium_proto::audit::v1::Event> {
    app.events_of(id)
        .await
        .into_iter()
        .filter(|event| !event.r#type.starts_with("emporium.identity.audit."))
        .collect()
}
