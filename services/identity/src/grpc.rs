//! The identity service's gRPC boundary: checks the caller is an admin, parses requests into
//! domain values (every bad field reported at once, nothing changed; passwords wrapped as secrets
//! at once), calls the use cases, and converts results back. The only module that knows the
//! generated types. Responses never carry a password or hash.

use chassis::Violations;
use chassis::auth::{self, roles};
use chassis::error::Error;
use chassis::grpc::{first_reason, in_request_order, page_size, parse_uuid, timestamp_to_proto};
use chassis::pagination::{decode_token, encode_token};
use emporium_proto::audit::v1 as audit;
use emporium_proto::identity::v1 as proto;
use proto::identity_service_server::IdentityService;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::domain::{
    Account, AccountChanges, AccountListQuery, AccountOrder, Country, Direction, Email, NewAccount,
    NewRole, Nickname, Password, PersonName, Role, RoleChanges, RoleDescription, RoleName,
    SearchText,
};
use crate::service::{Identity, MAX_BATCH_IDS};
use crate::store::{self, Cursor};

const DEFAULT_PAGE_SIZE: i64 = 50;
const MAX_PAGE_SIZE: i64 = 500;

/// The tonic service over [`Identity`].
#[derive(Clone, Debug)]
pub struct IdentityGrpc {
    identity: Identity,
}

impl IdentityGrpc {
    pub fn new(identity: Identity) -> IdentityGrpc {
        IdentityGrpc { identity }
    }
}

#[tonic::async_trait]
impl IdentityService for IdentityGrpc {
    #[tracing::instrument(skip_all)]
    async fn create_account(
        &self,
        request: Request<proto::CreateAccountRequest>,
    ) -> Result<Response<proto::Account>, Status> {
        let caller = auth::require(&request, &[roles::ADMIN])?;
        let new = parse_new_account(request.into_inner())?;
        let account = self.identity.create_account(new, &caller.subject).await?;
        Ok(Response::new(account_to_proto(account)))
    }

    #[tracing::instrument(skip_all)]
    async fn get_account(
        &self,
        request: Request<proto::GetAccountRequest>,
    ) -> Result<Response<proto::Account>, Status> {
        let caller = auth::require(&request, &[roles::ADMIN])?;
        let id = parse_uuid("id", &request.get_ref().id)?;
        let account = self.identity.get_account(id, &caller.subject).await?;
        Ok(Response::new(account_to_proto(account)))
    }

    #[tracing::instrument(skip_all)]
    async fn batch_get_accounts(
        &self,
        request: Request<proto::BatchGetAccountsRequest>,
    ) -> Result<Response<proto::BatchGetAccountsResponse>, Status> {
        let caller = auth::require(&request, &[roles::ADMIN])?;
        let ids = parse_ids(&request.get_ref().ids)?;
        let found = self.identity.get_accounts(&ids, &caller.subject).await?;
        let (accounts, missing_ids) = in_request_order(&ids, found, |account| account.id);
        Ok(Response::new(proto::BatchGetAccountsResponse {
            accounts: accounts.into_iter().map(account_to_proto).collect(),
            missing_ids,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_accounts(
        &self,
        request: Request<proto::ListAccountsRequest>,
    ) -> Result<Response<proto::ListAccountsResponse>, Status> {
        auth::require(&request, &[roles::ADMIN])?;
        let request = request.into_inner();
        let (query, fingerprint) = parse_account_list(&request)?;
        let after: Option<Cursor> = decode_token("page_token", &fingerprint, &request.page_token)?;
        let page = self.identity.list_accounts(&query, after.as_ref()).await?;
        let next_page_token = match page.items.last() {
            Some(last) if page.has_more => {
                encode_token(&fingerprint, &store::account_cursor(last, query.order))
            }
            _ => String::new(),
        };
        Ok(Response::new(proto::ListAccountsResponse {
            accounts: page.items.into_iter().map(account_to_proto).collect(),
            next_page_token,
            total_size: page.total,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn update_account(
        &self,
        request: Request<proto::UpdateAccountRequest>,
    ) -> Result<Response<proto::Account>, Status> {
        let caller = auth::require(&request, &[roles::ADMIN])?;
        let (id, changes) = parse_account_changes(request.into_inner())?;
        let account = self
            .identity
            .update_account(id, changes, &caller.subject)
            .await?;
        Ok(Response::new(account_to_proto(account)))
    }

    #[tracing::instrument(skip_all)]
    async fn delete_account(
        &self,
        request: Request<proto::DeleteAccountRequest>,
    ) -> Result<Response<proto::DeleteAccountResponse>, Status> {
        let caller = auth::require(&request, &[roles::ADMIN])?;
        let request = request.into_inner();
        let (id, expected_version) = parse_delete(&request.id, request.expected_version)?;
        self.identity
            .delete_account(id, expected_version, &caller.subject)
            .await?;
        Ok(Response::new(proto::DeleteAccountResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn set_password(
        &self,
        request: Request<proto::SetPasswordRequest>,
    ) -> Result<Response<proto::Account>, Status> {
        let caller = auth::require(&request, &[roles::ADMIN])?;
        let (id, expected_version, password) = parse_set_password(request.into_inner())?;
        let account = self
            .identity
            .set_password(id, expected_version, password, &caller.subject)
            .await?;
        Ok(Response::new(account_to_proto(account)))
    }

    #[tracing::instrument(skip_all)]
    async fn create_role(
        &self,
        request: Request<proto::CreateRoleRequest>,
    ) -> Result<Response<proto::Role>, Status> {
        let caller = auth::require(&request, &[roles::ADMIN])?;
        let new = parse_new_role(request.into_inner())?;
        let role = self.identity.create_role(new, &caller.subject).await?;
        Ok(Response::new(role_to_proto(role)))
    }

    #[tracing::instrument(skip_all)]
    async fn get_role(
        &self,
        request: Request<proto::GetRoleRequest>,
    ) -> Result<Response<proto::Role>, Status> {
        auth::require(&request, &[roles::ADMIN])?;
        let name = parse_role_name("name", &request.get_ref().name)?;
        let role = self.identity.get_role(name.as_str()).await?;
        Ok(Response::new(role_to_proto(role)))
    }

    #[tracing::instrument(skip_all)]
    async fn list_roles(
        &self,
        request: Request<proto::ListRolesRequest>,
    ) -> Result<Response<proto::ListRolesResponse>, Status> {
        auth::require(&request, &[roles::ADMIN])?;
        let roles = self.identity.list_roles().await?;
        Ok(Response::new(proto::ListRolesResponse {
            roles: roles.into_iter().map(role_to_proto).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn update_role(
        &self,
        request: Request<proto::UpdateRoleRequest>,
    ) -> Result<Response<proto::Role>, Status> {
        let caller = auth::require(&request, &[roles::ADMIN])?;
        let (name, changes) = parse_role_changes(request.into_inner())?;
        let role = self
            .identity
            .update_role(name.as_str(), changes, &caller.subject)
            .await?;
        Ok(Response::new(role_to_proto(role)))
    }

    #[tracing::instrument(skip_all)]
    async fn delete_role(
        &self,
        request: Request<proto::DeleteRoleRequest>,
    ) -> Result<Response<proto::DeleteRoleResponse>, Status> {
        let caller = auth::require(&request, &[roles::ADMIN])?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let name = violations.check("name", RoleName::parse(&request.name));
        if request.expected_version < 0 {
            violations.add(
                "expected_version",
                "must not be negative (0 deletes whatever the version)",
            );
        }
        violations.finish()?;
        let name = name.ok_or_else(|| validated_field_missing("name"))?;
        self.identity
            .delete_role(name.as_str(), request.expected_version, &caller.subject)
            .await?;
        Ok(Response::new(proto::DeleteRoleResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn grant_role(
        &self,
        request: Request<proto::GrantRoleRequest>,
    ) -> Result<Response<proto::Account>, Status> {
        let caller = auth::require(&request, &[roles::ADMIN])?;
        let request = request.into_inner();
        let (account_id, role) =
            parse_grant(&request.account_id, &request.role, request.expected_version)?;
        let account = self
            .identity
            .grant_role(
                account_id,
                role.as_str(),
                request.expected_version,
                &caller.subject,
            )
            .await?;
        Ok(Response::new(account_to_proto(account)))
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_role(
        &self,
        request: Request<proto::RevokeRoleRequest>,
    ) -> Result<Response<proto::Account>, Status> {
        let caller = auth::require(&request, &[roles::ADMIN])?;
        let request = request.into_inner();
        let (account_id, role) =
            parse_grant(&request.account_id, &request.role, request.expected_version)?;
        let account = self
            .identity
            .revoke_role(
                account_id,
                role.as_str(),
                request.expected_version,
                &caller.subject,
            )
            .await?;
        Ok(Response::new(account_to_proto(account)))
    }

    #[tracing::instrument(skip_all)]
    async fn list_events(
        &self,
        request: Request<audit::ListEventsRequest>,
    ) -> Result<Response<audit::ListEventsResponse>, Status> {
        auth::require(&request, &[roles::ADMIN])?;
        let response =
            chassis::audit::list_events(self.identity.database(), request.into_inner()).await?;
        Ok(Response::new(response))
    }
}

// === parsing ===

fn parse_new_account(request: proto::CreateAccountRequest) -> Result<NewAccount, Error> {
    let mut violations = Violations::new();
    let email = violations.check("email", Email::parse(&request.email));
    let first_name = violations.check("first_name", PersonName::parse(&request.first_name));
    let last_name = violations.check("last_name", PersonName::parse(&request.last_name));
    let nickname = violations.check("nickname", Nickname::parse(&request.nickname));
    let country = violations.check("country", Country::parse(&request.country));
    // The password becomes a secret before anything else looks at it.
    let password = if request.password.is_empty() {
        Some(None)
    } else {
        violations
            .check("password", Password::parse(request.password))
            .map(Some)
    };
    violations.finish()?;
    match (email, first_name, last_name, nickname, country, password) {
        (
            Some(email),
            Some(first_name),
            Some(last_name),
            Some(nickname),
            Some(country),
            Some(password),
        ) => Ok(NewAccount {
            email,
            first_name,
            last_name,
            nickname,
            country,
            password,
        }),
        _ => Err(validated_field_missing("account")),
    }
}

fn parse_account_changes(
    request: proto::UpdateAccountRequest,
) -> Result<(Uuid, AccountChanges), Error> {
    let mut violations = Violations::new();
    let id = violations.check("id", parse_uuid("id", &request.id).map_err(first_reason));
    if request.expected_version < 1 {
        violations.add("expected_version", "is required: the version you last read");
    }
    let email = request
        .email
        .as_deref()
        .and_then(|email| violations.check("email", Email::parse(email)));
    let first_name = request
        .first_name
        .as_deref()
        .and_then(|name| violations.check("first_name", PersonName::parse(name)));
    let last_name = request
        .last_name
        .as_deref()
        .and_then(|name| violations.check("last_name", PersonName::parse(name)));
    let nickname = request
        .nickname
        .as_deref()
        .and_then(|nickname| violations.check("nickname", Nickname::parse(nickname)));
    let country = request
        .country
        .as_deref()
        .and_then(|country| violations.check("country", Country::parse(country)));
    violations.finish()?;
    let id = id.ok_or_else(|| validated_field_missing("id"))?;
    Ok((
        id,
        AccountChanges {
            expected_version: request.expected_version,
            email,
            first_name,
            last_name,
            nickname,
            country,
            disabled: request.disabled,
        },
    ))
}

fn parse_set_password(request: proto::SetPasswordRequest) -> Result<(Uuid, i64, Password), Error> {
    let mut violations = Violations::new();
    let id = violations.check("id", parse_uuid("id", &request.id).map_err(first_reason));
    if request.expected_version < 1 {
        violations.add("expected_version", "is required: the version you last read");
    }
    let password = violations.check("password", Password::parse(request.password));
    violations.finish()?;
    match (id, password) {
        (Some(id), Some(password)) => Ok((id, request.expected_version, password)),
        _ => Err(validated_field_missing("password")),
    }
}

fn parse_account_list(
    request: &proto::ListAccountsRequest,
) -> Result<(AccountListQuery, String), Error> {
    let mut violations = Violations::new();
    let page_size = violations.check(
        "page_size",
        page_size(
            "page_size",
            request.page_size,
            DEFAULT_PAGE_SIZE,
            MAX_PAGE_SIZE,
        )
        .map_err(first_reason),
    );
    let country = if request.country.is_empty() {
        None
    } else {
        violations.check("country", Country::parse(&request.country))
    };
    let text = if request.query.trim().is_empty() {
        None
    } else {
        violations.check("query", SearchText::parse(&request.query))
    };
    let order = match proto::AccountOrderBy::try_from(request.order_by) {
        Ok(proto::AccountOrderBy::Unspecified | proto::AccountOrderBy::Email) => {
            Some(AccountOrder::Email)
        }
        Ok(proto::AccountOrderBy::CreateTime) => Some(AccountOrder::CreatedAt),
        Err(_) => {
            violations.add("order_by", "is not a known ordering");
            None
        }
    };
    let direction = match proto::SortDirection::try_from(request.direction) {
        Ok(proto::SortDirection::Unspecified | proto::SortDirection::Asc) => {
            Some(Direction::Ascending)
        }
        Ok(proto::SortDirection::Desc) => Some(Direction::Descending),
        Err(_) => {
            violations.add("direction", "is not a known direction");
            None
        }
    };
    violations.finish()?;
    let (Some(page_size), Some(order), Some(direction)) = (page_size, order, direction) else {
        return Err(validated_field_missing("page_size"));
    };
    let fingerprint = format!(
        "accounts|{order:?}|{direction:?}|{}|{}",
        request.country,
        request.query.trim()
    );
    Ok((
        AccountListQuery {
            country,
            text,
            order,
            direction,
            page_size,
        },
        fingerprint,
    ))
}

fn parse_new_role(request: proto::CreateRoleRequest) -> Result<NewRole, Error> {
    let mut violations = Violations::new();
    let name = violations.check("name", RoleName::parse(&request.name));
    let description = violations.check("description", RoleDescription::parse(&request.description));
    violations.finish()?;
    match (name, description) {
        (Some(name), Some(description)) => Ok(NewRole { name, description }),
        _ => Err(validated_field_missing("name")),
    }
}

fn parse_role_changes(request: proto::UpdateRoleRequest) -> Result<(RoleName, RoleChanges), Error> {
    let mut violations = Violations::new();
    let name = violations.check("name", RoleName::parse(&request.name));
    if request.expected_version < 1 {
        violations.add("expected_version", "is required: the version you last read");
    }
    let description = request.description.as_deref().and_then(|description| {
        violations.check("description", RoleDescription::parse(description))
    });
    violations.finish()?;
    let name = name.ok_or_else(|| validated_field_missing("name"))?;
    Ok((
        name,
        RoleChanges {
            expected_version: request.expected_version,
            description,
        },
    ))
}

fn parse_role_name(field: &str, name: &str) -> Result<RoleName, Error> {
    RoleName::parse(name).map_err(|reason| Error::invalid(field, reason))
}

fn parse_grant(
    account_id: &str,
    role: &str,
    expected_version: i64,
) -> Result<(Uuid, RoleName), Error> {
    let mut violations = Violations::new();
    let account_id = violations.check(
        "account_id",
        parse_uuid("account_id", account_id).map_err(first_reason),
    );
    let role = violations.check("role", RoleName::parse(role));
    if expected_version < 1 {
        violations.add("expected_version", "is required: the version you last read");
    }
    violations.finish()?;
    match (account_id, role) {
        (Some(account_id), Some(role)) => Ok((account_id, role)),
        _ => Err(validated_field_missing("account_id")),
    }
}

fn parse_delete(id: &str, expected_version: i64) -> Result<(Uuid, i64), Error> {
    let mut violations = Violations::new();
    let id = violations.check("id", parse_uuid("id", id).map_err(first_reason));
    if expected_version < 0 {
        violations.add(
            "expected_version",
            "must not be negative (0 deletes whatever the version)",
        );
    }
    violations.finish()?;
    let id = id.ok_or_else(|| validated_field_missing("id"))?;
    Ok((id, expected_version))
}

fn parse_ids(ids: &[String]) -> Result<Vec<Uuid>, Error> {
    let mut violations = Violations::new();
    if ids.len() > MAX_BATCH_IDS {
        violations.add("ids", format!("must hold at most {MAX_BATCH_IDS} ids"));
    }
    let mut parsed = Vec::with_capacity(ids.len());
    for (index, id) in ids.iter().enumerate() {
        let field = format!("ids[{index}]");
        if let Some(id) = violations.check(&field, parse_uuid(&field, id).map_err(first_reason)) {
            parsed.push(id);
        }
    }
    violations.finish()?;
    Ok(parsed)
}

/// For the `let … else` after [`Violations::finish`]: a field that passed validation but is
/// missing is a bug here, not the caller's fault.
fn validated_field_missing(field: &str) -> Error {
    Error::Unexpected(anyhow::anyhow!("validated field {field} missing"))
}

// === conversion to the wire ===

fn account_to_proto(account: Account) -> proto::Account {
    proto::Account {
        id: account.id.to_string(),
        email: account.email,
        first_name: account.first_name,
        last_name: account.last_name,
        nickname: account.nickname,
        country: account.country,
        disabled: account.disabled,
        roles: account.roles,
        version: account.version,
        create_time: Some(timestamp_to_proto(account.created_at)),
        update_time: Some(timestamp_to_proto(account.updated_at)),
    }
}

fn role_to_proto(role: Role) -> proto::Role {
    proto::Role {
        id: role.id.to_string(),
        name: role.name,
        description: role.description,
        builtin: role.builtin,
        version: role.version,
        create_time: Some(timestamp_to_proto(role.created_at)),
        update_time: Some(timestamp_to_proto(role.updated_at)),
    }
}
