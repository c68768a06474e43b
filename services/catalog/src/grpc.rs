//! The catalog's gRPC boundary: parses requests into domain values (every bad field reported at
//! once, nothing changed), calls the use cases, and converts results back. The only module that
//! knows the generated types and the caller's token.
//!
//! Who may call each RPC is written in `catalog.proto` (`(emporium.api.v1.access)`) and enforced
//! by the chassis before a handler here runs, before the request is even read: a refused call
//! learns nothing about its input and changes nothing. Handlers only take the caller, to record
//! who made a change. Each call already runs in the chassis's `grpc` span (its method and
//! caller), so handlers open no span of their own.

use chassis::auth;
use chassis::error::Error;
use chassis::grpc::in_request_order;
use chassis::pagination::PageRequest;
use chassis::validation::{parse_delete, parse_id, parse_ids};
use chassis::{Checked, Violations};
use emporium_proto::audit::v1 as audit;
use emporium_proto::catalog::v1 as proto;
use proto::catalog_service_server::CatalogService;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::domain::{
    CategoryChanges, CategoryListQuery, CategoryName, CategoryOrder, Currency, Description, Money,
    NewCategory, NewProduct, ProductChanges, ProductListQuery, ProductName, ProductOrder,
    SearchText, Sku, StockQuantity,
};
use crate::service::Catalog;
use crate::store;
use crate::wire::{category_to_proto, product_to_proto};

/// The tonic service over [`Catalog`].
#[derive(Clone, Debug)]
pub struct CatalogGrpc {
    catalog: Catalog,
}

impl CatalogGrpc {
    pub fn new(catalog: Catalog) -> CatalogGrpc {
        CatalogGrpc { catalog }
    }
}

#[tonic::async_trait]
impl CatalogService for CatalogGrpc {
    async fn create_category(
        &self,
        request: Request<proto::CreateCategoryRequest>,
    ) -> Result<Response<proto::Category>, Status> {
        let actor = auth::actor(&request)?;
        let new = parse_new_category(request.into_inner())?;
        let category = self.catalog.create_category(new, &actor).await?;
        Ok(Response::new(category_to_proto(category)))
    }

    async fn get_category(
        &self,
        request: Request<proto::GetCategoryRequest>,
    ) -> Result<Response<proto::Category>, Status> {
        let id = parse_id(&request.get_ref().id)?;
        let category = self.catalog.get_category(id).await?;
        Ok(Response::new(category_to_proto(category)))
    }

    async fn batch_get_categories(
        &self,
        request: Request<proto::BatchGetCategoriesRequest>,
    ) -> Result<Response<proto::BatchGetCategoriesResponse>, Status> {
        let ids = parse_ids(&request.get_ref().ids)?;
        let found = self.catalog.get_categories(&ids).await?;
        let (categories, missing_ids) = in_request_order(&ids, found, |category| category.id);
        Ok(Response::new(proto::BatchGetCategoriesResponse {
            categories: categories.into_iter().map(category_to_proto).collect(),
            missing_ids,
        }))
    }

    async fn list_categories(
        &self,
        request: Request<proto::ListCategoriesRequest>,
    ) -> Result<Response<proto::ListCategoriesResponse>, Status> {
        let (query, page) = parse_category_list(request.get_ref())?;
        let found = self.catalog.list_categories(&query, &page).await?;
        Ok(Response::new(proto::ListCategoriesResponse {
            next_page_token: page
                .next_page_token(&found, |last| store::category_cursor(last, query.order)),
            total_size: found.total,
            categories: found.items.into_iter().map(category_to_proto).collect(),
        }))
    }

    async fn update_category(
        &self,
        request: Request<proto::UpdateCategoryRequest>,
    ) -> Result<Response<proto::Category>, Status> {
        let actor = auth::actor(&request)?;
        let (id, changes) = parse_category_changes(request.into_inner())?;
        let category = self.catalog.update_category(id, changes, &actor).await?;
        Ok(Response::new(category_to_proto(category)))
    }

    async fn delete_category(
        &self,
        request: Request<proto::DeleteCategoryRequest>,
    ) -> Result<Response<proto::DeleteCategoryResponse>, Status> {
        let actor = auth::actor(&request)?;
        let request = request.into_inner();
        let (id, expected_version) = parse_delete(&request.id, request.expected_version)?;
        self.catalog
            .delete_category(id, expected_version, &actor)
            .await?;
        Ok(Response::new(proto::DeleteCategoryResponse {}))
    }

    async fn create_product(
        &self,
        request: Request<proto::CreateProductRequest>,
    ) -> Result<Response<proto::Product>, Status> {
        let actor = auth::actor(&request)?;
        let new = parse_new_product(request.into_inner())?;
        let product = self.catalog.create_product(new, &actor).await?;
        Ok(Response::new(product_to_proto(product)))
    }

    async fn get_product(
        &self,
        request: Request<proto::GetProductRequest>,
    ) -> Result<Response<proto::Product>, Status> {
        let id = parse_id(&request.get_ref().id)?;
        let product = self.catalog.get_product(id).await?;
        Ok(Response::new(product_to_proto(product)))
    }

    async fn batch_get_products(
        &self,
        request: Request<proto::BatchGetProductsRequest>,
    ) -> Result<Response<proto::BatchGetProductsResponse>, Status> {
        let ids = parse_ids(&request.get_ref().ids)?;
        let found = self.catalog.get_products(&ids).await?;
        let (products, missing_ids) = in_request_order(&ids, found, |product| product.id);
        Ok(Response::new(proto::BatchGetProductsResponse {
            products: products.into_iter().map(product_to_proto).collect(),
            missing_ids,
        }))
    }

    async fn list_products(
        &self,
        request: Request<proto::ListProductsRequest>,
    ) -> Result<Response<proto::ListProductsResponse>, Status> {
        let (query, page) = parse_product_list(request.get_ref())?;
        let found = self.catalog.list_products(&query, &page).await?;
        Ok(Response::new(proto::ListProductsResponse {
            next_page_token: page
                .next_page_token(&found, |last| store::product_cursor(last, query.order)),
            total_size: found.total,
            products: found.items.into_iter().map(product_to_proto).collect(),
        }))
    }

    async fn update_product(
        &self,
        request: Request<proto::UpdateProductRequest>,
    ) -> Result<Response<proto::Product>, Status> {
        let actor = auth::actor(&request)?;
        let (id, changes) = parse_product_changes(request.into_inner())?;
        let product = self.catalog.update_product(id, changes, &actor).await?;
        Ok(Response::new(product_to_proto(product)))
    }

    async fn delete_product(
        &self,
        request: Request<proto::DeleteProductRequest>,
    ) -> Result<Response<proto::DeleteProductResponse>, Status> {
        let actor = auth::actor(&request)?;
        let request = request.into_inner();
        let (id, expected_version) = parse_delete(&request.id, request.expected_version)?;
        self.catalog
            .delete_product(id, expected_version, &actor)
            .await?;
        Ok(Response::new(proto::DeleteProductResponse {}))
    }

    async fn list_events(
        &self,
        request: Request<audit::ListEventsRequest>,
    ) -> Result<Response<audit::ListEventsResponse>, Status> {
        let response =
            chassis::audit::list_events(self.catalog.database(), request.into_inner()).await?;
        Ok(Response::new(response))
    }
}

// === parsing ===

fn parse_new_category(request: proto::CreateCategoryRequest) -> Result<NewCategory, Error> {
    let mut violations = Violations::new();
    let name = violations.check("name", CategoryName::parse(&request.name));
    let description = violations.check("description", Description::parse(&request.description));
    let valid = violations.finish()?;
    Ok(NewCategory {
        name: valid.take(name),
        description: valid.take(description),
    })
}

fn parse_category_changes(
    request: proto::UpdateCategoryRequest,
) -> Result<(Uuid, CategoryChanges), Error> {
    let mut violations = Violations::new();
    let id = violations.id("id", &request.id);
    let expected_version = violations.expected_version(request.expected_version);
    let name = violations.check_optional("name", request.name.as_deref().map(CategoryName::parse));
    let description = violations.check_optional(
        "description",
        request.description.as_deref().map(Description::parse),
    );
    let valid = violations.finish()?;
    Ok((
        valid.take(id),
        CategoryChanges {
            expected_version: valid.take(expected_version),
            name: valid.take(name),
            description: valid.take(description),
        },
    ))
}

fn parse_category_list(
    request: &proto::ListCategoriesRequest,
) -> Result<(CategoryListQuery, PageRequest), Error> {
    let mut violations = Violations::new();
    let page = violations.page(request.page_size, &request.page_token);
    let text = parse_search(&mut violations, "query", &request.query);
    let order = violations.order_by("order_by", request.order_by, |order| match order {
        proto::CategoryOrderBy::Unspecified | proto::CategoryOrderBy::Name => CategoryOrder::Name,
        proto::CategoryOrderBy::CreateTime => CategoryOrder::CreatedAt,
        proto::CategoryOrderBy::UpdateTime => CategoryOrder::UpdatedAt,
    });
    let direction = violations.direction("direction", request.direction);
    let valid = violations.finish()?;
    let query = CategoryListQuery {
        text: valid.take(text),
        order: valid.take(order),
        direction: valid.take(direction),
    };
    let page = valid.take(page).for_list("categories", &query)?;
    Ok((query, page))
}

fn parse_new_product(request: proto::CreateProductRequest) -> Result<NewProduct, Error> {
    let mut violations = Violations::new();
    let sku = violations.check("sku", Sku::parse(&request.sku));
    let name = violations.check("name", ProductName::parse(&request.name));
    let description = violations.check("description", Description::parse(&request.description));
    let category_id = violations.id("category_id", &request.category_id);
    let price = violations
        .require("price", request.price.as_ref())
        .and_then(|price| parse_money(&mut violations, price));
    let stock_on_hand =
        violations.check("stock_on_hand", StockQuantity::parse(request.stock_on_hand));
    let valid = violations.finish()?;
    Ok(NewProduct {
        sku: valid.take(sku),
        name: valid.take(name),
        description: valid.take(description),
        category_id: valid.take(category_id),
        price: valid.take(price),
        stock_on_hand: valid.take(stock_on_hand),
    })
}

fn parse_product_changes(
    request: proto::UpdateProductRequest,
) -> Result<(Uuid, ProductChanges), Error> {
    let mut violations = Violations::new();
    let id = violations.id("id", &request.id);
    let expected_version = violations.expected_version(request.expected_version);
    let sku = violations.check_optional("sku", request.sku.as_deref().map(Sku::parse));
    let name = violations.check_optional("name", request.name.as_deref().map(ProductName::parse));
    let description = violations.check_optional(
        "description",
        request.description.as_deref().map(Description::parse),
    );
    let category_id = match request.category_id.as_deref() {
        Some(category_id) => violations.id("category_id", category_id).map(Some),
        None => Checked::absent(),
    };
    let price = match request.price.as_ref() {
        Some(price) => parse_money(&mut violations, price).map(Some),
        None => Checked::absent(),
    };
    let stock_on_hand = violations.check_optional(
        "stock_on_hand",
        request.stock_on_hand.map(StockQuantity::parse),
    );
    let valid = violations.finish()?;
    Ok((
        valid.take(id),
        ProductChanges {
            expected_version: valid.take(expected_version),
            sku: valid.take(sku),
            name: valid.take(name),
            description: valid.take(description),
            category_id: valid.take(category_id),
            price: valid.take(price),
            stock_on_hand: valid.take(stock_on_hand),
        },
    ))
}

fn parse_product_list(
    request: &proto::ListProductsRequest,
) -> Result<(ProductListQuery, PageRequest), Error> {
    let mut violations = Violations::new();
    let page = violations.page(request.page_size, &request.page_token);
    let category_id = violations.optional_id("category_id", &request.category_id);
    let text = parse_search(&mut violations, "query", &request.query);
    let sku = violations.check_optional(
        "sku",
        (!request.sku.is_empty()).then(|| Sku::parse(&request.sku)),
    );
    let order = violations.order_by("order_by", request.order_by, |order| match order {
        proto::ProductOrderBy::Unspecified | proto::ProductOrderBy::Name => ProductOrder::Name,
        proto::ProductOrderBy::Sku => ProductOrder::Sku,
        proto::ProductOrderBy::Price => ProductOrder::Price,
        proto::ProductOrderBy::CreateTime => ProductOrder::CreatedAt,
        proto::ProductOrderBy::UpdateTime => ProductOrder::UpdatedAt,
    });
    let direction = violations.direction("direction", request.direction);
    let valid = violations.finish()?;
    let query = ProductListQuery {
        category_id: valid.take(category_id),
        text: valid.take(text),
        sku: valid.take(sku),
        order: valid.take(order),
        direction: valid.take(direction),
    };
    let page = valid.take(page).for_list("products", &query)?;
    Ok((query, page))
}

fn parse_money(violations: &mut Violations, price: &proto::Money) -> Checked<Money> {
    let amount_minor = violations.check(
        "price.amount_minor",
        Money::parse_amount(price.amount_minor),
    );
    let currency = violations.check("price.currency", Currency::parse(&price.currency));
    amount_minor
        .zip(currency)
        .map(|(amount_minor, currency)| Money {
            amount_minor,
            currency,
        })
}

fn parse_search(
    violations: &mut Violations,
    field: &str,
    text: &str,
) -> Checked<Option<SearchText>> {
    violations.check_optional(
        field,
        (!text.trim().is_empty()).then(|| SearchText::parse(text)),
    )
}
