//! Records named by reference (`product.category`), loaded per request in batches: the
//! references its fields ask for while a level of the answer is resolved go out together, one
//! BatchGet per resource type, with the caller's token.
//!
//! A level's fields are futures polled together in one pass of the request's task (async-graphql
//! resolves a list's items and an object's fields with `join_all`). So a reference joins the
//! batch being gathered, yields once, and the first of them polled again closes the batch and
//! makes its calls: every sibling has joined by then, and the batch goes out without waiting
//! on a timer (async-graphql's `DataLoader` waits a millisecond for one, on every level).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use async_graphql::Value;
use prost_reflect::MethodDescriptor;
use tokio::sync::OnceCell;

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

impl BatchGet {
    /// The records `ids` names (a JSON list), those found, in one call with `token`; a list the
    /// request cannot hold is the caller's mistake in `argument`.
    pub(crate) async fn records(
        &self,
        upstream: &Upstream,
        ids: serde_json::Value,
        token: Option<&str>,
        argument: &str,
    ) -> async_graphql::Result<Vec<Value>> {
        let mut request = serde_json::Map::new();
        request.insert(self.ids_field.clone(), ids);
        let answer = call(upstream, &self.method, request, token, argument).await?;
        let Value::Object(mut fields) = values::to_graphql(&answer) else {
            return Ok(Vec::new());
        };
        match fields.shift_remove(self.records_field.as_str()) {
            Some(Value::List(records)) => Ok(records),
            _ => Ok(Vec::new()),
        }
    }
}

/// One record wanted: its resource type (`catalog.emporium.dev/Category`) and key.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub(crate) struct RecordKey {
    pub(crate) resource: Arc<str>,
    pub(crate) id: String,
}

/// What one batch found: each record by its key (a key missing was not found), or the error
/// of a call that failed.
type Found = Result<HashMap<RecordKey, Value>, Arc<async_graphql::Error>>;

/// One batch: the keys it gathered, and, once made, its calls' answer.
#[derive(Default)]
struct Batch {
    keys: Mutex<Vec<RecordKey>>,
    found: OnceCell<Found>,
}

/// The records loader of one caller: one request, or the operations of one WebSocket
/// connection.
pub(crate) struct Records {
    loader: RecordLoader,
    /// The batch that new references join; none once it has been closed.
    gathering: Mutex<Option<Arc<Batch>>>,
}

impl Records {
    pub(crate) fn new(loader: RecordLoader) -> Self {
        Records {
            loader,
            gathering: Mutex::new(None),
        }
    }

    /// The record `key` names (none when there is no such record), loaded in one batch with the
    /// other references of its level.
    pub(crate) async fn load_one(
        &self,
        key: RecordKey,
    ) -> Result<Option<Value>, Arc<async_graphql::Error>> {
        let batch = {
            let mut gathering = self
                .gathering
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let batch = Arc::clone(gathering.get_or_insert_with(Arc::default));
            batch
                .keys
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(key.clone());
            batch
        };
        // Let the siblings polled after this reference join the batch.
        tokio::task::yield_now().await;
        // The first reference back closes the batch and makes its calls; the others wait for
        // them. Should its request be dropped meanwhile, the next one makes them.
        let found = batch
            .found
            .get_or_init(|| async {
                {
                    let mut gathering = self
                        .gathering
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    if gathering
                        .as_ref()
                        .is_some_and(|current| Arc::ptr_eq(current, &batch))
                    {
                        *gathering = None;
                    }
                }
                let keys = batch
                    .keys
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                self.loader.load(&keys).await
            })
            .await;
        match found {
            Ok(records) => Ok(records.get(&key).cloned()),
            Err(error) => Err(Arc::clone(error)),
        }
    }
}

/// The loader of one request.
pub(crate) struct RecordLoader {
    pub(crate) upstream: Arc<Upstream>,
    pub(crate) batch_gets: Arc<HashMap<String, BatchGet>>,
    pub(crate) token: Option<String>,
}

impl RecordLoader {
    /// The records `keys` name, in one BatchGet per resource type, the types' calls made
    /// together.
    async fn load(&self, keys: &[RecordKey]) -> Found {
        let mut wanted: BTreeMap<Arc<str>, BTreeSet<String>> = BTreeMap::new();
        for key in keys {
            wanted
                .entry(Arc::clone(&key.resource))
                .or_default()
                .insert(key.id.clone());
        }
        let calls = wanted.into_iter().filter_map(|(resource, ids)| {
            let batch = self.batch_gets.get(&*resource)?;
            Some(self.load_batch(resource, batch, ids.into_iter().collect()))
        });
        let mut found = HashMap::new();
        for records in futures::future::try_join_all(calls).await? {
            found.extend(records);
        }
        Ok(found)
    }

    async fn load_batch(
        &self,
        resource: Arc<str>,
        batch: &BatchGet,
        ids: Vec<String>,
    ) -> Result<Vec<(RecordKey, Value)>, Arc<async_graphql::Error>> {
        let records = batch
            .records(
                &self.upstream,
                ids.into(),
                self.token.as_deref(),
                batch.ids_field.as_str(),
            )
            .await
            .map_err(Arc::new)?;
        let mut found = Vec::with_capacity(records.len());
        for record in records {
            let id = match &record {
                Value::Object(record_fields) => match record_fields.get(batch.key_field.as_str()) {
                    Some(Value::String(id)) => id.clone(),
                    _ => continue,
                },
                _ => continue,
            };
            let key = RecordKey {
                resource: Arc::clone(&resource),
                id,
            };
            found.push((key, record));
        }
        Ok(found)
    }
}
