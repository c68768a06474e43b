//! The resource commands, generated from the contract's resource model
//! ([`contract::resources`]): `emporiumctl <resource> <verb>` for every resource of every
//! service, with no code per resource. Each resource gets the verbs its service offers:
//! `list`, `get` (several keys at once through BatchGet where there is one), `create`, `update`,
//! `delete`, `events` (the service's ListEvents), and one verb per other method acting on it,
//! named by the method less the resource's name in kebab case (`account set-password`,
//! `account grant-role`, `client reset-secret`). The positional argument is the field that
//! names the record in the request (`id`, a role's `name`, GrantRole's `account_id`); the flags
//! come from the request's fields ([`crate::flags`]); the help text from the `.proto` comments.
//!
//! A method is a verb of the resource it returns (else the one its response holds, else the one
//! a required request field names), so GrantRole and RevokeRole are `account grant-role <ID>
//! --role NAME --expected-version N`, not `role grant`: they take the account's id and the
//! account's version, and return the account, whose `roles` they change.

use clap::{Arg, ArgAction, ArgGroup, ArgMatches};
use contract::resources::{self, Resource};
use prost_reflect::{FieldDescriptor, MethodDescriptor};

use crate::flags::{self, Assignment, Flag, SecretInput};

/// The clap id of the positional key.
pub(crate) const KEY_ID: &str = "@key";
/// The clap id of `-f/--file`.
pub(crate) const FILE_ID: &str = "@file";
/// The clap id of `--all`.
pub(crate) const ALL_ID: &str = "@all";

/// One verb of one resource, as the clap tree shows it and as its matches are read.
#[derive(Clone, Debug)]
pub(crate) struct Verb {
    /// `list`, `get`, `set-password`.
    pub(crate) name: String,
    pub(crate) kind: VerbKind,
    /// The RPC it calls (for `events`, the service's ListEvents).
    pub(crate) method: MethodDescriptor,
    /// The request field the positional argument sets, if the verb takes one.
    pub(crate) key: Option<FieldDescriptor>,
    pub(crate) flags: Vec<Flag>,
    /// Whether `-f` can give the request.
    pub(crate) takes_file: bool,
    /// Whether the list has pages (`page_token` in, `next_page_token` out): `--all` follows them.
    pub(crate) paged: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VerbKind {
    List,
    Get,
    Create,
    Update,
    Delete,
    Events,
    Other,
}

/// A resource command as parsed: what to call and with what. Secrets and `-f` are read when it
/// runs, not while parsing.
#[derive(Clone)]
pub struct Call {
    pub(crate) resource: Resource,
    pub(crate) verb: Verb,
    /// The positional keys (several only for `get`).
    pub(crate) keys: Vec<String>,
    pub(crate) assignments: Vec<Assignment>,
    pub(crate) secrets: Vec<SecretInput>,
    /// `-f`: a path, or `-` for stdin.
    pub(crate) file: Option<String>,
    pub(crate) all: bool,
}

/// The verbs of `resource`, in the order the help lists them.
pub(crate) fn verbs(resource: &Resource) -> Vec<Verb> {
    let standard = &resource.standard;
    let mut verbs = Vec::new();
    let mut add = |name: &str, kind: VerbKind, method: &MethodDescriptor| {
        let input = method.input();
        let key = match kind {
            VerbKind::List | VerbKind::Create => None,
            VerbKind::Events => standard
                .get
                .as_ref()
                .and_then(|get| resource.key_field(&get.input()))
                .or_else(|| resource.key_field(&input)),
            _ => resource.key_field(&input),
        };
        let flags = match kind {
            // The history is read whole; its only input is the record.
            VerbKind::Events => Vec::new(),
            _ => flags::request_flags(&input, key.as_ref()),
        };
        let paged = kind == VerbKind::List
            && input.get_field_by_name("page_token").is_some()
            && method
                .output()
                .get_field_by_name("next_page_token")
                .is_some();
        verbs.push(Verb {
            name: name.to_owned(),
            kind,
            method: method.clone(),
            key,
            flags,
            takes_file: matches!(kind, VerbKind::Create | VerbKind::Update | VerbKind::Other),
            paged,
        });
    };
    if let Some(method) = &standard.list {
        add("list", VerbKind::List, method);
    }
    if let Some(method) = &standard.get {
        add("get", VerbKind::Get, method);
    }
    if let Some(method) = &standard.create {
        add("create", VerbKind::Create, method);
    }
    if let Some(method) = &standard.update {
        add("update", VerbKind::Update, method);
    }
    if let Some(method) = &standard.delete {
        add("delete", VerbKind::Delete, method);
    }
    if let Some(method) = &resource.events {
        add("events", VerbKind::Events, method);
    }
    for custom in &resource.custom {
        add(&kebab_verb(&custom.verb), VerbKind::Other, &custom.method);
    }
    verbs
}

/// The clap command of `resource` and its verbs.
pub(crate) fn resource_command(resource: &Resource) -> clap::Command {
    let comment = flags::prose(&resources::message_comment(&resource.message).unwrap_or_default());
    let mut long_about = format!(
        "{comment}\n\nA {} ({}), served by {}.",
        resource.singular,
        resource.type_name,
        resource.service.full_name()
    );
    if let Some(service_comment) = resources::service_comment(&resource.service) {
        long_about.push_str("\n\n");
        long_about.push_str(&flags::prose(&service_comment));
    }
    let mut command = clap::Command::new(resource.singular.clone())
        .visible_alias(resource.plural.clone())
        .about(flags::first_sentence(&comment))
        .long_about(long_about)
        .subcommand_required(true)
        .arg_required_else_help(true);
    for verb in verbs(resource) {
        command = command.subcommand(verb_command(resource, &verb));
    }
    command
}

/// Reads the matches of `resource`'s verb `verb_name`.
pub(crate) fn read_call(
    resource: &Resource,
    verb_name: &str,
    matches: &ArgMatches,
) -> Option<Call> {
    let verb = verbs(resource)
        .into_iter()
        .find(|verb| verb.name == verb_name)?;
    let keys: Vec<String> = if verb.key.is_some() {
        matches
            .get_many::<String>(KEY_ID)
            .map(|keys| keys.cloned().collect())
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let (assignments, secrets) = flags::read_matches(&verb.flags, matches);
    let file = if verb.takes_file {
        matches.get_one::<String>(FILE_ID).cloned()
    } else {
        None
    };
    let all = verb.paged && matches.get_flag(ALL_ID);
    Some(Call {
        resource: resource.clone(),
        verb,
        keys,
        assignments,
        secrets,
        file,
        all,
    })
}

// === impl Call ===

impl std::fmt::Debug for Call {
    /// Names, not descriptors (which would print the whole contract); no secret is held yet.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("resource", &self.resource.singular)
            .field("verb", &self.verb.name)
            .field("method", &self.verb.method.full_name())
            .field("keys", &self.keys)
            .field(
                "fields",
                &self
                    .assignments
                    .iter()
                    .map(|assignment| {
                        assignment
                            .path
                            .iter()
                            .map(FieldDescriptor::name)
                            .collect::<Vec<_>>()
                            .join(".")
                    })
                    .collect::<Vec<_>>(),
            )
            .field("file", &self.file)
            .field("all", &self.all)
            .finish_non_exhaustive()
    }
}

// === helpers ===

fn verb_command(resource: &Resource, verb: &Verb) -> clap::Command {
    let method_comment = flags::prose(&resources::method_comment(&verb.method).unwrap_or_default());
    let about = match verb.kind {
        VerbKind::Events => format!(
            "The event history of one {}, oldest first. {method_comment}",
            resource.singular
        ),
        VerbKind::Get if resource.standard.batch_get.is_some() => {
            format!("{method_comment} Several at once with several keys (one call).")
        }
        _ => method_comment.clone(),
    };
    let mut long_about = about.clone();
    if let Some(request_comment) = resources::message_comment(&verb.method.input()) {
        long_about.push_str("\n\nRequest: ");
        long_about.push_str(&flags::prose(&request_comment));
    }
    long_about.push_str(&format!(
        "\n\nCalls /{}/{}.",
        verb.method.parent_service().full_name(),
        verb.method.name()
    ));
    let mut command = clap::Command::new(verb.name.clone())
        .about(flags::first_sentence(&about))
        .long_about(long_about);
    if let Some(key) = &verb.key {
        let help = flags::prose(&resources::field_comment(key).unwrap_or_default());
        let several = verb.kind == VerbKind::Get;
        let arg = Arg::new(KEY_ID)
            .value_name(key.name().to_uppercase())
            .required(true)
            .help(help);
        command = command.arg(if several {
            arg.num_args(1..).action(ArgAction::Append)
        } else {
            arg.action(ArgAction::Set)
        });
    }
    let file_id = verb.takes_file.then_some(FILE_ID);
    command = command.args(flags::to_args(&verb.flags, file_id));
    if verb.takes_file {
        command = command.arg(
            Arg::new(FILE_ID)
                .short('f')
                .long("file")
                .value_name("FILE")
                .help(
                    "Read the request from a JSON file in its proto3 JSON form (- for stdin); \
                     flags given as well override its fields",
                ),
        );
    }
    if verb.paged {
        command = command.arg(
            Arg::new(ALL_ID)
                .long("all")
                .action(ArgAction::SetTrue)
                .help("Follow the pages to the end and print everything"),
        );
    }
    if verb.kind == VerbKind::Update {
        // An update must change something: a flag that is not required, or a file.
        let changes: Vec<String> = verb
            .flags
            .iter()
            .filter(|flag| !flag.required)
            .map(|flag| flag.id.clone())
            .chain(std::iter::once(FILE_ID.to_owned()))
            .collect();
        command = command.group(
            ArgGroup::new("@changes")
                .args(changes)
                .multiple(true)
                .required(true),
        );
    }
    command
}

/// `ResetSecret` → `reset-secret`.
fn kebab_verb(verb: &str) -> String {
    let mut kebab = String::new();
    for (index, character) in verb.chars().enumerate() {
        if character.is_uppercase() && index > 0 {
            kebab.push('-');
        }
        kebab.extend(character.to_lowercase());
    }
    kebab
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Vec<Resource> {
        let pool = contract::decode_pool(emporium_proto::FILE_DESCRIPTOR_SET)
            .expect("the contract decodes");
        resources::resources(&pool)
    }

    #[test]
    fn every_resource_gets_the_verbs_its_service_offers() {
        let model = model();
        let names = |singular: &str| -> Vec<String> {
            let resource = model
                .iter()
                .find(|resource| resource.singular == singular)
                .expect("the resource exists");
            verbs(resource).into_iter().map(|verb| verb.name).collect()
        };

        assert_eq!(
            names("product"),
            ["list", "get", "create", "update", "delete", "events"]
        );
        assert_eq!(
            names("account"),
            [
                "list",
                "get",
                "create",
                "update",
                "delete",
                "events",
                "set-password",
                "grant-role",
                "revoke-role"
            ]
        );
        assert_eq!(
            names("client"),
            [
                "list",
                "get",
                "create",
                "update",
                "delete",
                "events",
                "reset-secret"
            ]
        );
    }

    #[test]
    fn roles_are_named_by_name_and_their_list_has_pages() {
        let model = model();
        let role = model
            .iter()
            .find(|resource| resource.singular == "role")
            .expect("roles exist");
        let verbs = verbs(role);
        let verb = |name: &str| {
            verbs
                .iter()
                .find(|verb| verb.name == name)
                .expect("the verb exists")
        };
        let flag_names = |name: &str| -> Vec<String> {
            verb(name)
                .flags
                .iter()
                .map(|flag| flag.long.clone())
                .collect()
        };

        assert!(verb("list").paged);
        assert_eq!(flag_names("list"), ["page-size", "page-token"]);
        assert_eq!(
            verb("get").key.as_ref().map(FieldDescriptor::name),
            Some("name")
        );
        assert_eq!(
            verb("events").key.as_ref().map(FieldDescriptor::name),
            Some("name"),
            "events take the role's name too, and look its history id up"
        );
        assert_eq!(
            role.batch_key_field(
                &role
                    .standard
                    .batch_get
                    .as_ref()
                    .expect("BatchGetRoles")
                    .input()
            )
            .as_ref()
            .map(FieldDescriptor::name),
            Some("names")
        );
    }
}
