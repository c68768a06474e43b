//! Who may call each RPC, as the contract declares it with the method option
//! `(emporium.api.v1.access)`. The chassis builds its access table from [`method_access`] and the
//! lint reports every [`AccessProblem`], so what is enforced is what is written.

use std::fmt;

use prost_reflect::{DescriptorPool, MethodDescriptor};

/// Full name of the method option that declares who may call an RPC.
pub const ACCESS_EXTENSION: &str = "emporium.api.v1.access";

/// The role of the token the gateway holds for visitors who have not signed in (a storefront's
/// browsing). A caller holding it and no other role is a visitor, admitted only to the RPCs that
/// declare `visitors: true`.
pub const VISITOR_ROLE: &str = "visitor";

/// Who may call an RPC, once the option is read and found well-formed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// Any caller with a valid access token, visitors too ([`VISITOR_ROLE`]).
    Visitors,
    /// Any caller with a valid access token, whatever roles it holds, except a visitor.
    AnySignedInCaller,
    /// A caller holding at least one of these roles (never empty).
    AnyRoleOf(Vec<String>),
}

/// Why an RPC's access cannot be read: such an RPC is refused to every caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessProblem {
    /// The RPC has no `(emporium.api.v1.access)` option.
    Undeclared,
    /// The option sets none of `roles`, `any_signed_in_caller` and `visitors`.
    NoRule,
    /// The option sets more than one of `roles`, `any_signed_in_caller` and `visitors`.
    SeveralRules,
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
    let flag = |name: &str| {
        declared
            .get_field_by_name(name)
            .and_then(|value| value.as_bool())
            .unwrap_or(false)
    };
    let any_signed_in_caller = flag("any_signed_in_caller");
    let visitors = flag("visitors");
    match (!roles.is_empty(), any_signed_in_caller, visitors) {
        (false, false, false) => Err(AccessProblem::NoRule),
        (true, false, false) if roles.iter().any(|role| role.trim().is_empty()) => {
            Err(AccessProblem::BlankRole)
        }
        (true, false, false) => Ok(Access::AnyRoleOf(roles)),
        (false, true, false) => Ok(Access::AnySignedInCaller),
        (false, false, true) => Ok(Access::Visitors),
        _ => Err(AccessProblem::SeveralRules),
    }
}

// === impl Access ===

impl Access {
    /// Whether a caller whose verified token holds `roles` may call.
    pub fn admits(&self, roles: &[String]) -> bool {
        match self {
            Access::Visitors => true,
            Access::AnySignedInCaller => !is_visitor(roles),
            Access::AnyRoleOf(declared) => declared
                .iter()
                .any(|role| roles.iter().any(|held| held == role)),
        }
    }

    /// Why a caller this rule does not admit is refused: its PERMISSION_DENIED message.
    pub fn refusal(&self) -> String {
        match self {
            Access::Visitors => "everyone may call this".to_owned(),
            Access::AnySignedInCaller => {
                "this needs a signed-in caller; visitors may not call it".to_owned()
            }
            Access::AnyRoleOf(roles) => {
                format!("this needs one of the roles: {}", roles.join(", "))
            }
        }
    }
}

/// Whether a caller holding `roles` is a visitor: the visitor role and no other.
pub fn is_visitor(roles: &[String]) -> bool {
    !roles.is_empty() && roles.iter().all(|role| role == VISITOR_ROLE)
}

// === impl AccessProblem ===

impl fmt::Display for AccessProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AccessProblem::Undeclared => {
                "declares no access: add `option (emporium.api.v1.access) = {roles: [\"admin\"]};` \
                 (the roles that may call it, any of them) or `option (emporium.api.v1.access) = \
                 {any_signed_in_caller: true};` (or `{visitors: true}`, open to visitors who have \
                 not signed in too) to the rpc, importing \"emporium/api/v1/annotations.proto\""
            }
            AccessProblem::NoRule => {
                "declares `(emporium.api.v1.access)` without a rule: set `roles` (any of them may \
                 call), `any_signed_in_caller: true` or `visitors: true`"
            }
            AccessProblem::SeveralRules => {
                "sets more than one of `roles`, `any_signed_in_caller` and `visitors` in \
                 `(emporium.api.v1.access)`: keep one"
            }
            AccessProblem::BlankRole => {
                "names an empty role in `(emporium.api.v1.access)`: remove it or name the role"
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn a_visitor_is_admitted_only_where_visitors_are() {
        let visitor = roles(&[VISITOR_ROLE]);
        assert!(Access::Visitors.admits(&visitor));
        assert!(!Access::AnySignedInCaller.admits(&visitor));
        assert!(!Access::AnyRoleOf(roles(&["admin"])).admits(&visitor));
    }

    #[test]
    fn signed_in_callers_are_admitted_by_their_roles() {
        let no_role = roles(&[]);
        let manager = roles(&["catalog-manager"]);
        // The visitor role beside another is no visitor: the other role counts.
        let manager_and_visitor = roles(&["catalog-manager", VISITOR_ROLE]);
        let managers = Access::AnyRoleOf(roles(&["admin", "catalog-manager"]));
        for caller in [&no_role, &manager, &manager_and_visitor] {
            assert!(Access::Visitors.admits(caller));
            assert!(Access::AnySignedInCaller.admits(caller));
        }
        assert!(!managers.admits(&no_role));
        assert!(managers.admits(&manager));
        assert!(managers.admits(&manager_and_visitor));
    }
}
