//! `emporiumctl`: the command-line client of Emporium's catalog. The clap types here are the
//! whole command tree (their doc comments are the help text); [`run`] executes one parsed command
//! against the catalog's gRPC API and writes the result to the writer it is given, so tests
//! capture exactly what a user would see. The CLI never touches a database.

pub mod credentials;
mod error;
pub mod oauth;
mod render;
mod table;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use emporium_proto::audit::v1 as audit;
use emporium_proto::catalog::v1 as proto;
use proto::catalog_service_client::CatalogServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::credentials::CredentialStore;
pub use crate::error::CliError;
use crate::render::Listing;

/// Where `emporium up` serves every service, the catalog included (`EMPORIUM_GRPC_ADDR`'s
/// default). A catalog served alone (`emporium serve catalog`) listens on its own address.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:50050";

/// How long to wait for the TCP (and HTTP/2) connection to the server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one RPC may take before the CLI gives up on it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

const LONG_ABOUT: &str = "\
Manage Emporium's catalog from the command line: categories, the products sold in them, and the \
event history of each, over the catalog's gRPC API.

Every change that can race with someone else (update, delete) takes the version you last read \
(--expected-version); when the record changed in the meantime the server refuses with a conflict \
and nothing changes: read it again and retry.

Examples:
  emporiumctl category create --name Shoes --description 'Things for feet'
  emporiumctl category list --query shoe --order-by create-time --desc
  emporiumctl product create --sku SHOE-42 --name 'Trail runner' --category-id <CATEGORY_ID> \\
      --price-minor 1299 --currency EUR --stock 10
  emporiumctl product list --category-id <CATEGORY_ID> --all --output json
  emporiumctl product update <ID> --expected-version 1 --price-minor 1499 --currency EUR
  emporiumctl product delete <ID> --expected-version 2
  emporiumctl product events <ID>
  EMPORIUMCTL_SERVER=http://catalog.internal:50052 emporiumctl category get <ID>

Signing in: every call carries an access token. `emporiumctl login` signs in through your browser \
(or `--client-credentials` for a service account) and stores the token in \
$EMPORIUMCTL_CONFIG_DIR, $XDG_CONFIG_HOME/emporiumctl or ~/.config/emporiumctl \
(credentials.json, readable by you only), refreshing it when it expires; --token (or \
EMPORIUMCTL_TOKEN) uses a token you already have instead. `emporiumctl logout` forgets it.

Exit status: 0 success, 1 the server refused the request (also: not signed in, permission denied, \
login failed or expired), 2 usage error, 3 cannot reach the server.";

/// Command-line client for Emporium's catalog.
#[derive(Debug, Parser)]
#[command(name = "emporiumctl", version, long_about = LONG_ABOUT)]
pub struct Cli {
    /// The catalog's gRPC address (`http://` is assumed when no scheme is given): by default
    /// where `emporium up` serves every service.
    #[arg(long, global = true, value_name = "URL", env = "EMPORIUMCTL_SERVER", default_value = DEFAULT_SERVER)]
    pub server: String,

    /// An access token to send instead of the stored login (never printed).
    #[arg(
        long,
        global = true,
        value_name = "TOKEN",
        env = "EMPORIUMCTL_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<AccessToken>,

    /// Where the login is stored (default $XDG_CONFIG_HOME/emporiumctl or
    /// ~/.config/emporiumctl).
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "EMPORIUMCTL_CONFIG_DIR"
    )]
    pub config_dir: Option<PathBuf>,

    /// How to print results: aligned columns for people, or JSON for scripts.
    #[arg(short, long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns; lists end with a count and the token of the next page.
    Table,
    /// One pretty-printed JSON document; money in minor units, times in RFC 3339.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, read, list, change and delete categories.
    #[command(subcommand)]
    Category(CategoryCommand),
    /// Create, read, list, change and delete products.
    #[command(subcommand)]
    Product(ProductCommand),
    /// Sign in at the identity provider and store the tokens.
    #[command(
        after_help = "Examples:\n  emporiumctl login\n  EMPORIUMCTL_CLIENT_SECRET=… emporiumctl login --client-credentials --client-id billing-job"
    )]
    Login(LoginArgs),
    /// Revoke the stored refresh token and forget the login.
    Logout,
    /// Print who the stored (or --token) access token speaks for: subject, roles, expiry. Read
    /// from the token itself without verifying it; the server is the one that verifies.
    Whoami,
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

#[derive(Debug, Subcommand)]
pub enum CategoryCommand {
    /// Create a category and print it (its version starts at 1).
    #[command(
        after_help = "Example: emporiumctl category create --name Shoes --description 'Things for feet'"
    )]
    Create {
        /// Unique name, 1 to 200 characters.
        #[arg(long)]
        name: String,
        /// Free text shown with the category (default empty).
        #[arg(long)]
        description: Option<String>,
    },
    /// Print one category.
    Get {
        /// The category's id (a UUID).
        id: String,
    },
    /// List categories, a page at a time (or all of them with --all).
    #[command(
        after_help = "Example: emporiumctl category list --query shoe --order-by create-time --desc --all"
    )]
    List(CategoryListArgs),
    /// Change a category's name and/or description.
    #[command(
        group(ArgGroup::new("changes").required(true).multiple(true).args(["name", "description"])),
        after_help = "Example: emporiumctl category update <ID> --expected-version 1 --name 'Running shoes'"
    )]
    Update {
        /// The category's id (a UUID).
        id: String,
        /// The version you last read; the update is refused if the category changed since.
        #[arg(long, value_name = "VERSION")]
        expected_version: i64,
        /// New unique name, 1 to 200 characters.
        #[arg(long)]
        name: Option<String>,
        /// New description (an empty string clears it).
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete a category; refused while it still has products.
    Delete {
        /// The category's id (a UUID).
        id: String,
        /// The version you last read; without it the category is deleted whatever its version.
        #[arg(long, value_name = "VERSION")]
        expected_version: Option<i64>,
    },
    /// Print a category's event history, oldest first (use --output json for the payloads).
    Events {
        /// The category's id (a UUID).
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct CategoryListArgs {
    /// Only categories whose name or description contains this text (case-insensitive).
    #[arg(long)]
    pub query: Option<String>,
    /// Sort key.
    #[arg(long, value_enum, default_value_t = CategoryOrderBy::Name)]
    pub order_by: CategoryOrderBy,
    /// Sort in descending order instead of ascending.
    #[arg(long)]
    pub desc: bool,
    #[command(flatten)]
    pub page: PageArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CategoryOrderBy {
    Name,
    CreateTime,
    UpdateTime,
}

#[derive(Debug, Subcommand)]
pub enum ProductCommand {
    /// Create a product and print it (its version starts at 1).
    #[command(
        after_help = "Example: emporiumctl product create --sku SHOE-42 --name 'Trail runner' \
                            --category-id <CATEGORY_ID> --price-minor 1299 --currency EUR --stock 10"
    )]
    Create {
        /// Stock keeping unit: unique, 1 to 64 of A-Z a-z 0-9 - _ . /
        #[arg(long)]
        sku: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Free text shown with the product (default empty).
        #[arg(long)]
        description: Option<String>,
        /// Id of the category the product is sold in.
        #[arg(long, value_name = "ID")]
        category_id: String,
        /// Price in the currency's minor units: 1299 is 12.99 EUR.
        #[arg(long, value_name = "AMOUNT", allow_negative_numbers = true)]
        price_minor: i64,
        /// ISO 4217 code of the price, e.g. EUR.
        #[arg(long)]
        currency: String,
        /// Units in the warehouse (default 0).
        #[arg(long, value_name = "N", allow_negative_numbers = true)]
        stock: Option<i64>,
    },
    /// Print one product.
    Get {
        /// The product's id (a UUID).
        id: String,
    },
    /// List products, a page at a time (or all of them with --all).
    #[command(
        after_help = "Example: emporiumctl product list --category-id <CATEGORY_ID> --order-by price --desc"
    )]
    List(ProductListArgs),
    /// Change some of a product's fields; the others stay as they are.
    #[command(
        group(ArgGroup::new("changes").required(true).multiple(true)
            .args(["sku", "name", "description", "category_id", "price_minor", "stock"])),
        after_help = "Example: emporiumctl product update <ID> --expected-version 3 --price-minor 1499 --currency EUR"
    )]
    Update {
        /// The product's id (a UUID).
        id: String,
        /// The version you last read; the update is refused if the product changed since.
        #[arg(long, value_name = "VERSION")]
        expected_version: i64,
        /// New unique stock keeping unit.
        #[arg(long)]
        sku: Option<String>,
        /// New display name.
        #[arg(long)]
        name: Option<String>,
        /// New description (an empty string clears it).
        #[arg(long)]
        description: Option<String>,
        /// Move the product to this category.
        #[arg(long, value_name = "ID")]
        category_id: Option<String>,
        /// New price in minor units; requires --currency.
        #[arg(
            long,
            value_name = "AMOUNT",
            requires = "currency",
            allow_negative_numbers = true
        )]
        price_minor: Option<i64>,
        /// Currency of the new price; requires --price-minor.
        #[arg(long, requires = "price_minor")]
        currency: Option<String>,
        /// New number of units in the warehouse.
        #[arg(long, value_name = "N", allow_negative_numbers = true)]
        stock: Option<i64>,
    },
    /// Delete a product.
    Delete {
        /// The product's id (a UUID).
        id: String,
        /// The version you last read; without it the product is deleted whatever its version.
        #[arg(long, value_name = "VERSION")]
        expected_version: Option<i64>,
    },
    /// Print a product's event history, oldest first (use --output json for the payloads).
    Events {
        /// The product's id (a UUID).
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct ProductListArgs {
    /// Only products of this category.
    #[arg(long, value_name = "ID")]
    pub category_id: Option<String>,
    /// Only products whose name or description contains this text (case-insensitive).
    #[arg(long)]
    pub query: Option<String>,
    /// Only the product with exactly this sku.
    #[arg(long)]
    pub sku: Option<String>,
    /// Sort key.
    #[arg(long, value_enum, default_value_t = ProductOrderBy::Name)]
    pub order_by: ProductOrderBy,
    /// Sort in descending order instead of ascending.
    #[arg(long)]
    pub desc: bool,
    #[command(flatten)]
    pub page: PageArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProductOrderBy {
    Name,
    Sku,
    Price,
    CreateTime,
    UpdateTime,
}

/// Paging flags shared by every list.
#[derive(Debug, Args)]
pub struct PageArgs {
    /// Items per page, 1 to 500 (default: the server's, 50).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..))]
    pub page_size: Option<i32>,
    /// Continue a listing: the token printed after the previous page. The other list flags must
    /// be the same as for that page.
    #[arg(long, value_name = "TOKEN")]
    pub page_token: Option<String>,
    /// Follow the pages to the end and print everything.
    #[arg(long)]
    pub all: bool,
}

/// Executes `cli` against the server it names, writing the result to `out`.
pub async fn run(cli: Cli, out: &mut impl Write) -> Result<(), CliError> {
    let store = credential_store(cli.config_dir.as_deref());
    let command = match cli.command {
        Command::Login(arguments) => return login(arguments, &store?, out).await,
        Command::Logout => return logout(&store?, out).await,
        Command::Whoami => return whoami(cli.token.as_ref(), &store?, out),
        command => command,
    };
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
    match command {
        Command::Category(command) => session.category(command, out).await,
        Command::Product(command) => session.product(command, out).await,
        Command::Login(_) | Command::Logout | Command::Whoami => Ok(()),
    }
}

/// Sends `authorization: Bearer <token>` with every call, when there is a token.
#[derive(Clone)]
pub struct BearerInterceptor {
    authorization: Option<tonic::metadata::AsciiMetadataValue>,
}

/// A catalog client that sends the caller's token.
type Client = CatalogServiceClient<InterceptedService<Channel, BearerInterceptor>>;

/// A connected client and what every command needs to report its outcome.
struct Session {
    client: Client,
    /// The server as the user named it (scheme added), for error messages.
    server: String,
    output: OutputFormat,
}

// === impl Session ===

impl Session {
    async fn category(
        &mut self,
        command: CategoryCommand,
        out: &mut impl Write,
    ) -> Result<(), CliError> {
        match command {
            CategoryCommand::Create { name, description } => {
                let request = proto::CreateCategoryRequest {
                    name,
                    description: description.unwrap_or_default(),
                };
                let category = self
                    .client
                    .create_category(request)
                    .await
                    .map_err(|status| self.refused(status))?;
                render::category(self.output, &category.into_inner(), out)
            }
            CategoryCommand::Get { id } => {
                let request = proto::GetCategoryRequest { id };
                let category = self
                    .client
                    .get_category(request)
                    .await
                    .map_err(|status| self.refused(status))?;
                render::category(self.output, &category.into_inner(), out)
            }
            CategoryCommand::List(arguments) => self.list_categories(arguments, out).await,
            CategoryCommand::Update {
                id,
                expected_version,
                name,
                description,
            } => {
                let hint = reread_hint("category", &id);
                let request = proto::UpdateCategoryRequest {
                    id,
                    expected_version,
                    name,
                    description,
                };
                let category = self
                    .client
                    .update_category(request)
                    .await
                    .map_err(|status| self.refused_with_hint(status, hint))?;
                render::category(self.output, &category.into_inner(), out)
            }
            CategoryCommand::Delete {
                id,
                expected_version,
            } => {
                let hint = reread_hint("category", &id);
                let request = proto::DeleteCategoryRequest {
                    id: id.clone(),
                    expected_version: expected_version.unwrap_or(0),
                };
                self.client
                    .delete_category(request)
                    .await
                    .map_err(|status| self.refused_with_hint(status, hint))?;
                render::deleted(self.output, "category", &id, out)
            }
            CategoryCommand::Events { id } => self.events(id, out).await,
        }
    }

    async fn product(
        &mut self,
        command: ProductCommand,
        out: &mut impl Write,
    ) -> Result<(), CliError> {
        match command {
            ProductCommand::Create {
                sku,
                name,
                description,
                category_id,
                price_minor,
                currency,
                stock,
            } => {
                let request = proto::CreateProductRequest {
                    sku,
                    name,
                    description: description.unwrap_or_default(),
                    category_id,
                    price: Some(proto::Money {
                        amount_minor: price_minor,
                        currency,
                    }),
                    stock_on_hand: stock.unwrap_or(0),
                };
                let product = self
                    .client
                    .create_product(request)
                    .await
                    .map_err(|status| self.refused(status))?;
                render::product(self.output, &product.into_inner(), out)
            }
            ProductCommand::Get { id } => {
                let request = proto::GetProductRequest { id };
                let product = self
                    .client
                    .get_product(request)
                    .await
                    .map_err(|status| self.refused(status))?;
                render::product(self.output, &product.into_inner(), out)
            }
            ProductCommand::List(arguments) => self.list_products(arguments, out).await,
            ProductCommand::Update {
                id,
                expected_version,
                sku,
                name,
                description,
                category_id,
                price_minor,
                currency,
                stock,
            } => {
                let hint = reread_hint("product", &id);
                // clap makes --price-minor and --currency require each other.
                let price = match (price_minor, currency) {
                    (Some(amount_minor), Some(currency)) => Some(proto::Money {
                        amount_minor,
                        currency,
                    }),
                    _ => None,
                };
                let request = proto::UpdateProductRequest {
                    id,
                    expected_version,
                    sku,
                    name,
                    description,
                    category_id,
                    price,
                    stock_on_hand: stock,
                };
                let product = self
                    .client
                    .update_product(request)
                    .await
                    .map_err(|status| self.refused_with_hint(status, hint))?;
                render::product(self.output, &product.into_inner(), out)
            }
            ProductCommand::Delete {
                id,
                expected_version,
            } => {
                let hint = reread_hint("product", &id);
                let request = proto::DeleteProductRequest {
                    id: id.clone(),
                    expected_version: expected_version.unwrap_or(0),
                };
                self.client
                    .delete_product(request)
                    .await
                    .map_err(|status| self.refused_with_hint(status, hint))?;
                render::deleted(self.output, "product", &id, out)
            }
            ProductCommand::Events { id } => self.events(id, out).await,
        }
    }

    async fn list_categories(
        &mut self,
        arguments: CategoryListArgs,
        out: &mut impl Write,
    ) -> Result<(), CliError> {
        let order_by = match arguments.order_by {
            CategoryOrderBy::Name => proto::CategoryOrderBy::Name,
            CategoryOrderBy::CreateTime => proto::CategoryOrderBy::CreateTime,
            CategoryOrderBy::UpdateTime => proto::CategoryOrderBy::UpdateTime,
        };
        let mut request = proto::ListCategoriesRequest {
            page_size: arguments.page.page_size.unwrap_or(0),
            page_token: arguments.page.page_token.unwrap_or_default(),
            query: arguments.query.unwrap_or_default(),
            order_by: order_by.into(),
            direction: direction(arguments.desc).into(),
        };
        let mut listing = Listing::default();
        loop {
            let response = self
                .client
                .list_categories(request.clone())
                .await
                .map_err(|status| self.refused(status))?
                .into_inner();
            listing.items.extend(response.categories);
            listing.total_size = response.total_size;
            if !continue_listing(
                arguments.page.all,
                &mut request.page_token,
                response.next_page_token,
            )? {
                break;
            }
        }
        // After the loop the token is that of the first page not read: empty when complete.
        listing.next_page_token = request.page_token;
        render::categories(self.output, &listing, out)
    }

    async fn list_products(
        &mut self,
        arguments: ProductListArgs,
        out: &mut impl Write,
    ) -> Result<(), CliError> {
        let order_by = match arguments.order_by {
            ProductOrderBy::Name => proto::ProductOrderBy::Name,
            ProductOrderBy::Sku => proto::ProductOrderBy::Sku,
            ProductOrderBy::Price => proto::ProductOrderBy::Price,
            ProductOrderBy::CreateTime => proto::ProductOrderBy::CreateTime,
            ProductOrderBy::UpdateTime => proto::ProductOrderBy::UpdateTime,
        };
        let mut request = proto::ListProductsRequest {
            page_size: arguments.page.page_size.unwrap_or(0),
            page_token: arguments.page.page_token.unwrap_or_default(),
            category_id: arguments.category_id.unwrap_or_default(),
            query: arguments.query.unwrap_or_default(),
            sku: arguments.sku.unwrap_or_default(),
            order_by: order_by.into(),
            direction: direction(arguments.desc).into(),
        };
        let mut listing = Listing::default();
        loop {
            let response = self
                .client
                .list_products(request.clone())
                .await
                .map_err(|status| self.refused(status))?
                .into_inner();
            listing.items.extend(response.products);
            listing.total_size = response.total_size;
            if !continue_listing(
                arguments.page.all,
                &mut request.page_token,
                response.next_page_token,
            )? {
                break;
            }
        }
        // After the loop the token is that of the first page not read: empty when complete.
        listing.next_page_token = request.page_token;
        render::products(self.output, &listing, out)
    }

    /// Prints the whole history of one record: event histories are short, so every page is read.
    async fn events(&mut self, aggregate_id: String, out: &mut impl Write) -> Result<(), CliError> {
        let mut request = audit::ListEventsRequest {
            aggregate_id,
            page_size: 500,
            page_token: String::new(),
        };
        let mut events = Vec::new();
        loop {
            let response = self
                .client
                .list_events(request.clone())
                .await
                .map_err(|status| self.refused(status))?
                .into_inner();
            events.extend(response.events);
            if !continue_listing(true, &mut request.page_token, response.next_page_token)? {
                break;
            }
        }
        render::events(self.output, &events, out)
    }

    fn refused(&self, status: tonic::Status) -> CliError {
        CliError::from_status(status, &self.server, None)
    }

    fn refused_with_hint(&self, status: tonic::Status, hint: String) -> CliError {
        CliError::from_status(status, &self.server, Some(hint))
    }
}

// === helpers ===

/// Stores `next_page_token` in `page_token` and says whether to fetch another page. Fails on a
/// server that hands back the token it was given, which would otherwise loop forever.
fn continue_listing(
    all: bool,
    page_token: &mut String,
    next_page_token: String,
) -> Result<bool, CliError> {
    if all && !next_page_token.is_empty() && next_page_token == *page_token {
        return Err(CliError::Other(anyhow::anyhow!(
            "the server returned the same page token twice; stopping to avoid an endless listing"
        )));
    }
    let more = !next_page_token.is_empty();
    *page_token = next_page_token;
    Ok(all && more)
}

fn direction(descending: bool) -> proto::SortDirection {
    if descending {
        proto::SortDirection::Desc
    } else {
        proto::SortDirection::Asc
    }
}

fn reread_hint(resource: &str, id: &str) -> String {
    format!(
        "read it again with `emporiumctl {resource} get {id}` and retry with its current version"
    )
}

/// `127.0.0.1:50052` means `http://127.0.0.1:50052`: the catalog speaks plaintext HTTP/2 unless
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
    Ok(CatalogServiceClient::with_interceptor(
        channel,
        BearerInterceptor::new(token)?,
    ))
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
