//! The identity service's gRPC boundary: parses requests into domain values (every bad field
//! reported at once, nothing changed; passwords wrapped as secrets at once), calls the use cases,
//! and converts results back. The only module that knows the generated types. Responses never
//! carry a password or hash; a client secret leaves only in the response of the call that minted
//! it. Who may call each RPC (`admin`, for all of them) is written in `identity.proto` and
//! enforced by the chassis before a handler here runs; handlers only take the caller, to record
//! who did what.

use chassis::Violations;
use chassis::auth;
use chassis::error::Error;
use chassis::grpc::{first_reason, in_request_order, page_size, parse_uuid};
use chassis::outbox::Actor;
use chassis::pagination::{Continuation, decode_token, encode_token};
use emporium_proto::audit::v1 as audit;
use emporium_proto::identity::v1 as proto;
use proto::identity_service_server::IdentityService;
use secrecy::{ExposeSecret, SecretString};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::domain::{
    AccountChanges, AccountListQuery, AccountOrder, ClientChanges, ClientId, ClientKind,
    ClientName, Country, Direction, Email, MAX_REDIRECT_URIS, NewAccount, NewClient, NewRole,
    Nickname, Password, PersonName, RedirectUri, RoleChanges, RoleDescription, RoleName,
    SearchText, sorted_roles,
};
use crate::service::{Identity, MAX_BATCH_IDS};
use crate::store::{self, Cursor};
use crate::wire::{account_to_proto, client_to_proto, role_to_proto};

const DEFAULT_PAGE_SIZE: i64 = 50;
const MAX_PAGE_SIZE: i64 = 500;
/// The client list has no filters or orderings, so every page token belongs to the same query.
const CLIENT_LIST_FINGERPRINT: &str = "clients";

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
        let caller = auth::authenticated(&request)?;
        let new = parse_new_account(request.into_inner())?;
        let account = self
            .identity
            .create_account(new, &Actor::from(&caller))
            .await?;
        Ok(Response::new(account_to_proto(&account)))
    }

    #[tracing::instrument(skip_all)]
    async fn get_account(
        &self,
        request: Request<proto::GetAccountRequest>,
    ) -> Result<Response<proto::Account>, Status> {
        let caller = auth::authenticated(&request)?;
        let id = parse_uuid("id", &request.get_ref().id)?;
        let account = self.identity.get_account(id, &Actor::from(&caller)).await?;
        Ok(Response::new(account_to_proto(&account)))
    }

    #[tracing::instrument(skip_all)]
    async fn batch_get_accounts(
        &self,
        request: Request<proto::BatchGetAccountsRequest>,
    ) -> Result<Response<proto::BatchGetAccountsResponse>, Status> {
        let caller = auth::authenticated(&request)?;
        let ids = parse_ids(&request.get_ref().ids)?;
        let found = self
            .identity
            .get_accounts(&ids, &Actor::from(&caller))
            .await?;
        let (accounts, missing_ids) = in_request_order(&ids, found, |account| account.id);
        Ok(Response::new(proto::BatchGetAccountsResponse {
            accounts: accounts.iter().map(account_to_proto).collect(),
            missing_ids,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_accounts(
        &self,
        request: Request<proto::ListAccountsRequest>,
    ) -> Result<Response<proto::ListAccountsResponse>, Status> {
        let caller = auth::authenticated(&request)?;
        let request = request.into_inner();
        let (query, fingerprint) = parse_account_list(&request)?;
        let after: Option<Continuation<Cursor>> =
            decode_token("page_token", &fingerprint, &request.page_token)?;
        let page = self
            .identity
            .list_accounts(&query, after.as_ref(), &Actor::from(&caller))
            .await?;
        let next_page_token = match page.items.last() {
            Some(last) if page.has_more => encode_token(
                &fingerprint,
                &Continuation {
                    cursor: store::account_cursor(last, query.order),
                    total_size: page.total,
                },
            ),
            _ => String::new(),
        };
        Ok(Response::new(proto::ListAccountsResponse {
            accounts: page.items.iter().map(account_to_proto).collect(),
            next_page_token,
            total_size: page.total,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn update_account(
        &self,
        request: Request<proto::UpdateAccountRequest>,
    ) -> Result<Response<proto::Account>, Status> {
        let caller = auth::authenticated(&request)?;
        let (id, changes) = parse_account_changes(request.into_inner())?;
        let account = self
            .identity
            .update_account(id, changes, &Actor::from(&caller))
            .await?;
        Ok(Response::new(account_to_proto(&account)))
    }

    #[tracing::instrument(skip_all)]
    async fn delete_account(
        &self,
        request: Request<proto::DeleteAccountRequest>,
    ) -> Result<Response<proto::DeleteAccountResponse>, Status> {
        let caller = auth::authenticated(&request)?;
        let request = request.into_inner();
        let (id, expected_version) = parse_delete(&request.id, request.expected_version)?;
        self.identity
            .delete_account(id, expected_version, &Actor::from(&caller))
            .await?;
        Ok(Response::new(proto::DeleteAccountResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn set_password(
        &self,
        request: Request<proto::SetPasswordRequest>,
    ) -> Result<Response<proto::Account>, Status> {
        let caller = auth::authenticated(&request)?;
        let (id, expected_version, password) = parse_set_password(request.into_inner())?;
        let account = self
            .identity
            .set_password(id, expected_version, password, &Actor::from(&caller))
            .await?;
        Ok(Response::new(account_to_proto(&account)))
    }

    #[tracing::instrument(skip_all)]
    async fn create_role(
        &self,
        request: Request<proto::CreateRoleRequest>,
    ) -> Result<Response<proto::Role>, Status> {
        let caller = auth::authenticated(&request)?;
        let new = parse_new_role(request.into_inner())?;
        let role = self
            .identity
            .create_role(new, &Actor::from(&caller))
            .await?;
        Ok(Response::new(role_to_proto(&role)))
    }

    #[tracing::instrument(skip_all)]
    async fn get_role(
        &self,
        request: Request<proto::GetRoleRequest>,
    ) -> Result<Response<proto::Role>, Status> {
        let name = parse_role_name("name", &request.get_ref().name)?;
        let role = self.identity.get_role(name.as_str()).await?;
        Ok(Response::new(role_to_proto(&role)))
    }

    #[tracing::instrument(skip_all)]
    async fn list_roles(
        &self,
        _request: Request<proto::ListRolesRequest>,
    ) -> Result<Response<proto::ListRolesResponse>, Status> {
        let roles = self.identity.list_roles().await?;
        Ok(Response::new(proto::ListRolesResponse {
            roles: roles.iter().map(role_to_proto).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn update_role(
        &self,
        request: Request<proto::UpdateRoleRequest>,
    ) -> Result<Response<proto::Role>, Status> {
        let caller = auth::authenticated(&request)?;
        let (name, changes) = parse_role_changes(request.into_inner())?;
        let role = self
            .identity
            .update_role(name.as_str(), changes, &Actor::from(&caller))
            .await?;
        Ok(Response::new(role_to_proto(&role)))
    }

    #[tracing::instrument(skip_all)]
    async fn delete_role(
        &self,
        request: Request<proto::DeleteRoleRequest>,
    ) -> Result<Response<proto::DeleteRoleResponse>, Status> {
        let caller = auth::authenticated(&request)?;
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
            .delete_role(
                name.as_str(),
                request.expected_version,
                &Actor::from(&caller),
            )
            .await?;
        Ok(Response::new(proto::DeleteRoleResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn grant_role(
        &self,
        request: Request<proto::GrantRoleRequest>,
    ) -> Result<Response<proto::Account>, Status> {
        let caller = auth::authenticated(&request)?;
        let request = request.into_inner();
        let (account_id, role) =
            parse_grant(&request.account_id, &request.role, request.expected_version)?;
        let account = self
            .identity
            .grant_role(
                account_id,
                role.as_str(),
                request.expected_version,
                &Actor::from(&caller),
            )
            .await?;
        Ok(Response::new(account_to_proto(&account)))
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_role(
        &self,
        request: Request<proto::RevokeRoleRequest>,
    ) -> Result<Response<proto::Account>, Status> {
        let caller = auth::authenticated(&request)?;
        let request = request.into_inner();
        let (account_id, role) =
            parse_grant(&request.account_id, &request.role, request.expected_version)?;
        let account = self
            .identity
            .revoke_role(
                account_id,
                role.as_str(),
                request.expected_version,
                &Actor::from(&caller),
            )
            .await?;
        Ok(Response::new(account_to_proto(&account)))
    }

    #[tracing::instrument(skip_all)]
    async fn create_client(
        &self,
        request: Request<proto::CreateClientRequest>,
    ) -> Result<Response<proto::CreateClientResponse>, Status> {
        let caller = auth::authenticated(&request)?;
        let new = parse_new_client(request.into_inner())?;
        let (client, secret) = self
            .identity
            .create_client(new, &Actor::from(&caller))
            .await?;
        Ok(Response::new(proto::CreateClientResponse {
            client: Some(client_to_proto(&client)),
            client_secret: secret.as_ref().map(expose_once).unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_client(
        &self,
        request: Request<proto::GetClientRequest>,
    ) -> Result<Response<proto::Client>, Status> {
        let client_id = parse_client_id(&request.get_ref().client_id)?;
        let client = self.identity.get_client(client_id.as_str()).await?;
        Ok(Response::new(client_to_proto(&client)))
    }

    #[tracing::instrument(skip_all)]
    async fn list_clients(
        &self,
        request: Request<proto::ListClientsRequest>,
    ) -> Result<Response<proto::ListClientsResponse>, Status> {
        let request = request.into_inner();
        let page_size = page_size(
            "page_size",
            request.page_size,
            DEFAULT_PAGE_SIZE,
            MAX_PAGE_SIZE,
        )?;
        let after: Option<Continuation<Cursor>> =
            decode_token("page_token", CLIENT_LIST_FINGERPRINT, &request.page_token)?;
        let page = self
            .identity
            .list_clients(page_size, after.as_ref())
            .await?;
        let next_page_token = match page.items.last() {
            Some(last) if page.has_more => encode_token(
                CLIENT_LIST_FINGERPRINT,
                &Continuation {
                    cursor: store::client_cursor(last),
                    total_size: page.total,
                },
            ),
            _ => String::new(),
        };
        Ok(Response::new(proto::ListClientsResponse {
            clients: page.items.iter().map(client_to_proto).collect(),
            next_page_token,
            total_size: page.total,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn update_client(
        &self,
        request: Request<proto::UpdateClientRequest>,
    ) -> Result<Response<proto::Client>, Status> {
        let caller = auth::authenticated(&request)?;
        let (client_id, changes) = parse_client_changes(request.into_inner())?;
        let client = self
            .identity
            .update_client(client_id.as_str(), changes, &Actor::from(&caller))
            .await?;
        Ok(Response::new(client_to_proto(&client)))
    }

    #[tracing::instrument(skip_all)]
    async fn delete_client(
        &self,
        request: Request<proto::DeleteClientRequest>,
    ) -> Result<Response<proto::DeleteClientResponse>, Status> {
        let caller = auth::authenticated(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let client_id = violations.check("client_id", ClientId::parse(&request.client_id));
        if request.expected_version < 0 {
            violations.add(
                "expected_version",
                "must not be negative (0 deletes whatever the version)",
            );
        }
        violations.finish()?;
        let client_id = client_id.ok_or_else(|| validated_field_missing("client_id"))?;
        self.identity
            .delete_client(
                client_id.as_str(),
                request.expected_version,
                &Actor::from(&caller),
            )
            .await?;
        Ok(Response::new(proto::DeleteClientResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn reset_client_secret(
        &self,
        request: Request<proto::ResetClientSecretRequest>,
    ) -> Result<Response<proto::ResetClientSecretResponse>, Status> {
        let caller = auth::authenticated(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let client_id = violations.check("client_id", ClientId::parse(&request.client_id));
        if request.expected_version < 1 {
            violations.add("expected_version", "is required: the version you last read");
        }
        violations.finish()?;
        let client_id = client_id.ok_or_else(|| validated_field_missing("client_id"))?;
        let (client, secret) = self
            .identity
            .reset_client_secret(
                client_id.as_str(),
                request.expected_version,
                &Actor::from(&caller),
            )
            .await?;
        Ok(Response::new(proto::ResetClientSecretResponse {
            client: Some(client_to_proto(&client)),
            client_secret: expose_once(&secret),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_events(
        &self,
        request: Request<audit::ListEventsRequest>,
    ) -> Result<Response<audit::ListEventsResponse>, Status> {
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
    let customer_id = violations.check("customer_id", parse_customer_id(&request.customer_id));
    violations.finish()?;
    match (
        email,
        first_name,
        last_name,
        nickname,
        country,
        password,
        customer_id,
    ) {
        (
            Some(email),
            Some(first_name),
            Some(last_name),
            Some(nickname),
            Some(country),
            Some(password),
            Some(customer_id),
        ) => Ok(NewAccount {
            email,
            first_name,
            last_name,
            nickname,
            country,
            password,
            customer_id,
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
    let customer_id = request
        .customer_id
        .as_deref()
        .and_then(|customer_id| violations.check("customer_id", parse_customer_id(customer_id)));
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
            customer_id,
        },
    ))
}

/// An account's link to its customer record: empty for none, otherwise a UUID.
fn parse_customer_id(text: &str) -> Result<Option<Uuid>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    Uuid::parse_str(text)
        .map(Some)
        .map_err(|_| "must be a UUID, or empty for none".to_owned())
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

fn parse_new_client(request: proto::CreateClientRequest) -> Result<NewClient, Error> {
    let mut violations = Violations::new();
    let client_id = violations.check("client_id", ClientId::parse(&request.client_id));
    let name = violations.check("name", ClientName::parse(&request.name));
    let kind = match proto::ClientType::try_from(request.r#type) {
        Ok(proto::ClientType::Public) => Some(ClientKind::Public),
        Ok(proto::ClientType::Confidential) => Some(ClientKind::Confidential),
        Ok(proto::ClientType::Unspecified) | Err(_) => {
            violations.add(
                "type",
                "is required: CLIENT_TYPE_PUBLIC or CLIENT_TYPE_CONFIDENTIAL",
            );
            None
        }
    };
    let redirect_uris =
        parse_redirect_uris(&mut violations, "redirect_uris", &request.redirect_uris);
    let post_logout_redirect_uris = parse_redirect_uris(
        &mut violations,
        "post_logout_redirect_uris",
        &request.post_logout_redirect_uris,
    );
    let roles = parse_roles(&mut violations, &request.roles);
    // The kind's rules, checked here too so that they are reported with every other problem.
    if let (Some(kind), Some(redirect_uris), Some(roles)) = (kind, &redirect_uris, &roles) {
        for violation in kind.violations(redirect_uris, roles) {
            violations.add(violation.field, violation.description);
        }
    }
    violations.finish()?;
    match (
        client_id,
        name,
        kind,
        redirect_uris,
        post_logout_redirect_uris,
        roles,
    ) {
        (
            Some(client_id),
            Some(name),
            Some(kind),
            Some(redirect_uris),
            Some(post_logout_redirect_uris),
            Some(roles),
        ) => NewClient::new(
            client_id,
            name,
            kind,
            redirect_uris,
            post_logout_redirect_uris,
            roles,
        )
        .map_err(Error::Validation),
        _ => Err(validated_field_missing("client")),
    }
}

fn parse_client_changes(
    request: proto::UpdateClientRequest,
) -> Result<(ClientId, ClientChanges), Error> {
    let mut violations = Violations::new();
    let client_id = violations.check("client_id", ClientId::parse(&request.client_id));
    if request.expected_version < 1 {
        violations.add("expected_version", "is required: the version you last read");
    }
    let name = request
        .name
        .as_deref()
        .and_then(|name| violations.check("name", ClientName::parse(name)));
    let redirect_uris = request
        .redirect_uris
        .as_ref()
        .map(|list| parse_redirect_uris(&mut violations, "redirect_uris", &list.values));
    let post_logout_redirect_uris = request.post_logout_redirect_uris.as_ref().map(|list| {
        parse_redirect_uris(&mut violations, "post_logout_redirect_uris", &list.values)
    });
    let roles = request
        .roles
        .as_ref()
        .map(|list| parse_roles_in(&mut violations, "roles", &list.values));
    violations.finish()?;
    let client_id = client_id.ok_or_else(|| validated_field_missing("client_id"))?;
    // After `finish`, a list that was given parsed: `Some(None)` cannot happen.
    let given = |list: Option<Option<Vec<_>>>, field| match list {
        Some(None) => Err(validated_field_missing(field)),
        Some(Some(values)) => Ok(Some(values)),
        None => Ok(None),
    };
    Ok((
        client_id,
        ClientChanges {
            expected_version: request.expected_version,
            name,
            redirect_uris: given(redirect_uris, "redirect_uris")?,
            post_logout_redirect_uris: given(
                post_logout_redirect_uris,
                "post_logout_redirect_uris",
            )?,
            roles: roles
                .map(|roles| roles.ok_or_else(|| validated_field_missing("roles")))
                .transpose()?,
            disabled: request.disabled,
        },
    ))
}

fn parse_client_id(client_id: &str) -> Result<ClientId, Error> {
    ClientId::parse(client_id).map_err(|reason| Error::invalid("client_id", reason))
}

/// Each URI under `field[index]`; `None` when any is invalid or there are too many.
fn parse_redirect_uris(
    violations: &mut Violations,
    field: &str,
    texts: &[String],
) -> Option<Vec<RedirectUri>> {
    let mut valid = true;
    if texts.len() > MAX_REDIRECT_URIS {
        violations.add(field, format!("must hold at most {MAX_REDIRECT_URIS} URIs"));
        valid = false;
    }
    let mut uris = Vec::with_capacity(texts.len());
    for (index, text) in texts.iter().enumerate() {
        match violations.check(&format!("{field}[{index}]"), RedirectUri::parse(text)) {
            Some(uri) => uris.push(uri),
            None => valid = false,
        }
    }
    valid.then_some(uris)
}

fn parse_roles(violations: &mut Violations, texts: &[String]) -> Option<Vec<RoleName>> {
    parse_roles_in(violations, "roles", texts)
}

/// Each role name under `field[index]`, sorted, duplicates dropped; `None` when any is invalid.
fn parse_roles_in(
    violations: &mut Violations,
    field: &str,
    texts: &[String],
) -> Option<Vec<RoleName>> {
    let mut valid = true;
    let mut roles = Vec::with_capacity(texts.len());
    for (index, text) in texts.iter().enumerate() {
        match violations.check(&format!("{field}[{index}]"), RoleName::parse(text)) {
            Some(role) => roles.push(role),
            None => valid = false,
        }
    }
    valid.then(|| sorted_roles(roles))
}

/// For the `let … else` after [`Violations::finish`]: a field that passed validation but is
/// missing is a bug here, not the caller's fault.
fn validated_field_missing(field: &str) -> Error {
    Error::Unexpected(anyhow::anyhow!("validated field {field} missing"))
}

/// The plaintext of a freshly minted secret, for the one response that carries it. The response
/// types redact it in Debug, so it reaches the caller and nothing else.
fn expose_once(secret: &SecretString) -> String {
    secret.expose_secret().to_owned()
}
