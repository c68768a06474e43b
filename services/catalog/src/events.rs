//! The catalog's events, written to the outbox with each change. Every event carries the record's
//! full state after the change (deletions carry the last state), so a replica can apply the
//! newest version it sees. Schemas: docs/events.md.

use chassis::outbox::{Actor, EventKind, NewEvent};
use serde_json::json;

use crate::domain::{Category, Product};

pub const PRODUCT_CREATED: &str = "emporium.catalog.product.created";
pub const PRODUCT_UPDATED: &str = "emporium.catalog.product.updated";
pub const PRODUCT_DELETED: &str = "emporium.catalog.product.deleted";
pub const CATEGORY_CREATED: &str = "emporium.catalog.category.created";
pub const CATEGORY_UPDATED: &str = "emporium.catalog.category.updated";
pub const CATEGORY_DELETED: &str = "emporium.catalog.category.deleted";

#[derive(Clone, Copy, Debug)]
pub enum CatalogEvent<'a> {
    ProductCreated(&'a Product),
    ProductUpdated(&'a Product),
    /// The product as it was before deletion.
    ProductDeleted(&'a Product),
    CategoryCreated(&'a Category),
    CategoryUpdated(&'a Category),
    /// The category as it was before deletion.
    CategoryDeleted(&'a Category),
}

impl CatalogEvent<'_> {
    /// The outbox row for this event, made by `actor` (the verified caller).
    pub fn into_new_event(self, actor: &Actor) -> NewEvent {
        let mut event = match self {
            CatalogEvent::ProductCreated(product) => {
                product_event(PRODUCT_CREATED, product, product.version)
            }
            CatalogEvent::ProductUpdated(product) => {
                product_event(PRODUCT_UPDATED, product, product.version)
            }
            // A deletion is one more version of the record.
            CatalogEvent::ProductDeleted(product) => {
                product_event(PRODUCT_DELETED, product, product.version + 1)
            }
            CatalogEvent::CategoryCreated(category) => {
                category_event(CATEGORY_CREATED, category, category.version)
            }
            CatalogEvent::CategoryUpdated(category) => {
                category_event(CATEGORY_UPDATED, category, category.version)
            }
            CatalogEvent::CategoryDeleted(category) => {
                category_event(CATEGORY_DELETED, category, category.version + 1)
            }
        };
        event.actor = Some(actor.clone());
        event
    }
}

fn product_event(event_type: &'static str, product: &Product, version: i64) -> NewEvent {
    NewEvent {
        aggregate_type: "product",
        aggregate_id: product.id,
        aggregate_version: version,
        event_type,
        kind: EventKind::Change,
        data: json!({
            "id": product.id,
            "sku": product.sku,
            "name": product.name,
            "description": product.description,
            "category_id": product.category_id,
            "price": { "amount_minor": product.price_minor, "currency": product.currency },
            "stock_on_hand": product.stock_on_hand,
            "version": version,
            "created_at": product.created_at.to_rfc3339(),
            "updated_at": product.updated_at.to_rfc3339(),
        }),
        actor: None,
    }
}

fn category_event(event_type: &'static str, category: &Category, version: i64) -> NewEvent {
    NewEvent {
        aggregate_type: "category",
        aggregate_id: category.id,
        aggregate_version: version,
        event_type,
        kind: EventKind::Change,
        data: json!({
            "id": category.id,
            "name": category.name,
            "description": category.description,
            "version": version,
            "created_at": category.created_at.to_rfc3339(),
            "updated_at": category.updated_at.to_rfc3339(),
        }),
        actor: None,
    }
}
