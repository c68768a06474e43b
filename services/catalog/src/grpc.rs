//! The catalog's gRPC boundary: parses requests into domain values (every bad field reported at
//! once, nothing changed), calls the use cases, and converts results back. The only module that
//! knows the generated types and the caller's token.
//!
//! Who may call each RPC is written in `catalog.proto` (`(emporium.api.v1.access)`) and enforced
//! by the chassis before a handler here runs, before the request is even read: a refused call
//! learns nothing about its input and changes nothing. Handlers only take the caller, to record
//! who made a change.

use chassis::Violations;
use chassis::auth;
use chassis::error::Error;
use chassis::grpc::{first_reason, in_request_order, page_size, parse_uuid};
use chassis::outbox::Actor;
use chassis::pagination::{Continuation, decode_token, encode_token};
use emporium_proto::audit::v1 as audit;
use emporium_proto::catalog::v1 as proto;
use proto::catalog_service_server::CatalogService;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::domain::{
    CategoryChanges, CategoryListQuery, CategoryName, CategoryOrder, Currency, Description,
    Direction, Money, NewCategory, NewProduct, ProductChanges, ProductListQuery, ProductName,
    ProductOrder, SearchText, Sku, StockQuantity,
};
use crate::service::{Catalog, MAX_BATCH_IDS};
use crate::store::{self, Cursor};
use crate::wire::{category_to_proto, product_to_proto};

const DEFAULT_PAGE_SIZE: i64 = 50;
const MAX_PAGE_SIZE: i64 = 500;

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
    #[tracing::instrument(skip_all)]
    async fn create_category(
        &self,
        request: Request<proto::CreateCategoryRequest>,
    ) -> Result<Response<proto::Category>, Status> {
        let caller = auth::authenticated(&request)?;
        let new = parse_new_category(request.into_inner())?;
        let category = self
            .catalog
            .create_category(new, &Actor::from(&caller))
            .await?;
        Ok(Response::new(category_to_proto(&category)))
    }

    #[tracing::instrument(skip_all)]
    async fn get_category(
        &self,
        request: Request<proto::GetCategoryRequest>,
    ) -> Result<Response<proto::Category>, Status> {
        let id = parse_uuid("id", &request.get_ref().id)?;
        let category = self.catalog.get_category(id).await?;
        Ok(Response::new(category_to_proto(&category)))
    }

    #[tracing::instrument(skip_all)]
    async fn batch_get_categories(
        &self,
        request: Request<proto::BatchGetCategoriesRequest>,
    ) -> Result<Response<proto::BatchGetCategoriesResponse>, Status> {
        let ids = parse_ids(&request.get_ref().ids)?;
        let found = self.catalog.get_categories(&ids).await?;
        let (categories, missing_ids) = in_request_order(&ids, found, |category| category.id);
        Ok(Response::new(proto::BatchGetCategoriesResponse {
            categories: categories.iter().map(category_to_proto).collect(),
            missing_ids,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_categories(
        &self,
        request: Request<proto::ListCategoriesRequest>,
    ) -> Result<Response<proto::ListCategoriesResponse>, Status> {
        let request = request.into_inner();
        let (query, fingerprint) = parse_category_list(&request)?;
        let after: Option<Continuation<Cursor>> =
            decode_token("page_token", &fingerprint, &request.page_token)?;
        let page = self.catalog.list_categories(&query, after.as_ref()).await?;
        let next_page_token = match page.items.last() {
            Some(last) if page.has_more => encode_token(
                &fingerprint,
                &Continuation {
                    cursor: store::category_cursor(last, query.order),
                    total_size: page.total,
                },
            ),
            _ => String::new(),
        };
        Ok(Response::new(proto::ListCategoriesResponse {
            categories: page.items.iter().map(category_to_proto).collect(),
            next_page_token,
            total_size: page.total,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn update_category(
        &self,
        request: Request<proto::UpdateCategoryRequest>,
    ) -> Result<Response<proto::Category>, Status> {
        let caller = auth::authenticated(&request)?;
        let (id, changes) = parse_category_changes(request.into_inner())?;
        let category = self
            .catalog
            .update_category(id, changes, &Actor::from(&caller))
            .await?;
        Ok(Response::new(category_to_proto(&category)))
    }

    #[tracing::instrument(skip_all)]
    async fn delete_category(
        &self,
        request: Request<proto::DeleteCategoryRequest>,
    ) -> Result<Response<proto::DeleteCategoryResponse>, Status> {
        let caller = auth::authenticated(&request)?;
        let request = request.into_inner();
        let (id, expected_version) = parse_delete(&request.id, request.expected_version)?;
        self.catalog
            .delete_category(id, expected_version, &Actor::from(&caller))
            .await?;
        Ok(Response::new(proto::DeleteCategoryResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn create_product(
        &self,
        request: Request<proto::CreateProductRequest>,
    ) -> Result<Response<proto::Product>, Status> {
        let caller = auth::authenticated(&request)?;
        let new = parse_new_product(request.into_inner())?;
        let product = self
            .catalog
            .create_product(new, &Actor::from(&caller))
            .await?;
        Ok(Response::new(product_to_proto(&product)))
    }

    #[tracing::instrument(skip_all)]
    async fn get_product(
        &self,
        request: Request<proto::GetProductRequest>,
    ) -> Result<Response<proto::Product>, Status> {
        let id = parse_uuid("id", &request.get_ref().id)?;
        let product = self.catalog.get_product(id).await?;
        Ok(Response::new(product_to_proto(&product)))
    }

    #[tracing::instrument(skip_all)]
    async fn batch_get_products(
        &self,
        request: Request<proto::BatchGetProductsRequest>,
    ) -> Result<Response<proto::BatchGetProductsResponse>, Status> {
        let ids = parse_ids(&request.get_ref().ids)?;
        let found = self.catalog.get_products(&ids).await?;
        let (products, missing_ids) = in_request_order(&ids, found, |product| product.id);
        Ok(Response::new(proto::BatchGetProductsResponse {
            products: products.iter().map(product_to_proto).collect(),
            missing_ids,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_products(
        &self,
        request: Request<proto::ListProductsRequest>,
    ) -> Result<Response<proto::ListProductsResponse>, Status> {
        let request = request.into_inner();
        let (query, fingerprint) = parse_product_list(&request)?;
        let after: Option<Continuation<Cursor>> =
            decode_token("page_token", &fingerprint, &request.page_token)?;
        let page = self.catalog.list_products(&query, after.as_ref()).await?;
        let next_page_token = match page.items.last() {
            Some(last) if page.has_more => encode_token(
                &fingerprint,
                &Continuation {
                    cursor: store::product_cursor(last, query.order),
                    total_size: page.total,
                },
            ),
            _ => String::new(),
        };
        Ok(Response::new(proto::ListProductsResponse {
            products: page.items.iter().map(product_to_proto).collect(),
            next_page_token,
            total_size: page.total,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn update_product(
        &self,
        request: Request<proto::UpdateProductRequest>,
    ) -> Result<Response<proto::Product>, Status> {
        let caller = auth::authenticated(&request)?;
        let (id, changes) = parse_product_changes(request.into_inner())?;
        let product = self
            .catalog
            .update_product(id, changes, &Actor::from(&caller))
            .await?;
        Ok(Response::new(product_to_proto(&product)))
    }

    #[tracing::instrument(skip_all)]
    async fn delete_product(
        &self,
        request: Request<proto::DeleteProductRequest>,
    ) -> Result<Response<proto::DeleteProductResponse>, Status> {
        let caller = auth::authenticated(&request)?;
        let request = request.into_inner();
        let (id, expected_version) = parse_delete(&request.id, request.expected_version)?;
        self.catalog
            .delete_product(id, expected_version, &Actor::from(&caller))
            .await?;
        Ok(Response::new(proto::DeleteProductResponse {}))
    }

    #[tracing::instrument(skip_all)]
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
    violations.finish()?;
    match (name, description) {
        (Some(name), Some(description)) => Ok(NewCategory { name, description }),
        _ => Err(Error::Unexpected(anyhow::anyhow!(
            "validated fields missing"
        ))),
    }
}

fn parse_category_changes(
    request: proto::UpdateCategoryRequest,
) -> Result<(Uuid, CategoryChanges), Error> {
    let mut violations = Violations::new();
    let id = violations.check("id", parse_uuid("id", &request.id).map_err(first_reason));
    if request.expected_version < 1 {
        violations.add("expected_version", "is required: the version you last read");
    }
    let name = request
        .name
        .as_deref()
        .and_then(|name| violations.check("name", CategoryName::parse(name)));
    let description = request
        .description
        .as_deref()
        .and_then(|description| violations.check("description", Description::parse(description)));
    violations.finish()?;
    let id = id.ok_or_else(|| Error::Unexpected(anyhow::anyhow!("validated id missing")))?;
    Ok((
        id,
        CategoryChanges {
            expected_version: request.expected_version,
            name,
            description,
        },
    ))
}

fn parse_category_list(
    request: &proto::ListCategoriesRequest,
) -> Result<(CategoryListQuery, String), Error> {
    let mut violations = Violations::new();
    let page_size = violations.check(
        "page_size",
        page_size(
            "page_size",
            request.page_size,
            DEFAULT_PAGE_SIZE,
            MAX_PAGE_SIZE,
        )
        .map_err(first_reason),
    );
    let text = parse_search(&mut violations, "query", &request.query);
    let order = match proto::CategoryOrderBy::try_from(request.order_by) {
        Ok(proto::CategoryOrderBy::Unspecified | proto::CategoryOrderBy::Name) => {
            Some(CategoryOrder::Name)
        }
        Ok(proto::CategoryOrderBy::CreateTime) => Some(CategoryOrder::CreatedAt),
        Ok(proto::CategoryOrderBy::UpdateTime) => Some(CategoryOrder::UpdatedAt),
        Err(_) => {
            violations.add("order_by", "is not a known ordering");
            None
        }
    };
    let direction = parse_direction(&mut violations, request.direction);
    violations.finish()?;
    let (Some(page_size), Some(order), Some(direction)) = (page_size, order, direction) else {
        return Err(Error::Unexpected(anyhow::anyhow!(
            "validated fields missing"
        )));
    };
    let fingerprint = format!(
        "categories|{order:?}|{direction:?}|{}",
        request.query.trim()
    );
    Ok((
        CategoryListQuery {
            text,
            order,
            direction,
            page_size,
        },
        fingerprint,
    ))
}

fn parse_new_product(request: proto::CreateProductRequest) -> Result<NewProduct, Error> {
    let mut violations = Violations::new();
    let sku = violations.check("sku", Sku::parse(&request.sku));
    let name = violations.check("name", ProductName::parse(&request.name));
    let description = violations.check("description", Description::parse(&request.description));
    let category_id = violations.check(
        "category_id",
        parse_uuid("category_id", &request.category_id).map_err(first_reason),
    );
    let price = match &request.price {
        Some(price) => parse_money(&mut violations, price),
        None => {
            violations.add("price", "is required");
            None
        }
    };
    let stock_on_hand =
        violations.check("stock_on_hand", StockQuantity::parse(request.stock_on_hand));
    violations.finish()?;
    match (sku, name, description, category_id, price, stock_on_hand) {
        (
            Some(sku),
            Some(name),
            Some(description),
            Some(category_id),
            Some(price),
            Some(stock_on_hand),
        ) => Ok(NewProduct {
            sku,
            name,
            description,
            category_id,
            price,
            stock_on_hand,
        }),
        _ => Err(Error::Unexpected(anyhow::anyhow!(
            "validated fields missing"
        ))),
    }
}

fn parse_product_changes(
    request: proto::UpdateProductRequest,
) -> Result<(Uuid, ProductChanges), Error> {
    let mut violations = Violations::new();
    let id = violations.check("id", parse_uuid("id", &request.id).map_err(first_reason));
    if request.expected_version < 1 {
        violations.add("expected_version", "is required: the version you last read");
    }
    let sku = request
        .sku
        .as_deref()
        .and_then(|sku| violations.check("sku", Sku::parse(sku)));
    let name = request
        .name
        .as_deref()
        .and_then(|name| violations.check("name", ProductName::parse(name)));
    let description = request
        .description
        .as_deref()
        .and_then(|description| violations.check("description", Description::parse(description)));
    let category_id = request.category_id.as_deref().and_then(|category_id| {
        violations.check(
            "category_id",
            parse_uuid("category_id", category_id).map_err(first_reason),
        )
    });
    let price = request
        .price
        .as_ref()
        .and_then(|price| parse_money(&mut violations, price));
    let stock_on_hand = request
        .stock_on_hand
        .and_then(|stock| violations.check("stock_on_hand", StockQuantity::parse(stock)));
    violations.finish()?;
    let id = id.ok_or_else(|| Error::Unexpected(anyhow::anyhow!("validated id missing")))?;
    Ok((
        id,
        ProductChanges {
            expected_version: request.expected_version,
            sku,
            name,
            description,
            category_id,
            price,
            stock_on_hand,
        },
    ))
}

fn parse_product_list(
    request: &proto::ListProductsRequest,
) -> Result<(ProductListQuery, String), Error> {
    let mut violations = Violations::new();
    let page_size = violations.check(
        "page_size",
        page_size(
            "page_size",
            request.page_size,
            DEFAULT_PAGE_SIZE,
            MAX_PAGE_SIZE,
        )
        .map_err(first_reason),
    );
    let category_id = if request.category_id.is_empty() {
        None
    } else {
        violations.check(
            "category_id",
            parse_uuid("category_id", &request.category_id).map_err(first_reason),
        )
    };
    let text = parse_search(&mut violations, "query", &request.query);
    let sku = if request.sku.is_empty() {
        None
    } else {
        violations.check("sku", Sku::parse(&request.sku))
    };
    let order = match proto::ProductOrderBy::try_from(request.order_by) {
        Ok(proto::ProductOrderBy::Unspecified | proto::ProductOrderBy::Name) => {
            Some(ProductOrder::Name)
        }
        Ok(proto::ProductOrderBy::Sku) => Some(ProductOrder::Sku),
        Ok(proto::ProductOrderBy::Price) => Some(ProductOrder::Price),
        Ok(proto::ProductOrderBy::CreateTime) => Some(ProductOrder::CreatedAt),
        Ok(proto::ProductOrderBy::UpdateTime) => Some(ProductOrder::UpdatedAt),
        Err(_) => {
            violations.add("order_by", "is not a known ordering");
            None
        }
    };
    let direction = parse_direction(&mut violations, request.direction);
    violations.finish()?;
    let (Some(page_size), Some(order), Some(direction)) = (page_size, order, direction) else {
        return Err(Error::Unexpected(anyhow::anyhow!(
            "validated fields missing"
        )));
    };
    let fingerprint = format!(
        "products|{order:?}|{direction:?}|{}|{}|{}",
        request.category_id,
        request.query.trim(),
        request.sku
    );
    Ok((
        ProductListQuery {
            category_id,
            text,
            sku,
            order,
            direction,
            page_size,
        },
        fingerprint,
    ))
}

fn parse_delete(id: &str, expected_version: i64) -> Result<(Uuid, i64), Error> {
    let mut violations = Violations::new();
    let id = violations.check("id", parse_uuid("id", id).map_err(first_reason));
    if expected_version < 0 {
        violations.add(
            "expected_version",
            "must not be negative (0 deletes whatever the version)",
        );
    }
    violations.finish()?;
    let id = id.ok_or_else(|| Error::Unexpected(anyhow::anyhow!("validated id missing")))?;
    Ok((id, expected_version))
}

fn parse_ids(ids: &[String]) -> Result<Vec<Uuid>, Error> {
    let mut violations = Violations::new();
    if ids.len() > MAX_BATCH_IDS {
        violations.add("ids", format!("must hold at most {MAX_BATCH_IDS} ids"));
    }
    let mut parsed = Vec::with_capacity(ids.len());
    for (index, id) in ids.iter().enumerate() {
        let field = format!("ids[{index}]");
        if let Some(id) = violations.check(&field, parse_uuid(&field, id).map_err(first_reason)) {
            parsed.push(id);
        }
    }
    violations.finish()?;
    Ok(parsed)
}

fn parse_money(violations: &mut Violations, price: &proto::Money) -> Option<Money> {
    let amount_minor = violations.check(
        "price.amount_minor",
        Money::parse_amount(price.amount_minor),
    );
    let currency = violations.check("price.currency", Currency::parse(&price.currency));
    Some(Money {
        amount_minor: amount_minor?,
        currency: currency?,
    })
}

fn parse_search(violations: &mut Violations, field: &str, text: &str) -> Option<SearchText> {
    if text.trim().is_empty() {
        None
    } else {
        violations.check(field, SearchText::parse(text))
    }
}

fn parse_direction(violations: &mut Violations, direction: i32) -> Option<Direction> {
    match proto::SortDirection::try_from(direction) {
        Ok(proto::SortDirection::Unspecified | proto::SortDirection::Asc) => {
            Some(Direction::Ascending)
        }
        Ok(proto::SortDirection::Desc) => Some(Direction::Descending),
        Err(_) => {
            violations.add("direction", "is not a known direction");
            None
        }
    }
}
