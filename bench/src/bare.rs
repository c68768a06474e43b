//! The baseline: a bare tonic server implementing the same `CatalogService`, answering
//! GetProduct, ListProducts and CreateProduct with canned messages shaped like the catalog's
//! (no token check, no database, no layers, TCP_NODELAY on every accepted socket). What this
//! machine can serve over gRPC at all; the catalog's rates are read as a share of it.

use std::net::SocketAddr;

use anyhow::Context;
use emporium_proto::audit::v1 as audit;
use emporium_proto::catalog::v1 as proto;
use proto::catalog_service_server::{CatalogService, CatalogServiceServer};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::workloads::PAGE_SIZE;

/// A running bare server; stops when dropped.
pub(crate) struct BareServer {
    pub(crate) addr: SocketAddr,
    _stop_on_drop: tokio_util::sync::DropGuard,
    _task: JoinHandle<()>,
}

/// Starts the bare server on a free local port, on `runtime` (the servers' runtime).
pub(crate) async fn start(runtime: &tokio::runtime::Handle) -> anyhow::Result<BareServer> {
    let shutdown = CancellationToken::new();
    let incoming = {
        let _entered = runtime.enter();
        tonic::transport::server::TcpIncoming::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .context("Failed to bind the bare server")?
            .with_nodelay(Some(true))
    };
    let addr = incoming
        .local_addr()
        .context("A bound listener has an address")?;
    let stopped = shutdown.clone();
    let task = runtime.spawn(async move {
        let served = tonic::transport::Server::builder()
            .add_service(CatalogServiceServer::new(BareCatalog::new()))
            .serve_with_incoming_shutdown(incoming, stopped.cancelled_owned())
            .await;
        if let Err(error) = served {
            tracing::error!(error.message = %error, "The bare server failed");
        }
    });
    Ok(BareServer {
        addr,
        _stop_on_drop: shutdown.drop_guard(),
        _task: task,
    })
}

/// Canned answers, built once.
struct BareCatalog {
    product: proto::Product,
    page: proto::ListProductsResponse,
}

impl BareCatalog {
    fn new() -> BareCatalog {
        let product = canned_product(0);
        let page = proto::ListProductsResponse {
            products: (0..PAGE_SIZE).map(canned_product).collect(),
            // As long as the catalog's (hex of a small JSON cursor).
            next_page_token: "7b2263223a5b2254656120424e2d3030303030222c2230313933"
                .repeat(3)
                .to_owned(),
            total_size: 15_000,
        };
        BareCatalog { product, page }
    }
}

fn canned_product(n: i32) -> proto::Product {
    let time = prost_types::Timestamp {
        seconds: 1_796_000_000,
        nanos: 123_456_000,
    };
    proto::Product {
        id: format!("0193a1b2-c3d4-7e5f-8a9b-{n:012}"),
        sku: format!("BN-{n:06}"),
        name: format!("Tea BN-{n:06}"),
        description: format!("Tea BN-{n:06}, freshly stocked"),
        category_id: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".to_owned(),
        price: Some(proto::Money {
            amount_minor: 1250,
            currency: "EUR".to_owned(),
        }),
        stock_on_hand: 10,
        version: 1,
        create_time: Some(time),
        update_time: Some(time),
    }
}

fn not_served() -> Status {
    Status::unimplemented("the bare server answers GetProduct, ListProducts and CreateProduct")
}

#[tonic::async_trait]
impl CatalogService for BareCatalog {
    async fn create_category(
        &self,
        _request: Request<proto::CreateCategoryRequest>,
    ) -> Result<Response<proto::Category>, Status> {
        Err(not_served())
    }

    async fn get_category(
        &self,
        _request: Request<proto::GetCategoryRequest>,
    ) -> Result<Response<proto::Category>, Status> {
        Err(not_served())
    }

    async fn batch_get_categories(
        &self,
        _request: Request<proto::BatchGetCategoriesRequest>,
    ) -> Result<Response<proto::BatchGetCategoriesResponse>, Status> {
        Err(not_served())
    }

    async fn list_categories(
        &self,
        _request: Request<proto::ListCategoriesRequest>,
    ) -> Result<Response<proto::ListCategoriesResponse>, Status> {
        Err(not_served())
    }

    async fn update_category(
        &self,
        _request: Request<proto::UpdateCategoryRequest>,
    ) -> Result<Response<proto::Category>, Status> {
        Err(not_served())
    }

    async fn delete_category(
        &self,
        _request: Request<proto::DeleteCategoryRequest>,
    ) -> Result<Response<proto::DeleteCategoryResponse>, Status> {
        Err(not_served())
    }

    async fn create_product(
        &self,
        request: Request<proto::CreateProductRequest>,
    ) -> Result<Response<proto::Product>, Status> {
        let new = request.into_inner();
        Ok(Response::new(proto::Product {
            sku: new.sku,
            name: new.name,
            description: new.description,
            ..self.product.clone()
        }))
    }

    async fn get_product(
        &self,
        _request: Request<proto::GetProductRequest>,
    ) -> Result<Response<proto::Product>, Status> {
        Ok(Response::new(self.product.clone()))
    }

    async fn batch_get_products(
        &self,
        _request: Request<proto::BatchGetProductsRequest>,
    ) -> Result<Response<proto::BatchGetProductsResponse>, Status> {
        Err(not_served())
    }

    async fn list_products(
        &self,
        _request: Request<proto::ListProductsRequest>,
    ) -> Result<Response<proto::ListProductsResponse>, Status> {
        Ok(Response::new(self.page.clone()))
    }

    async fn update_product(
        &self,
        _request: Request<proto::UpdateProductRequest>,
    ) -> Result<Response<proto::Product>, Status> {
        Err(not_served())
    }

    async fn delete_product(
        &self,
        _request: Request<proto::DeleteProductRequest>,
    ) -> Result<Response<proto::DeleteProductResponse>, Status> {
        Err(not_served())
    }

    async fn list_events(
        &self,
        _request: Request<audit::ListEventsRequest>,
    ) -> Result<Response<audit::ListEventsResponse>, Status> {
        Err(not_served())
    }
}
