//! Bad input from outside is refused the same way on both backends: INVALID_ARGUMENT naming the
//! field, no row written and no change event recorded. The inputs are the ones a corpus run found
//! getting through or breaking: NUL bytes in text (PostgreSQL refuses them as "invalid byte
//! sequence", SQLite stores them and its `length()` stops counting there), terminal escape
//! sequences in names, and country codes that only have the shape of one. Valid non-ASCII names
//! still go through.

use emporium_proto::identity::v1 as proto;
use test_support::{Backend, backend_independent, both_backends, violated_fields};
use tonic::Code;

use crate::helpers::{IdentityApp as _, TestApp, public_client, spawn_app, valid_account};

both_backends!(
    nul_in_any_text_field_of_an_account_is_refused_and_nothing_changes,
    nul_in_any_text_field_of_a_role_is_refused_and_nothing_changes,
    nul_in_any_text_field_of_a_client_is_refused_and_nothing_changes,
    nul_in_a_search_is_refused,
    non_ascii_names_are_stored_as_given,
    every_check_of_the_schema_names_its_column,
);

// What these check happens before storage or the bus is reached: once is enough.
backend_independent!(
    control_characters_in_names_are_refused,
    unassigned_country_codes_are_refused,
);

const NUL: &str = "Ada\0; DROP";
/// Rings the bell and turns a terminal's text red.
const TERMINAL_ESCAPE: &str = "Ada\x07\x1b[31m";

async fn nul_in_any_text_field_of_an_account_is_refused_and_nothing_changes(backend: Backend) {
    let app = spawn_app(backend).await;
    let account = app.create_account("ada@example.com").await;
    let before = Snapshot::take(&app).await;
    let new = || valid_account("grace@example.com");
    let update = || proto::UpdateAccountRequest {
        id: account.id.clone(),
        expected_version: account.version,
        ..proto::UpdateAccountRequest::default()
    };

    let creates = [
        (
            "email",
            proto::CreateAccountRequest {
                email: "grace\0@example.com".to_owned(),
                ..new()
            },
        ),
        (
            "first_name",
            proto::CreateAccountRequest {
                first_name: NUL.to_owned(),
                ..new()
            },
        ),
        (
            "last_name",
            proto::CreateAccountRequest {
                last_name: NUL.to_owned(),
                ..new()
            },
        ),
        (
            "nickname",
            proto::CreateAccountRequest {
                nickname: NUL.to_owned(),
                ..new()
            },
        ),
        (
            "country",
            proto::CreateAccountRequest {
                country: "G\0".to_owned(),
                ..new()
            },
        ),
        (
            "password",
            proto::CreateAccountRequest {
                password: "correct horse\0battery staple".to_owned(),
                ..new()
            },
        ),
        (
            "customer_id",
            proto::CreateAccountRequest {
                customer_id: format!("{}\0", uuid::Uuid::new_v4()),
                ..new()
            },
        ),
    ];
    for (field, request) in creates {
        let status = app
            .client()
            .create_account(app.admin(request))
            .await
            .unwrap_err();
        assert_refused(&status, field);
    }
    let updates = [
        (
            "email",
            proto::UpdateAccountRequest {
                email: Some("ada\0@example.com".to_owned()),
                ..update()
            },
        ),
        (
            "first_name",
            proto::UpdateAccountRequest {
                first_name: Some(NUL.to_owned()),
                ..update()
            },
        ),
        (
            "last_name",
            proto::UpdateAccountRequest {
                last_name: Some(NUL.to_owned()),
                ..update()
            },
        ),
        (
            "nickname",
            proto::UpdateAccountRequest {
                nickname: Some(NUL.to_owned()),
                ..update()
            },
        ),
        (
            "country",
            proto::UpdateAccountRequest {
                country: Some("\0B".to_owned()),
                ..update()
            },
        ),
    ];
    for (field, request) in updates {
        let status = app
            .client()
            .update_account(app.admin(request))
            .await
            .unwrap_err();
        assert_refused(&status, field);
    }
    let set_password = app
        .client()
        .set_password(app.admin(proto::SetPasswordRequest {
            id: account.id.clone(),
            expected_version: account.version,
            password: "correct horse\0battery staple".to_owned(),
        }))
        .await
        .unwrap_err();
    assert_refused(&set_password, "password");

    assert_eq!(Snapshot::take(&app).await, before);
}

async fn nul_in_any_text_field_of_a_role_is_refused_and_nothing_changes(backend: Backend) {
    let app = spawn_app(backend).await;
    let role = app.create_role("warehouse").await;
    let before = Snapshot::take(&app).await;

    let creates = [
        (
            "name",
            proto::CreateRoleRequest {
                name: "packer\0".to_owned(),
                description: String::new(),
            },
        ),
        (
            "description",
            proto::CreateRoleRequest {
                name: "packer".to_owned(),
                description: NUL.to_owned(),
            },
        ),
    ];
    for (field, request) in creates {
        let status = app
            .client()
            .create_role(app.admin(request))
            .await
            .unwrap_err();
        assert_refused(&status, field);
    }
    let update = app
        .client()
        .update_role(app.admin(proto::UpdateRoleRequest {
            name: role.name.clone(),
            expected_version: role.version,
            description: Some(NUL.to_owned()),
        }))
        .await
        .unwrap_err();
    assert_refused(&update, "description");

    assert_eq!(Snapshot::take(&app).await, before);
}

async fn nul_in_any_text_field_of_a_client_is_refused_and_nothing_changes(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.create_client(public_client("storefront")).await;
    let client = client.client.expect("the response carries the client");
    let before = Snapshot::take(&app).await;
    let new = || public_client("backoffice");
    let update = || proto::UpdateClientRequest {
        client_id: client.client_id.clone(),
        expected_version: client.version,
        ..proto::UpdateClientRequest::default()
    };
    let uris = |uri: &str| proto::StringList {
        values: vec![uri.to_owned()],
    };

    let creates = [
        (
            "client_id",
            proto::CreateClientRequest {
                client_id: "backoffice\0".to_owned(),
                ..new()
            },
        ),
        (
            "name",
            proto::CreateClientRequest {
                name: NUL.to_owned(),
                ..new()
            },
        ),
        (
            "redirect_uris[0]",
            proto::CreateClientRequest {
                redirect_uris: vec!["https://shop.example.com/cb\0".to_owned()],
                ..new()
            },
        ),
        (
            "post_logout_redirect_uris[0]",
            proto::CreateClientRequest {
                post_logout_redirect_uris: vec!["https://shop.example.com/\0".to_owned()],
                ..new()
            },
        ),
    ];
    for (field, request) in creates {
        let status = app
            .client()
            .create_client(app.admin(request))
            .await
            .unwrap_err();
        assert_refused(&status, field);
    }
    let updates = [
        (
            "name",
            proto::UpdateClientRequest {
                name: Some(NUL.to_owned()),
                ..update()
            },
        ),
        (
            "redirect_uris[0]",
            proto::UpdateClientRequest {
                redirect_uris: Some(uris("https://shop.example.com/cb\0")),
                ..update()
            },
        ),
        (
            "post_logout_redirect_uris[0]",
            proto::UpdateClientRequest {
                post_logout_redirect_uris: Some(uris("https://shop.example.com/\0")),
                ..update()
            },
        ),
    ];
    for (field, request) in updates {
        let status = app
            .client()
            .update_client(app.admin(request))
            .await
            .unwrap_err();
        assert_refused(&status, field);
    }

    assert_eq!(Snapshot::take(&app).await, before);
}

async fn control_characters_in_names_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let account = app.create_account("ada@example.com").await;
    let client = app
        .create_client(public_client("storefront"))
        .await
        .client
        .expect("the response carries the client");
    let before = Snapshot::take(&app).await;

    let first_name = app
        .client()
        .create_account(app.admin(proto::CreateAccountRequest {
            first_name: TERMINAL_ESCAPE.to_owned(),
            ..valid_account("grace@example.com")
        }))
        .await
        .unwrap_err();
    let last_name = app
        .client()
        .update_account(app.admin(proto::UpdateAccountRequest {
            id: account.id.clone(),
            expected_version: account.version,
            last_name: Some("Love\u{202E}ecalv".to_owned()),
            ..proto::UpdateAccountRequest::default()
        }))
        .await
        .unwrap_err();
    let nickname = app
        .client()
        .update_account(app.admin(proto::UpdateAccountRequest {
            id: account.id.clone(),
            expected_version: account.version,
            nickname: Some("ada\nadmin".to_owned()),
            ..proto::UpdateAccountRequest::default()
        }))
        .await
        .unwrap_err();
    let client_name = app
        .client()
        .update_client(app.admin(proto::UpdateClientRequest {
            client_id: client.client_id.clone(),
            expected_version: client.version,
            name: Some(TERMINAL_ESCAPE.to_owned()),
            ..proto::UpdateClientRequest::default()
        }))
        .await
        .unwrap_err();
    let role_description = app
        .client()
        .create_role(app.admin(proto::CreateRoleRequest {
            name: "packer".to_owned(),
            description: "Packs\r\x1b[2Jorders".to_owned(),
        }))
        .await
        .unwrap_err();

    assert_refused(&first_name, "first_name");
    assert_refused(&last_name, "last_name");
    assert_refused(&nickname, "nickname");
    assert_refused(&client_name, "name");
    assert_refused(&role_description, "description");
    assert_eq!(Snapshot::take(&app).await, before);
}

async fn unassigned_country_codes_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let account = app.create_account("ada@example.com").await;
    let before = Snapshot::take(&app).await;

    for country in ["XX", "ZZ", "XK", "UK"] {
        let create = app
            .client()
            .create_account(app.admin(proto::CreateAccountRequest {
                country: country.to_owned(),
                ..valid_account("grace@example.com")
            }))
            .await
            .unwrap_err();
        let update = app
            .client()
            .update_account(app.admin(proto::UpdateAccountRequest {
                id: account.id.clone(),
                expected_version: account.version,
                country: Some(country.to_owned()),
                ..proto::UpdateAccountRequest::default()
            }))
            .await
            .unwrap_err();
        let list = app
            .client()
            .list_accounts(app.admin(proto::ListAccountsRequest {
                country: country.to_owned(),
                ..proto::ListAccountsRequest::default()
            }))
            .await
            .unwrap_err();

        assert_refused(&create, "country");
        assert_refused(&update, "country");
        assert_refused(&list, "country");
    }
    assert_eq!(Snapshot::take(&app).await, before);
}

async fn nul_in_a_search_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;

    let status = app
        .client()
        .list_accounts(app.admin(proto::ListAccountsRequest {
            query: NUL.to_owned(),
            ..proto::ListAccountsRequest::default()
        }))
        .await
        .unwrap_err();

    assert_refused(&status, "query");
}

async fn non_ascii_names_are_stored_as_given(backend: Backend) {
    let app = spawn_app(backend).await;

    let account = app
        .client()
        .create_account(app.admin(proto::CreateAccountRequest {
            first_name: " Zoë ".to_owned(),
            last_name: "東京".to_owned(),
            nickname: "crème brûlée".to_owned(),
            country: "JP".to_owned(),
            ..valid_account("zoe@example.com")
        }))
        .await
        .unwrap()
        .into_inner();
    let role = app
        .client()
        .create_role(app.admin(proto::CreateRoleRequest {
            name: "packer".to_owned(),
            description: "Packs orders\r\n\tand ships them".to_owned(),
        }))
        .await
        .unwrap()
        .into_inner();

    assert_eq!(
        (
            account.first_name.as_str(),
            account.last_name.as_str(),
            account.nickname.as_str(),
            account.country.as_str()
        ),
        ("Zoë", "東京", "crème brûlée", "JP")
    );
    assert_eq!(app.get_account(&account.id).await.unwrap(), account);
    assert_eq!(role.description, "Packs orders\n\tand ships them");
}

/// The domain refuses all of these first; should a value ever slip past it, the schema's own
/// checks are classified by column (so the store maps them to the request field), on both
/// backends' spelling of the error.
async fn every_check_of_the_schema_names_its_column(backend: Backend) {
    use chassis::storage::{ConstraintViolation, constraint_concerns, constraint_violation};

    let app = spawn_app(backend).await;
    let account = app.create_account("ada@example.com").await;
    app.create_client(public_client("storefront")).await;
    let account_id = uuid::Uuid::parse_str(&account.id).unwrap();
    let database = chassis::storage::Database::open(app.test_database.url())
        .await
        .expect("the test database opens");
    let account_columns = ["email", "first_name", "last_name", "nickname", "country"];
    let client_columns = ["client_id", "name", "redirect_uris"];
    let cases = [
        (
            "accounts",
            "email",
            "'ADA@EXAMPLE.COM'",
            ConstraintViolation::Check,
        ),
        ("accounts", "first_name", "''", ConstraintViolation::Check),
        ("accounts", "last_name", "''", ConstraintViolation::Check),
        ("accounts", "country", "'gb'", ConstraintViolation::Check),
        ("accounts", "nickname", "NULL", ConstraintViolation::NotNull),
        (
            "oauth_clients",
            "client_id",
            "''",
            ConstraintViolation::Check,
        ),
        ("oauth_clients", "name", "''", ConstraintViolation::Check),
        (
            "oauth_clients",
            "redirect_uris",
            "NULL",
            ConstraintViolation::NotNull,
        ),
    ];

    for (table, column, value, kind) in cases {
        let (sql, columns): (String, &[&str]) = if table == "accounts" {
            (
                format!("UPDATE accounts SET {column} = {value} WHERE id = $1"),
                &account_columns,
            )
        } else {
            (
                format!("UPDATE oauth_clients SET {column} = {value} WHERE id <> $1"),
                &client_columns,
            )
        };
        let mut tx = database.begin().await.unwrap();
        let error = chassis::on_backend!(tx, conn => {
            sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(account_id)
                .execute(conn)
                .await
                .map(|done| done.rows_affected())
        })
        .expect_err("the schema refuses the value");
        tx.rollback().await.unwrap();

        assert_eq!(constraint_violation(&error), Some(kind), "{sql}: {error}");
        for other in columns {
            assert_eq!(
                constraint_concerns(&error, table, other),
                other == &column,
                "{sql} concerns {other}? {error}"
            );
        }
    }
    let mut tx = database.begin().await.unwrap();
    let role_name = chassis::on_backend!(tx, conn => {
        sqlx::query(
            "INSERT INTO roles (name, id, description, builtin, version, created_at, updated_at) \
             SELECT '', $1, description, builtin, 1, created_at, updated_at FROM roles \
             WHERE name = 'admin'",
        )
        .bind(uuid::Uuid::new_v4())
        .execute(conn)
        .await
        .map(|done| done.rows_affected())
    })
    .expect_err("a role needs a name");
    tx.rollback().await.unwrap();
    assert_eq!(
        constraint_violation(&role_name),
        Some(ConstraintViolation::Check)
    );
    assert!(constraint_concerns(&role_name, "roles", "name"));
    assert!(!constraint_concerns(&role_name, "roles", "description"));
    database.close().await;
}

/// Everything a refused call must leave as it was: the records and the change events (reads of
/// accounts record audit events of their own, which are not changes).
#[derive(Debug, PartialEq)]
struct Snapshot {
    accounts: Vec<proto::Account>,
    roles: Vec<proto::Role>,
    clients: Vec<proto::Client>,
    n_change_events: i64,
}

impl Snapshot {
    async fn take(app: &TestApp) -> Snapshot {
        let accounts = app
            .client()
            .list_accounts(app.admin(proto::ListAccountsRequest::default()))
            .await
            .unwrap()
            .into_inner()
            .accounts;
        let roles = app
            .client()
            .list_roles(app.admin(proto::ListRolesRequest::default()))
            .await
            .unwrap()
            .into_inner()
            .roles;
        let clients = app
            .client()
            .list_clients(app.admin(proto::ListClientsRequest::default()))
            .await
            .unwrap()
            .into_inner()
            .clients;
        let database = chassis::storage::Database::open(app.test_database.url())
            .await
            .expect("the test database opens");
        let mut tx = database.begin_read().await.unwrap();
        let n_change_events: i64 = chassis::on_backend!(tx, conn => {
            sqlx::query_scalar(
                "SELECT count(*) FROM outbox_events WHERE event_type NOT LIKE '%.accessed'",
            )
            .fetch_one(conn)
            .await
        })
        .expect("the outbox can be counted");
        tx.commit().await.unwrap();
        database.close().await;
        Snapshot {
            accounts,
            roles,
            clients,
            n_change_events,
        }
    }
}

/// INVALID_ARGUMENT naming exactly `field`.
fn assert_refused(status: &tonic::Status, field: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
    assert_eq!(violated_fields(status), [field], "{status:?}");
}
