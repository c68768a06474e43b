//! The contract lint: checks every Emporium file of a descriptor pool (every file outside the
//! `google.*` packages) against the conventions, one rule per check as googleapis' api-linter
//! does, each finding naming where and saying what to add. The test suite runs it over
//! `emporium_proto::FILE_DESCRIPTOR_SET`, so a service that drifts fails CI.
//!
//! Rules:
//! - `resource-annotation`: a resource's `(google.api.resource)` sets `type` (`{service}/{Message}`),
//!   `pattern`, `singular`, `plural` and `name_field`, and `name_field` is one of its fields.
//! - `resource-standard-fields`: a resource has `int64 version`, `create_time` and `update_time`.
//! - `standard-methods`: a resource's service has Get, BatchGet, List, Create, Update and Delete
//!   (AIP-131..135, AIP-231), named after its singular and plural.
//! - `standard-method-fields`: those methods' requests carry the standard fields: the resource's
//!   `name_field` (Get, Update, Delete), `ids` (BatchGet), `page_size` and `page_token` (List, whose
//!   response has `next_page_token`), `expected_version` (Update, Delete).
//! - `field-behavior`: every field of a resource and of every message an RPC takes or returns has a
//!   `(google.api.field_behavior)`.
//! - `resource-reference`: every `(google.api.resource_reference)` names a resource type defined in
//!   the pool (on a message, or with a file's `resource_definition`), or `*`.
//! - `method-access`: every RPC declares who may call it with `(emporium.api.v1.access)`.
//! - `resource-events`: a resource declares its `created`, `updated` and `deleted` events with
//!   `(emporium.api.v1.events)` on its message (`emporium.<service>.<singular>.<action>`).
//! - `event-type`: every declared event's type is `emporium.<service>[.audit].<aggregate>.<action>`
//!   with the service of the message's package and the singular of one of its resources, is
//!   declared once, and has a description.
//! - `message-comment`, `field-comment`, `method-comment`: every message, field and RPC has a
//!   comment.
//!
//! A handful of gaps in existing resources are exempt, each named in [`EXEMPTIONS`] with why.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use prost_reflect::{
    DescriptorPool, DynamicMessage, ExtensionDescriptor, FieldDescriptor, FileDescriptor, Kind,
    MessageDescriptor, MethodDescriptor, Value,
};

use crate::access::access_of;
use crate::events::{DeclaredEvent, declared_events, parse_event_type};

/// One way a contract drifts from the conventions.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    /// The rule, e.g. `field-behavior`.
    pub rule: &'static str,
    /// The full name of what is wrong or missing, e.g. `emporium.catalog.v1.Product.price`.
    pub location: String,
    /// What is wrong, and what to add.
    pub message: String,
}

/// A finding the lint knows about and accepts, and why. Narrow: one rule at one location.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exemption {
    pub rule: &'static str,
    pub location: &'static str,
    pub why: &'static str,
}

/// Gaps in the existing contracts, accepted until the resource grows the method or field. Every
/// entry must still match a finding ([`unused_exemptions`] is empty, a test checks it), so one
/// that is fixed goes from here.
pub const EXEMPTIONS: &[Exemption] = &[];

/// Every finding in the Emporium files of `pool` but the [`EXEMPTIONS`], sorted by rule and
/// location.
pub fn lint(pool: &DescriptorPool) -> Vec<Finding> {
    lint_all(pool)
        .into_iter()
        .filter(|finding| !EXEMPTIONS.iter().any(|exemption| exemption.covers(finding)))
        .collect()
}

/// The exemptions that match no finding in `pool`: fixed gaps whose entry should go.
pub fn unused_exemptions(pool: &DescriptorPool) -> Vec<Exemption> {
    let findings = lint_all(pool);
    EXEMPTIONS
        .iter()
        .filter(|exemption| !findings.iter().any(|finding| exemption.covers(finding)))
        .copied()
        .collect()
}

// === impl Finding ===

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}: {}", self.rule, self.location, self.message)
    }
}

// === impl Exemption ===

impl Exemption {
    fn covers(&self, finding: &Finding) -> bool {
        self.rule == finding.rule && self.location == finding.location
    }
}

// === the rules ===

/// The standard annotations, as found in the pool (absent when a file does not import them, in
/// which case every check that needs one reports it missing).
struct Annotations {
    resource: Option<ExtensionDescriptor>,
    resource_definition: Option<ExtensionDescriptor>,
    resource_reference: Option<ExtensionDescriptor>,
    field_behavior: Option<ExtensionDescriptor>,
}

/// A message annotated as a resource.
struct Resource {
    message: MessageDescriptor,
    type_name: String,
    singular: String,
    plural: String,
    name_field: String,
}

/// Findings of one lint run, with the pool's annotations at hand.
struct Linter<'pool> {
    pool: &'pool DescriptorPool,
    annotations: Annotations,
    /// Each linted file's leading and trailing comments, by source path.
    comments: HashMap<String, HashMap<Vec<i32>, String>>,
    findings: Vec<Finding>,
}

fn lint_all(pool: &DescriptorPool) -> Vec<Finding> {
    let mut linter = Linter {
        pool,
        annotations: Annotations {
            resource: pool.get_extension_by_name("google.api.resource"),
            resource_definition: pool.get_extension_by_name("google.api.resource_definition"),
            resource_reference: pool.get_extension_by_name("google.api.resource_reference"),
            field_behavior: pool.get_extension_by_name("google.api.field_behavior"),
        },
        comments: HashMap::new(),
        findings: Vec::new(),
    };
    let files: Vec<FileDescriptor> = pool.files().filter(is_linted).collect();
    linter.comments = files
        .iter()
        .map(|file| (file.name().to_owned(), comments_by_path(file)))
        .collect();
    let messages: Vec<MessageDescriptor> = files
        .iter()
        .flat_map(|file| file.messages().flat_map(with_nested).collect::<Vec<_>>())
        .filter(|message| !message.is_map_entry())
        .collect();
    let resources: Vec<Resource> = messages
        .iter()
        .filter_map(|message| linter.resource_of(message))
        .collect();

    linter.check_events(&messages, &resources);
    for resource in &resources {
        linter.check_resource_annotation(resource);
        linter.check_resource_standard_fields(resource);
        linter.check_standard_methods(resource);
    }
    for message in linter.surface(&files, &resources) {
        for field in message.fields() {
            linter.check_field_behavior(&field);
        }
    }
    let known_types = linter.known_resource_types();
    for message in &messages {
        linter.check_comment(
            "message-comment",
            message.parent_file(),
            message.path(),
            message.full_name(),
            || {
                format!(
                    "message {} has no comment: add a `//` line above it",
                    message.name()
                )
            },
        );
        for field in message.fields() {
            linter.check_resource_reference(&field, &known_types);
            linter.check_comment(
                "field-comment",
                field.parent_file(),
                field.path(),
                field.full_name(),
                || {
                    format!(
                        "field `{}` of {} has no comment: add a `//` line above it saying what it \
                     holds",
                        field.name(),
                        message.name()
                    )
                },
            );
        }
    }
    for file in &files {
        for service in file.services() {
            for method in service.methods() {
                linter.check_method_access(&method);
                linter.check_comment(
                    "method-comment",
                    method.parent_file(),
                    method.path(),
                    method.full_name(),
                    || {
                        format!(
                            "rpc {} has no comment: add a `//` line above it saying what it does",
                            method.name()
                        )
                    },
                );
            }
        }
    }
    let mut findings = linter.findings;
    findings.sort();
    findings.dedup();
    findings
}

impl Linter<'_> {
    /// `resource-events` and `event-type`.
    fn check_events(&mut self, messages: &[MessageDescriptor], resources: &[Resource]) {
        let declared: Vec<DeclaredEvent> = declared_events(self.pool)
            .into_iter()
            .filter(|event| messages.contains(&event.message))
            .collect();
        let mut seen = BTreeSet::new();
        for event in &declared {
            let location = event.event_type.clone();
            if !seen.insert(event.event_type.as_str()) {
                self.report(
                    "event-type",
                    location.clone(),
                    format!(
                        "event `{}` is declared more than once (again on {}): declare each type \
                         once",
                        event.event_type,
                        event.message.name()
                    ),
                );
            }
            if event.description.trim().is_empty() {
                self.report(
                    "event-type",
                    location.clone(),
                    format!(
                        "event `{}` has no description: add `description: \"…\"` saying what \
                         happened",
                        event.event_type
                    ),
                );
            }
            let service = package_service(&event.message);
            let singulars: Vec<&str> = resources
                .iter()
                .filter(|resource| resource.message.package_name() == event.message.package_name())
                .map(|resource| resource.singular.as_str())
                .filter(|singular| !singular.is_empty())
                .collect();
            match parse_event_type(&event.event_type) {
                Err(malformed) => self.report("event-type", location, malformed.to_string()),
                Ok(parts) if parts.service != service => self.report(
                    "event-type",
                    location,
                    format!(
                        "event `{}` names the service `{}`, but {} is in the `{service}` \
                         service's package: start its type with `emporium.{service}.`",
                        event.event_type,
                        parts.service,
                        event.message.name()
                    ),
                ),
                Ok(parts) if !singulars.contains(&parts.aggregate) => self.report(
                    "event-type",
                    location,
                    format!(
                        "event `{}` is about `{}`, which is no resource of the {service} service \
                         (its resources: {}): name the aggregate by a resource's singular",
                        event.event_type,
                        parts.aggregate,
                        singulars.join(", ")
                    ),
                ),
                Ok(_) => {}
            }
        }
        // A resource without a singular is reported by `resource-annotation`.
        for resource in resources
            .iter()
            .filter(|resource| !resource.singular.is_empty())
        {
            let service = package_service(&resource.message);
            for action in ["created", "updated", "deleted"] {
                let event_type = format!("emporium.{service}.{}.{action}", resource.singular);
                let declared_here = declared.iter().any(|event| {
                    event.event_type == event_type && event.message == resource.message
                });
                if !declared_here {
                    self.report(
                        "resource-events",
                        event_type.clone(),
                        format!(
                            "resource {} declares no `{event_type}` event: add `option \
                             (emporium.api.v1.events) = {{type: \"{event_type}\" description: \
                             \"…\"}};` to the message, its data being the record after the change",
                            resource.message.name()
                        ),
                    );
                }
            }
        }
    }

    fn report(&mut self, rule: &'static str, location: impl Into<String>, message: String) {
        self.findings.push(Finding {
            rule,
            location: location.into(),
            message,
        });
    }

    /// The message's `(google.api.resource)`, if it has one.
    fn resource_of(&self, message: &MessageDescriptor) -> Option<Resource> {
        let extension = self.annotations.resource.as_ref()?;
        let options = message.options();
        if !options.has_extension(extension) {
            return None;
        }
        let descriptor = options.get_extension(extension);
        let descriptor = descriptor.as_message()?;
        Some(Resource {
            message: message.clone(),
            type_name: string_field(descriptor, "type"),
            singular: string_field(descriptor, "singular"),
            plural: string_field(descriptor, "plural"),
            name_field: string_field(descriptor, "name_field"),
        })
    }

    fn check_resource_annotation(&mut self, resource: &Resource) {
        let message = &resource.message;
        let name = message.name();
        let location = message.full_name();
        let service_part = message
            .package_name()
            .split('.')
            .nth(1)
            .unwrap_or("service");
        let expected_type = format!("{service_part}.emporium.dev/{name}");
        match resource.type_name.split_once('/') {
            None => self.report(
                "resource-annotation",
                location,
                format!(
                    "resource {name} has no valid `type`: set `type: \"{expected_type}\"` in its \
                     (google.api.resource)"
                ),
            ),
            Some((_, kind)) if kind != name => self.report(
                "resource-annotation",
                location,
                format!(
                    "resource {name}'s type `{}` must end in `/{name}`, the message's name",
                    resource.type_name
                ),
            ),
            Some(_) => {}
        }
        let patterns = {
            let extension = self.annotations.resource.clone();
            extension
                .and_then(|extension| {
                    let options = message.options();
                    let value = options.get_extension(&extension);
                    value.as_message().map(|descriptor| {
                        descriptor
                            .get_field_by_name("pattern")
                            .and_then(|patterns| patterns.as_list().map(<[Value]>::len))
                            .unwrap_or(0)
                    })
                })
                .unwrap_or(0)
        };
        let lower_name = lower_first(name);
        if patterns == 0 {
            self.report(
                "resource-annotation",
                location,
                format!(
                    "resource {name} has no `pattern`: set `pattern: \"{}/{{{}}}\"` in its \
                     (google.api.resource)",
                    snake_plural_guess(name),
                    to_snake(name)
                ),
            );
        }
        if resource.singular.is_empty() {
            self.report(
                "resource-annotation",
                location,
                format!(
                    "resource {name} has no `singular`: set `singular: \"{lower_name}\"` in its \
                     (google.api.resource)"
                ),
            );
        }
        if resource.plural.is_empty() {
            self.report(
                "resource-annotation",
                location,
                format!(
                    "resource {name} has no `plural`: set `plural: \"{}\"` (lowerCamelCase) in \
                     its (google.api.resource)",
                    snake_plural_guess(name)
                ),
            );
        }
        if resource.name_field.is_empty() {
            self.report(
                "resource-annotation",
                location,
                format!(
                    "resource {name} has no `name_field`: set `name_field: \"id\"` (the field \
                     that names it in Get, Update and Delete) in its (google.api.resource)"
                ),
            );
        } else if message.get_field_by_name(&resource.name_field).is_none() {
            self.report(
                "resource-annotation",
                location,
                format!(
                    "resource {name}'s `name_field` is `{}`, which is not one of its fields: add \
                     the field or name an existing one",
                    resource.name_field
                ),
            );
        }
    }

    fn check_resource_standard_fields(&mut self, resource: &Resource) {
        let message = &resource.message;
        let wanted: [(&str, FieldType, &str); 3] = [
            ("version", FieldType::Int64, "int64"),
            (
                "create_time",
                FieldType::Timestamp,
                "google.protobuf.Timestamp",
            ),
            (
                "update_time",
                FieldType::Timestamp,
                "google.protobuf.Timestamp",
            ),
        ];
        for (field_name, field_type, type_text) in wanted {
            if !has_field(message, field_name, field_type, false) {
                self.report(
                    "resource-standard-fields",
                    format!("{}.{field_name}", message.full_name()),
                    format!(
                        "resource {} has no `{type_text} {field_name}`: add `{type_text} \
                         {field_name} = N [(google.api.field_behavior) = OUTPUT_ONLY];` with a \
                         comment",
                        message.name()
                    ),
                );
            }
        }
    }

    fn check_standard_methods(&mut self, resource: &Resource) {
        let message = &resource.message;
        let singular = message.name().to_owned();
        let plural = upper_first(&resource.plural);
        if plural.is_empty() {
            // Reported by `resource-annotation`; the method names cannot be made without it.
            return;
        }
        let services: Vec<_> = self
            .pool
            .services()
            .filter(|service| service.package_name() == message.package_name())
            .collect();
        let service_name = services
            .first()
            .map(|service| service.full_name().to_owned())
            .unwrap_or_else(|| format!("{}.{singular}Service", message.package_name()));
        let short_service = service_name.rsplit('.').next().unwrap_or("").to_owned();
        let find = |method_name: &str| {
            services.iter().find_map(|service| {
                service
                    .methods()
                    .find(|method| method.name() == method_name)
            })
        };
        let key = resource.name_field.as_str();
        let batch_key = if key == "id" || key.is_empty() {
            "ids".to_owned()
        } else {
            format!("{key}s")
        };
        let reference = format!(
            "(google.api.resource_reference).type = \"{}\"",
            resource.type_name
        );
        let standard: [(String, String, String); 6] = [
            (
                format!("Get{singular}"),
                format!("Get{singular}Request"),
                singular.clone(),
            ),
            (
                format!("BatchGet{plural}"),
                format!("BatchGet{plural}Request"),
                format!("BatchGet{plural}Response"),
            ),
            (
                format!("List{plural}"),
                format!("List{plural}Request"),
                format!("List{plural}Response"),
            ),
            (
                format!("Create{singular}"),
                format!("Create{singular}Request"),
                singular.clone(),
            ),
            (
                format!("Update{singular}"),
                format!("Update{singular}Request"),
                singular.clone(),
            ),
            (
                format!("Delete{singular}"),
                format!("Delete{singular}Request"),
                format!("Delete{singular}Response"),
            ),
        ];
        for (method_name, request, response) in standard {
            let Some(method) = find(&method_name) else {
                self.report(
                    "standard-methods",
                    format!("{service_name}.{method_name}"),
                    format!(
                        "resource {singular} has no standard method {method_name}: add `rpc \
                         {method_name}({request}) returns ({response})` to {short_service}"
                    ),
                );
                continue;
            };
            let input = method.input();
            let verb = method_name
                .strip_suffix(&singular)
                .or_else(|| method_name.strip_suffix(&plural))
                .unwrap_or("");
            match verb {
                "Get" => self.want_field(&input, key, FieldType::String, false, &reference),
                "BatchGet" => {
                    self.want_field(&input, &batch_key, FieldType::String, true, &reference);
                }
                "List" => {
                    self.want_field(&input, "page_size", FieldType::Int32, false, "");
                    self.want_field(&input, "page_token", FieldType::String, false, "");
                    self.want_field(
                        &method.output(),
                        "next_page_token",
                        FieldType::String,
                        false,
                        "",
                    );
                }
                "Update" | "Delete" => {
                    self.want_field(&input, key, FieldType::String, false, &reference);
                    self.want_field(&input, "expected_version", FieldType::Int64, false, "");
                }
                _ => {}
            }
        }
    }

    /// Reports `message` lacking the standard field `name` of `field_type`.
    fn want_field(
        &mut self,
        message: &MessageDescriptor,
        name: &str,
        field_type: FieldType,
        repeated: bool,
        extra_option: &str,
    ) {
        if name.is_empty() || has_field(message, name, field_type, repeated) {
            return;
        }
        let label = if repeated { "repeated " } else { "" };
        let type_text = field_type.proto_text();
        let options = if extra_option.is_empty() {
            "[(google.api.field_behavior) = …]".to_owned()
        } else {
            format!("[(google.api.field_behavior) = …, {extra_option}]")
        };
        self.report(
            "standard-method-fields",
            format!("{}.{name}", message.full_name()),
            format!(
                "{} has no standard field `{name}`: add `{label}{type_text} {name} = N {options};` \
                 with a comment",
                message.name()
            ),
        );
    }

    /// The messages of linted files that are resources, or that an RPC takes or returns, with
    /// every message they hold, however deep.
    fn surface(&self, files: &[FileDescriptor], resources: &[Resource]) -> Vec<MessageDescriptor> {
        let mut seen = BTreeSet::new();
        let mut pending: Vec<MessageDescriptor> = resources
            .iter()
            .map(|resource| resource.message.clone())
            .collect();
        for file in files {
            for service in file.services() {
                for method in service.methods() {
                    pending.push(method.input());
                    pending.push(method.output());
                }
            }
        }
        let mut surface = Vec::new();
        while let Some(message) = pending.pop() {
            if !is_linted(&message.parent_file()) || !seen.insert(message.full_name().to_owned()) {
                continue;
            }
            for field in message.fields() {
                if let Kind::Message(held) = field.kind() {
                    pending.push(held);
                }
            }
            if !message.is_map_entry() {
                surface.push(message);
            }
        }
        surface.sort_by(|left, right| left.full_name().cmp(right.full_name()));
        surface
    }

    fn check_field_behavior(&mut self, field: &FieldDescriptor) {
        let declared = self
            .annotations
            .field_behavior
            .as_ref()
            .is_some_and(|extension| {
                let options = field.options();
                options.has_extension(extension)
                    && options
                        .get_extension(extension)
                        .as_list()
                        .is_some_and(|behaviors| !behaviors.is_empty())
            });
        if !declared {
            self.report(
                "field-behavior",
                field.full_name(),
                format!(
                    "field `{}` of {} has no behaviour: add `[(google.api.field_behavior) = \
                     REQUIRED]` (or OPTIONAL, OUTPUT_ONLY, IMMUTABLE), importing \
                     \"google/api/field_behavior.proto\"",
                    field.name(),
                    field.parent_message().name()
                ),
            );
        }
    }

    /// Every resource type defined in the pool: on messages, and by files' `resource_definition`.
    fn known_resource_types(&self) -> BTreeSet<String> {
        let mut known = BTreeSet::new();
        for message in self.pool.all_messages() {
            if let Some(resource) = self.resource_of(&message) {
                known.insert(resource.type_name);
            }
        }
        if let Some(extension) = &self.annotations.resource_definition {
            for file in self.pool.files() {
                let options = file.options();
                if !options.has_extension(extension) {
                    continue;
                }
                let definitions = options.get_extension(extension);
                for definition in definitions.as_list().unwrap_or(&[]) {
                    if let Some(definition) = definition.as_message() {
                        known.insert(string_field(definition, "type"));
                    }
                }
            }
        }
        known
    }

    fn check_resource_reference(&mut self, field: &FieldDescriptor, known: &BTreeSet<String>) {
        let Some(extension) = &self.annotations.resource_reference else {
            return;
        };
        let options = field.options();
        if !options.has_extension(extension) {
            return;
        }
        let reference = options.get_extension(extension);
        let Some(reference) = reference.as_message() else {
            return;
        };
        let type_name = string_field(reference, "type");
        let child_type = string_field(reference, "child_type");
        let named = if type_name.is_empty() {
            child_type
        } else {
            type_name
        };
        if named.is_empty() {
            self.report(
                "resource-reference",
                field.full_name(),
                format!(
                    "field `{}`'s (google.api.resource_reference) names no type: set `type` to \
                     the resource type it holds an id of",
                    field.name()
                ),
            );
        } else if named != "*" && !known.contains(&named) {
            let known_list = known.iter().cloned().collect::<Vec<_>>().join(", ");
            self.report(
                "resource-reference",
                field.full_name(),
                format!(
                    "field `{}` refers to resource type `{named}`, which no message or \
                     resource_definition defines: name one of {known_list}, or define it with \
                     `option (google.api.resource)` on its message",
                    field.name()
                ),
            );
        }
    }

    fn check_method_access(&mut self, method: &MethodDescriptor) {
        if let Err(problem) = access_of(method) {
            self.report(
                "method-access",
                method.full_name(),
                format!("rpc {} {problem}", method.name()),
            );
        }
    }

    fn check_comment(
        &mut self,
        rule: &'static str,
        file: FileDescriptor,
        path: &[i32],
        location: &str,
        message: impl FnOnce() -> String,
    ) {
        let commented = self
            .comments
            .get(file.name())
            .and_then(|comments| comments.get(path))
            .is_some_and(|comment| !comment.trim().is_empty());
        if !commented {
            self.report(rule, location, message());
        }
    }
}

/// The types the standard fields have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FieldType {
    String,
    Int32,
    Int64,
    Timestamp,
}

impl FieldType {
    fn proto_text(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Int32 => "int32",
            FieldType::Int64 => "int64",
            FieldType::Timestamp => "google.protobuf.Timestamp",
        }
    }

    fn matches(self, kind: &Kind) -> bool {
        match (self, kind) {
            (FieldType::String, Kind::String)
            | (FieldType::Int32, Kind::Int32)
            | (FieldType::Int64, Kind::Int64) => true,
            (FieldType::Timestamp, Kind::Message(message)) => {
                message.full_name() == "google.protobuf.Timestamp"
            }
            _ => false,
        }
    }
}

fn has_field(
    message: &MessageDescriptor,
    name: &str,
    field_type: FieldType,
    repeated: bool,
) -> bool {
    message
        .get_field_by_name(name)
        .is_some_and(|field| field.is_list() == repeated && field_type.matches(&field.kind()))
}

/// Emporium's own files: everything but the `google.*` packages (the well-known types and the
/// vendored annotations).
/// `catalog` for a message of `emporium.catalog.v1`.
fn package_service(message: &MessageDescriptor) -> &str {
    message.package_name().split('.').nth(1).unwrap_or_default()
}

fn is_linted(file: &FileDescriptor) -> bool {
    !file.package_name().starts_with("google.") && file.package_name() != "google"
}

fn with_nested(message: MessageDescriptor) -> Vec<MessageDescriptor> {
    let mut all = vec![message.clone()];
    for child in message.child_messages() {
        all.extend(with_nested(child));
    }
    all
}

fn string_field(message: &DynamicMessage, name: &str) -> String {
    message
        .get_field_by_name(name)
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Leading and trailing comments of `file`, by source path.
pub(crate) fn comments_by_path(file: &FileDescriptor) -> HashMap<Vec<i32>, String> {
    let Some(info) = &file.file_descriptor_proto().source_code_info else {
        return HashMap::new();
    };
    info.location
        .iter()
        .map(|location| {
            let comment = format!(
                "{}{}",
                location.leading_comments.as_deref().unwrap_or(""),
                location.trailing_comments.as_deref().unwrap_or("")
            );
            (location.path.clone(), comment)
        })
        .collect()
}

fn upper_first(text: &str) -> String {
    let mut characters = text.chars();
    match characters.next() {
        Some(first) => first.to_uppercase().chain(characters).collect(),
        None => String::new(),
    }
}

fn lower_first(text: &str) -> String {
    let mut characters = text.chars();
    match characters.next() {
        Some(first) => first.to_lowercase().chain(characters).collect(),
        None => String::new(),
    }
}

fn to_snake(name: &str) -> String {
    let mut snake = String::new();
    for (index, character) in name.chars().enumerate() {
        if character.is_uppercase() && index > 0 {
            snake.push('_');
        }
        snake.extend(character.to_lowercase());
    }
    snake
}

/// A first guess at a plural, only for the text of a finding: the author decides.
fn snake_plural_guess(name: &str) -> String {
    let lower = lower_first(name);
    if let Some(stem) = lower.strip_suffix('y') {
        format!("{stem}ies")
    } else {
        format!("{lower}s")
    }
}
