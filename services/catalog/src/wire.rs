//! The catalog's records as the contract's messages: what the gRPC API returns and what events
//! carry, converted in one place.

use chassis::grpc::timestamp_to_proto;
use emporium_proto::catalog::v1 as proto;

use crate::domain::{Category, Product};

pub(crate) fn category_to_proto(category: Category) -> proto::Category {
    proto::Category {
        id: category.id.to_string(),
        name: category.name,
        description: category.description,
        version: category.version,
        create_time: Some(timestamp_to_proto(category.created_at)),
        update_time: Some(timestamp_to_proto(category.updated_at)),
    }
}

pub(crate) fn product_to_proto(product: Product) -> proto::Product {
    proto::Product {
        id: product.id.to_string(),
        sku: product.sku,
        name: product.name,
        description: product.description,
        category_id: product.category_id.to_string(),
        price: Some(proto::Money {
            amount_minor: product.price_minor,
            currency: product.currency,
        }),
        stock_on_hand: product.stock_on_hand,
        version: product.version,
        create_time: Some(timestamp_to_proto(product.created_at)),
        update_time: Some(timestamp_to_proto(product.updated_at)),
    }
}
