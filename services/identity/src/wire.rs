//! Identity's records as the contract's messages: what the gRPC API returns and what events
//! carry, converted in one place. Neither carries a password, a client secret or their hashes:
//! the domain records do not hold them.

use chassis::grpc::timestamp_to_proto;
use emporium_proto::identity::v1 as proto;

use crate::domain::{Account, Client, ClientKind, RedirectUri, Role};

pub(crate) fn account_to_proto(account: Account) -> proto::Account {
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
        customer_id: account
            .customer_id
            .map(|customer_id| customer_id.to_string())
            .unwrap_or_default(),
    }
}

pub(crate) fn role_to_proto(role: Role) -> proto::Role {
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

pub(crate) fn client_to_proto(client: Client) -> proto::Client {
    let strings = |uris: &[RedirectUri]| {
        uris.iter()
            .map(|uri| uri.as_str().to_owned())
            .collect::<Vec<_>>()
    };
    let client_type = match client.kind {
        ClientKind::Public => proto::ClientType::Public,
        ClientKind::Confidential => proto::ClientType::Confidential,
    };
    proto::Client {
        id: client.id.to_string(),
        client_id: client.client_id.as_str().to_owned(),
        name: client.name,
        r#type: client_type.into(),
        redirect_uris: strings(&client.redirect_uris),
        post_logout_redirect_uris: strings(&client.post_logout_redirect_uris),
        roles: client
            .roles
            .iter()
            .map(|role| role.as_str().to_owned())
            .collect(),
        disabled: client.disabled,
        version: client.version,
        create_time: Some(timestamp_to_proto(client.created_at)),
        update_time: Some(timestamp_to_proto(client.updated_at)),
    }
}
