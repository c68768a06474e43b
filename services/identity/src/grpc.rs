//! The identity service's gRPC boundary: parses requests into domain values (every bad field
//! reported at once, nothing changed; passwords wrapped as secrets at once), calls the use cases,
//! and converts results back. The only module that knows the generated types. Responses never
//! carry a password or hash; a client secret leaves only in the response of the call that minted
//! it. Who may call each RPC (`admin`, for all of them) is written in `identity.proto` and
//! enforced by the chassis before a handler here runs; handlers only take the caller, to record
//! who did what. Each call already runs in the chassis's `grpc` span (its method and caller), so
//! handlers open no span of their own.

use chassis::auth;
use chassis::error::Error;
use chassis::grpc::in_request_order;
use chassis::pagination::PageRequest;
use chassis::validation::{MAX_BATCH_IDS, parse_delete, parse_id, parse_ids};
use chassis::{Checked, Violations};
use emporium_proto::audit::v1 as audit;
use emporium_proto::identity::v1 as proto;
use proto::identity_service_server::IdentityService;
use secrecy::{ExposeSecret, SecretString};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::domain::{
    AccountChanges, AccountListQuery, AccountOrder, ClientChanges, ClientId, ClientKind,
    ClientName, Country, Email, MAX_REDIRECT_URIS, NewAccount, NewClient, NewRole, Nickname,
    Password, PersonName, RedirectUri, RoleChanges, RoleDescription, RoleName, SearchText,
    sorted_roles,
};
use crate::service::Identity;
use crate::store;
use crate::wire::{account_to_proto, client_to_proto, role_to_proto};

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
    async fn create_account(
        &self,
        request: Request<proto::CreateAccountRequest>,
    ) -> Result<Response<proto::Account>, Status> {
        let actor = auth::actor(&request)?;
        let new = parse_new_account(request.into_inner())?;
        let account = self.identity.create_account(new, &actor).await?;
        Ok(Response::new(account_to_proto(account)))
    }

    async fn get_account(
        &self,
        request: Request<proto::GetAccountRequest>,
    ) -> Result<Response<proto::Account>, Status> {
        let actor = auth::actor(&request)?;
        let id = parse_id(&request.get_ref().id)?;
        let account = self.identity.get_account(id, &actor).await?;
        Ok(Response::new(account_to_proto(account)))
    }

    async fn batch_get_accounts(
        &self,
        request: Request<proto::BatchGetAccountsRequest>,
    ) -> Result<Response<proto::BatchGetAccountsResponse>, Status> {
        let actor = auth::actor(&request)?;
        let ids = parse_ids(&request.get_ref().ids)?;
        let found = self.identity.get_accounts(&ids, &actor).await?;
        let (accounts, missing_ids) = in_request_order(&ids, found, |account| account.id);
        Ok(Response::new(proto::BatchGetAccountsResponse {
            accounts: accounts.into_iter().map(account_to_proto).collect(),
            missing_ids,
        }))
    }

    async fn list_accounts(
        &self,
        request: Request<proto::ListAccountsRequest>,
    ) -> Result<Response<proto::ListAccountsResponse>, Status> {
        let actor = auth::actor(&request)?;
        let (query, page) = parse_account_list(request.get_ref())?;
        let found = self.identity.list_accounts(&query, &page, &actor).await?;
        Ok(Response::new(proto::ListAccountsResponse {
            next_page_token: page
                .next_page_token(&found, |last| store::account_cursor(last, query.order)),
            total_size: found.total,
            accounts: found.items.into_iter().map(account_to_proto).collect(),
        }))
    }

    async fn update_account(
        &self,
        request: Request<proto::UpdateAccountRequest>,
    ) -> Result<Response<proto::Account>, Status> {
        let actor = auth::actor(&request)?;
        let (id, changes) = parse_account_changes(request.into_inner())?;
        let account = self.identity.update_account(id, changes, &actor).await?;
        Ok(Response::new(account_to_proto(account)))
    }

    async fn delete_account(
        &self,
        request: Request<proto::DeleteAccountRequest>,
    ) -> Result<Response<proto::DeleteAccountResponse>, Status> {
        let actor = auth::actor(&request)?;
        let request = request.into_inner();
        let (id, expected_version) = parse_delete(&request.id, request.expected_version)?;
        self.identity
            .delete_account(id, expected_version, &actor)
            .await?;
        Ok(Response::new(proto::DeleteAccountResponse {}))
    }

    async fn set_password(
        &self,
        request: Request<proto::SetPasswordRequest>,
    ) -> Result<Response<proto::Account>, Status> {
        let actor = auth::actor(&request)?;
        let (id, expected_version, password) = parse_set_password(request.into_inner())?;
        let account = self
            .identity
            .set_password(id, expected_version, password, &actor)
            .await?;
        Ok(Response::new(account_to_proto(account)))
    }

    async fn create_role(
        &self,
        request: Request<proto::CreateRoleRequest>,
    ) -> Result<Response<proto::Role>, Status> {
        let actor = auth::actor(&request)?;
        let new = parse_new_role(request.into_inner())?;
        let role = self.identity.create_role(new, &actor).await?;
        Ok(Response::new(role_to_proto(role)))
    }

    async fn get_role(
        &self,
        request: Request<proto::GetRoleRequest>,
    ) -> Result<Response<proto::Role>, Status> {
        let name = parse_role_name("name", &request.get_ref().name)?;
        let role = self.identity.get_role(name.as_str()).await?;
        Ok(Response::new(role_to_proto(role)))
    }

    async fn batch_get_roles(
        &self,
        request: Request<proto::BatchGetRolesRequest>,
    ) -> Result<Response<proto::BatchGetRolesResponse>, Status> {
        let names = parse_keys("names", &request.get_ref().names, |name| {
            RoleName::parse(name)
        })?;
        let found = self.identity.get_roles(&names).await?;
        let names: Vec<String> = names.iter().map(|name| name.as_str().to_owned()).collect();
        let (roles, missing_names) = in_request_order(&names, found, |role| role.name.clone());
        Ok(Response::new(proto::BatchGetRolesResponse {
            roles: roles.into_iter().map(role_to_proto).collect(),
            missing_names,
        }))
    }

    async fn list_roles(
        &self,
        request: Request<proto::ListRolesRequest>,
    ) -> Result<Response<proto::ListRolesResponse>, Status> {
        let request = request.into_inner();
        let page = parse_page("roles", request.page_size, &request.page_token)?;
        let found = self.identity.list_roles(&page).await?;
        Ok(Response::new(proto::ListRolesResponse {
            next_page_token: page.next_page_token(&found, store::role_cursor),
            total_size: found.total,
            roles: found.items.into_iter().map(role_to_proto).collect(),
        }))
    }

    async fn update_role(
        &self,
        request: Request<proto::UpdateRoleRequest>,
    ) -> Result<Response<proto::Role>, Status> {
        let actor = auth::actor(&request)?;
        let (name, changes) = parse_role_changes(request.into_inner())?;
        let role = self
            .identity
            .update_role(name.as_str(), changes, &actor)
            .await?;
        Ok(Response::new(role_to_proto(role)))
    }

    async fn delete_role(
        &self,
        request: Request<proto::DeleteRoleRequest>,
    ) -> Result<Response<proto::DeleteRoleResponse>, Status> {
        let actor = auth::actor(&request)?;
        let request = request.into_inner();
        let (name, expected_version) = parse_keyed_change(
            "name",
            RoleName::parse(&request.name),
            request.expected_version,
            true,
        )?;
        self.identity
            .delete_role(name.as_str(), expected_version, &actor)
            .await?;
        Ok(Response::new(proto::DeleteRoleResponse {}))
    }

    async fn grant_role(
        &self,
        request: Request<proto::GrantRoleRequest>,
    ) -> Result<Response<proto::Account>, Status> {
        let actor = auth::actor(&request)?;
        let request = request.into_inner();
        let (account_id, role, expected_version) =
            parse_grant(&request.account_id, &request.role, request.expected_version)?;
        let account = self
            .identity
            .grant_role(account_id, role.as_str(), expected_version, &actor)
            .await?;
        Ok(Response::new(account_to_proto(account)))
    }

    async fn revoke_role(
        &self,
        request: Request<proto::RevokeRoleRequest>,
    ) -> Result<Response<proto::Account>, Status> {
        let actor = auth::actor(&request)?;
        let request = request.into_inner();
        let (account_id, role, expected_version) =
            parse_grant(&request.account_id, &request.role, request.expected_version)?;
        let account = self
            .identity
            .revoke_role(account_id, role.as_str(), expected_version, &actor)
            .await?;
        Ok(Response::new(account_to_proto(account)))
    }

    async fn create_client(
        &self,
        request: Request<proto::CreateClientRequest>,
    ) -> Result<Response<proto::CreateClientResponse>, Status> {
        let actor = auth::actor(&request)?;
        let new = parse_new_client(request.into_inner())?;
        let (client, secret) = self.identity.create_client(new, &actor).await?;
        Ok(Response::new(proto::CreateClientResponse {
            client: Some(client_to_proto(client)),
            client_secret: secret.as_ref().map(expose_once).unwrap_or_default(),
        }))
    }

    async fn get_client(
        &self,
        request: Request<proto::GetClientRequest>,
    ) -> Result<Response<proto::Client>, Status> {
        let client_id = parse_client_id(&request.get_ref().client_id)?;
        let client = self.identity.get_client(client_id.as_str()).await?;
        Ok(Response::new(client_to_proto(client)))
    }

    async fn batch_get_clients(
        &self,
        request: Request<proto::BatchGetClientsRequest>,
    ) -> Result<Response<proto::BatchGetClientsResponse>, Status> {
        let client_ids = parse_keys("client_ids", &request.get_ref().client_ids, |client_id| {
            ClientId::parse(client_id)
        })?;
        let found = self.identity.get_clients(&client_ids).await?;
        let client_ids: Vec<String> = client_ids
            .iter()
            .map(|client_id| client_id.as_str().to_owned())
            .collect();
        let (clients, missing_client_ids) = in_request_order(&client_ids, found, |client| {
            client.client_id.as_str().to_owned()
        });
        Ok(Response::new(proto::BatchGetClientsResponse {
            clients: clients.into_iter().map(client_to_proto).collect(),
            missing_client_ids,
        }))
    }

    async fn list_clients(
        &self,
        request: Request<proto::ListClientsRequest>,
    ) -> Result<Response<proto::ListClientsResponse>, Status> {
        let request = request.into_inner();
        let page = parse_page("clients", request.page_size, &request.page_token)?;
        let found = self.identity.list_clients(&page).await?;
        Ok(Response::new(proto::ListClientsResponse {
            next_page_token: page.next_page_token(&found, store::client_cursor),
            total_size: found.total,
            clients: found.items.into_iter().map(client_to_proto).collect(),
        }))
    }

    async fn update_client(
        &self,
        request: Request<proto::UpdateClientRequest>,
    ) -> Result<Response<proto::Client>, Status> {
        let actor = auth::actor(&request)?;
        let (client_id, changes) = parse_client_changes(request.into_inner())?;
        let client = self
            .identity
            .update_client(client_id.as_str(), changes, &actor)
            .await?;
        Ok(Response::new(client_to_proto(client)))
    }

    async fn delete_client(
        &self,
        request: Request<proto::DeleteClientRequest>,
    ) -> Result<Response<proto::DeleteClientResponse>, Status> {
        let actor = auth::actor(&request)?;
        let request = request.into_inner();
        let (client_id, expected_version) = parse_keyed_change(
            "client_id",
            ClientId::parse(&request.client_id),
            request.expected_version,
            true,
        )?;
        self.identity
            .delete_client(client_id.as_str(), expected_version, &actor)
            .await?;
        Ok(Response::new(proto::DeleteClientResponse {}))
    }

    async fn reset_client_secret(
        &self,
        request: Request<proto::ResetClientSecretRequest>,
    ) -> Result<Response<proto::ResetClientSecretResponse>, Status> {
        let actor = auth::actor(&request)?;
        let request = request.into_inner();
        let (client_id, expected_version) = parse_keyed_change(
            "client_id",
            ClientId::parse(&request.client_id),
            request.expected_version,
            false,
        )?;
        let (client, secret) = self
            .identity
            .reset_client_secret(client_id.as_str(), expected_version, &actor)
            .await?;
        Ok(Response::new(proto::ResetClientSecretResponse {
            client: Some(client_to_proto(client)),
            client_secret: expose_once(&secret),
        }))
    }

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
    let password = violations.check_optional(
        "password",
        (!request.password.is_empty()).then(|| Password::parse(request.password)),
    );
    let customer_id = violations.check("customer_id", parse_customer_id(&request.customer_id));
    let valid = violations.finish()?;
    Ok(NewAccount {
        email: valid.take(email),
        first_name: valid.take(first_name),
        last_name: valid.take(last_name),
        nickname: valid.take(nickname),
        country: valid.take(country),
        password: valid.take(password),
        customer_id: valid.take(customer_id),
    })
}

fn parse_account_changes(
    request: proto::UpdateAccountRequest,
) -> Result<(Uuid, AccountChanges), Error> {
    let mut violations = Violations::new();
    let id = violations.id("id", &request.id);
    let expected_version = violations.expected_version(request.expected_version);
    let email = violations.check_optional("email", request.email.as_deref().map(Email::parse));
    let first_name = violations.check_optional(
        "first_name",
        request.first_name.as_deref().map(PersonName::parse),
    );
    let last_name = violations.check_optional(
        "last_name",
        request.last_name.as_deref().map(PersonName::parse),
    );
    let nickname =
        violations.check_optional("nickname", request.nickname.as_deref().map(Nickname::parse));
    let country =
        violations.check_optional("country", request.country.as_deref().map(Country::parse));
    let customer_id = violations.check_optional(
        "customer_id",
        request.customer_id.as_deref().map(parse_customer_id),
    );
    let valid = violations.finish()?;
    Ok((
        valid.take(id),
        AccountChanges {
            expected_version: valid.take(expected_version),
            email: valid.take(email),
            first_name: valid.take(first_name),
            last_name: valid.take(last_name),
            nickname: valid.take(nickname),
            country: valid.take(country),
            disabled: request.disabled,
            customer_id: valid.take(customer_id),
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
    let id = violations.id("id", &request.id);
    let expected_version = violations.expected_version(request.expected_version);
    let password = violations.check("password", Password::parse(request.password));
    let valid = violations.finish()?;
    Ok((
        valid.take(id),
        valid.take(expected_version),
        valid.take(password),
    ))
}

fn parse_account_list(
    request: &proto::ListAccountsRequest,
) -> Result<(AccountListQuery, PageRequest), Error> {
    let mut violations = Violations::new();
    let page = violations.page(request.page_size, &request.page_token);
    let country = violations.check_optional(
        "country",
        (!request.country.is_empty()).then(|| Country::parse(&request.country)),
    );
    let text = violations.check_optional(
        "query",
        (!request.query.trim().is_empty()).then(|| SearchText::parse(&request.query)),
    );
    let order = violations.order_by("order_by", request.order_by, |order| match order {
        proto::AccountOrderBy::Unspecified | proto::AccountOrderBy::Email => AccountOrder::Email,
        proto::AccountOrderBy::CreateTime => AccountOrder::CreatedAt,
    });
    let direction = violations.direction("direction", request.direction);
    let valid = violations.finish()?;
    let query = AccountListQuery {
        country: valid.take(country),
        text: valid.take(text),
        order: valid.take(order),
        direction: valid.take(direction),
    };
    let page = valid.take(page).for_list("accounts", &query)?;
    Ok((query, page))
}

/// A list with no filters or orderings: only its page.
fn parse_page(resource: &str, page_size: i32, page_token: &str) -> Result<PageRequest, Error> {
    let mut violations = Violations::new();
    let page = violations.page(page_size, page_token);
    let valid = violations.finish()?;
    valid.take(page).for_list(resource, &())
}

fn parse_new_role(request: proto::CreateRoleRequest) -> Result<NewRole, Error> {
    let mut violations = Violations::new();
    let name = violations.check("name", RoleName::parse(&request.name));
    let description = violations.check("description", RoleDescription::parse(&request.description));
    let valid = violations.finish()?;
    Ok(NewRole {
        name: valid.take(name),
        description: valid.take(description),
    })
}

fn parse_role_changes(request: proto::UpdateRoleRequest) -> Result<(RoleName, RoleChanges), Error> {
    let mut violations = Violations::new();
    let name = violations.check("name", RoleName::parse(&request.name));
    let expected_version = violations.expected_version(request.expected_version);
    let description = violations.check_optional(
        "description",
        request.description.as_deref().map(RoleDescription::parse),
    );
    let valid = violations.finish()?;
    Ok((
        valid.take(name),
        RoleChanges {
            expected_version: valid.take(expected_version),
            description: valid.take(description),
        },
    ))
}

/// A record named by `key` (a role's name, a client's id) and the version a change expects.
fn parse_keyed_change<K, E: std::fmt::Display>(
    field: &str,
    key: Result<K, E>,
    expected_version: i64,
    delete: bool,
) -> Result<(K, i64), Error> {
    let mut violations = Violations::new();
    let key = violations.check(field, key);
    let expected_version = if delete {
        violations.delete_version(expected_version)
    } else {
        violations.expected_version(expected_version)
    };
    let valid = violations.finish()?;
    Ok((valid.take(key), valid.take(expected_version)))
}

fn parse_role_name(field: &str, name: &str) -> Result<RoleName, Error> {
    RoleName::parse(name).map_err(|reason| Error::invalid(field, reason))
}

fn parse_grant(
    account_id: &str,
    role: &str,
    expected_version: i64,
) -> Result<(Uuid, RoleName, i64), Error> {
    let mut violations = Violations::new();
    let account_id = violations.id("account_id", account_id);
    let role = violations.check("role", RoleName::parse(role));
    let expected_version = violations.expected_version(expected_version);
    let valid = violations.finish()?;
    Ok((
        valid.take(account_id),
        valid.take(role),
        valid.take(expected_version),
    ))
}

/// A batch of records named by `field` (`names`, `client_ids`): at most [`MAX_BATCH_IDS`],
/// each parsed by `parse`.
fn parse_keys<K, E: std::fmt::Display>(
    field: &str,
    keys: &[String],
    parse: impl FnMut(&String) -> Result<K, E>,
) -> Result<Vec<K>, Error> {
    let mut violations = Violations::new();
    if keys.len() > MAX_BATCH_IDS {
        violations.add(field, format!("must hold at most {MAX_BATCH_IDS} values"));
    }
    let keys = violations.each(field, keys, parse);
    let valid = violations.finish()?;
    Ok(valid.take(keys))
}

fn parse_new_client(request: proto::CreateClientRequest) -> Result<NewClient, Error> {
    let mut violations = Violations::new();
    let client_id = violations.check("client_id", ClientId::parse(&request.client_id));
    let name = violations.check("name", ClientName::parse(&request.name));
    let kind = violations.check(
        "type",
        match proto::ClientType::try_from(request.r#type) {
            Ok(proto::ClientType::Public) => Ok(ClientKind::Public),
            Ok(proto::ClientType::Confidential) => Ok(ClientKind::Confidential),
            Ok(proto::ClientType::Unspecified) | Err(_) => {
                Err("is required: CLIENT_TYPE_PUBLIC or CLIENT_TYPE_CONFIDENTIAL")
            }
        },
    );
    let redirect_uris =
        parse_redirect_uris(&mut violations, "redirect_uris", &request.redirect_uris);
    let post_logout_redirect_uris = parse_redirect_uris(
        &mut violations,
        "post_logout_redirect_uris",
        &request.post_logout_redirect_uris,
    );
    let roles = parse_roles(&mut violations, "roles", &request.roles);
    // The kind's rules, checked here too so that they are reported with every other problem.
    if let (Some(kind), Some(redirect_uris), Some(roles)) =
        (kind.peek(), redirect_uris.peek(), roles.peek())
    {
        for violation in kind.violations(redirect_uris, roles) {
            violations.add(violation.field, violation.description);
        }
    }
    let valid = violations.finish()?;
    NewClient::new(
        valid.take(client_id),
        valid.take(name),
        valid.take(kind),
        valid.take(redirect_uris),
        valid.take(post_logout_redirect_uris),
        valid.take(roles),
    )
    .map_err(Error::Validation)
}

fn parse_client_changes(
    request: proto::UpdateClientRequest,
) -> Result<(ClientId, ClientChanges), Error> {
    let mut violations = Violations::new();
    let client_id = violations.check("client_id", ClientId::parse(&request.client_id));
    let expected_version = violations.expected_version(request.expected_version);
    let name = violations.check_optional("name", request.name.as_deref().map(ClientName::parse));
    let redirect_uris = match &request.redirect_uris {
        Some(list) => parse_redirect_uris(&mut violations, "redirect_uris", &list.values).map(Some),
        None => Checked::absent(),
    };
    let post_logout_redirect_uris = match &request.post_logout_redirect_uris {
        Some(list) => {
            parse_redirect_uris(&mut violations, "post_logout_redirect_uris", &list.values)
                .map(Some)
        }
        None => Checked::absent(),
    };
    let roles = match &request.roles {
        Some(list) => parse_roles(&mut violations, "roles", &list.values).map(Some),
        None => Checked::absent(),
    };
    let valid = violations.finish()?;
    Ok((
        valid.take(client_id),
        ClientChanges {
            expected_version: valid.take(expected_version),
            name: valid.take(name),
            redirect_uris: valid.take(redirect_uris),
            post_logout_redirect_uris: valid.take(post_logout_redirect_uris),
            roles: valid.take(roles),
            disabled: request.disabled,
        },
    ))
}

fn parse_client_id(client_id: &str) -> Result<ClientId, Error> {
    ClientId::parse(client_id).map_err(|reason| Error::invalid("client_id", reason))
}

/// At most [`MAX_REDIRECT_URIS`] URIs, each under `field[index]`.
fn parse_redirect_uris(
    violations: &mut Violations,
    field: &str,
    texts: &[String],
) -> Checked<Vec<RedirectUri>> {
    if texts.len() > MAX_REDIRECT_URIS {
        violations.add(field, format!("must hold at most {MAX_REDIRECT_URIS} URIs"));
    }
    violations.each(field, texts, |text| RedirectUri::parse(text))
}

/// Each role name under `field[index]`, sorted, duplicates dropped.
fn parse_roles(
    violations: &mut Violations,
    field: &str,
    texts: &[String],
) -> Checked<Vec<RoleName>> {
    violations
        .each(field, texts, |text| RoleName::parse(text))
        .map(sorted_roles)
}

/// The plaintext of a freshly minted secret, for the one response that carries it. The response
/// types redact it in Debug, so it reaches the caller and nothing else.
fn expose_once(secret: &SecretString) -> String {
    secret.expose_secret().to_owned()
}
