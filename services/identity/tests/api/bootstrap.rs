//! First-start set-up: replicas that start together on one database all succeed, and between them
//! create exactly one admin account (holding `admin` from its first event) and one of each client.

use chassis::storage::Database;
use emporium_proto::identity::v1 as proto;
use identity::bootstrap::Bootstrap;
use identity::service::Identity;
use secrecy::SecretString;
use test_support::{Backend, both_backends, event_data};

use crate::helpers::{IdentityApp as _, PASSWORD, TestApp, spawn_app};

both_backends!(
    two_replicas_bootstrapping_at_once_make_one_admin_and_one_of_each_client,
    the_gateways_client_keeps_a_secret_the_gateway_knows_and_gets_a_new_one_otherwise,
);

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

async fn the_gateways_client_keeps_a_secret_the_gateway_knows_and_gets_a_new_one_otherwise(
    backend: Backend,
) {
    use secrecy::ExposeSecret as _;
    const ORIGIN: &str = "http://localhost:8080";
    let app = spawn_app(backend).await;
    let identity = replica(&app).await;
    let ensure = |known: Option<SecretString>| {
        let identity = &identity;
        async move {
            Bootstrap::gateway_client(identity, ORIGIN, known.as_ref())
                .await
                .expect("the gateway's client is set up")
        }
    };

    let first = ensure(None).await.expect("registered, with a secret");
    let kept = ensure(Some(first.clone())).await;
    let lost = ensure(None)
        .await
        .expect("a new secret when the gateway has none");
    let stale = ensure(Some(first.clone()))
        .await
        .expect("a new secret for one that is no longer the client's");

    assert!(kept.is_none(), "a secret the gateway knows is kept");
    assert_ne!(lost.expose_secret(), first.expose_secret());
    assert_ne!(stale.expose_secret(), lost.expose_secret());
    let mut tx = identity.database().begin_read().await.unwrap();
    let credentials = identity::store::find_client_credentials(&mut tx, "emporium-gateway")
        .await
        .unwrap()
        .expect("the client exists");
    tx.commit().await.unwrap();
    let hash = credentials.secret_hash.expect("a confidential client");
    assert!(identity::domain::verify_client_secret(
        stale.expose_secret(),
        &hash
    ));
    assert!(!identity::domain::verify_client_secret(
        first.expose_secret(),
        &hash
    ));
    assert_eq!(
        credentials
            .client
            .redirect_uris
            .iter()
            .map(|uri| uri.as_str())
            .collect::<Vec<_>>(),
        ["http://localhost:8080/auth/callback"]
    );
    identity.database().close().await;
}
