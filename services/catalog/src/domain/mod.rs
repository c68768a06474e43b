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

/// Sort direction of a list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Ascending,
    Descending,
}

/// A page of a list: the items, whether more follow, and how many match in all.
#[derive(Clone, Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_more: bool,
    pub total: i64,
}
