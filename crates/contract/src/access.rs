//! Who may call each RPC, as the contract declares it with the method option
//! `(emporium.api.v1.access)`. The chassis builds its access table from [`method_access`] and the
//! lint reports every [`AccessProblem`], so what is enforced is what is written.

use std::fmt;

use prost_reflect::{DescriptorPool, MethodDescriptor};

/// Full name of the method option that declares who may call an RPC.
pub const ACCESS_EXTENSION: &str = "emporium.api.v1.access";

/// Who may call an RPC, once the option is read and found well-formed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// Any caller with a valid access token, whatever roles it holds.
    AnySignedInCaller,
    /// A caller holding at least one of these roles (never empty).
    AnyRoleOf(Vec<String>),
}

/// Why an RPC's access cannot be read: such an RPC is refused to every caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessProblem {
    /// The RPC has no `(emporium.api.v1.access)` option.
    Undeclared,
    /// The option sets neither `roles` nor `any_signed_in_caller`.
    NoRule,
    /// The option sets both `roles` and `any_signed_in_caller`.
    BothRules,
    /// One of the `roles` is empty or blank.
    BlankRole,
}

/// One RPC of the descriptor set and who may call it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MethodAccess {
    /// The gRPC path, `/emporium.catalog.v1.CatalogService/CreateProduct`.
    pub path: String,
    /// Full name of the service, `emporium.catalog.v1.CatalogService`.
    pub service: String,
    /// The method's name, `CreateProduct`.
    pub method: String,
    pub access: Result<Access, AccessProblem>,
}

/// Every RPC of every service in `pool`, in the pool's order, with who may call it.
pub fn method_access(pool: &DescriptorPool) -> Vec<MethodAccess> {
    pool.services()
        .flat_map(|service| service.methods().collect::<Vec<_>>())
        .map(|method| MethodAccess {
            path: format!("/{}/{}", method.parent_service().full_name(), method.name()),
            service: method.parent_service().full_name().to_owned(),
            method: method.name().to_owned(),
            access: access_of(&method),
        })
        .collect()
}

/// Who may call `method`, as its `(emporium.api.v1.access)` option says.
pub fn access_of(method: &MethodDescriptor) -> Result<Access, AccessProblem> {
    let Some(extension) = method.parent_pool().get_extension_by_name(ACCESS_EXTENSION) else {
        return Err(AccessProblem::Undeclared);
    };
    let options = method.options();
    if !options.has_extension(&extension) {
        return Err(AccessProblem::Undeclared);
    }
    let value = options.get_extension(&extension);
    let Some(declared) = value.as_message() else {
        return Err(AccessProblem::Undeclared);
    };
    let roles: Vec<String> = declared
        .get_field_by_name("roles")
        .and_then(|roles| {
            roles.as_list().map(|roles| {
                roles
                    .iter()
                    .filter_map(|role| role.as_str().map(str::to_owned))
                    .collect()
            })
        })
        .unwrap_or_default();
    let any_signed_in_caller = declared
        .get_field_by_name("any_signed_in_caller")
        .and_then(|value| value.as_bool())
        .unwrap_or(false);
    match (roles.is_empty(), any_signed_in_caller) {
        (true, false) => Err(AccessProblem::NoRule),
        (false, true) => Err(AccessProblem::BothRules),
        (true, true) => Ok(Access::AnySignedInCaller),
        (false, false) if roles.iter().any(|role| role.trim().is_empty()) => {
            Err(AccessProblem::BlankRole)
        }
        (false, false) => Ok(Access::AnyRoleOf(roles)),
    }
}

// === impl AccessProblem ===

impl fmt::Display for AccessProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AccessProblem::Undeclared => {
                "declares no access: add `option (emporium.api.v1.access) = {roles: [\"admin\"]};` \
                 (the roles that may call it, any of them) or `option (emporium.api.v1.access) = \
                 {any_signed_in_caller: true};` to the rpc, importing \
                 \"emporium/api/v1/annotations.proto\""
            }
            AccessProblem::NoRule => {
                "declares `(emporium.api.v1.access)` without a rule: set `roles` (any of them may \
                 call) or `any_signed_in_caller: true`"
            }
            AccessProblem::BothRules => {
                "sets both `roles` and `any_signed_in_caller` in `(emporium.api.v1.access)`: keep \
                 one"
            }
            AccessProblem::BlankRole => {
                "names an empty role in `(emporium.api.v1.access)`: remove it or name the role"
            }
        })
    }
}
