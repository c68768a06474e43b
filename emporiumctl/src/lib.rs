//! `emporiumctl`: the command-line client of every Emporium service. Its resource commands are
//! not written here: [`commands`] generates them at run time from the compiled-in contract
//! (`emporium_proto::FILE_DESCRIPTOR_SET`) through the resource model of [`contract::resources`],
//! so a resource or service added to the contract gets its commands with no CLI code. [`run`]
//! executes one parsed command through one dynamic gRPC client ([`contract::grpc`]) and writes the
//! result to the writer it is given, so tests capture exactly what a user would see. The CLI
//! never touches a database.

mod commands;
pub mod credentials;
mod error;
mod flags;
pub mod oauth;
mod ops;
mod render;
mod table;
mod values;
mod yaml;

use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgMatches, Args, FromArgMatches, Subcommand as _, ValueEnum};
use contract::resources::{self, Resource};
use prost_reflect::{DynamicMessage, FieldDescriptor, MethodDescriptor, ReflectMessage, Value};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

pub use crate::commands::Call;
use crate::commands::VerbKind;
use crate::credentials::CredentialStore;
pub use crate::error::CliError;
use crate::flags::Assignment;
pub use crate::ops::{OpsCall, OpsCommand};

/// Where `emporium up` serves every service (`EMPORIUM_GRPC_ADDR`'s default). A service served
/// alone (`emporium serve catalog`) listens on its own address.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:50050";

/// How long to wait for the TCP (and HTTP/2) connection to the server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one RPC may take before the CLI gives up on it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

const ABOUT: &str = "Command-line client for Emporium: every resource of every service.";

const LONG_ABOUT_TAIL: &str = "\
Every command is generated from the services' contract: `emporiumctl <resource> --help` lists \
its verbs and `emporiumctl <resource> <verb> --help` its flags, with the contract's own \
comments. Every change that can race with someone else (update, delete) takes the version you \
last read (--expected-version); when the record changed in the meantime the server refuses with \
a conflict and nothing changes: read it again and retry. Secrets (passwords) are never taken \
from the command line: --<field>-stdin reads them from stdin, or EMPORIUMCTL_<FIELD> from the \
environment.

Examples:
  emporiumctl category create --name Shoes --description 'Things for feet'
  emporiumctl category list --query shoe --order-by create-time --direction desc
  emporiumctl product create --sku SHOE-42 --name 'Trail runner' --category-id <CATEGORY_ID> \\
      --price 12.99EUR --stock-on-hand 10
  emporiumctl product list --category-id <CATEGORY_ID> --all --output json
  emporiumctl product update <ID> --expected-version 1 --price 14.99EUR
  emporiumctl product delete <ID> --expected-version 2
  emporiumctl product events <ID>
  EMPORIUMCTL_PASSWORD=… emporiumctl account create --email ada@example.com --first-name Ada \\
      --last-name Lovelace --country GB
  emporiumctl account grant-role <ACCOUNT_ID> --role catalog-manager --expected-version 1
  emporiumctl client create --client-id billing --name Billing --type confidential -o yaml
  emporiumctl role create -f role.json

Signing in: every call carries an access token. `emporiumctl login` signs in through your browser \
(or `--client-credentials` for a service account) and stores the token in \
$EMPORIUMCTL_CONFIG_DIR, $XDG_CONFIG_HOME/emporiumctl or ~/.config/emporiumctl \
(credentials.json, readable by you only), refreshing it when it expires; --token (or \
EMPORIUMCTL_TOKEN) uses a token you already have instead. `emporiumctl logout` forgets it.

Exit status: 0 success, 1 the server refused the request (also: not signed in, permission denied, \
login failed or expired), 2 usage error, 3 cannot reach the server.";

/// A parsed command line.
#[derive(Debug)]
pub struct Cli {
    /// The server's gRPC address (`http://` is assumed when no scheme is given).
    pub server: String,
    /// An access token to send instead of the stored login (never printed).
    pub token: Option<AccessToken>,
    /// Where the login is stored.
    pub config_dir: Option<PathBuf>,
    pub output: OutputFormat,
    pub action: Action,
}

// The flags every command takes (a plain comment: a doc comment would become the tree's about).
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
struct GlobalArgs {
    /// The gRPC address of the services (`http://` is assumed when no scheme is given): by
    /// default where `emporium up` serves every service.
    #[arg(long, global = true, value_name = "URL", env = "EMPORIUMCTL_SERVER", default_value = DEFAULT_SERVER)]
    server: String,

    /// An access token to send instead of the stored login (never printed).
    #[arg(
        long,
        global = true,
        value_name = "TOKEN",
        env = "EMPORIUMCTL_TOKEN",
        hide_env_values = true
    )]
    token: Option<AccessToken>,

    /// Where the login is stored (default $XDG_CONFIG_HOME/emporiumctl or
    /// ~/.config/emporiumctl).
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "EMPORIUMCTL_CONFIG_DIR"
    )]
    config_dir: Option<PathBuf>,

    /// How to print results: aligned columns for people, or the response's proto3 JSON mapping
    /// (or the same data as YAML) for scripts.
    #[arg(short, long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    output: OutputFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns; lists end with a count and the token of the next page.
    Table,
    /// The response as pretty-printed proto3 JSON (lowerCamelCase names, 64-bit integers as
    /// strings, times in RFC 3339, every field present).
    Json,
    /// The same data as the JSON, as YAML.
    Yaml,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Action {
    /// A generated resource command: call one RPC (or several, for `--all` and `events`).
    Resource(Box<Call>),
    /// Sign in at the identity provider and store the tokens.
    Login(LoginArgs),
    /// Revoke the stored refresh token and forget the login.
    Logout,
    /// Print who the access token speaks for.
    Whoami,
    /// Print a shell completion script.
    Completion(clap_complete::Shell),
    /// Print the running suite's ops view, or re-drive dead letters.
    Ops(OpsCall),
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The identity provider's issuer URL (http only in this build).
    #[arg(long, value_name = "URL", env = "EMPORIUMCTL_ISSUER", default_value = oauth::DEFAULT_ISSUER)]
    pub issuer: String,
    /// The OAuth2 client to log in as.
    #[arg(long, value_name = "ID", default_value = oauth::DEFAULT_CLIENT_ID)]
    pub client_id: String,
    /// Log in as a confidential client (a service account) instead of through the browser. The
    /// secret is read from EMPORIUMCTL_CLIENT_SECRET, or else from stdin; never from the
    /// command line.
    #[arg(long)]
    pub client_credentials: bool,
    /// How many seconds to wait for the browser.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub timeout: u64,
}

/// An access token given on the command line; its `Debug` form hides it.
#[derive(Clone)]
pub struct AccessToken(String);

/// Where a command reads secrets and `-f -` from, and writes notes to: the process's stdin,
/// stderr and environment in [`run`], the test's own in [`run_with`].
pub struct Console<'a> {
    pub stdin: &'a mut (dyn BufRead + Send),
    pub stderr: &'a mut (dyn Write + Send),
    pub env: &'a (dyn Fn(&str) -> Option<String> + Sync),
}

/// Sends `authorization: Bearer <token>` with every call, when there is a token.
#[derive(Clone)]
pub struct BearerInterceptor {
    authorization: Option<tonic::metadata::AsciiMetadataValue>,
}

/// One gRPC client for every service, sending the caller's token.
type Client = tonic::client::Grpc<InterceptedService<Channel, BearerInterceptor>>;

/// A connected client and what every command needs to report its outcome.
struct Session {
    client: Client,
    /// The server as the user named it (scheme added), for error messages.
    server: String,
    output: OutputFormat,
}

/// Executes `cli` against the server it names, writing the result to `out`; secrets and `-f -`
/// come from the process's stdin and environment.
pub async fn run(cli: Cli, out: &mut impl Write) -> Result<(), CliError> {
    let mut stdin = std::io::BufReader::new(std::io::stdin());
    let mut stderr = std::io::stderr();
    let env = |name: &str| std::env::var(name).ok();
    let console = Console {
        stdin: &mut stdin,
        stderr: &mut stderr,
        env: &env,
    };
    run_with(cli, console, out).await
}

/// Executes `cli` with `console` as its stdin, stderr and environment.
pub async fn run_with(
    cli: Cli,
    mut console: Console<'_>,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let store = credential_store(cli.config_dir.as_deref());
    let call = match cli.action {
        Action::Login(arguments) => return login(arguments, &store?, out).await,
        Action::Logout => return logout(&store?, out).await,
        Action::Whoami => return whoami(cli.token.as_ref(), &store?, out),
        Action::Completion(shell) => {
            // Into a buffer first: clap_complete panics when its writer fails (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "emporiumctl", &mut script);
            return out.write_all(&script).map_err(CliError::Output);
        }
        Action::Ops(call) => {
            let store = store.ok();
            let stored = match store.as_ref() {
                Some(store) => store.load().map_err(CliError::Other)?,
                None => None,
            };
            let token = match cli.token {
                Some(AccessToken(token)) => Some(token),
                None => stored_access_token(store.as_ref()).await?,
            };
            let origin = call
                .origin
                .clone()
                .or_else(|| stored.map(|credentials| credentials.issuer))
                .unwrap_or_else(|| oauth::DEFAULT_ISSUER.to_owned());
            return ops::run(call, &origin, token.as_deref(), cli.output, out).await;
        }
        Action::Resource(call) => call,
    };
    // Secrets and files are read before connecting: a usage error costs no round trip.
    let request = build_request(&call, &mut console)?;
    let token = match cli.token {
        Some(AccessToken(token)) => Some(token),
        None => stored_access_token(store.ok().as_ref()).await?,
    };
    let server = with_scheme(&cli.server);
    let client = connect(&server, token.as_deref()).await?;
    let mut session = Session {
        client,
        server,
        output: cli.output,
    };
    session.execute(*call, request, &mut console, out).await
}

// === impl Cli ===

impl Cli {
    /// The whole command tree, resource commands included (for help and completion).
    pub fn command() -> clap::Command {
        command_tree(&model())
    }

    /// Parses a command line; the error is clap's (usage, exit code 2; or help and version).
    pub fn try_parse_from<I, T>(arguments: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let model = model();
        let mut command = command_tree(&model);
        let matches = command.try_get_matches_from_mut(arguments)?;
        Cli::from_matches(&model, &matches).map_err(|error| error.with_cmd(&command))
    }

    /// Parses the process's command line, printing clap's message and exiting on an error.
    pub fn parse() -> Cli {
        Cli::try_parse_from(std::env::args_os()).unwrap_or_else(|error| error.exit())
    }

    fn from_matches(model: &[Resource], matches: &ArgMatches) -> Result<Cli, clap::Error> {
        let global = GlobalArgs::from_arg_matches(matches)?;
        let action = match matches.subcommand() {
            Some(("login", login)) => Action::Login(LoginArgs::from_arg_matches(login)?),
            Some(("logout", _)) => Action::Logout,
            Some(("whoami", _)) => Action::Whoami,
            Some(("ops", ops)) => Action::Ops(OpsCall {
                origin: ops::OpsArgs::from_arg_matches(ops)?.origin,
                command: OpsCommand::from_arg_matches(ops)?,
            }),
            Some(("completion", completion)) => Action::Completion(
                completion
                    .get_one::<clap_complete::Shell>("shell")
                    .copied()
                    .ok_or_else(|| {
                        clap::Error::new(clap::error::ErrorKind::MissingRequiredArgument)
                    })?,
            ),
            Some((name, resource_matches)) => {
                let resource = model
                    .iter()
                    .find(|resource| resource.singular == name)
                    .ok_or_else(|| clap::Error::new(clap::error::ErrorKind::InvalidSubcommand))?;
                let (verb, verb_matches) = resource_matches
                    .subcommand()
                    .ok_or_else(|| clap::Error::new(clap::error::ErrorKind::MissingSubcommand))?;
                let call = commands::read_call(resource, verb, verb_matches)
                    .ok_or_else(|| clap::Error::new(clap::error::ErrorKind::InvalidSubcommand))?;
                Action::Resource(Box::new(call))
            }
            None => return Err(clap::Error::new(clap::error::ErrorKind::MissingSubcommand)),
        };
        Ok(Cli {
            server: global.server,
            token: global.token,
            config_dir: global.config_dir,
            output: global.output,
            action,
        })
    }
}

// === impl Session ===

impl Session {
    async fn execute(
        &mut self,
        call: Call,
        request: DynamicMessage,
        console: &mut Console<'_>,
        out: &mut impl Write,
    ) -> Result<(), CliError> {
        let resource = &call.resource;
        let verb = &call.verb;
        let key = call.keys.first().cloned().unwrap_or_default();
        let hint = (!key.is_empty()).then(|| reread_hint(&resource.singular, &key));
        match verb.kind {
            VerbKind::List => {
                let response = self.list(&verb.method, request, call.all).await?;
                render::listing(self.output, resource, &response, out)
            }
            VerbKind::Get => self.get(&call, request, out).await,
            VerbKind::Events => self.events(&call, &key, out).await,
            VerbKind::Delete => {
                self.call(&verb.method, request, hint).await?;
                let key_field = verb.key.as_ref().ok_or_else(|| {
                    CliError::Other(anyhow::anyhow!("{} names no record", verb.method.name()))
                })?;
                render::deleted(self.output, &resource.singular, key_field, &key, out)
            }
            VerbKind::Create | VerbKind::Update | VerbKind::Other => {
                let response = self.call(&verb.method, request, hint).await?;
                render::record(self.output, resource, &response, out)?;
                let secrets = render::secrets_shown(&response);
                if !secrets.is_empty() {
                    // A note for the person: stdout stays the response alone, for scripts.
                    let _ = writeln!(
                        console.stderr,
                        "note: {} is shown only this once and cannot be read again: store it now.",
                        secrets.join(", ")
                    );
                }
                Ok(())
            }
        }
    }

    /// One call of `method`.
    async fn call(
        &mut self,
        method: &MethodDescriptor,
        request: DynamicMessage,
        hint: Option<String>,
    ) -> Result<DynamicMessage, CliError> {
        self.client.ready().await.map_err(|error| {
            let error: Box<dyn std::error::Error + Send + Sync> = error.into();
            CliError::Unreachable {
                server: self.server.clone(),
                reason: error::chain(error.as_ref()),
            }
        })?;
        let path = format!("/{}/{}", method.parent_service().full_name(), method.name());
        let path = http::uri::PathAndQuery::try_from(path).map_err(|error| {
            CliError::Other(anyhow::anyhow!(
                "the method's path is not a URI path: {error}"
            ))
        })?;
        let response = self
            .client
            .unary(
                tonic::Request::new(request),
                path,
                contract::grpc::DynamicCodec::new(method.output()),
            )
            .await
            .map_err(|status| CliError::from_status(status, &self.server, hint))?;
        Ok(response.into_inner())
    }

    /// The list's first page, or with `all` every page, as one response: the items of every
    /// page in its list field, the token of the first page not read in `next_page_token`.
    async fn list(
        &mut self,
        method: &MethodDescriptor,
        mut request: DynamicMessage,
        all: bool,
    ) -> Result<DynamicMessage, CliError> {
        let page_token = method.input().get_field_by_name("page_token");
        let next_page_token = method.output().get_field_by_name("next_page_token");
        let mut items: Vec<(FieldDescriptor, Vec<Value>)> = Vec::new();
        loop {
            let response = self.call(method, request.clone(), None).await?;
            for field in response.descriptor().fields() {
                if !field.is_list() || field.is_map() {
                    continue;
                }
                let page_items = response
                    .get_field(&field)
                    .as_list()
                    .unwrap_or_default()
                    .to_vec();
                match items.iter_mut().find(|(known, _)| *known == field) {
                    Some((_, known)) => known.extend(page_items),
                    None => items.push((field, page_items)),
                }
            }
            let (Some(page_token), Some(next_page_token)) = (&page_token, &next_page_token) else {
                return Ok(response);
            };
            let next = response
                .get_field(next_page_token)
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let current = request
                .get_field(page_token)
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if !all || next.is_empty() {
                let mut merged = response;
                for (field, values) in items {
                    merged.set_field(&field, Value::List(values));
                }
                return Ok(merged);
            }
            if next == current {
                return Err(CliError::Other(anyhow::anyhow!(
                    "the server returned the same page token twice; stopping to avoid an endless listing"
                )));
            }
            request.set_field(page_token, Value::String(next));
        }
    }

    /// One record, or several: through BatchGet where the service has it, else one Get each.
    async fn get(
        &mut self,
        call: &Call,
        request: DynamicMessage,
        out: &mut impl Write,
    ) -> Result<(), CliError> {
        let resource = &call.resource;
        if call.keys.len() <= 1 {
            let response = self.call(&call.verb.method, request, None).await?;
            return render::record(self.output, resource, &response, out);
        }
        if let Some(batch_get) = &resource.standard.batch_get
            && let Some(ids) = resource.batch_key_field(&batch_get.input())
        {
            let mut batch = DynamicMessage::new(batch_get.input());
            let keys = call.keys.iter().cloned().map(Value::String).collect();
            batch.set_field(&ids, Value::List(keys));
            let response = self.call(batch_get, batch, None).await?;
            return render::listing(self.output, resource, &response, out);
        }
        let key_field = call.verb.key.as_ref().ok_or_else(|| {
            CliError::Other(anyhow::anyhow!(
                "{} names no record",
                call.verb.method.name()
            ))
        })?;
        let mut records = Vec::new();
        for key in &call.keys {
            let mut single = request.clone();
            single.set_field(key_field, Value::String(key.clone()));
            records.push(self.call(&call.verb.method, single, None).await?);
        }
        render::records(self.output, resource, &records, out)
    }

    /// The record's whole history: event histories are short, so every page is read. A record
    /// named by something else than its `id` (a role by its name) is read first for its id.
    async fn events(
        &mut self,
        call: &Call,
        key: &str,
        out: &mut impl Write,
    ) -> Result<(), CliError> {
        let resource = &call.resource;
        let method = &call.verb.method;
        let named_by_id = call
            .verb
            .key
            .as_ref()
            .is_none_or(|field| field.name() == "id");
        let aggregate_id = match (&resource.standard.get, &call.verb.key) {
            (Some(get), Some(key_field)) if !named_by_id => {
                let mut request = DynamicMessage::new(get.input());
                request.set_field(key_field, Value::String(key.to_owned()));
                let record = self.call(get, request, None).await?;
                record
                    .get_field_by_name("id")
                    .and_then(|id| id.as_str().map(str::to_owned))
                    .unwrap_or_else(|| key.to_owned())
            }
            _ => key.to_owned(),
        };
        let input = method.input();
        let mut request = DynamicMessage::new(input.clone());
        let aggregate_field = resource.key_field(&input).ok_or_else(|| {
            CliError::Other(anyhow::anyhow!("{} names no record", method.full_name()))
        })?;
        request.set_field(&aggregate_field, Value::String(aggregate_id));
        let response = self.list(method, request, true).await?;
        render::events(self.output, &response, out)
    }
}

// === helpers ===

/// The model the commands are generated from: the compiled-in contract's resources.
fn model() -> Vec<Resource> {
    // emporium-proto's build script wrote this descriptor set from the contract; it decodes
    // unless the build itself is broken.
    let pool = contract::decode_pool(emporium_proto::FILE_DESCRIPTOR_SET)
        .expect("the compiled-in descriptor set decodes");
    resources::resources(&pool)
}

fn command_tree(model: &[Resource]) -> clap::Command {
    let mut long_about = format!("{ABOUT}\n\nResources (alias: the plural):\n");
    for resource in model {
        let comment = resources::message_comment(&resource.message).unwrap_or_default();
        long_about.push_str(&format!(
            "  {:<10} {}\n",
            resource.singular,
            flags::first_sentence(&comment)
        ));
    }
    long_about.push('\n');
    long_about.push_str(LONG_ABOUT_TAIL);
    let mut command = GlobalArgs::augment_args(clap::Command::new("emporiumctl"))
        .version(env!("CARGO_PKG_VERSION"))
        .about(ABOUT)
        .long_about(long_about)
        .subcommand_required(true)
        .arg_required_else_help(true);
    for resource in model {
        command = command.subcommand(commands::resource_command(resource));
    }
    command
        .subcommand(
            LoginArgs::augment_args(clap::Command::new("login"))
                .about("Sign in at the identity provider and store the tokens")
                .after_help(
                    "Examples:\n  emporiumctl login\n  EMPORIUMCTL_CLIENT_SECRET=… emporiumctl login --client-credentials --client-id billing-job",
                ),
        )
        .subcommand(
            clap::Command::new("logout")
                .about("Revoke the stored refresh token and forget the login"),
        )
        .subcommand(clap::Command::new("whoami").about(
            "Print who the stored (or --token) access token speaks for: subject, roles, expiry. \
             Read from the token itself without verifying it; the server is the one that verifies.",
        ))
        .subcommand(ops::OpsArgs::augment_args(OpsCommand::augment_subcommands(
            clap::Command::new("ops")
                .about("The running suite's ops view: health, outbox backlog, consumer lag, dead letters (admins only)")
                .subcommand_required(true)
                .after_help(
                    "Examples:\n  emporiumctl ops status\n  emporiumctl ops dead-letters --consumer catalog-projection\n  emporiumctl ops redrive --sequence 3",
                ),
        )))
        .subcommand(
            clap::Command::new("completion")
                .about("Print a completion script for a shell, e.g. `source <(emporiumctl completion bash)`")
                .arg(
                    clap::Arg::new("shell")
                        .required(true)
                        .value_parser(clap::value_parser!(clap_complete::Shell)),
                ),
        )
}

/// The request `call` sends: the `-f` file's message (if any), then the flags over it, the
/// positional key, and the secrets from stdin or the environment.
fn build_request(call: &Call, console: &mut Console<'_>) -> Result<DynamicMessage, CliError> {
    let input = call.verb.method.input();
    let mut request = match &call.file {
        Some(path) => read_request_file(&input, path, console)?,
        None => DynamicMessage::new(input.clone()),
    };
    let mut assignments = call.assignments.clone();
    if let (Some(key_field), [key]) = (&call.verb.key, call.keys.as_slice()) {
        assignments.push(Assignment {
            path: vec![key_field.clone()],
            value: Value::String(key.clone()),
        });
    }
    for secret in &call.secrets {
        let text = if secret.from_stdin {
            if call.file.as_deref() == Some("-") {
                return Err(CliError::Usage(format!(
                    "stdin cannot give both the file (-f -) and {}: set {} instead",
                    secret.stdin_flag, secret.env
                )));
            }
            Some(read_secret_line(console, &secret.stdin_flag)?)
        } else {
            (console.env)(&secret.env).filter(|value| !value.is_empty())
        };
        let Some(text) = text else {
            let given_by_file = secret
                .path
                .first()
                .is_some_and(|field| request.has_field(field));
            if secret.required && !given_by_file {
                return Err(CliError::Usage(format!(
                    "this needs a secret: pass {} and write it to stdin, or set {}",
                    secret.stdin_flag, secret.env
                )));
            }
            continue;
        };
        assignments.push(Assignment {
            path: secret.path.clone(),
            value: Value::String(text),
        });
    }
    for assignment in &assignments {
        flags::apply(&mut request, assignment).map_err(CliError::Usage)?;
    }
    Ok(request)
}

fn read_request_file(
    input: &prost_reflect::MessageDescriptor,
    path: &str,
    console: &mut Console<'_>,
) -> Result<DynamicMessage, CliError> {
    let text = if path == "-" {
        let mut text = String::new();
        console.stdin.read_to_string(&mut text).map_err(|error| {
            CliError::Usage(format!("cannot read the request from stdin: {error}"))
        })?;
        text
    } else {
        std::fs::read_to_string(path)
            .map_err(|error| CliError::Usage(format!("cannot read {path}: {error}")))?
    };
    let mut deserializer = serde_json::Deserializer::from_str(&text);
    let request = DynamicMessage::deserialize(input.clone(), &mut deserializer)
        .and_then(|request| deserializer.end().map(|()| request))
        .map_err(|error| {
            CliError::Usage(format!(
                "{path} is not a {} in proto3 JSON form: {error}",
                input.name()
            ))
        })?;
    Ok(request)
}

/// The first line of stdin, for a `--<field>-stdin` secret.
fn read_secret_line(console: &mut Console<'_>, flag: &str) -> Result<String, CliError> {
    let mut line = String::new();
    console
        .stdin
        .read_line(&mut line)
        .map_err(|error| CliError::Usage(format!("{flag}: cannot read stdin: {error}")))?;
    let secret = line.trim_end_matches(['\r', '\n']).to_owned();
    if secret.is_empty() {
        return Err(CliError::Usage(format!("{flag}: stdin held no secret")));
    }
    Ok(secret)
}

fn reread_hint(singular: &str, key: &str) -> String {
    format!(
        "read it again with `emporiumctl {singular} get {key}` and retry with its current version"
    )
}

/// `127.0.0.1:50050` means `http://127.0.0.1:50050`: the services speak plaintext HTTP/2 unless
/// told otherwise.
fn with_scheme(server: &str) -> String {
    if server.contains("://") {
        server.to_owned()
    } else {
        format!("http://{server}")
    }
}

async fn connect(server: &str, token: Option<&str>) -> Result<Client, CliError> {
    let endpoint = Endpoint::from_shared(server.to_owned())
        .map_err(|error| {
            CliError::Usage(format!(
                "invalid --server URL {server:?}: {}",
                error::chain(&error)
            ))
        })?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT);
    let channel = endpoint
        .connect()
        .await
        .map_err(|error| CliError::Unreachable {
            server: server.to_owned(),
            reason: error::chain(&error),
        })?;
    Ok(tonic::client::Grpc::new(InterceptedService::new(
        channel,
        BearerInterceptor::new(token)?,
    )))
}

// === signing in ===

fn credential_store(config_dir: Option<&std::path::Path>) -> Result<CredentialStore, CliError> {
    let directory = match config_dir {
        Some(directory) => directory.to_owned(),
        None => CredentialStore::default_directory(|name| std::env::var(name).ok()).ok_or_else(
            || CliError::Usage("set HOME or EMPORIUMCTL_CONFIG_DIR to store the login".to_owned()),
        )?,
    };
    Ok(CredentialStore::new(&directory))
}

/// The stored access token, refreshed first if it has expired; `None` when nobody is logged in
/// (the server then says the call needs a token).
async fn stored_access_token(store: Option<&CredentialStore>) -> Result<Option<String>, CliError> {
    let Some(store) = store else {
        return Ok(None);
    };
    let Some(credentials) = store.load().map_err(CliError::Other)? else {
        return Ok(None);
    };
    if !credentials.is_expired(oauth::unix_now()) {
        return Ok(Some(credentials.access_token));
    }
    if credentials.refresh_token.is_none() {
        return Err(CliError::Auth(
            "the stored login has expired; run `emporiumctl login`".to_owned(),
        ));
    }
    let refreshed = oauth::refresh(&credentials).await.map_err(|error| {
        CliError::Auth(format!(
            "the stored login has expired and could not be refreshed ({error:#}); run `emporiumctl login`"
        ))
    })?;
    store.save(&refreshed).map_err(CliError::Other)?;
    Ok(Some(refreshed.access_token))
}

async fn login(
    arguments: LoginArgs,
    store: &CredentialStore,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let issuer = arguments.issuer.trim_end_matches('/').to_owned();
    let credentials = if arguments.client_credentials {
        let secret = client_secret()?;
        oauth::login_with_client_credentials(&issuer, &arguments.client_id, &secret).await
    } else {
        let browser_login = oauth::BrowserLogin {
            issuer: issuer.clone(),
            client_id: arguments.client_id.clone(),
            scope: "openid offline_access".to_owned(),
            timeout: Duration::from_secs(arguments.timeout),
        };
        oauth::login_with_browser(&browser_login, |url| {
            // Instructions for the person, not output: stdout stays clean for scripts.
            let _ = writeln!(
                std::io::stderr().lock(),
                "Open this URL in your browser to sign in:\n\n  {url}\n\nWaiting for the browser…"
            );
        })
        .await
    }
    .map_err(|error| CliError::Auth(format!("login failed: {error:#}")))?;
    store.save(&credentials).map_err(CliError::Other)?;
    writeln!(
        out,
        "Logged in to {issuer} as client {}; the login is stored in {}",
        credentials.client_id,
        store.path().display()
    )?;
    Ok(())
}

async fn logout(store: &CredentialStore, out: &mut impl Write) -> Result<(), CliError> {
    let Some(credentials) = store.load().map_err(CliError::Other)? else {
        writeln!(out, "Not logged in.")?;
        return Ok(());
    };
    if let Err(error) = oauth::revoke(&credentials).await {
        let _ = writeln!(
            std::io::stderr().lock(),
            "warning: could not revoke the refresh token at {}: {error:#}",
            credentials.issuer
        );
    }
    store.delete().map_err(CliError::Other)?;
    writeln!(out, "Logged out of {}.", credentials.issuer)?;
    Ok(())
}

fn whoami(
    token: Option<&AccessToken>,
    store: &CredentialStore,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let token = match token {
        Some(AccessToken(token)) => token.clone(),
        None => match store.load().map_err(CliError::Other)? {
            Some(credentials) => credentials.access_token,
            None => {
                return Err(CliError::Auth(
                    "not logged in; run `emporiumctl login`".to_owned(),
                ));
            }
        },
    };
    let payload = token_payload(&token)
        .ok_or_else(|| CliError::Auth("the access token is not a JWT".to_owned()))?;
    let text = |name: &str| {
        payload
            .get(name)
            .and_then(|value| value.as_str())
            .unwrap_or("-")
            .to_owned()
    };
    let roles: Vec<&str> = payload
        .get("roles")
        .and_then(|roles| roles.as_array())
        .map(|roles| roles.iter().filter_map(|role| role.as_str()).collect())
        .unwrap_or_default();
    let expiry = match payload.get("exp").and_then(|exp| exp.as_i64()) {
        Some(exp) if exp > oauth::unix_now() => {
            format!(
                "in {} min (unix time {exp})",
                (exp - oauth::unix_now()) / 60
            )
        }
        Some(exp) => format!("expired (unix time {exp})"),
        None => "-".to_owned(),
    };
    writeln!(out, "subject   {}", text("sub"))?;
    writeln!(
        out,
        "roles     {}",
        if roles.is_empty() {
            "-".to_owned()
        } else {
            roles.join(", ")
        }
    )?;
    writeln!(out, "client    {}", text("client_id"))?;
    writeln!(out, "issuer    {}", text("iss"))?;
    writeln!(out, "expires   {expiry}")?;
    Ok(())
}

/// The client secret of `login --client-credentials`: `EMPORIUMCTL_CLIENT_SECRET`, else the first
/// line of stdin. Never an argument, so it stays out of shell history and `ps`.
fn client_secret() -> Result<String, CliError> {
    if let Ok(secret) = std::env::var("EMPORIUMCTL_CLIENT_SECRET")
        && !secret.is_empty()
    {
        return Ok(secret);
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).map_err(|error| {
        CliError::Other(anyhow::anyhow!("Failed to read the client secret: {error}"))
    })?;
    let secret = line.trim_end_matches(['\r', '\n']).to_owned();
    if secret.is_empty() {
        return Err(CliError::Usage(
            "--client-credentials needs the secret in EMPORIUMCTL_CLIENT_SECRET or on stdin"
                .to_owned(),
        ));
    }
    Ok(secret)
}

/// The JSON payload of a JWT, decoded without verifying anything: for display and expiry only.
pub(crate) fn token_payload(token: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

// === impl AccessToken ===

impl std::str::FromStr for AccessToken {
    type Err = String;

    fn from_str(text: &str) -> Result<AccessToken, String> {
        let token = text.trim();
        if token.is_empty() || token.contains(char::is_whitespace) {
            return Err("expected the token alone, without `Bearer `".to_owned());
        }
        Ok(AccessToken(token.to_owned()))
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken(..)")
    }
}

// === impl BearerInterceptor ===

impl BearerInterceptor {
    pub fn new(token: Option<&str>) -> Result<BearerInterceptor, CliError> {
        let authorization = token
            .map(|token| {
                format!("Bearer {token}").parse().map_err(|_| {
                    CliError::Usage("the access token holds characters a header cannot".to_owned())
                })
            })
            .transpose()?;
        Ok(BearerInterceptor { authorization })
    }
}

impl tonic::service::Interceptor for BearerInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(authorization) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", authorization.clone());
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixture contract `tests/fixtures/emporium/gadgets/v1/gadgets.proto`, compiled as
    /// `crates/proto` compiles the real one.
    fn gadget_model() -> Vec<Resource> {
        let manifest_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let pool = contract::fixtures::compile(
            &manifest_dir.join("tests/fixtures"),
            &manifest_dir.join("../proto"),
            "emporium/gadgets/v1/gadgets.proto",
        )
        .expect("the fixture compiles");
        resources::resources(&pool)
    }

    #[test]
    fn a_service_added_to_the_contract_gets_its_commands_with_no_cli_code() {
        let model = gadget_model();
        let mut tree = command_tree(&model);

        let matches = tree
            .try_get_matches_from_mut([
                "emporiumctl",
                "widget",
                "polish",
                "w-1",
                "--shine",
                "high",
                "--not-before",
                "2025-01-31T09:30:00Z",
            ])
            .expect("the generated command parses");
        let cli = Cli::from_matches(&model, &matches).expect("the matches are read");
        let help = tree
            .find_subcommand_mut("widget")
            .and_then(|widget| widget.find_subcommand_mut("polish"))
            .expect("PolishWidget is a verb of widgets")
            .render_long_help()
            .to_string();

        let Action::Resource(call) = cli.action else {
            panic!("a resource command");
        };
        let request = build_request(
            &call,
            &mut Console {
                stdin: &mut std::io::empty(),
                stderr: &mut std::io::sink(),
                env: &|_| None,
            },
        )
        .expect("the request is built");
        assert_eq!(
            call.verb.method.full_name(),
            "emporium.gadgets.v1.GadgetService.PolishWidget"
        );
        assert_eq!(
            render::compact_json(&request),
            r#"{"notBefore":"2025-01-31T09:30:00Z","shine":"SHINE_HIGH","widgetId":"w-1"}"#
        );
        assert!(help.contains("Makes a widget shine."), "{help}");
        assert!(help.contains("[possible values: low, high]"), "{help}");
        assert!(
            tree.find_subcommand("widget")
                .is_some_and(|widget| widget.find_subcommand("get").is_some()),
            "GetWidget is `widget get`"
        );
        let create = tree
            .try_get_matches_from_mut(["emporiumctl", "widget", "create", "--shine", "low"])
            .expect("the resource's own fields are the create flags, unprefixed");
        let Action::Resource(create) = Cli::from_matches(&model, &create)
            .expect("the matches are read")
            .action
        else {
            panic!("a resource command");
        };
        let request = build_request(
            &create,
            &mut Console {
                stdin: &mut std::io::empty(),
                stderr: &mut std::io::sink(),
                env: &|_| None,
            },
        )
        .expect("the request is built");
        assert_eq!(
            render::compact_json(&request),
            r#"{"widget":{"id":"","shine":"SHINE_LOW"},"widgetId":""}"#
        );
    }
}
