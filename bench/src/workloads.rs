//! The calls the benchmark makes: what one client does, call after call.

use std::sync::Arc;

use emporium_proto::catalog::v1 as proto;

use crate::load::{Client, Workload, status_text};

/// Products per ListProducts page.
pub(crate) const PAGE_SIZE: i32 = 50;

/// GetProduct over a set of existing products, each client starting at its own place.
pub(crate) struct GetProduct {
    pub(crate) ids: Arc<Vec<String>>,
    pub(crate) next: usize,
}

/// ListProducts, page after page (following `next_page_token`) and from the first page again
/// after the last: a client reading the whole listing, so a long table is paged deep.
pub(crate) struct ListProducts {
    pub(crate) page_token: String,
}

/// CreateProduct with a fresh SKU every call.
pub(crate) struct CreateProduct {
    pub(crate) category_id: String,
    /// Unique per client and run: SKUs are `<prefix>-<n>`.
    pub(crate) sku_prefix: String,
    pub(crate) n_created: u64,
}

/// A valid new product in `category_id`.
pub(crate) fn new_product(category_id: &str, sku: String) -> proto::CreateProductRequest {
    proto::CreateProductRequest {
        name: format!("Tea {sku}"),
        description: format!("Tea {sku}, freshly stocked"),
        sku,
        category_id: category_id.to_owned(),
        price: Some(proto::Money {
            amount_minor: 1250,
            currency: "EUR".to_owned(),
        }),
        stock_on_hand: 10,
    }
}

// === impl GetProduct ===

impl Workload for GetProduct {
    type Client = Client;

    async fn call(&mut self, client: &mut Client) -> Result<(), String> {
        let id = self.ids[self.next % self.ids.len()].clone();
        self.next = self.next.wrapping_add(1);
        client
            .get_product(proto::GetProductRequest { id })
            .await
            .map(drop)
            .map_err(|status| status_text(&status))
    }
}

// === impl ListProducts ===

impl Workload for ListProducts {
    type Client = Client;

    async fn call(&mut self, client: &mut Client) -> Result<(), String> {
        let page = client
            .list_products(proto::ListProductsRequest {
                page_size: PAGE_SIZE,
                page_token: std::mem::take(&mut self.page_token),
                ..proto::ListProductsRequest::default()
            })
            .await
            .map_err(|status| status_text(&status))?
            .into_inner();
        self.page_token = page.next_page_token;
        Ok(())
    }
}

// === impl CreateProduct ===

impl Workload for CreateProduct {
    type Client = Client;

    async fn call(&mut self, client: &mut Client) -> Result<(), String> {
        self.n_created += 1;
        let sku = format!("{}-{}", self.sku_prefix, self.n_created);
        client
            .create_product(new_product(&self.category_id, sku))
            .await
            .map(drop)
            .map_err(|status| status_text(&status))
    }
}
