//! The catalog's domain: validated values and the rules about them. Nothing here knows tonic,
//! GraphQL or SQL; values are parsed from raw input once, at the boundary, and trusted after.

mod category;
mod product;
mod text;

pub use category::{
    Category, CategoryChanges, CategoryListQuery, CategoryName, CategoryOrder, NewCategory,
};
pub use product::{
    Currency, Money, NewProduct, Product, ProductChanges, ProductListQuery, ProductName,
    ProductOrder, Sku, StockQuantity,
};
pub use text::{Description, SearchText};

pub use chassis::pagination::{Direction, Page};
