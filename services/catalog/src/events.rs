//! The catalog's events, written to the outbox with each change. Every event carries the record's
//! full state after the change as the contract's message (deletions carry the last state), so a
//! replica can apply the newest version it sees; a deletion is one more version of the record
//! (`NewEvent::deletion`). The event types and their messages are declared
//! in the contract (`emporium_proto::catalog::v1::events`); docs/events.md is generated from it.

use chassis::outbox::{Actor, NewEvent};
use emporium_proto::catalog::v1::events;

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
                NewEvent::change(events::PRODUCT_CREATED, &product_to_proto(product.clone()))
            }
            CatalogEvent::ProductUpdated(product) => {
                NewEvent::change(events::PRODUCT_UPDATED, &product_to_proto(product.clone()))
            }
            CatalogEvent::ProductDeleted(product) => {
                NewEvent::deletion(events::PRODUCT_DELETED, &product_to_proto(product.clone()))
            }
            CatalogEvent::CategoryCreated(category) => NewEvent::change(
                events::CATEGORY_CREATED,
                &category_to_proto(category.clone()),
            ),
            CatalogEvent::CategoryUpdated(category) => NewEvent::change(
                events::CATEGORY_UPDATED,
                &category_to_proto(category.clone()),
            ),
            CatalogEvent::CategoryDeleted(category) => NewEvent::deletion(
                events::CATEGORY_DELETED,
                &category_to_proto(category.clone()),
            ),
        };
        event.actor = Some(actor.clone());
        event
    }
}
