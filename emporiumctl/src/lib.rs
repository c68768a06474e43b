//! `emporiumctl`: the command-line client of Emporium's catalog. The clap types here are the
//! whole command tree (their doc comments are the help text); [`run`] executes one parsed command
//! against the catalog's gRPC API and writes the result to the writer it is given, so tests
//! capture exactly what a user would see. The CLI never touches a database.

mod error;
mod render;
mod table;

use std::io::Write;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use emporium_proto::audit::v1 as audit;
use emporium_proto::catalog::v1 as proto;
use proto::catalog_service_client::CatalogServiceClient;
use tonic::transport::{Channel, Endpoint};

pub use crate::error::CliError;
use crate::render::Listing;

/// Where the catalog listens in embedded mode (`emporium up`).
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:50052";

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

Exit status: 0 success, 1 the server refused the request, 2 usage error, 3 cannot reach the server.";

/// Command-line client for Emporium's catalog.
#[derive(Debug, Parser)]
#[command(name = "emporiumctl", version, long_about = LONG_ABOUT)]
pub struct Cli {
    /// The catalog's gRPC address (`http://` is assumed when no scheme is given).
    #[arg(long, global = true, value_name = "URL", env = "EMPORIUMCTL_SERVER", default_value = DEFAULT_SERVER)]
    pub server: String,

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
}

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
    let server = with_scheme(&cli.server);
    let client = connect(&server).await?;
    let mut session = Session {
        client,
        server,
        output: cli.output,
    };
    match cli.command {
        Command::Category(command) => session.category(command, out).await,
        Command::Product(command) => session.product(command, out).await,
    }
}

/// A connected client and what every command needs to report its outcome.
struct Session {
    client: CatalogServiceClient<Channel>,
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

async fn connect(server: &str) -> Result<CatalogServiceClient<Channel>, CliError> {
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
    Ok(CatalogServiceClient::new(channel))
}
