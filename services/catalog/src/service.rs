//! The catalog's use cases: each opens a transaction, applies the change through the store,
//! and commits it with its event (`Transaction::commit_with`) — all or nothing. A creation,
//! whose record and event are known before it writes, writes both as one
//! (`Database::insert_with`). No transport here. Every change takes its `actor` (the verified
//! caller's token subject and client id), which its event carries, and runs in a span of its
//! own (the use case in the call's trace, its transaction inside it); reads add none to the
//! call's span.

use chassis::error::Error;
use chassis::outbox::Actor;
use chassis::pagination::PageRequest;
use chassis::storage::{Database, Timestamp, Transaction};
use uuid::Uuid;

use crate::domain::{
    Category, CategoryChanges, CategoryListQuery, NewCategory, NewProduct, Page, Product,
    ProductChanges, ProductListQuery,
};
use crate::events::CatalogEvent;
use crate::store;

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

    #[tracing::instrument(skip_all)]
    pub async fn create_category(
        &self,
        new: NewCategory,
        actor: &Actor,
    ) -> Result<Category, Error> {
        let category = new.into_category(Uuid::now_v7(), Timestamp::now());
        let event = CatalogEvent::CategoryCreated(&category).into_new_event(actor);
        store::insert_category(&self.database, &category, event).await?;
        Ok(category)
    }

    pub async fn get_category(&self, id: Uuid) -> Result<Category, Error> {
        let read = async |tx: &mut Transaction| store::get_category(tx, id).await;
        let category = self.database.read(read).await?;
        category.ok_or_else(|| Error::not_found("category", id))
    }

    pub async fn get_categories(&self, ids: &[Uuid]) -> Result<Vec<Category>, Error> {
        let categories = async |tx: &mut Transaction| store::get_categories(tx, ids).await;
        self.database.read(categories).await
    }

    pub async fn list_categories(
        &self,
        query: &CategoryListQuery,
        page: &PageRequest,
    ) -> Result<Page<Category>, Error> {
        let list = async |tx: &mut Transaction| store::list_categories(tx, query, page).await;
        self.database.read_page(page, list).await
    }

    #[tracing::instrument(skip_all, fields(category_id = %id))]
    pub async fn update_category(
        &self,
        id: Uuid,
        changes: CategoryChanges,
        actor: &Actor,
    ) -> Result<Category, Error> {
        let mut tx = self.database.begin().await?;
        let category = store::update_category(&mut tx, id, &changes).await?;
        tx.commit_with(CatalogEvent::CategoryUpdated(&category).into_new_event(actor))
            .await?;
        Ok(category)
    }

    #[tracing::instrument(skip_all, fields(category_id = %id))]
    pub async fn delete_category(
        &self,
        id: Uuid,
        expected_version: i64,
        actor: &Actor,
    ) -> Result<(), Error> {
        let mut tx = self.database.begin().await?;
        let category = store::delete_category(&mut tx, id, expected_version).await?;
        tx.commit_with(CatalogEvent::CategoryDeleted(&category).into_new_event(actor))
            .await
    }

    #[tracing::instrument(skip_all)]
    pub async fn create_product(&self, new: NewProduct, actor: &Actor) -> Result<Product, Error> {
        let product = new.into_product(Uuid::now_v7(), Timestamp::now());
        let event = CatalogEvent::ProductCreated(&product).into_new_event(actor);
        store::insert_product(&self.database, &product, event).await?;
        Ok(product)
    }

    pub async fn get_product(&self, id: Uuid) -> Result<Product, Error> {
        let read = async |tx: &mut Transaction| store::get_product(tx, id).await;
        let product = self.database.read(read).await?;
        product.ok_or_else(|| Error::not_found("product", id))
    }

    pub async fn get_products(&self, ids: &[Uuid]) -> Result<Vec<Product>, Error> {
        let products = async |tx: &mut Transaction| store::get_products(tx, ids).await;
        self.database.read(products).await
    }

    pub async fn list_products(
        &self,
        query: &ProductListQuery,
        page: &PageRequest,
    ) -> Result<Page<Product>, Error> {
        let list = async |tx: &mut Transaction| store::list_products(tx, query, page).await;
        self.database.read_page(page, list).await
    }

    #[tracing::instrument(skip_all, fields(product_id = %id))]
    pub async fn update_product(
        &self,
        id: Uuid,
        changes: ProductChanges,
        actor: &Actor,
    ) -> Result<Product, Error> {
        let mut tx = self.database.begin().await?;
        let product = store::update_product(&mut tx, id, &changes).await?;
        tx.commit_with(CatalogEvent::ProductUpdated(&product).into_new_event(actor))
            .await?;
        Ok(product)
    }

    #[tracing::instrument(skip_all, fields(product_id = %id))]
    pub async fn delete_product(
        &self,
        id: Uuid,
        expected_version: i64,
        actor: &Actor,
    ) -> Result<(), Error> {
        let mut tx = self.database.begin().await?;
        let product = store::delete_product(&mut tx, id, expected_version).await?;
        tx.commit_with(CatalogEvent::ProductDeleted(&product).into_new_event(actor))
            .await
    }
}
