//! Command-line flags derived from a request message's fields, and the request fields set from
//! what was given. The rules, applied to every field of every request alike:
//!
//! - `--kebab-case` of the field name; a nested message's fields are flattened with the field's
//!   name in front (`--price-amount-minor`), except shapes with a human form (timestamps, money,
//!   see [`crate::values`]) and one-field wrappers, which take the wrapper field's own name
//!   (`--redirect-uris` for a `StringList`, plus `--clear-redirect-uris` to set it empty); a
//!   resource a request holds whole (AIP-133's `Product product`) gives its fields unprefixed.
//! - `OUTPUT_ONLY` fields are never flags; `REQUIRED` ones are required (unless `-f` gives a
//!   file), when every message on the way is required too.
//! - Repeated fields are repeated flags; repeated messages and maps only come from `-f`.
//! - Secrets (`(emporium.api.v1.sensitive)`) never come from the command line: `--<name>-stdin`
//!   reads them from stdin, or `EMPORIUMCTL_<NAME>` from the environment.
//! - The help text is the field's comment in the `.proto`.

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Arg, ArgAction, ArgMatches};
use contract::resources::{self, FieldBehavior};
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, Value};

use crate::values::{self, ValueKind};

/// Names the CLI itself uses; a field with one of them gets `-field` appended.
const RESERVED: &[&str] = &[
    "server",
    "token",
    "config-dir",
    "output",
    "help",
    "version",
    "file",
    "all",
];

/// One flag and the request field it sets.
#[derive(Clone, Debug)]
pub(crate) struct Flag {
    /// The clap id: the field path, `price` or `redirect_uris.values`.
    pub(crate) id: String,
    /// `--long`, without the dashes.
    pub(crate) long: String,
    /// The fields from the request down to the one set.
    pub(crate) path: Vec<FieldDescriptor>,
    pub(crate) input: Input,
    /// Required on the command line (unless a file gives the request).
    pub(crate) required: bool,
    pub(crate) help: Option<String>,
}

/// What a flag takes.
#[derive(Clone, Debug)]
pub(crate) enum Input {
    /// One value, or for a repeated field several (`--roles a --roles b`).
    Value { kind: ValueKind, repeated: bool },
    /// `--clear-<name>`: sets a one-field list wrapper present with an empty list.
    Clear,
    /// A secret: `--<long>-stdin`, or the environment variable `env`.
    Secret { env: String },
}

/// A request field to set, from a flag or the positional key.
#[derive(Clone, Debug)]
pub(crate) struct Assignment {
    pub(crate) path: Vec<FieldDescriptor>,
    pub(crate) value: Value,
}

/// A secret the request needs, read when the command runs (never while parsing).
#[derive(Clone, Debug)]
pub(crate) struct SecretInput {
    pub(crate) path: Vec<FieldDescriptor>,
    /// The flag's name, for messages: `--password-stdin`.
    pub(crate) stdin_flag: String,
    pub(crate) from_stdin: bool,
    /// `EMPORIUMCTL_PASSWORD`.
    pub(crate) env: String,
    pub(crate) required: bool,
}

/// The flags of `request`, in field order, leaving out `skip` (the field the positional key
/// sets).
pub(crate) fn request_flags(
    request: &MessageDescriptor,
    skip: Option<&FieldDescriptor>,
) -> Vec<Flag> {
    let mut flags = Vec::new();
    collect(request, &[], &[], true, skip, &mut flags);
    flags
}

/// The clap arguments of `flags`; `file_id` names the `-f` argument that can stand in for the
/// required ones, if the command has it.
pub(crate) fn to_args(flags: &[Flag], file_id: Option<&str>) -> Vec<Arg> {
    flags
        .iter()
        .map(|flag| {
            let mut help = flag.help.clone().unwrap_or_default();
            let arg = Arg::new(flag.id.clone()).long(flag.long.clone());
            let arg = match &flag.input {
                Input::Value { kind, repeated } => {
                    if let Some(hint) = kind.form_hint() {
                        help = join_help(&help, &format!("[{hint}]"));
                    }
                    let arg = value_arg(arg, kind).value_name(kind.value_name());
                    let arg = if *repeated {
                        help = join_help(&help, "[repeat the flag for several]");
                        arg.action(ArgAction::Append)
                    } else {
                        arg.action(ArgAction::Set)
                    };
                    // A negative amount is the flag's value (the server says what is wrong
                    // with it), not an unknown option: `--price -1.00EUR`.
                    match kind {
                        ValueKind::Money(_) => arg.allow_hyphen_values(true),
                        _ if kind.is_numeric() => arg.allow_negative_numbers(true),
                        _ => arg,
                    }
                }
                Input::Clear => arg.action(ArgAction::SetTrue),
                Input::Secret { env } => {
                    help = join_help(
                        &help,
                        &format!("[a secret: read from stdin; or set {env}; never an argument]"),
                    );
                    arg.action(ArgAction::SetTrue)
                }
            };
            let arg = arg.help(first_sentence(&help)).long_help(help);
            match (flag.required, file_id, &flag.input) {
                // A secret's presence is checked when it is read: stdin or the environment.
                (_, _, Input::Secret { .. }) | (false, _, _) => arg,
                (true, Some(file_id), _) => arg.required_unless_present(file_id.to_owned()),
                (true, None, _) => arg.required(true),
            }
        })
        .collect()
}

/// What `matches` says to set: the assignments, and the secrets still to read.
pub(crate) fn read_matches(
    flags: &[Flag],
    matches: &ArgMatches,
) -> (Vec<Assignment>, Vec<SecretInput>) {
    let mut assignments = Vec::new();
    let mut secrets = Vec::new();
    for flag in flags {
        match &flag.input {
            Input::Value { repeated, .. } => {
                let Some(given) = matches.get_many::<Value>(&flag.id) else {
                    continue;
                };
                let given: Vec<Value> = given.cloned().collect();
                let value = if *repeated {
                    Value::List(given)
                } else {
                    match given.into_iter().last() {
                        Some(value) => value,
                        None => continue,
                    }
                };
                assignments.push(Assignment {
                    path: flag.path.clone(),
                    value,
                });
            }
            Input::Clear => {
                if matches.get_flag(&flag.id) {
                    assignments.push(Assignment {
                        path: flag.path.clone(),
                        value: Value::List(Vec::new()),
                    });
                }
            }
            Input::Secret { env } => secrets.push(SecretInput {
                path: flag.path.clone(),
                stdin_flag: format!("--{}", flag.long),
                from_stdin: matches.get_flag(&flag.id),
                env: env.clone(),
                required: flag.required,
            }),
        }
    }
    (assignments, secrets)
}

/// Sets `assignment`'s field in `message`, creating the messages on the way.
pub(crate) fn apply(message: &mut DynamicMessage, assignment: &Assignment) -> Result<(), String> {
    let Some((last, parents)) = assignment.path.split_last() else {
        return Ok(());
    };
    let mut target = message;
    for parent in parents {
        target = target
            .get_field_mut(parent)
            .as_message_mut()
            .ok_or_else(|| format!("{} is not a message", parent.full_name()))?;
    }
    target
        .try_set_field(last, assignment.value.clone())
        .map_err(|error| error.to_string())
}

/// `first_name` → `first-name`.
pub(crate) fn kebab(name: &str) -> String {
    name.replace('_', "-")
}

// === helpers ===

/// Adds the flags of `message`'s fields, reached from the request through `prefix`; `named`
/// are the fields of `prefix` that name the flags (all but a resource a request holds whole).
fn collect(
    message: &MessageDescriptor,
    prefix: &[FieldDescriptor],
    named: &[FieldDescriptor],
    required_so_far: bool,
    skip: Option<&FieldDescriptor>,
    flags: &mut Vec<Flag>,
) {
    for field in message.fields() {
        if prefix.is_empty() && skip == Some(&field) {
            continue;
        }
        let behaviors = resources::field_behaviors(&field);
        if behaviors.contains(&FieldBehavior::OutputOnly) {
            continue;
        }
        let required = required_so_far && behaviors.contains(&FieldBehavior::Required);
        let mut path = prefix.to_vec();
        path.push(field.clone());
        let mut named_path = named.to_vec();
        named_path.push(field.clone());
        let long = long_name(&named_path);
        let help = resources::field_comment(&field).map(|comment| prose(&comment));
        if resources::is_sensitive(&field) {
            flags.push(Flag {
                id: path_id(&path),
                long: format!("{long}-stdin"),
                input: Input::Secret {
                    env: format!("EMPORIUMCTL_{}", long.replace('-', "_").to_uppercase()),
                },
                path,
                required,
                help,
            });
            continue;
        }
        if let Some(kind) = ValueKind::of_field(&field) {
            if field.is_map() {
                continue;
            }
            flags.push(Flag {
                id: path_id(&path),
                long,
                input: Input::Value {
                    kind,
                    repeated: field.is_list(),
                },
                path,
                required,
                help,
            });
            continue;
        }
        let Kind::Message(held) = field.kind() else {
            continue;
        };
        if field.is_list() {
            // Repeated messages and maps have no flag form: `-f` gives them.
            continue;
        }
        let held_fields: Vec<FieldDescriptor> = held.fields().collect();
        if let [inner] = held_fields.as_slice()
            && let Some(kind) = ValueKind::of_field(inner)
            && !inner.is_map()
        {
            // A one-field wrapper (`StringList`, `StringValue`): the flag is the wrapper field's.
            let mut inner_path = path.clone();
            inner_path.push(inner.clone());
            if inner.is_list() {
                flags.push(Flag {
                    id: format!("{}@clear", path_id(&path)),
                    long: format!("clear-{long}"),
                    path: inner_path.clone(),
                    input: Input::Clear,
                    required: false,
                    help: Some(format!("Set {} to an empty list.", field.name())),
                });
            }
            flags.push(Flag {
                id: path_id(&inner_path),
                long,
                path: inner_path,
                input: Input::Value {
                    kind,
                    repeated: inner.is_list(),
                },
                required,
                help,
            });
            continue;
        }
        if prefix.is_empty() && resources::is_resource(&held) {
            // AIP-133/134 requests hold the resource whole (`Product product`): its fields are
            // the flags, unprefixed, as in requests that list them (`--sku`, not `--product-sku`).
            collect(&held, &path, &[], required, None, flags);
        } else {
            collect(&held, &path, &named_path, required, None, flags);
        }
    }
}

fn value_arg(arg: Arg, kind: &ValueKind) -> Arg {
    match kind {
        ValueKind::Enum(enumeration) => {
            let choices = values::enum_choices(enumeration);
            let kind = kind.clone();
            arg.value_parser(PossibleValuesParser::new(choices).map(move |text| {
                // The choices are the enum's own names, so parsing one cannot fail.
                kind.parse(&text).unwrap_or(Value::EnumNumber(0))
            }))
        }
        ValueKind::Scalar(Kind::Bool) => {
            let kind = kind.clone();
            arg.num_args(0..=1)
                .default_missing_value("true")
                .value_parser(
                    PossibleValuesParser::new(["true", "false"])
                        .map(move |text| kind.parse(&text).unwrap_or(Value::Bool(true))),
                )
        }
        _ => {
            let kind = kind.clone();
            arg.value_parser(move |text: &str| kind.parse(text))
        }
    }
}

fn long_name(path: &[FieldDescriptor]) -> String {
    let long = path
        .iter()
        .map(|field| kebab(field.name()))
        .collect::<Vec<_>>()
        .join("-");
    if RESERVED.contains(&long.as_str()) {
        format!("{long}-field")
    } else {
        long
    }
}

fn path_id(path: &[FieldDescriptor]) -> String {
    path.iter()
        .map(FieldDescriptor::name)
        .collect::<Vec<_>>()
        .join(".")
}

fn join_help(help: &str, extra: &str) -> String {
    if help.is_empty() {
        extra.to_owned()
    } else {
        format!("{help} {extra}")
    }
}

/// The first sentence of `text` (a comment, possibly wrapped over lines), for the short `-h`
/// help: up to a `. ` followed by a capital letter, so `e.g. ` does not end it.
pub(crate) fn first_sentence(text: &str) -> String {
    let paragraph = prose(text.split("\n\n").next().unwrap_or(""));
    let bytes: Vec<char> = paragraph.chars().collect();
    for index in 0..bytes.len().saturating_sub(2) {
        if bytes[index] == '.' && bytes[index + 1] == ' ' && bytes[index + 2].is_uppercase() {
            return bytes[..=index].iter().collect();
        }
    }
    paragraph
}

/// A comment's lines joined into paragraphs, so clap wraps them to the terminal.
pub(crate) fn prose(text: &str) -> String {
    text.split("\n\n")
        .map(|paragraph| {
            paragraph
                .lines()
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(name: &str) -> MessageDescriptor {
        contract::decode_pool(emporium_proto::FILE_DESCRIPTOR_SET)
            .expect("the contract decodes")
            .get_message_by_name(name)
            .expect("the message exists")
    }

    fn summary(flags: &[Flag]) -> Vec<String> {
        flags
            .iter()
            .map(|flag| {
                let shape = match &flag.input {
                    Input::Value { repeated: true, .. } => "repeated",
                    Input::Value { .. } => "value",
                    Input::Clear => "clear",
                    Input::Secret { .. } => "secret",
                };
                let required = if flag.required { " required" } else { "" };
                format!("--{} {shape}{required}", flag.long)
            })
            .collect()
    }

    #[test]
    fn flags_follow_the_request_fields_and_their_behaviours() {
        let request = message("emporium.catalog.v1.CreateProductRequest");

        let flags = request_flags(&request, None);

        assert_eq!(
            summary(&flags),
            [
                "--sku value required",
                "--name value required",
                "--description value",
                "--category-id value required",
                "--price value required",
                "--stock-on-hand value",
            ]
        );
        assert_eq!(
            flags[0].help.as_deref(),
            Some("Stock keeping unit: unique, 1 to 64 of A-Z a-z 0-9 - _ . /")
        );
    }

    #[test]
    fn the_key_is_left_to_the_positional_and_wrappers_take_their_field_s_name() {
        let request = message("emporium.identity.v1.UpdateClientRequest");
        let key = request.get_field_by_name("client_id");

        let flags = request_flags(&request, key.as_ref());

        assert_eq!(
            summary(&flags),
            [
                "--expected-version value required",
                "--name value",
                "--clear-redirect-uris clear",
                "--redirect-uris repeated",
                "--clear-post-logout-redirect-uris clear",
                "--post-logout-redirect-uris repeated",
                "--clear-roles clear",
                "--roles repeated",
                "--disabled value",
            ]
        );
    }

    #[test]
    fn secrets_are_read_from_stdin_or_the_environment_never_an_argument() {
        let request = message("emporium.identity.v1.SetPasswordRequest");
        let key = request.get_field_by_name("id");

        let flags = request_flags(&request, key.as_ref());

        assert_eq!(
            summary(&flags),
            [
                "--expected-version value required",
                "--password-stdin secret required"
            ]
        );
        assert!(
            matches!(&flags[1].input, Input::Secret { env } if env == "EMPORIUMCTL_PASSWORD"),
            "{:?}",
            flags[1]
        );
    }

    #[test]
    fn parsed_flags_set_the_request_fields() {
        let request = message("emporium.identity.v1.UpdateClientRequest");
        let flags = request_flags(&request, None);
        let command = clap::Command::new("update").args(to_args(&flags, None));
        let matches = command
            .try_get_matches_from([
                "update",
                "--client-id",
                "billing",
                "--expected-version",
                "3",
                "--roles",
                "admin",
                "--roles",
                "sales",
                "--clear-redirect-uris",
                "--disabled",
            ])
            .expect("the flags parse");

        let (assignments, secrets) = read_matches(&flags, &matches);
        let mut built = DynamicMessage::new(request);
        for assignment in &assignments {
            apply(&mut built, assignment).expect("the value fits the field");
        }

        assert!(secrets.is_empty());
        // Unset fields with presence (the name, the other lists) stay unset.
        let json = crate::render::compact_json(&built);
        assert_eq!(
            json,
            r#"{"clientId":"billing","disabled":true,"expectedVersion":"3","redirectUris":{"values":[]},"roles":{"values":["admin","sales"]}}"#
        );
    }
}
