//! Proves the roles a contract declares are the roles a running service enforces: every RPC of a
//! service, as the descriptor set lists it, is called through a generic gRPC client (raw bytes,
//! an empty request) by callers without a token, as a visitor, without the declared roles and with
//! each of them, and each answer is checked against the RPC's `(emporium.api.v1.access)` option.

use std::net::SocketAddr;

use bytes::{Buf as _, BufMut as _};
use chassis::auth::roles;
use contract::access::{Access, MethodAccess};
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

use crate::TestIssuer;

/// Calls every RPC of `service` (full name, e.g. `emporium.catalog.v1.CatalogService`) on the
/// server at `addr`, which trusts `issuer`, and panics listing every call whose answer disagrees
/// with the roles the contract declares. Returns how many RPCs were checked.
///
/// An admitted call may still fail (an empty request is rarely valid: INVALID_ARGUMENT,
/// NOT_FOUND); admitted means neither UNAUTHENTICATED nor PERMISSION_DENIED. Nothing changes on
/// the server: no empty request is a valid change.
pub async fn assert_access_matches_contract(
    addr: SocketAddr,
    issuer: &TestIssuer,
    service: &str,
) -> usize {
    let pool = contract::decode_pool(emporium_proto::FILE_DESCRIPTOR_SET)
        .expect("the descriptor set decodes");
    let methods: Vec<MethodAccess> = contract::method_access(&pool)
        .into_iter()
        .filter(|method| method.service == service)
        .collect();
    assert!(
        !methods.is_empty(),
        "the descriptor set has no RPC of {service}"
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("a valid endpoint")
        .connect()
        .await
        .expect("the server accepts connections");
    let no_role = issuer.token("nobody-1", &[]);
    let visitor = issuer.token("visitor-1", &[roles::VISITOR]);
    let mut disagreements = Vec::new();
    for method in &methods {
        let path = method.path.as_str();
        let anonymous = call(&channel, path, None).await;
        if anonymous != Code::Unauthenticated {
            disagreements.push(format!(
                "{path} called without a token: expected Unauthenticated, got {anonymous:?}"
            ));
        }
        let with_no_role = call(&channel, path, Some(&no_role)).await;
        let as_visitor = call(&channel, path, Some(&visitor)).await;
        if !matches!(method.access, Ok(Access::Visitors)) && as_visitor != Code::PermissionDenied {
            disagreements.push(format!(
                "{path} is not open to visitors, yet a visitor's call got {as_visitor:?} instead \
                 of PermissionDenied"
            ));
        }
        match &method.access {
            Ok(Access::Visitors) => {
                if !is_admitted(with_no_role) || !is_admitted(as_visitor) {
                    disagreements.push(format!(
                        "{path} is open to visitors, yet a caller holding no role got \
                         {with_no_role:?} and a visitor {as_visitor:?}"
                    ));
                }
            }
            Ok(Access::AnySignedInCaller) => {
                if !is_admitted(with_no_role) {
                    disagreements.push(format!(
                        "{path} is open to any signed-in caller, yet a caller holding no role \
                         got {with_no_role:?}"
                    ));
                }
            }
            Ok(Access::AnyRoleOf(declared)) => {
                if with_no_role != Code::PermissionDenied {
                    disagreements.push(format!(
                        "{path} called by a caller holding no role: expected PermissionDenied, \
                         got {with_no_role:?}"
                    ));
                }
                let others: Vec<&str> = [
                    roles::ADMIN,
                    roles::CATALOG_MANAGER,
                    roles::SALES,
                    roles::CUSTOMER,
                    "custom-role",
                ]
                .into_iter()
                .filter(|role| !declared.iter().any(|declared| declared == role))
                .collect();
                let other_roles = issuer.token("other-roles-1", &others);
                let with_other_roles = call(&channel, path, Some(&other_roles)).await;
                if with_other_roles != Code::PermissionDenied {
                    disagreements.push(format!(
                        "{path} called by a caller holding {others:?} but none of {declared:?}: \
                         expected PermissionDenied, got {with_other_roles:?}"
                    ));
                }
                for role in declared {
                    let token = issuer.token(&format!("{role}-1"), &[role]);
                    let with_role = call(&channel, path, Some(&token)).await;
                    if !is_admitted(with_role) {
                        disagreements.push(format!(
                            "{path} declares {role}, yet a caller holding only {role} got \
                             {with_role:?}"
                        ));
                    }
                }
            }
            Err(problem) => {
                let admin = issuer.token("admin-1", &[roles::ADMIN]);
                let with_admin = call(&channel, path, Some(&admin)).await;
                if with_admin != Code::PermissionDenied {
                    disagreements.push(format!(
                        "{path} {problem}, yet an admin's call got {with_admin:?} instead of \
                         PermissionDenied"
                    ));
                }
            }
        }
    }
    assert!(
        disagreements.is_empty(),
        "the roles enforced disagree with the contract:\n  {}",
        disagreements.join("\n  ")
    );
    methods.len()
}

/// Whether a call got past the access rules: neither UNAUTHENTICATED nor PERMISSION_DENIED.
fn is_admitted(code: Code) -> bool {
    !matches!(code, Code::Unauthenticated | Code::PermissionDenied)
}

/// Calls `path` with an empty request message, with `token` as the bearer token if any, and
/// returns the status code of the answer (`Ok` for a success).
async fn call(channel: &tonic::transport::Channel, path: &str, token: Option<&str>) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    if grpc.ready().await.is_err() {
        return Code::Unavailable;
    }
    let mut request = tonic::Request::new(Vec::new());
    if let Some(token) = token {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}")
                .parse()
                .expect("a token is valid header text"),
        );
    }
    let path = tonic::codegen::http::uri::PathAndQuery::try_from(path)
        .expect("a gRPC path is a valid URI path");
    match grpc.unary(request, path, RawCodec).await {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

/// Sends and receives messages as the raw bytes they are on the wire, so any RPC can be called
/// without its generated types.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        destination: &mut EncodeBuf<'_>,
    ) -> Result<(), Self::Error> {
        destination.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(&mut self, source: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Self::Error> {
        let bytes = source.copy_to_bytes(source.remaining());
        Ok(Some(bytes.to_vec()))
    }
}
