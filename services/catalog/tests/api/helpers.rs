//! The catalog's side of the test harness: `spawn_app` (the generic `test_support::spawn_service`
//! with a catalog manager as the caller) and what tests call on the running catalog
//! ([`CatalogApp`]: its typed clients and a few domain steps).

use catalog::CatalogParts;
use chassis::auth::roles;
use emporium_proto::catalog::v1 as proto;
use proto::catalog_service_client::CatalogServiceClient;
use test_support::{Backend, BearerToken, Spawn};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// The running catalog a test drives.
pub(crate) type TestApp = test_support::TestApp<CatalogParts>;

/// A catalog client that sends the test's default token with every call.
pub(crate) type Client = CatalogServiceClient<InterceptedService<Channel, BearerToken>>;

/// The catalog, its default token a catalog manager's (`catalog-manager-1`): `.await` it, or
/// change it first (`.without_relay()`, `.with_shutdown_delay(..)`).
pub(crate) fn spawn_app(backend: Backend) -> Spawn<CatalogParts> {
    test_support::spawn_service(backend, ())
        .with_caller("catalog-manager-1", &[roles::CATALOG_MANAGER])
}

/// What tests call on a running catalog.
pub(crate) trait CatalogApp {
    /// A client sending the default catalog-manager token ([`TestApp::token`]).
    fn client(&self) -> Client;
    /// A client sending no token of its own: tests add one per request with
    /// `test_support::with_token`.
    fn anonymous_client(&self) -> CatalogServiceClient<Channel>;
    async fn create_category(&self, name: &str) -> proto::Category;
    async fn create_product(
        &self,
        category_id: &str,
        sku: &str,
        name: &str,
        price_minor: i64,
    ) -> proto::Product;
    /// How many products the catalog lists.
    async fn product_total(&self) -> i64;
}

impl CatalogApp for TestApp {
    fn client(&self) -> Client {
        CatalogServiceClient::with_interceptor(self.channel(), BearerToken::new(&self.token))
    }

    fn anonymous_client(&self) -> CatalogServiceClient<Channel> {
        CatalogServiceClient::new(self.channel())
    }

    async fn create_category(&self, name: &str) -> proto::Category {
        self.client()
            .create_category(proto::CreateCategoryRequest {
                name: name.to_owned(),
                description: format!("All about {name}"),
            })
            .await
            .expect("the category is created")
            .into_inner()
    }

    async fn create_product(
        &self,
        category_id: &str,
        sku: &str,
        name: &str,
        price_minor: i64,
    ) -> proto::Product {
        self.client()
            .create_product(valid_product(category_id, sku, name, price_minor))
            .await
            .expect("the product is created")
            .into_inner()
    }

    async fn product_total(&self) -> i64 {
        self.client()
            .list_products(proto::ListProductsRequest::default())
            .await
            .expect("products are listed")
            .into_inner()
            .total_size
    }
}

pub(crate) fn valid_product(
    category_id: &str,
    sku: &str,
    name: &str,
    price_minor: i64,
) -> proto::CreateProductRequest {
    proto::CreateProductRequest {
        sku: sku.to_owned(),
        name: name.to_owned(),
        description: format!("{name}, freshly stocked"),
        category_id: category_id.to_owned(),
        price: Some(proto::Money {
            amount_minor: price_minor,
            currency: "EUR".to_owned(),
        }),
        stock_on_hand: 10,
    }
}
