//! `references`: which fields of the schema hold the key of another resource's record, read from
//! the contract's `(google.api.resource_reference)`, so a client (the admin console) can show the
//! record's name and offer a picker. It covers what the schema cannot say by itself: references
//! the gateway does not follow (a list of role names, an event's actor) and those in inputs.

use std::collections::{BTreeSet, HashMap};

use async_graphql::dynamic::{Field, Object, TypeRef};
use async_graphql::{Name, Value};

use crate::schema::{Types, fixed_list, metadata_field};

/// The root query field's name.
pub(crate) const FIELD: &str = "references";
/// Its item type's name.
const TYPE: &str = "Reference";

/// A field of the schema and the resource type (`catalog.emporium.dev/Category`) it names.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct FieldReference {
    /// The object or input type the field belongs to.
    pub(crate) owner: String,
    pub(crate) field: String,
    pub(crate) resource_type: String,
}

/// A resource a reference can lead to: its GraphQL type and the field its key is.
pub(crate) struct Target {
    pub(crate) type_name: String,
    pub(crate) key: String,
}

/// The `references` root field over `references` to the resources of `targets` (by resource
/// type; references to other types are left out), its item type added to `types`.
pub(crate) fn field(
    references: BTreeSet<FieldReference>,
    targets: &HashMap<String, Target>,
    types: &mut Types,
) -> anyhow::Result<Field> {
    types.claim(TYPE, "the gateway's references")?;
    let text = |name: &str, description: &str| metadata_field(name, TypeRef::STRING, description);
    types.add_object(
        Object::new(TYPE)
            .description(
                "A field holding the key of another resource's record (each item of a list \
                 field), as the contract's `(google.api.resource_reference)` declares.",
            )
            .field(text(
                "type",
                "The object or input type the field belongs to: `Product`, `GrantRoleRequestInput`.",
            ))
            .field(text("field", "The field's name."))
            .field(text(
                "resource",
                "The type of the record it names: `Category`, read with its Get and List.",
            ))
            .field(text(
                "key",
                "The field of that record the value is: `id`, or `name` for a role.",
            )),
    );
    let answer: Vec<Value> = references
        .iter()
        .filter_map(|reference| {
            let target = targets.get(&reference.resource_type)?;
            Some(Value::Object(
                [
                    ("type", reference.owner.as_str()),
                    ("field", reference.field.as_str()),
                    ("resource", target.type_name.as_str()),
                    ("key", target.key.as_str()),
                ]
                .into_iter()
                .map(|(name, value)| (Name::new(name), Value::from(value)))
                .collect(),
            ))
        })
        .collect();
    Ok(fixed_list(
        FIELD,
        TYPE,
        answer,
        "Every field that holds the key of a record of a resource this gateway serves, from the \
         contracts, for clients that show a reference by the record's name or offer a picker.",
    ))
}
