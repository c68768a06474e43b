//! The catalog's events, written to the outbox with each change. Every event carries the record's
//! full state after the change as the contract's message (deletions carry the last state), so a
//! replica can apply the newest version it sees. The event types and their messages are declared
//! in the contract (`emporium_proto::catalog::v1::events`); docs/events.md is generated from it.

use chassis::outbox::{Actor, NewEvent};
use emporium_proto::EventType;
use emporium_proto::catalog::v1::{self as proto, events};

use crate::domain::{Category, Product};
use crate::wire::{category_to_proto, product_to_proto};

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
                product_event(events::PRODUCT_CREATED, product, product.version)
            }
            CatalogEvent::ProductUpdated(product) => {
                product_event(events::PRODUCT_UPDATED, product, product.version)
            }
            // A deletion is one more version of the record.
            CatalogEvent::ProductDeleted(product) => {
                product_event(events::PRODUCT_DELETED, product, product.version + 1)
            }
            CatalogEvent::CategoryCreated(category) => {
                category_event(events::CATEGORY_CREATED, category, category.version)
            }
            CatalogEvent::CategoryUpdated(category) => {
                category_event(events::CATEGORY_UPDATED, category, category.version)
            }
            CatalogEvent::CategoryDeleted(category) => {
                category_event(events::CATEGORY_DELETED, category, category.version + 1)
            }
        };
        event.actor = Some(actor.clone());
        event
    }
}

fn product_event(
    event_type: EventType<proto::Product>,
    product: &Product,
    version: i64,
) -> NewEvent {
    let data = proto::Product {
        version,
        ..product_to_proto(product.clone())
    };
    NewEvent::new(event_type, product.id, version, &data)
}

fn category_event(
    event_type: EventType<proto::Category>,
    category: &Category,
    version: i64,
) -> NewEvent {
    let data = proto::Category {
        version,
        ..category_to_proto(category.clone())
    };
    NewEvent::new(event_type, category.id, version, &data)
}
