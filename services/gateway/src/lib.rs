//! Emporium's GraphQL gateway: one API over every service, in OpenCRUD's naming, built at run
//! time from the contracts' descriptors (docs/adr/0005). Nothing here names a resource:
//! [`schema::build`] reads the resource model of [`contract::resources`] and makes, for each
//! resource, its object type, `product(where:)` and `products(where:, orderBy:, first:, after:)`
//! queries and `createProduct` / `updateProduct` / `deleteProduct` mutations, every one resolved
//! by the same generic code through [`upstream::Upstream`], which calls the service's RPC with a
//! dynamic message and the caller's bearer token. [`values`] converts between GraphQL and
//! protobuf values through the proto3 JSON mapping; [`errors`] maps a gRPC status to a GraphQL
//! error with its `extensions.code`, once.
//!
//! The gateway holds no data and is not trusted: the services verify the forwarded token.

pub mod errors;
mod names;
pub mod schema;
pub mod upstream;
mod values;

pub use schema::{BearerToken, build};
pub use upstream::Upstream;
