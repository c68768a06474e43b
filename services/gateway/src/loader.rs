//! Records named by reference (`product.category`), loaded per request through a DataLoader:
//! the references its fields ask for while a level of the answer is resolved go out together,
//! one BatchGet per resource type, with the caller's token.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_graphql::Value;
use async_graphql::dataloader::Loader;
use prost_reflect::MethodDescriptor;

use crate::schema::call;
use crate::upstream::Upstream;
use crate::values;

/// How to read records of one resource type in a batch.
#[derive(Clone, Debug)]
pub(crate) struct BatchGet {
    pub(crate) method: MethodDescriptor,
    /// The request's repeated id field, by JSON name (`ids`).
    pub(crate) ids_field: String,
    /// The response's repeated record field, by JSON name (`categories`).
    pub(crate) records_field: String,
    /// The record's key field, by JSON name (`id`).
    pub(crate) key_field: String,
}

/// One record wanted: its resource type (`catalog.emporium.dev/Category`) and key.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub(crate) struct RecordKey {
    pub(crate) resource: Arc<str>,
    pub(crate) id: String,
}

/// The loader of one request.
pub(crate) struct RecordLoader {
    pub(crate) upstream: Arc<Upstream>,
    pub(crate) batch_gets: Arc<HashMap<String, BatchGet>>,
    pub(crate) token: Option<String>,
}

impl Loader<RecordKey> for RecordLoader {
    type Value = Value;
    type Error = Arc<async_graphql::Error>;

    async fn load(&self, keys: &[RecordKey]) -> Result<HashMap<RecordKey, Value>, Self::Error> {
        let mut wanted: BTreeMap<Arc<str>, Vec<String>> = BTreeMap::new();
        for key in keys {
            wanted
                .entry(Arc::clone(&key.resource))
                .or_default()
                .push(key.id.clone());
        }
        let mut found = HashMap::new();
        for (resource, ids) in wanted {
            let Some(batch) = self.batch_gets.get(&*resource) else {
                continue;
            };
            let mut request = serde_json::Map::new();
            request.insert(batch.ids_field.clone(), ids.into());
            let answer = call(
                &self.upstream,
                &batch.method,
                request,
                self.token.as_deref(),
                batch.ids_field.as_str(),
            )
            .await
            .map_err(Arc::new)?;
            let Value::Object(mut fields) = values::to_graphql(&answer) else {
                continue;
            };
            let Some(Value::List(records)) = fields.shift_remove(batch.records_field.as_str())
            else {
                continue;
            };
            for record in records {
                let Value::Object(record_fields) = &record else {
                    continue;
                };
                if let Some(Value::String(id)) = record_fields.get(batch.key_field.as_str()) {
                    let key = RecordKey {
                        resource: Arc::clone(&resource),
                        id: id.clone(),
                    };
                    found.insert(key, record.clone());
                }
            }
        }
        Ok(found)
    }
}
