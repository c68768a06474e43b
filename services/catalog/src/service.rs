//! The catalog's use cases: each opens a transaction, applies the change through the store,
//! records its event in the outbox, and commits — all or nothing. No transport here. Every change
//! takes its `actor` (the verified caller's token subject and client id), which its event carries.

use chassis::error::Error;
use chassis::outbox::{self, Actor};
use chassis::pagination::PageRequest;
use chassis::storage::Database;
use uuid::Uuid;

use crate::domain::{
    Category, CategoryChanges, CategoryListQuery, NewCategory, NewProduct, Page, Product,
    ProductChanges, ProductListQuery,
};
use crate::events::CatalogEvent;
use crate::store;

/// Ids in one batch get at most.
pub const MAX_BATCH_IDS: usize = 500;

#[derive(Clone, Debug)]
pub struct Catalog {
    database: Database,
}

impl Catalog {
    pub fn new(database: Database) -> Catalog {
        Catalog { database }
    }

    pub fn database(&self) -> &Database {
        &self.database
    }

    pub async fn create_category(
        &self,
        new: NewCategory,
        actor: &Actor,
    ) -> Result<Category, Error> {
        let mut tx = self.database.begin().await?;
        let category = store::insert_category(&mut tx, &new).await?;
        outbox::record(
            &mut tx,
            CatalogEvent::CategoryCreated(&category).into_new_event(actor),
        )
        .await?;
        tx.commit().await?;
        Ok(category)
    }

    pub async fn get_category(&self, id: Uuid) -> Result<Category, Error> {
        let mut tx = self.database.single_read().await?;
        let category = store::get_category(&mut tx, id).await?;
        tx.commit().await?;
        category.ok_or_else(|| Error::NotFound {
            resource: "category",
            id: id.to_string(),
        })
    }

    pub async fn get_categories(&self, ids: &[Uuid]) -> Result<Vec<Category>, Error> {
        let mut tx = self.database.single_read().await?;
        let categories = store::get_categories(&mut tx, ids).await?;
        tx.commit().await?;
        Ok(categories)
    }

    pub async fn list_categories(
        &self,
        query: &CategoryListQuery,
        page: &PageRequest,
    ) -> Result<Page<Category>, Error> {
        let mut tx = self.database.begin_page_read(page.is_first()).await?;
        let page = store::list_categories(&mut tx, query, page).await?;
        tx.commit().await?;
        Ok(page)
    }

    pub async fn update_category(
        &self,
        id: Uuid,
        changes: CategoryChanges,
        actor: &Actor,
    ) -> Result<Category, Error> {
        let mut tx = self.database.begin().await?;
        let category = store::update_category(&mut tx, id, &changes).await?;
        outbox::record(
            &mut tx,
            CatalogEvent::CategoryUpdated(&category).into_new_event(actor),
        )
        .await?;
        tx.commit().await?;
        Ok(category)
    }

    pub async fn delete_category(
        &self,
        id: Uuid,
        expected_version: i64,
        actor: &Actor,
    ) -> Result<(), Error> {
        let mut tx = self.database.begin().await?;
        let category = store::delete_category(&mut tx, id, expected_version).await?;
        outbox::record(
            &mut tx,
            CatalogEvent::CategoryDeleted(&category).into_new_event(actor),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn create_product(&self, new: NewProduct, actor: &Actor) -> Result<Product, Error> {
        let mut tx = self.database.begin().await?;
        let product = store::insert_product(&mut tx, &new).await?;
        outbox::record(
            &mut tx,
            CatalogEvent::ProductCreated(&product).into_new_event(actor),
        )
        .await?;
        tx.commit().await?;
        Ok(product)
    }

    pub async fn get_product(&self, id: Uuid) -> Result<Product, Error> {
        let mut tx = self.database.single_read().await?;
        let product = store::get_product(&mut tx, id).await?;
        tx.commit().await?;
        product.ok_or_else(|| Error::NotFound {
            resource: "product",
            id: id.to_string(),
        })
    }

    pub async fn get_products(&self, ids: &[Uuid]) -> Result<Vec<Product>, Error> {
        let mut tx = self.database.single_read().await?;
        let products = store::get_products(&mut tx, ids).await?;
        tx.commit().await?;
        Ok(products)
    }

    pub async fn list_products(
        &self,
        query: &ProductListQuery,
        page: &PageRequest,
    ) -> Result<Page<Product>, Error> {
        let mut tx = self.database.begin_page_read(page.is_first()).await?;
        let page = store::list_products(&mut tx, query, page).await?;
        tx.commit().await?;
        Ok(page)
    }

    pub async fn update_product(
        &self,
        id: Uuid,
        changes: ProductChanges,
        actor: &Actor,
    ) -> Result<Product, Error> {
        let mut tx = self.database.begin().await?;
        let product = store::update_product(&mut tx, id, &changes).await?;
        outbox::record(
            &mut tx,
            CatalogEvent::ProductUpdated(&product).into_new_event(actor),
        )
        .await?;
        tx.commit().await?;
        Ok(product)
    }

    pub async fn delete_product(
        &self,
        id: Uuid,
        expected_version: i64,
        actor: &Actor,
    ) -> Result<(), Error> {
        let mut tx = self.database.begin().await?;
        let product = store::delete_product(&mut tx, id, expected_version).await?;
        outbox::record(
            &mut tx,
            CatalogEvent::ProductDeleted(&product).into_new_event(actor),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
