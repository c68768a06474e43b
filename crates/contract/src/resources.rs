//! The resource model of a contract, read from its descriptor set: every message annotated with
//! `(google.api.resource)`, the service that serves it, the standard methods found for it by
//! their AIP names (Get, BatchGet, List, Create, Update, Delete; AIP-131..135, AIP-231), the other
//! methods that act on it, and the audit history method (`ListEvents`). Surfaces that are generic
//! over the contract (the CLI, later the GraphQL gateway) read it instead of naming resources.
//! Per-field facts (behaviours, secrets, references, comments) are functions over descriptors, so
//! they apply to any message, not only resources.

use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, FileDescriptor, Kind, MessageDescriptor,
    MethodDescriptor, ServiceDescriptor, Value,
};

/// Full name of the message option that declares a resource.
pub const RESOURCE_EXTENSION: &str = "google.api.resource";
/// Full name of the field option that declares a field's behaviour (AIP-203).
pub const FIELD_BEHAVIOR_EXTENSION: &str = "google.api.field_behavior";
/// Full name of the field option that says which resource type a field names.
pub const RESOURCE_REFERENCE_EXTENSION: &str = "google.api.resource_reference";
/// Full name of the field option that marks a secret.
pub const SENSITIVE_EXTENSION: &str = "emporium.api.v1.sensitive";
/// The name of the audit history method every service with resources offers.
pub const LIST_EVENTS_METHOD: &str = "ListEvents";

/// One resource of the contract.
#[derive(Clone, Debug)]
pub struct Resource {
    /// The resource's message, `emporium.catalog.v1.Product`.
    pub message: MessageDescriptor,
    /// Its resource type, `catalog.emporium.dev/Product`.
    pub type_name: String,
    /// `product` (the annotation's `singular`, or the message name in lower case).
    pub singular: String,
    /// `products` (the annotation's `plural`).
    pub plural: String,
    /// The field of the resource that names it (`id`, or `name` for roles).
    pub name_field: String,
    /// The service whose standard methods serve it.
    pub service: ServiceDescriptor,
    /// The standard methods found for it.
    pub standard: StandardMethods,
    /// The service's other methods that act on this resource, in declaration order.
    pub custom: Vec<CustomMethod>,
    /// The service's `ListEvents`: the audit history of any of its records, by id.
    pub events: Option<MethodDescriptor>,
}

/// The standard methods of one resource, each where the service has it.
#[derive(Clone, Debug, Default)]
pub struct StandardMethods {
    pub get: Option<MethodDescriptor>,
    pub batch_get: Option<MethodDescriptor>,
    pub list: Option<MethodDescriptor>,
    pub create: Option<MethodDescriptor>,
    pub update: Option<MethodDescriptor>,
    pub delete: Option<MethodDescriptor>,
}

/// A method that is not a standard one, attached to the resource it acts on.
#[derive(Clone, Debug)]
pub struct CustomMethod {
    /// The method's name less the resource's message name, `ResetSecret` for
    /// `ResetClientSecret` on clients, `GrantRole` on accounts.
    pub verb: String,
    pub method: MethodDescriptor,
}

/// A field's declared behaviour (`google.api.field_behavior`), one of possibly several.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldBehavior {
    Optional,
    Required,
    OutputOnly,
    InputOnly,
    Immutable,
    UnorderedList,
    NonEmptyDefault,
    Identifier,
}

/// Every resource of `pool`, in the pool's message order.
pub fn resources(pool: &DescriptorPool) -> Vec<Resource> {
    let Some(extension) = pool.get_extension_by_name(RESOURCE_EXTENSION) else {
        return Vec::new();
    };
    let mut resources: Vec<Resource> = pool
        .all_messages()
        .filter_map(|message| {
            let options = message.options();
            if !options.has_extension(&extension) {
                return None;
            }
            let annotation = options.get_extension(&extension);
            let annotation = annotation.as_message()?;
            let singular = non_empty(string_field(annotation, "singular"))
                .unwrap_or_else(|| message.name().to_lowercase());
            let plural = non_empty(string_field(annotation, "plural"))
                .unwrap_or_else(|| format!("{singular}s"));
            let service = service_of(pool, &message, &plural)?;
            let standard = standard_methods(&service, message.name(), &plural);
            let events = service
                .methods()
                .find(|method| method.name() == LIST_EVENTS_METHOD);
            Some(Resource {
                type_name: string_field(annotation, "type"),
                name_field: non_empty(string_field(annotation, "name_field"))
                    .unwrap_or_else(|| "id".to_owned()),
                singular,
                plural,
                service,
                standard,
                custom: Vec::new(),
                events,
                message,
            })
        })
        .collect();
    attach_custom_methods(&mut resources);
    resources
}

/// The prefix every value of `enumeration` carries, its name in SCREAMING_SNAKE_CASE and `_`
/// (`CLIENT_TYPE_` for `ClientType`); empty when some value lacks it.
pub fn enum_value_prefix(enumeration: &prost_reflect::EnumDescriptor) -> String {
    let mut prefix = String::new();
    for (index, character) in enumeration.name().chars().enumerate() {
        if character.is_uppercase() && index > 0 {
            prefix.push('_');
        }
        prefix.extend(character.to_uppercase());
    }
    prefix.push('_');
    if enumeration
        .values()
        .all(|value| value.name().starts_with(&prefix))
    {
        prefix
    } else {
        String::new()
    }
}

/// The resource `type_name` names, if `resources` holds it.
pub fn find_by_type<'a>(resources: &'a [Resource], type_name: &str) -> Option<&'a Resource> {
    resources
        .iter()
        .find(|resource| resource.type_name == type_name)
}

/// Whether `message` is a resource (has `(google.api.resource)`).
pub fn is_resource(message: &MessageDescriptor) -> bool {
    message
        .parent_pool()
        .get_extension_by_name(RESOURCE_EXTENSION)
        .is_some_and(|extension| message.options().has_extension(&extension))
}

/// The behaviours `field` declares, in declaration order; empty when it declares none.
pub fn field_behaviors(field: &FieldDescriptor) -> Vec<FieldBehavior> {
    let pool = field.parent_pool();
    let Some(extension) = pool.get_extension_by_name(FIELD_BEHAVIOR_EXTENSION) else {
        return Vec::new();
    };
    let options = field.options();
    if !options.has_extension(&extension) {
        return Vec::new();
    }
    let Kind::Enum(behavior_enum) = extension.kind() else {
        return Vec::new();
    };
    let declared = options.get_extension(&extension);
    declared
        .as_list()
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_enum_number)
        .filter_map(|number| behavior_enum.get_value(number))
        .filter_map(|value| match value.name() {
            "OPTIONAL" => Some(FieldBehavior::Optional),
            "REQUIRED" => Some(FieldBehavior::Required),
            "OUTPUT_ONLY" => Some(FieldBehavior::OutputOnly),
            "INPUT_ONLY" => Some(FieldBehavior::InputOnly),
            "IMMUTABLE" => Some(FieldBehavior::Immutable),
            "UNORDERED_LIST" => Some(FieldBehavior::UnorderedList),
            "NON_EMPTY_DEFAULT" => Some(FieldBehavior::NonEmptyDefault),
            "IDENTIFIER" => Some(FieldBehavior::Identifier),
            _ => None,
        })
        .collect()
}

/// Whether `field` declares `behavior`.
pub fn has_behavior(field: &FieldDescriptor, behavior: FieldBehavior) -> bool {
    field_behaviors(field).contains(&behavior)
}

/// Whether `field` holds a secret (`(emporium.api.v1.sensitive) = true`).
pub fn is_sensitive(field: &FieldDescriptor) -> bool {
    let Some(extension) = field
        .parent_pool()
        .get_extension_by_name(SENSITIVE_EXTENSION)
    else {
        return false;
    };
    let options = field.options();
    options.has_extension(&extension)
        && options.get_extension(&extension).as_bool().unwrap_or(false)
}

/// The resource type `field` names (`(google.api.resource_reference).type`, or `child_type`),
/// `*` for any; `None` when it declares no reference.
pub fn resource_reference(field: &FieldDescriptor) -> Option<String> {
    let extension = field
        .parent_pool()
        .get_extension_by_name(RESOURCE_REFERENCE_EXTENSION)?;
    let options = field.options();
    if !options.has_extension(&extension) {
        return None;
    }
    let reference = options.get_extension(&extension);
    let reference = reference.as_message()?;
    non_empty(string_field(reference, "type"))
        .or_else(|| non_empty(string_field(reference, "child_type")))
}

/// The comment written above (else beside) the element at `path` of `file`, with the `//`
/// markers' leading space and surrounding blank lines removed; `None` when there is none.
pub fn comment(file: &FileDescriptor, path: &[i32]) -> Option<String> {
    let info = file.file_descriptor_proto().source_code_info.as_ref()?;
    let location = info
        .location
        .iter()
        .find(|location| location.path == path)?;
    let text = location
        .leading_comments
        .as_deref()
        .filter(|text| !text.trim().is_empty())
        .or(location.trailing_comments.as_deref())?;
    let lines: Vec<&str> = text
        .lines()
        .map(|line| line.strip_prefix(' ').unwrap_or(line).trim_end())
        .collect();
    let text = lines.join("\n").trim().to_owned();
    non_empty(text)
}

/// The comment of a message.
pub fn message_comment(message: &MessageDescriptor) -> Option<String> {
    comment(&message.parent_file(), message.path())
}

/// The comment of a field.
pub fn field_comment(field: &FieldDescriptor) -> Option<String> {
    comment(&field.parent_file(), field.path())
}

/// The comment of a method.
pub fn method_comment(method: &MethodDescriptor) -> Option<String> {
    comment(&method.parent_file(), method.path())
}

/// The comment of a service.
pub fn service_comment(service: &ServiceDescriptor) -> Option<String> {
    comment(&service.parent_file(), service.path())
}

// === impl Resource ===

impl Resource {
    /// The field of `request` that names this resource: the one non-repeated REQUIRED string field
    /// referring to this resource's type, else the field named like the resource's `name_field`,
    /// else the request's only REQUIRED string field. Role requests are keyed by `name`, most by
    /// `id`, GrantRole by `account_id`: the contract, not a convention, says which.
    pub fn key_field(&self, request: &MessageDescriptor) -> Option<FieldDescriptor> {
        let required_strings: Vec<FieldDescriptor> = request
            .fields()
            .filter(|field| {
                !field.is_list()
                    && matches!(field.kind(), Kind::String)
                    && has_behavior(field, FieldBehavior::Required)
            })
            .collect();
        required_strings
            .iter()
            .find(|field| resource_reference(field).as_deref() == Some(self.type_name.as_str()))
            .cloned()
            .or_else(|| request.get_field_by_name(&self.name_field))
            .or_else(|| match required_strings.as_slice() {
                [only] => Some(only.clone()),
                _ => None,
            })
    }

    /// The repeated field of a batch request that lists the keys to read (`ids`).
    pub fn batch_key_field(&self, request: &MessageDescriptor) -> Option<FieldDescriptor> {
        request.fields().find(|field| {
            field.is_list()
                && matches!(field.kind(), Kind::String)
                && resource_reference(field).as_deref() == Some(self.type_name.as_str())
        })
    }

    /// The field of a response message that holds this resource: the response itself when it is
    /// the resource (`None`), else its first field of the resource's type.
    pub fn field_holding(&self, response: &MessageDescriptor) -> Option<FieldDescriptor> {
        response.fields().find(|field| {
            !field.is_list() && matches!(field.kind(), Kind::Message(held) if held == self.message)
        })
    }

    /// The repeated field of a list or batch response that holds the resources.
    pub fn list_field(&self, response: &MessageDescriptor) -> Option<FieldDescriptor> {
        response.fields().find(|field| {
            field.is_list() && matches!(field.kind(), Kind::Message(held) if held == self.message)
        })
    }

    /// Every method of this resource's service that belongs to it, standard ones first.
    pub fn methods(&self) -> Vec<MethodDescriptor> {
        let standard = &self.standard;
        [
            &standard.get,
            &standard.batch_get,
            &standard.list,
            &standard.create,
            &standard.update,
            &standard.delete,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .chain(self.custom.iter().map(|custom| custom.method.clone()))
        .collect()
    }
}

// === helpers ===

/// The service that serves `message`: the one with its `Get<Message>` or `List<Plural>`, else
/// the first service of its package.
fn service_of(
    pool: &DescriptorPool,
    message: &MessageDescriptor,
    plural: &str,
) -> Option<ServiceDescriptor> {
    let get = format!("Get{}", message.name());
    let list = format!("List{}", upper_camel(plural));
    pool.services()
        .find(|service| {
            service
                .methods()
                .any(|method| method.name() == get || method.name() == list)
        })
        .or_else(|| {
            pool.services()
                .find(|service| service.package_name() == message.package_name())
        })
}

fn standard_methods(service: &ServiceDescriptor, singular: &str, plural: &str) -> StandardMethods {
    let plural = upper_camel(plural);
    let find = |name: String| service.methods().find(|method| method.name() == name);
    StandardMethods {
        get: find(format!("Get{singular}")),
        batch_get: find(format!("BatchGet{plural}")),
        list: find(format!("List{plural}")),
        create: find(format!("Create{singular}")),
        update: find(format!("Update{singular}")),
        delete: find(format!("Delete{singular}")),
    }
}

/// Attaches every method that is neither standard nor `ListEvents` to the resource it acts on:
/// the resource it returns, else the resource its response holds, else the resource a REQUIRED
/// field of its request names. A method acting on none stays unattached.
fn attach_custom_methods(resources: &mut [Resource]) {
    let claimed: Vec<String> = resources
        .iter()
        .flat_map(|resource| resource.methods())
        .map(|method| method.full_name().to_owned())
        .collect();
    let mut services: Vec<ServiceDescriptor> = Vec::new();
    for resource in resources.iter() {
        if !services.contains(&resource.service) {
            services.push(resource.service.clone());
        }
    }
    let mut attachments: Vec<(usize, CustomMethod)> = Vec::new();
    for service in &services {
        for method in service.methods() {
            if method.name() == LIST_EVENTS_METHOD
                || claimed.iter().any(|name| name == method.full_name())
            {
                continue;
            }
            let output = method.output();
            let input = method.input();
            let target = resources
                .iter()
                .position(|resource| resource.message == output)
                .or_else(|| {
                    resources
                        .iter()
                        .position(|resource| resource.field_holding(&output).is_some())
                })
                .or_else(|| {
                    resources.iter().position(|resource| {
                        input.fields().any(|field| {
                            has_behavior(&field, FieldBehavior::Required)
                                && resource_reference(&field).as_deref()
                                    == Some(resource.type_name.as_str())
                        })
                    })
                });
            if let Some(index) = target {
                let verb = method
                    .name()
                    .replacen(resources[index].message.name(), "", 1);
                let verb = if verb.is_empty() {
                    method.name().to_owned()
                } else {
                    verb
                };
                attachments.push((index, CustomMethod { verb, method }));
            }
        }
    }
    for (index, custom) in attachments {
        resources[index].custom.push(custom);
    }
}

/// `categories` → `Categories`; `fooBars` → `FooBars` (the annotation's plural is lowerCamelCase).
fn upper_camel(text: &str) -> String {
    let mut characters = text.chars();
    match characters.next() {
        Some(first) => first.to_uppercase().chain(characters).collect(),
        None => String::new(),
    }
}

fn string_field(message: &DynamicMessage, name: &str) -> String {
    message
        .get_field_by_name(name)
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> DescriptorPool {
        crate::decode_pool(emporium_proto::FILE_DESCRIPTOR_SET).expect("the contract decodes")
    }

    fn resource<'a>(resources: &'a [Resource], singular: &str) -> &'a Resource {
        resources
            .iter()
            .find(|resource| resource.singular == singular)
            .unwrap_or_else(|| panic!("no resource {singular}"))
    }

    fn name(method: Option<&MethodDescriptor>) -> Option<&str> {
        method.map(MethodDescriptor::name)
    }

    #[test]
    fn every_annotated_message_is_a_resource_of_the_service_that_serves_it() {
        let resources = resources(&pool());

        let names: Vec<(&str, &str, &str)> = resources
            .iter()
            .map(|resource| {
                (
                    resource.singular.as_str(),
                    resource.plural.as_str(),
                    resource.service.name(),
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                ("category", "categories", "CatalogService"),
                ("product", "products", "CatalogService"),
                ("account", "accounts", "IdentityService"),
                ("role", "roles", "IdentityService"),
                ("client", "clients", "IdentityService"),
            ]
        );
    }

    #[test]
    fn standard_methods_are_found_by_their_aip_names_where_present() {
        let resources = resources(&pool());
        let product = resource(&resources, "product");
        let role = resource(&resources, "role");

        assert_eq!(name(product.standard.get.as_ref()), Some("GetProduct"));
        assert_eq!(
            name(product.standard.batch_get.as_ref()),
            Some("BatchGetProducts")
        );
        assert_eq!(name(product.standard.list.as_ref()), Some("ListProducts"));
        assert_eq!(
            name(product.standard.delete.as_ref()),
            Some("DeleteProduct")
        );
        assert_eq!(name(product.events.as_ref()), Some("ListEvents"));
        assert_eq!(
            name(role.standard.batch_get.as_ref()),
            Some("BatchGetRoles")
        );
        assert_eq!(name(role.standard.update.as_ref()), Some("UpdateRole"));
    }

    #[test]
    fn other_methods_are_attached_to_the_resource_they_act_on() {
        let resources = resources(&pool());
        let verbs = |singular: &str| -> Vec<(String, String)> {
            resource(&resources, singular)
                .custom
                .iter()
                .map(|custom| (custom.verb.clone(), custom.method.name().to_owned()))
                .collect()
        };

        assert_eq!(
            verbs("account"),
            [
                ("SetPassword".to_owned(), "SetPassword".to_owned()),
                ("GrantRole".to_owned(), "GrantRole".to_owned()),
                ("RevokeRole".to_owned(), "RevokeRole".to_owned()),
            ]
        );
        assert_eq!(
            verbs("client"),
            [("ResetSecret".to_owned(), "ResetClientSecret".to_owned())]
        );
        assert!(verbs("role").is_empty());
        assert!(verbs("product").is_empty());
    }

    #[test]
    fn the_key_of_a_request_is_read_from_its_fields() {
        let resources = resources(&pool());
        let role = resource(&resources, "role");
        let account = resource(&resources, "account");
        let key = |resource: &Resource, method: &Option<MethodDescriptor>| {
            let method = method.as_ref().expect("the method exists");
            resource
                .key_field(&method.input())
                .map(|field| field.name().to_owned())
        };
        let grant_role = account
            .custom
            .iter()
            .find(|custom| custom.verb == "GrantRole")
            .map(|custom| custom.method.clone());

        assert_eq!(key(role, &role.standard.get).as_deref(), Some("name"));
        assert_eq!(key(role, &role.standard.delete).as_deref(), Some("name"));
        assert_eq!(key(account, &account.standard.get).as_deref(), Some("id"));
        assert_eq!(key(account, &grant_role).as_deref(), Some("account_id"));
    }

    #[test]
    fn field_facts_are_read_from_their_options() {
        let pool = pool();
        let message = |name: &str| pool.get_message_by_name(name).expect("the message exists");
        let field = |message: &MessageDescriptor, name: &str| {
            message.get_field_by_name(name).expect("the field exists")
        };
        let role = message("emporium.identity.v1.Role");
        let create_account = message("emporium.identity.v1.CreateAccountRequest");
        let product = message("emporium.catalog.v1.Product");

        assert_eq!(
            field_behaviors(&field(&role, "name")),
            [FieldBehavior::Required, FieldBehavior::Immutable]
        );
        assert_eq!(
            field_behaviors(&field(&role, "version")),
            [FieldBehavior::OutputOnly]
        );
        assert!(is_sensitive(&field(&create_account, "password")));
        assert!(!is_sensitive(&field(&create_account, "email")));
        assert_eq!(
            resource_reference(&field(&product, "category_id")).as_deref(),
            Some("catalog.emporium.dev/Category")
        );
        assert_eq!(resource_reference(&field(&product, "sku")), None);
        assert_eq!(
            field_comment(&field(&product, "price")).as_deref(),
            Some("The price of one unit.")
        );
        assert_eq!(
            message_comment(&product).as_deref(),
            Some("Something the shop sells, in one category.")
        );
    }
}
