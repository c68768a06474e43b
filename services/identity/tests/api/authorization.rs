//! Every RPC is for admins only: no token, an expired token, a token from another issuer are
//! UNAUTHENTICATED; a valid token without `admin` is PERMISSION_DENIED; none of them changes
//! anything. The roles come from `identity.proto` (`(emporium.api.v1.access)`); the chassis
//! enforces them, and one test calls every RPC of the contract to prove the two agree.

use emporium_proto::identity::v1 as proto;
use test_support::{
    Backend, TestIssuer, assert_access_matches_contract, backend_independent, both_backends,
    event_data, with_token,
};
use tonic::Code;

use crate::helpers::{IdentityApp as _, spawn_app, valid_account};

// What these check happens before storage or the bus is reached: once is enough.
backend_independent!(
    callers_without_a_valid_token_are_unauthenticated_and_change_nothing,
    callers_without_the_admin_role_are_denied_and_change_nothing,
);

both_backends!(every_rpc_admits_exactly_the_roles_its_contract_declares);

async fn every_rpc_admits_exactly_the_roles_its_contract_declares(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;

    // Act and assert: every RPC of the descriptor set, each kind of caller.
    let n_rpcs = assert_access_matches_contract(
        app.addr,
        &app.issuer,
        "emporium.identity.v1.IdentityService",
    )
    .await;

    assert!(n_rpcs >= 20, "only {n_rpcs} RPCs were checked");
}

async fn callers_without_a_valid_token_are_unauthenticated_and_change_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let account = app.create_account("ada@example.com").await;
    let expired = app.issuer.expired_token("admin-1", &["admin"]);
    let foreign = TestIssuer::new().token("admin-1", &["admin"]);
    let requests = [
        tonic::Request::new(valid_account("grace@example.com")),
        with_token(valid_account("grace@example.com"), &expired),
        with_token(valid_account("grace@example.com"), &foreign),
    ];

    for request in requests {
        let status = app.client().create_account(request).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
    let read_without_token = app
        .client()
        .get_account(proto::GetAccountRequest {
            id: account.id.clone(),
        })
        .await
        .unwrap_err();
    let delete_with_foreign_token = app
        .client()
        .delete_account(with_token(
            proto::DeleteAccountRequest {
                id: account.id.clone(),
                expected_version: 0,
            },
            &foreign,
        ))
        .await
        .unwrap_err();

    assert_eq!(read_without_token.code(), Code::Unauthenticated);
    assert_eq!(delete_with_foreign_token.code(), Code::Unauthenticated);
    assert_eq!(app.account_total().await, 1);
    assert_eq!(app.get_account(&account.id).await.unwrap().version, 1);
}

async fn callers_without_the_admin_role_are_denied_and_change_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let account = app.create_account("ada@example.com").await;
    let manager = app.issuer.token("manager-1", &["catalog-manager"]);

    let create = app
        .client()
        .create_account(with_token(valid_account("grace@example.com"), &manager))
        .await
        .unwrap_err();
    let grant = app
        .client()
        .grant_role(with_token(
            proto::GrantRoleRequest {
                account_id: account.id.clone(),
                role: "admin".to_owned(),
                expected_version: 1,
            },
            &manager,
        ))
        .await
        .unwrap_err();
    let read = app
        .client()
        .get_account(with_token(
            proto::GetAccountRequest {
                id: account.id.clone(),
            },
            &manager,
        ))
        .await
        .unwrap_err();
    let list_roles = app
        .client()
        .list_roles(with_token(proto::ListRolesRequest::default(), &manager))
        .await
        .unwrap_err();

    for status in [create, grant, read, list_roles] {
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    }
    assert_eq!(app.account_total().await, 1);
    let read = app.get_account(&account.id).await.unwrap();
    assert!(read.roles.is_empty());
    assert_eq!(read.version, 1);
    // The denied read left no audit trace: only the admin's list and read did.
    let accessed_by: Vec<String> = app
        .events_of(&account.id)
        .await
        .iter()
        .filter(|event| event.r#type == "emporium.identity.audit.account.accessed")
        .map(|event| event_data::<proto::AccountAccessed>(event).accessed_by)
        .collect();
    assert_eq!(accessed_by, ["admin-1", "admin-1"]);
}
