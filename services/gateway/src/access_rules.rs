//! `accessRules`: who may use each field that calls an RPC, read from the RPC's
//! `(emporium.api.v1.access)` in the contract, so a client (the admin console) can hide what its
//! caller's roles cannot do. It is a courtesy, not the check: the service decides every call.

use async_graphql::dynamic::{Field, Object, TypeRef};
use async_graphql::{Name, Value};
use contract::access::{Access, access_of};
use prost_reflect::MethodDescriptor;

use crate::schema::{Shape, Types, fixed_list, metadata_field, value_field};

/// The root query field's name.
pub(crate) const FIELD: &str = "accessRules";
/// Its item type's name.
const TYPE: &str = "AccessRule";

/// A field of the schema and the RPC it calls.
pub(crate) struct FieldRpc {
    /// The type the field belongs to: `Query`, `Mutation`, `Subscription` or a record's type.
    pub(crate) owner: String,
    pub(crate) field: String,
    pub(crate) method: MethodDescriptor,
}

/// The `accessRules` root field over `rules`, its item type added to `types`.
pub(crate) fn field(mut rules: Vec<FieldRpc>, types: &mut Types) -> anyhow::Result<Field> {
    types.claim(TYPE, "the gateway's access rules")?;
    let text = |name: &str, description: &str| metadata_field(name, TypeRef::STRING, description);
    let flag = |name: &str, description: &str| metadata_field(name, TypeRef::BOOLEAN, description);
    types.add_object(
        Object::new(TYPE)
            .description(
                "Who may use one field that calls an RPC, as the RPC's contract declares (a list \
                 read by `where: { id_in }` calls the resource's BatchGet instead of its List). A \
                 rule that admits nobody is an RPC refused to everyone.",
            )
            .field(text(
                "type",
                "The type the field belongs to: Query, Mutation, Subscription or a record's type.",
            ))
            .field(text("field", "The field's name."))
            .field(text(
                "rpc",
                "The RPC the field calls: `emporium.catalog.v1.CatalogService/CreateProduct`.",
            ))
            .field(flag(
                "visitors",
                "Visitors who have not signed in may use it, and so may every signed-in caller.",
            ))
            .field(flag(
                "anySignedInCaller",
                "Any signed-in caller may use it, whatever roles it holds.",
            ))
            .field(
                value_field(
                    "roles",
                    TypeRef::named_nn_list_nn(TypeRef::STRING),
                    Shape::List(Box::new(Shape::Scalar)),
                )
                .description("A caller holding any one of these roles may use it."),
            ),
    );
    rules.sort_by(|a, b| (&a.owner, &a.field).cmp(&(&b.owner, &b.field)));
    let answer: Vec<Value> = rules.iter().map(rule_value).collect();
    Ok(fixed_list(
        FIELD,
        TYPE,
        answer,
        "Who may use each field that calls an RPC, from the contracts, for clients that hide what \
         their caller cannot do. The services still decide each call.",
    ))
}

fn rule_value(rule: &FieldRpc) -> Value {
    let (visitors, any_signed_in_caller, roles) = match access_of(&rule.method) {
        Ok(Access::Visitors) => (true, true, Vec::new()),
        Ok(Access::AnySignedInCaller) => (false, true, Vec::new()),
        Ok(Access::AnyRoleOf(roles)) => (false, false, roles),
        // Refused to everyone, as the chassis does.
        Err(_) => (false, false, Vec::new()),
    };
    let rpc = format!(
        "{}/{}",
        rule.method.parent_service().full_name(),
        rule.method.name()
    );
    Value::Object(
        [
            ("type", Value::from(rule.owner.as_str())),
            ("field", Value::from(rule.field.as_str())),
            ("rpc", Value::from(rpc)),
            ("visitors", Value::from(visitors)),
            ("anySignedInCaller", Value::from(any_signed_in_caller)),
            (
                "roles",
                Value::List(roles.into_iter().map(Value::from).collect()),
            ),
        ]
        .into_iter()
        .map(|(name, value)| (Name::new(name), value))
        .collect(),
    )
}
