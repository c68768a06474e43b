//! Roles: built-ins from the migration, custom roles, grants and revokes, and the rules that
//! keep a role from being deleted.

use emporium_proto::identity::v1 as proto;
use test_support::{Backend, both_backends, event_data, violated_fields};
use tonic::Code;

use crate::helpers::{IdentityApp as _, spawn_app};

both_backends!(
    the_built_in_roles_exist_and_cannot_be_deleted,
    a_custom_role_can_be_created_updated_and_deleted,
    an_invalid_role_name_is_refused_and_nothing_changes,
    grants_and_revokes_show_in_the_account_and_bump_its_version,
    a_role_still_granted_cannot_be_deleted,
    a_grant_with_a_stale_version_is_aborted_and_changes_nothing,
    roles_are_listed_by_name_in_pages,
    a_batch_of_roles_comes_in_request_order_with_the_missing_names,
);

async fn the_built_in_roles_exist_and_cannot_be_deleted(backend: Backend) {
    let app = spawn_app(backend).await;

    let roles = app
        .client()
        .list_roles(app.admin(proto::ListRolesRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .roles;
    let status = app
        .client()
        .delete_role(app.admin(proto::DeleteRoleRequest {
            name: "admin".to_owned(),
            expected_version: 0,
        }))
        .await
        .unwrap_err();

    let names: Vec<(&str, bool)> = roles
        .iter()
        .map(|role| (role.name.as_str(), role.builtin))
        .collect();
    assert_eq!(
        names,
        [
            ("admin", true),
            ("catalog-manager", true),
            ("customer", true),
            ("sales", true),
            ("visitor", true)
        ]
    );
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let admin = app
        .client()
        .get_role(app.admin(proto::GetRoleRequest {
            name: "admin".to_owned(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(admin.builtin);
}

async fn a_custom_role_can_be_created_updated_and_deleted(backend: Backend) {
    let app = spawn_app(backend).await;

    let created = app.create_role("warehouse").await;
    let updated = app
        .client()
        .update_role(app.admin(proto::UpdateRoleRequest {
            name: "warehouse".to_owned(),
            expected_version: 1,
            description: Some("Ships parcels".to_owned()),
        }))
        .await
        .unwrap()
        .into_inner();
    let duplicate = app
        .client()
        .create_role(app.admin(proto::CreateRoleRequest {
            name: "warehouse".to_owned(),
            description: String::new(),
        }))
        .await
        .unwrap_err();
    app.client()
        .delete_role(app.admin(proto::DeleteRoleRequest {
            name: "warehouse".to_owned(),
            expected_version: 2,
        }))
        .await
        .unwrap();
    let after_delete = app
        .client()
        .get_role(app.admin(proto::GetRoleRequest {
            name: "warehouse".to_owned(),
        }))
        .await
        .unwrap_err();

    assert!(!created.builtin);
    assert_eq!(created.version, 1);
    assert_eq!(updated.description, "Ships parcels");
    assert_eq!(updated.version, 2);
    assert_eq!(duplicate.code(), Code::AlreadyExists);
    assert_eq!(after_delete.code(), Code::NotFound);
    let types: Vec<String> = app
        .events_of(&created.id)
        .await
        .into_iter()
        .map(|event| event.r#type)
        .collect();
    assert_eq!(
        types,
        [
            "emporium.identity.role.created",
            "emporium.identity.role.updated",
            "emporium.identity.role.deleted"
        ]
    );
}

async fn an_invalid_role_name_is_refused_and_nothing_changes(backend: Backend) {
    let app = spawn_app(backend).await;

    for name in ["", "Warehouse", "has space", &"a".repeat(65)] {
        let status = app
            .client()
            .create_role(app.admin(proto::CreateRoleRequest {
                name: name.to_owned(),
                description: String::new(),
            }))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{name}");
        assert_eq!(violated_fields(&status), ["name"], "{name}");
    }
    let roles = app
        .client()
        .list_roles(app.admin(proto::ListRolesRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .roles;
    assert_eq!(roles.len(), 5);
}

async fn grants_and_revokes_show_in_the_account_and_bump_its_version(backend: Backend) {
    let app = spawn_app(backend).await;
    let account = app.create_account("ada@example.com").await;
    app.create_role("warehouse").await;

    let granted = app
        .client()
        .grant_role(app.admin(proto::GrantRoleRequest {
            account_id: account.id.clone(),
            role: "warehouse".to_owned(),
            expected_version: 1,
        }))
        .await
        .unwrap()
        .into_inner();
    let granted_twice = app
        .client()
        .grant_role(app.admin(proto::GrantRoleRequest {
            account_id: account.id.clone(),
            role: "sales".to_owned(),
            expected_version: 2,
        }))
        .await
        .unwrap()
        .into_inner();
    let unknown_role = app
        .client()
        .grant_role(app.admin(proto::GrantRoleRequest {
            account_id: account.id.clone(),
            role: "nobody".to_owned(),
            expected_version: 3,
        }))
        .await
        .unwrap_err();
    let revoked = app
        .client()
        .revoke_role(app.admin(proto::RevokeRoleRequest {
            account_id: account.id.clone(),
            role: "warehouse".to_owned(),
            expected_version: 3,
        }))
        .await
        .unwrap()
        .into_inner();

    assert_eq!(granted.roles, ["warehouse"]);
    assert_eq!(granted.version, 2);
    assert_eq!(granted_twice.roles, ["sales", "warehouse"]);
    assert_eq!(unknown_role.code(), Code::NotFound, "{unknown_role:?}");
    assert_eq!(revoked.roles, ["sales"]);
    assert_eq!(revoked.version, 4);
    assert_eq!(app.get_account(&account.id).await.unwrap(), revoked);
    let updates: Vec<(String, i64, Vec<String>)> = app
        .events_of(&account.id)
        .await
        .into_iter()
        .filter(|event| event.r#type == "emporium.identity.account.updated")
        .map(|event| {
            let roles = event_data::<proto::Account>(&event).roles;
            (event.r#type, event.aggregate_version, roles)
        })
        .collect();
    assert_eq!(updates.len(), 3);
    assert_eq!(updates[2].1, 4);
    assert_eq!(updates[2].2, ["sales"]);
}

async fn a_role_still_granted_cannot_be_deleted(backend: Backend) {
    let app = spawn_app(backend).await;
    let account = app.create_account("ada@example.com").await;
    app.create_role("warehouse").await;
    app.client()
        .grant_role(app.admin(proto::GrantRoleRequest {
            account_id: account.id.clone(),
            role: "warehouse".to_owned(),
            expected_version: 1,
        }))
        .await
        .unwrap();

    let status = app
        .client()
        .delete_role(app.admin(proto::DeleteRoleRequest {
            name: "warehouse".to_owned(),
            expected_version: 0,
        }))
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let role = app
        .client()
        .get_role(app.admin(proto::GetRoleRequest {
            name: "warehouse".to_owned(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(role.version, 1);
}

async fn a_grant_with_a_stale_version_is_aborted_and_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let account = app.create_account("ada@example.com").await;

    let status = app
        .client()
        .grant_role(app.admin(proto::GrantRoleRequest {
            account_id: account.id.clone(),
            role: "sales".to_owned(),
            expected_version: 7,
        }))
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    let read = app.get_account(&account.id).await.unwrap();
    assert!(read.roles.is_empty());
    assert_eq!(read.version, 1);
}

async fn roles_are_listed_by_name_in_pages(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_role("warehouse").await;

    let mut names = Vec::new();
    let mut page_token = String::new();
    let mut n_pages = 0;
    loop {
        let page = app
            .client()
            .list_roles(app.admin(proto::ListRolesRequest {
                page_size: 2,
                page_token: page_token.clone(),
            }))
            .await
            .unwrap()
            .into_inner();
        n_pages += 1;
        assert_eq!(page.total_size, 6);
        names.extend(page.roles.into_iter().map(|role| role.name));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let too_large = app
        .client()
        .list_roles(app.admin(proto::ListRolesRequest {
            page_size: 501,
            page_token: String::new(),
        }))
        .await
        .unwrap_err();

    assert_eq!(
        names,
        [
            "admin",
            "catalog-manager",
            "customer",
            "sales",
            "visitor",
            "warehouse"
        ]
    );
    assert_eq!(n_pages, 3);
    assert_eq!(too_large.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&too_large), ["page_size"]);
}

async fn a_batch_of_roles_comes_in_request_order_with_the_missing_names(backend: Backend) {
    let app = spawn_app(backend).await;
    let batch = |names: &[&str]| proto::BatchGetRolesRequest {
        names: names.iter().map(|name| (*name).to_owned()).collect(),
    };

    let found = app
        .client()
        .batch_get_roles(app.admin(batch(&["sales", "nobody", "admin", "sales"])))
        .await
        .unwrap()
        .into_inner();
    let invalid = app
        .client()
        .batch_get_roles(app.admin(batch(&["sales", "Not A Role"])))
        .await
        .unwrap_err();

    let names: Vec<&str> = found.roles.iter().map(|role| role.name.as_str()).collect();
    assert_eq!(names, ["sales", "admin"]);
    assert_eq!(found.missing_names, ["nobody"]);
    assert_eq!(invalid.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&invalid), ["names[1]"]);
}
