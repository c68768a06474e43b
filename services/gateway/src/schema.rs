//! The GraphQL schema of a contract, built from its descriptors: per resource (its message's
//! name, `Product`), an object type of the message's fields, and where the service has the
//! standard method, OpenCRUD's
//!
//! - `product(where: ProductWhereUniqueInput!): Product` (Get; null when there is none),
//! - `products(where:, orderBy:, first:, after:): [Product!]!` and `productsConnection(…)`
//!   (List: `where` holds exactly the List request's filters, `orderBy` its orderings as
//!   `field_ASC` / `field_DESC`; `skip`, `before` and `last` are refused, the services page
//!   forward only),
//! - `createProduct(data:)`, `updateProduct(where:, data:)` (the expected version is in `data`,
//!   as the Update request has it) and `deleteProduct(where:, data:)`,
//!
//! and each other RPC of the resource as a mutation named after it (`grantRole(input:)`).
//! Field names are the proto3 JSON names; comments become descriptions.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use async_graphql::dynamic::{
    Enum, EnumItem, Field, FieldFuture, FieldValue, InputObject, InputValue, Object,
    ResolverContext, Scalar, Schema, SchemaBuilder, Subscription, TypeRef,
};
use async_graphql::{Name, Value};
use chassis::settings::GraphqlSettings;
use contract::resources::{self, FieldBehavior, Resource};
use prost_reflect::{
    DescriptorPool, DynamicMessage, EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor,
    MethodDescriptor,
};

use crate::access_rules::{self, FieldRpc};
use crate::limits::QueryLimits;
use crate::loader::{BatchGet, RecordKey, RecordLoader, Records};
use crate::references::{self, FieldReference, Target};
use crate::subscriptions::{self, ChangeSource, Feeds};
use crate::upstream::Upstream;
use crate::{errors, names, values};

/// The caller's bearer token, in the request's data (`Request::data`), forwarded to the
/// services, which verify it.
#[derive(Clone, Debug)]
pub struct BearerToken(pub String);

/// A 64-bit integer: a string in answers, as proto3 JSON has it; a string or a number in
/// arguments.
const INT64: &str = "Int64";
/// An instant, RFC 3339 (`google.protobuf.Timestamp`).
const DATE_TIME: &str = "DateTime";
/// Any JSON value (map fields).
const JSON: &str = "JSON";

/// List request fields that are paging and ordering, not filters.
const PAGE_SIZE: &str = "page_size";
const PAGE_TOKEN: &str = "page_token";
const ORDER_BY: &str = "order_by";
const DIRECTION: &str = "direction";

/// The gateway of a contract: its schema, and what each request's loader needs.
pub struct Gateway {
    schema: Schema,
    feeds: Option<Arc<Feeds>>,
    upstream: Arc<Upstream>,
    batch_gets: Arc<HashMap<String, BatchGet>>,
}

impl Gateway {
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Each service stream this gateway follows for its subscriptions, and whether its tail is
    /// up now (while it is not, new subscriptions to it are refused as UNAVAILABLE).
    pub fn streams(&self) -> impl Fn() -> std::collections::BTreeMap<String, bool> + Clone + use<> {
        let feeds = self.feeds.clone();
        move || {
            feeds
                .as_ref()
                .map(|feeds| feeds.streams())
                .unwrap_or_default()
        }
    }

    /// How many subscriptions this gateway serves now.
    pub fn live_subscriptions(&self) -> usize {
        self.feeds.as_ref().map_or(0, |feeds| feeds.n_live())
    }

    /// Answers `request` for the caller whose bearer token is `token` (forwarded to the
    /// services, which verify it), with a loader of its own for the references it reads.
    pub async fn execute(
        &self,
        mut request: async_graphql::Request,
        token: Option<String>,
    ) -> async_graphql::Response {
        request.data = self.caller_data(token);
        self.schema.execute(request).await
    }

    /// Answers `request`, a subscription, for the caller whose bearer token is `token`: one
    /// response per change (a query or mutation gives one response, then ends).
    pub fn execute_stream(
        &self,
        mut request: async_graphql::Request,
        token: Option<String>,
    ) -> impl futures::Stream<Item = async_graphql::Response> + Send + 'static {
        request.data = self.caller_data(token);
        self.schema.execute_stream(request)
    }

    /// What an operation needs of its caller: the bearer token (`BearerToken`, when there is
    /// one) and a loader of its own calling with it. A WebSocket connection's operations share
    /// the connection's.
    pub fn caller_data(&self, token: Option<String>) -> async_graphql::Data {
        let loader = RecordLoader {
            upstream: Arc::clone(&self.upstream),
            batch_gets: Arc::clone(&self.batch_gets),
            token: token.clone(),
        };
        let mut data = async_graphql::Data::default();
        data.insert(Records::new(loader));
        if let Some(token) = token {
            data.insert(BearerToken(token));
        }
        data
    }
}

/// The gateway of every resource in `pool`, its fields resolved by calling `upstream`, queries
/// held to `limits`' depth, complexity and aliases. Fails, naming the message and field, on a contract
/// it cannot map (two messages of one name).
pub fn build(
    pool: &DescriptorPool,
    upstream: Upstream,
    changes: Option<ChangeSource>,
    limits: &GraphqlSettings,
) -> anyhow::Result<Gateway> {
    let upstream = Arc::new(upstream);
    let feeds = changes.map(|source| Arc::new(Feeds::start(source, pool)));
    let resource_events = subscriptions::resource_events(pool);
    let mut subscription = Subscription::new("Subscription");
    let mut has_subscriptions = false;
    let resources = resources::resources(pool);
    let mut batch_gets = HashMap::new();
    let mut types = Types::default();
    for resource in &resources {
        if let Some(batch_get) = batch_get_of(resource) {
            types
                .referable
                .insert(resource.type_name.clone(), resource.message.clone());
            types
                .batch_get_rpcs
                .insert(resource.type_name.clone(), batch_get.method.clone());
            batch_gets.insert(resource.type_name.clone(), batch_get);
        }
    }
    let mut query = Object::new("Query");
    let mut mutation = Object::new("Mutation");
    for resource in &resources {
        let object = types.output_object(&resource.message)?;
        if let Some(events) = &resource.events {
            let field = events_field(resource, events, &mut types, &upstream)?;
            types.add_field(&object, field);
            types.calls(&object, "events", events);
        }
        let standard = &resource.standard;
        if let Some(get) = &standard.get {
            query = query.field(get_field(resource, get, &object, &mut types, &upstream)?);
            types.calls("Query", &resource.singular, get);
            if let Some(events) = resource_events.get(resource.message.full_name()) {
                let (where_unique, _) = where_unique(resource, get, &mut types)?;
                subscription = subscription.field(subscriptions::changed_field(
                    resource,
                    events,
                    get,
                    &where_unique,
                    &object,
                    &mut types,
                    feeds.clone(),
                )?);
                types.calls(
                    "Subscription",
                    &names::changed_field(&resource.singular),
                    get,
                );
                has_subscriptions = true;
            }
        }
        if let Some(list) = &standard.list {
            let (plain, connection) =
                list_fields(resource, list, &object, &batch_gets, &mut types, &upstream)?;
            query = query.field(plain).field(connection);
            types.calls("Query", &resource.plural, list);
            types.calls("Query", &names::connection_field(&resource.plural), list);
        }
        let type_name = resource.message.name();
        if let Some(create) = &standard.create {
            mutation = mutation.field(create_field(resource, create, &mut types, &upstream)?);
            types.calls("Mutation", &names::create_field(type_name), create);
        }
        if let Some(update) = &standard.update {
            mutation = mutation.field(update_field(resource, update, &mut types, &upstream)?);
            types.calls("Mutation", &names::update_field(type_name), update);
        }
        if let Some(delete) = &standard.delete {
            mutation = mutation.field(delete_field(resource, delete, &mut types, &upstream)?);
            types.calls("Mutation", &names::delete_field(type_name), delete);
        }
        for custom in &resource.custom {
            mutation = mutation.field(custom_field(&custom.method, &mut types, &upstream)?);
            types.calls(
                "Mutation",
                &names::lower_camel(custom.method.name()),
                &custom.method,
            );
        }
    }
    let referable = types.referable.clone();
    for resource in &resources {
        if let Some(list) = &resource.standard.list {
            reverse_fields(
                resource,
                list,
                &referable,
                &batch_gets,
                &mut types,
                &upstream,
            )?;
        }
    }
    let rpcs = std::mem::take(&mut types.rpcs);
    query = query.field(access_rules::field(rpcs, &mut types)?);
    let targets: HashMap<String, Target> = resources
        .iter()
        .filter(|resource| resource.standard.get.is_some())
        .filter_map(|resource| {
            let key = resource.message.get_field_by_name(&resource.name_field)?;
            Some((
                resource.type_name.clone(),
                Target {
                    type_name: resource.message.name().to_owned(),
                    key: key.json_name().to_owned(),
                },
            ))
        })
        .collect();
    let field_references = std::mem::take(&mut types.references);
    query = query.field(references::field(field_references, &targets, &mut types)?);
    let mutation_type =
        subscriptions::mutation_type(&resource_events).filter(|_| has_subscriptions);
    let builder = Schema::build(
        "Query",
        Some("Mutation"),
        mutation_type.as_ref().map(|_| "Subscription"),
    )
    .limit_complexity(limits.max_complexity)
    .extension(QueryLimits {
        max_depth: limits.max_depth,
        max_aliases: limits.max_aliases,
    })
    .extension(errors::RootFailures);
    let mut builder = types.register(builder).register(query).register(mutation);
    if let Some(mutation_type) = mutation_type {
        builder = builder.register(mutation_type).register(subscription);
    }
    let schema = builder
        .finish()
        .context("The contract's GraphQL schema is not valid")?;
    Ok(Gateway {
        schema,
        feeds,
        upstream,
        batch_gets: Arc::new(batch_gets),
    })
}

/// How `resource`'s records are read by id in a batch, where the service has BatchGet.
fn batch_get_of(resource: &Resource) -> Option<BatchGet> {
    let method = resource.standard.batch_get.clone()?;
    let ids_field = resource.batch_key_field(&method.input())?;
    let records_field = resource.list_field(&method.output())?;
    let key_field = resource.message.get_field_by_name(&resource.name_field)?;
    Some(BatchGet {
        ids_field: ids_field.json_name().to_owned(),
        records_field: records_field.json_name().to_owned(),
        key_field: key_field.json_name().to_owned(),
        method,
    })
}

/// The types the schema needs, each made once, by GraphQL name.
#[derive(Default)]
pub(crate) struct Types {
    objects: BTreeMap<String, Option<Object>>,
    inputs: BTreeMap<String, Option<InputObject>>,
    enums: BTreeMap<String, Enum>,
    /// Which protobuf type each GraphQL name stands for, so two messages of one name fail.
    claimed: HashMap<String, String>,
    /// The resources a reference can be followed to (they have BatchGet), by resource type.
    referable: HashMap<String, MessageDescriptor>,
    /// The `where` inputs that have their ids filter (`id_in`) already.
    ids_filters: HashSet<String>,
    /// The BatchGet of each referable resource, by resource type.
    batch_get_rpcs: HashMap<String, MethodDescriptor>,
    /// Every field that calls an RPC, for `accessRules`.
    rpcs: Vec<FieldRpc>,
    /// Every field that names a record of a resource, for `references`.
    references: BTreeSet<FieldReference>,
}

impl Types {
    fn register(self, mut builder: SchemaBuilder) -> SchemaBuilder {
        builder = builder
            .register(Scalar::new(INT64).description(
                "A 64-bit integer: a string in answers (as proto3 JSON has it), a string or a \
                 number in arguments.",
            ))
            .register(Scalar::new(DATE_TIME).description("An instant, RFC 3339."))
            .register(Scalar::new(JSON).description("Any JSON value."));
        for object in self.objects.into_values().flatten() {
            builder = builder.register(object);
        }
        for input in self.inputs.into_values().flatten() {
            builder = builder.register(input);
        }
        for r#enum in self.enums.into_values() {
            builder = builder.register(r#enum);
        }
        builder
    }

    /// Adds the object type `object`, whose name is claimed.
    pub(crate) fn add_object(&mut self, object: Object) {
        self.objects
            .insert(object.type_name().to_owned(), Some(object));
    }

    /// Adds the input type `input`, whose name is claimed.
    pub(crate) fn add_input(&mut self, input: InputObject) {
        self.inputs
            .insert(input.type_name().to_owned(), Some(input));
    }

    /// Records that the field `field` of the type `owner` calls `method`.
    fn calls(&mut self, owner: &str, field: &str, method: &MethodDescriptor) {
        self.rpcs.push(FieldRpc {
            owner: owner.to_owned(),
            field: field.to_owned(),
            method: method.clone(),
        });
    }

    /// Records that the field `field` of the type `owner` holds the key of `proto`'s resource,
    /// when it declares one.
    fn refers(&mut self, owner: &str, field: &str, proto: &FieldDescriptor) {
        if let Some(resource_type) = resources::resource_reference(proto) {
            self.references.insert(FieldReference {
                owner: owner.to_owned(),
                field: field.to_owned(),
                resource_type,
            });
        }
    }

    /// Adds `field` to the object type `name`, already made.
    fn add_field(&mut self, name: &str, field: Field) {
        if let Some(slot) = self.objects.get_mut(name) {
            *slot = slot.take().map(|object| object.field(field));
        }
    }

    pub(crate) fn claim(&mut self, name: &str, source: &str) -> anyhow::Result<()> {
        match self.claimed.get(name) {
            Some(claimed) if claimed != source => {
                bail!("{source} and {claimed} would both be the GraphQL type {name}")
            }
            Some(_) => Ok(()),
            None => {
                self.claimed.insert(name.to_owned(), source.to_owned());
                Ok(())
            }
        }
    }

    /// The object type of `message` (its name), made with its nested types on first use.
    fn output_object(&mut self, message: &MessageDescriptor) -> anyhow::Result<String> {
        let name = message.name().to_owned();
        if self.objects.contains_key(&name) {
            self.claim(&name, message.full_name())?;
            return Ok(name);
        }
        self.claim(&name, message.full_name())?;
        // Reserved before its fields, which may lead back to it.
        self.objects.insert(name.clone(), None);
        let mut object = Object::new(&name);
        if let Some(comment) = resources::message_comment(message) {
            object = object.description(comment);
        }
        for field in message.fields() {
            // Passwords are input-only; an output-only secret (a new client's) is shown, once,
            // as the service answers it.
            if resources::has_behavior(&field, FieldBehavior::InputOnly) {
                continue;
            }
            let (type_ref, shape) = self.output_type(&field)?;
            self.refers(&name, field.json_name(), &field);
            let mut graphql_field = value_field(field.json_name(), type_ref, shape);
            if let Some(comment) = resources::field_comment(&field) {
                graphql_field = graphql_field.description(comment);
            }
            object = object.field(graphql_field);
            if let Some(relation) = self.relation_field(&field)? {
                object = object.field(relation);
            }
        }
        self.objects.insert(name.clone(), Some(object));
        Ok(name)
    }

    /// For a field holding the id of another record (`categoryId`, a `resource_reference`
    /// to a resource with BatchGet), the field holding that record (`category`), loaded in the
    /// caller's batches ([`Records`]).
    fn relation_field(&mut self, field: &FieldDescriptor) -> anyhow::Result<Option<Field>> {
        let Some(target_type) = resources::resource_reference(field) else {
            return Ok(None);
        };
        let Some(target) = self.referable.get(&target_type).cloned() else {
            return Ok(None);
        };
        let Some(name) = field
            .json_name()
            .strip_suffix("Id")
            .filter(|_| !field.is_list())
        else {
            return Ok(None);
        };
        let object = self.output_object(&target)?;
        if let Some(batch_get) = self.batch_get_rpcs.get(&target_type).cloned() {
            self.calls(field.parent_message().name(), name, &batch_get);
        }
        let description = format!(
            "The {object} `{}` names (null when there is none).",
            field.json_name()
        );
        let key_field = field.json_name().to_owned();
        let resource: Arc<str> = target_type.into();
        let relation = Field::new(name, TypeRef::named(&object), move |ctx| {
            let key_field = key_field.clone();
            let resource = Arc::clone(&resource);
            FieldFuture::new(async move {
                let id = match ctx.parent_value.as_value() {
                    Some(Value::Object(fields)) => match fields.get(key_field.as_str()) {
                        Some(Value::String(id)) if !id.is_empty() => id.clone(),
                        _ => return Ok(None),
                    },
                    _ => return Ok(None),
                };
                let loader = ctx.data::<Records>()?;
                let record = loader
                    .load_one(RecordKey { resource, id })
                    .await
                    .map(|record| record.map(FieldValue::value))
                    .map_err(|error| (*error).clone());
                null_on_error(&ctx, record)
            })
        })
        .description(description);
        Ok(Some(relation))
    }

    fn output_type(&mut self, field: &FieldDescriptor) -> anyhow::Result<(TypeRef, Shape)> {
        let (base, shape) = match field.kind() {
            _ if field.is_map() => (JSON.to_owned(), Shape::Scalar),
            Kind::Message(message) if message.full_name() == "google.protobuf.Timestamp" => {
                (DATE_TIME.to_owned(), Shape::Scalar)
            }
            Kind::Message(message) => (self.output_object(&message)?, Shape::Object),
            Kind::Enum(r#enum) => (self.enum_type(&r#enum)?, Shape::Enum),
            kind => (scalar_name(field, &kind).to_owned(), Shape::Scalar),
        };
        let type_ref = if field.is_list() {
            TypeRef::named_nn_list_nn(base)
        } else if field.supports_presence() {
            TypeRef::named(base)
        } else {
            TypeRef::named_nn(base)
        };
        let shape = if field.is_list() {
            Shape::List(Box::new(shape))
        } else {
            shape
        };
        Ok((type_ref, shape))
    }

    /// The input object `name` of `message`'s fields but `skipped` and the output-only ones;
    /// `None` when none is left.
    fn input_object(
        &mut self,
        message: &MessageDescriptor,
        name: &str,
        skipped: &[&str],
    ) -> anyhow::Result<Option<String>> {
        if self.inputs.contains_key(name) {
            return Ok(Some(name.to_owned()));
        }
        self.claim(name, &format!("{} (input)", message.full_name()))?;
        self.inputs.insert(name.to_owned(), None);
        let mut input = InputObject::new(name);
        if let Some(comment) = resources::message_comment(message) {
            input = input.description(comment);
        }
        let mut n_fields = 0;
        for field in message.fields() {
            if skipped.contains(&field.name())
                || resources::has_behavior(&field, FieldBehavior::OutputOnly)
            {
                continue;
            }
            let mut value = InputValue::new(field.json_name(), self.input_type(&field)?);
            self.refers(name, field.json_name(), &field);
            if let Some(comment) = resources::field_comment(&field) {
                value = value.description(comment);
            }
            input = input.field(value);
            n_fields += 1;
        }
        if n_fields == 0 {
            self.inputs.remove(name);
            self.claimed.remove(name);
            return Ok(None);
        }
        self.inputs.insert(name.to_owned(), Some(input));
        Ok(Some(name.to_owned()))
    }

    /// Adds OpenCRUD's `<key>_in` to the `where` input `name` of `resource`'s List (made
    /// here when the List has no filters of its own), and names that input.
    fn ids_filter(
        &mut self,
        name: &str,
        resource: &Resource,
        request: &MessageDescriptor,
        filter: &str,
    ) -> anyhow::Result<String> {
        let input = match self.inputs.remove(name).flatten() {
            Some(input) => input,
            None => {
                self.claim(name, &format!("{} (input)", request.full_name()))?;
                InputObject::new(name).description(format!("Which {} to list.", resource.plural))
            }
        };
        let input = if self.ids_filters.contains(name) {
            input
        } else {
            self.ids_filters.insert(name.to_owned());
            input.field(
                InputValue::new(filter, TypeRef::named_nn_list(TypeRef::ID)).description(format!(
                    "Only the {} with these ids, read in one batch (not with other filters, \
                     `orderBy` or `after`).",
                    resource.plural
                )),
            )
        };
        self.inputs.insert(name.to_owned(), Some(input));
        Ok(name.to_owned())
    }

    fn input_type(&mut self, field: &FieldDescriptor) -> anyhow::Result<TypeRef> {
        let base = match field.kind() {
            _ if field.is_map() => JSON.to_owned(),
            Kind::Message(message) if message.full_name() == "google.protobuf.Timestamp" => {
                DATE_TIME.to_owned()
            }
            Kind::Message(message) => {
                let name = format!("{}Input", message.name());
                self.input_object(&message, &name, &[])?
                    .with_context(|| format!("{} has no input field", message.full_name()))?
            }
            Kind::Enum(r#enum) => self.enum_type(&r#enum)?,
            kind => scalar_name(field, &kind).to_owned(),
        };
        let required = resources::has_behavior(field, FieldBehavior::Required);
        Ok(match (field.is_list(), required) {
            (true, true) => TypeRef::named_nn_list_nn(base),
            (true, false) => TypeRef::named_nn_list(base),
            (false, true) => TypeRef::named_nn(base),
            (false, false) => TypeRef::named(base),
        })
    }

    fn enum_type(&mut self, r#enum: &EnumDescriptor) -> anyhow::Result<String> {
        let name = r#enum.name().to_owned();
        self.claim(&name, r#enum.full_name())?;
        if !self.enums.contains_key(&name) {
            let items = r#enum.values().map(|value| EnumItem::new(value.name()));
            self.enums
                .insert(name.clone(), Enum::new(&name).items(items));
        }
        Ok(name)
    }
}

/// GraphQL's name for a scalar field: `ID` for ids and references.
fn scalar_name(field: &FieldDescriptor, kind: &Kind) -> &'static str {
    match kind {
        Kind::String
            if field.name() == "id"
                || field.name().ends_with("_id")
                || resources::resource_reference(field).is_some() =>
        {
            TypeRef::ID
        }
        Kind::String | Kind::Bytes => TypeRef::STRING,
        Kind::Bool => TypeRef::BOOLEAN,
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 | Kind::Uint32 | Kind::Fixed32 => TypeRef::INT,
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 | Kind::Uint64 | Kind::Fixed64 => INT64,
        Kind::Float | Kind::Double => TypeRef::FLOAT,
        Kind::Message(_) | Kind::Enum(_) => JSON,
    }
}

/// How a field's JSON value becomes its GraphQL value.
#[derive(Clone, Debug)]
pub(crate) enum Shape {
    Scalar,
    Enum,
    Object,
    List(Box<Shape>),
}

impl Shape {
    fn field_value(&self, value: Value) -> Option<FieldValue<'static>> {
        match (self, value) {
            (_, Value::Null) => None,
            (Shape::Scalar | Shape::Object, value) => Some(FieldValue::value(value)),
            (Shape::Enum, Value::String(name)) => {
                Some(FieldValue::value(Value::Enum(Name::new(name))))
            }
            (Shape::Enum, value) => Some(FieldValue::value(value)),
            (Shape::List(item), Value::List(items)) => Some(FieldValue::list(
                items
                    .into_iter()
                    .filter_map(|value| item.field_value(value)),
            )),
            (Shape::List(_), _) => Some(FieldValue::list(Vec::<FieldValue<'static>>::new())),
        }
    }
}

/// A non-null scalar field `name: scalar!` of a metadata item (an access rule, a reference),
/// read from its parent's value.
pub(crate) fn metadata_field(name: &str, scalar: &str, description: &str) -> Field {
    value_field(name, TypeRef::named_nn(scalar), Shape::Scalar).description(description)
}

/// A root field `name: [item_type!]!` that answers `answer`, the same for every caller (the
/// contracts' metadata).
pub(crate) fn fixed_list(
    name: &str,
    item_type: &str,
    answer: Vec<Value>,
    description: &str,
) -> Field {
    Field::new(name, TypeRef::named_nn_list_nn(item_type), move |_| {
        let answer = answer.clone();
        FieldFuture::new(async move {
            Ok(Some(FieldValue::list(
                answer.into_iter().map(FieldValue::value),
            )))
        })
    })
    .description(description)
}

/// A field read from its parent's object value (`name` is its JSON name).
pub(crate) fn value_field(name: &str, type_ref: TypeRef, shape: Shape) -> Field {
    let key = name.to_owned();
    Field::new(name, type_ref, move |ctx: ResolverContext<'_>| {
        let value = match ctx.parent_value.as_value() {
            Some(Value::Object(fields)) => fields.get(key.as_str()).cloned(),
            _ => None,
        };
        FieldFuture::Value(value.and_then(|value| shape.field_value(value)))
    })
}

/// A nullable field's outcome as GraphQL has it: a failure is the field's null with the error at
/// its path, the rest of the answer standing (async-graphql's dynamic schema would drop the
/// field from the answer and the path from the error).
fn null_on_error<'a>(
    ctx: &ResolverContext<'_>,
    outcome: async_graphql::Result<Option<FieldValue<'a>>>,
) -> async_graphql::Result<Option<FieldValue<'a>>> {
    match outcome {
        Ok(value) => Ok(value),
        Err(error) => {
            ctx.add_error(ctx.set_error_path(error.into_server_error(ctx.item.pos)));
            Ok(None)
        }
    }
}

/// The argument `name`, unless absent or null (a variable left null is no argument).
pub(crate) fn argument<'a>(
    ctx: &'a ResolverContext<'_>,
    name: &str,
) -> Option<async_graphql::dynamic::ValueAccessor<'a>> {
    ctx.args.get(name).filter(|value| !value.is_null())
}

/// The bearer token the request carries, if any.
fn token_of<'a>(ctx: &ResolverContext<'a>) -> Option<&'a str> {
    ctx.data_opt::<BearerToken>().map(|token| token.0.as_str())
}

/// The `name` argument as a JSON object (empty when absent).
fn object_argument(
    ctx: &ResolverContext<'_>,
    name: &str,
) -> serde_json::Map<String, serde_json::Value> {
    match ctx
        .args
        .get(name)
        .map(|value| values::to_json(value.as_value().clone()))
    {
        Some(serde_json::Value::Object(fields)) => fields,
        _ => serde_json::Map::new(),
    }
}

/// Calls `method` with the JSON `request`; a request the contract cannot hold is the caller's
/// mistake, named.
pub(crate) async fn call(
    upstream: &Upstream,
    method: &MethodDescriptor,
    request: serde_json::Map<String, serde_json::Value>,
    token: Option<&str>,
    argument: &str,
) -> async_graphql::Result<DynamicMessage> {
    let request = values::to_message(&method.input(), serde_json::Value::Object(request))
        .map_err(|reason| errors::bad_input(argument, reason))?;
    upstream
        .call(method, request, token)
        .await
        .map_err(|status| errors::from_status(&status))
}

/// `WhereUniqueInput` of a resource: the field the Get request names the record by.
fn where_unique(
    resource: &Resource,
    method: &MethodDescriptor,
    types: &mut Types,
) -> anyhow::Result<(String, FieldDescriptor)> {
    let key = resource.key_field(&method.input()).with_context(|| {
        format!(
            "{} names no record (no key field)",
            method.input().full_name()
        )
    })?;
    let name = format!("{}WhereUniqueInput", resource.message.name());
    if !types.inputs.contains_key(&name) {
        types.claim(&name, &format!("{} (unique)", resource.message.full_name()))?;
        let base = scalar_name(&key, &key.kind());
        let input = InputObject::new(&name)
            .description(format!(
                "Which {} (by its {}).",
                resource.singular,
                key.json_name()
            ))
            .field(InputValue::new(key.json_name(), TypeRef::named_nn(base)));
        types.inputs.insert(name.clone(), Some(input));
    }
    Ok((name, key))
}

fn get_field(
    resource: &Resource,
    get: &MethodDescriptor,
    object: &str,
    types: &mut Types,
    upstream: &Arc<Upstream>,
) -> anyhow::Result<Field> {
    let (where_input, key) = where_unique(resource, get, types)?;
    let upstream = Arc::clone(upstream);
    let method = get.clone();
    let key = key.json_name().to_owned();
    let field = Field::new(&resource.singular, TypeRef::named(object), move |ctx| {
        let upstream = Arc::clone(&upstream);
        let method = method.clone();
        let key = key.clone();
        FieldFuture::new(async move {
            let unique = object_argument(&ctx, "where");
            let request = unique
                .into_iter()
                .filter(|(name, _)| *name == key)
                .collect();
            let outcome = match call(&upstream, &method, request, token_of(&ctx), "where").await {
                Ok(found) => Ok(Some(FieldValue::value(values::to_graphql(&found)))),
                Err(error) if is_not_found(&error) => Ok(None),
                Err(error) => Err(error),
            };
            null_on_error(&ctx, outcome)
        })
    })
    .argument(InputValue::new("where", TypeRef::named_nn(where_input)));
    Ok(described(field, get))
}

/// `events(first:, after:)` on a resource's type: the record's audit history (`ListEvents`),
/// oldest first; null with a FORBIDDEN error for a caller the service does not let read it,
/// the rest of the answer standing.
fn events_field(
    resource: &Resource,
    events: &MethodDescriptor,
    types: &mut Types,
    upstream: &Arc<Upstream>,
) -> anyhow::Result<Field> {
    let records = events
        .output()
        .fields()
        .find(|field| field.is_list())
        .with_context(|| format!("{} holds no list of events", events.output().full_name()))?;
    let Kind::Message(event) = records.kind() else {
        bail!("{} is not a list of events", records.full_name());
    };
    let event_type = types.output_object(&event)?;
    let request = events.input();
    let aggregate = request
        .fields()
        .find(|field| resources::has_behavior(field, FieldBehavior::Required))
        .with_context(|| format!("{} names no record", request.full_name()))?
        .json_name()
        .to_owned();
    let key_field = resource
        .message
        .get_field_by_name(&resource.name_field)
        .with_context(|| format!("{} has no key field", resource.message.full_name()))?
        .json_name()
        .to_owned();
    let page_size = json_name(&request, PAGE_SIZE);
    let page_token = json_name(&request, PAGE_TOKEN);
    let records = records.json_name().to_owned();
    let upstream = Arc::clone(upstream);
    let method = events.clone();
    let field = Field::new("events", TypeRef::named_nn_list(event_type), move |ctx| {
        let (upstream, method) = (Arc::clone(&upstream), method.clone());
        let (aggregate, key_field) = (aggregate.clone(), key_field.clone());
        let (page_size, page_token, records) =
            (page_size.clone(), page_token.clone(), records.clone());
        FieldFuture::new(async move {
            let Some(Value::Object(parent)) = ctx.parent_value.as_value() else {
                return Ok(None);
            };
            let Some(Value::String(id)) = parent.get(key_field.as_str()) else {
                return Ok(None);
            };
            let mut request = serde_json::Map::new();
            request.insert(aggregate, id.clone().into());
            if let Some(first) = argument(&ctx, "first") {
                request.insert(page_size, first.i64()?.into());
            }
            if let Some(after) = argument(&ctx, "after") {
                request.insert(page_token, after.string()?.into());
            }
            let page = match call(&upstream, &method, request, token_of(&ctx), "events").await {
                Ok(page) => page,
                Err(error) => return null_on_error(&ctx, Err(error)),
            };
            let items = match values::to_graphql(&page) {
                Value::Object(mut fields) => match fields.shift_remove(records.as_str()) {
                    Some(Value::List(items)) => items,
                    _ => Vec::new(),
                },
                _ => Vec::new(),
            };
            Ok(Some(FieldValue::list(
                items.into_iter().map(FieldValue::value),
            )))
        })
    })
    .argument(InputValue::new("first", TypeRef::named(TypeRef::INT)))
    .argument(InputValue::new("after", TypeRef::named(TypeRef::STRING)));
    Ok(described(field, events))
}

fn is_not_found(error: &async_graphql::Error) -> bool {
    error
        .extensions
        .as_ref()
        .and_then(|extensions| extensions.get("code"))
        .is_some_and(|code| *code == Value::from("NOT_FOUND"))
}

/// How `orderBy`'s values map to the List request's `order_by` and `direction`.
#[derive(Clone, Debug, Default)]
struct Orderings {
    /// `name_DESC` → (`PRODUCT_ORDER_BY_NAME`, `SORT_DIRECTION_DESCENDING`).
    by_value: HashMap<String, (String, Option<String>)>,
}

/// The `<Type>OrderByInput` enum of a List request, if it orders.
fn orderings(
    resource: &Resource,
    request: &MessageDescriptor,
    types: &mut Types,
) -> anyhow::Result<Option<(String, Orderings)>> {
    let Some(Kind::Enum(order_enum)) = request.get_field_by_name(ORDER_BY).map(|f| f.kind()) else {
        return Ok(None);
    };
    let directions = match request.get_field_by_name(DIRECTION).map(|f| f.kind()) {
        Some(Kind::Enum(direction)) => {
            let find = |short: &str, long: &str| {
                direction
                    .values()
                    .find(|value| value.name().ends_with(short) || value.name().ends_with(long))
                    .map(|value| value.name().to_owned())
            };
            Some((find("_ASC", "_ASCENDING"), find("_DESC", "_DESCENDING")))
        }
        _ => None,
    };
    let name = format!("{}OrderByInput", resource.message.name());
    types.claim(&name, &format!("{} (order)", request.full_name()))?;
    let mut orderings = Orderings::default();
    let mut items = Vec::new();
    let prefix = resources::enum_value_prefix(&order_enum);
    if prefix.is_empty() {
        return Ok(None);
    }
    for value in order_enum.values() {
        let Some(field) = names::order_field(&prefix, value.name()) else {
            continue;
        };
        let mut add = |suffix: &str, direction: Option<String>| {
            let item = format!("{field}_{suffix}");
            orderings
                .by_value
                .insert(item.clone(), (value.name().to_owned(), direction));
            items.push(EnumItem::new(item));
        };
        match &directions {
            // A direction the request cannot say is not offered.
            Some((ascending, descending)) => {
                add("ASC", ascending.clone());
                if descending.is_some() {
                    add("DESC", descending.clone());
                }
            }
            None => add("ASC", None),
        }
    }
    if items.is_empty() {
        return Ok(None);
    }
    types.enums.insert(
        name.clone(),
        Enum::new(&name)
            .description(format!("How {} are ordered.", resource.plural))
            .items(items),
    );
    Ok(Some((name, orderings)))
}

/// What the plain list and the connection share: the List call with its arguments.
#[derive(Clone)]
struct Lister {
    upstream: Arc<Upstream>,
    method: MethodDescriptor,
    orderings: Orderings,
    /// The response's repeated field of records, by JSON name (`products`).
    items: String,
    /// For a reverse relation (`category.products`): the request's reference field (JSON name,
    /// `categoryId`) and the parent's key field whose value it takes (`id`).
    parent_filter: Option<(String, String)>,
    /// Where the resource has BatchGet: `where`'s filter by ids (`id_in`), read with it.
    by_ids: Option<ByIds>,
}

/// `where: { id_in: [...] }`, answered by one BatchGet rather than the List.
#[derive(Clone)]
struct ByIds {
    /// The filter's name in `where` (`id_in`).
    filter: String,
    batch_get: BatchGet,
}

impl Lister {
    /// One page: its records' values, the next page's token, and the total when counted.
    async fn page(&self, ctx: &ResolverContext<'_>) -> async_graphql::Result<Value> {
        for refused in ["skip", "before", "last"] {
            if argument(ctx, refused).is_some() {
                return Err(errors::bad_input(
                    refused,
                    format!(
                        "{} pages forward only: page with `first` and `after`",
                        self.method.name()
                    ),
                ));
            }
        }
        let mut request = object_argument(ctx, "where");
        if let Some(by_ids) = &self.by_ids {
            match request.remove(&by_ids.filter) {
                None | Some(serde_json::Value::Null) => {}
                Some(ids) => return self.page_by_ids(ctx, by_ids, ids, &request).await,
            }
        }
        if let Some((filter, key)) = &self.parent_filter {
            let id = match ctx.parent_value.as_value() {
                Some(Value::Object(parent)) => parent.get(key.as_str()).cloned(),
                _ => None,
            };
            request.insert(filter.clone(), values::to_json(id.unwrap_or(Value::Null)));
        }
        if let Some(first) = argument(ctx, "first") {
            let first = first.i64()?;
            if first < 0 {
                return Err(errors::bad_input("first", "must not be negative"));
            }
            request.insert(json_name(&self.method.input(), PAGE_SIZE), first.into());
        }
        if let Some(after) = argument(ctx, "after") {
            request.insert(
                json_name(&self.method.input(), PAGE_TOKEN),
                after.string()?.into(),
            );
        }
        if let Some(order) = argument(ctx, "orderBy") {
            let order = order.enum_name()?;
            let (value, direction) = self
                .orderings
                .by_value
                .get(order)
                .ok_or_else(|| errors::bad_input("orderBy", "not an ordering of this list"))?;
            request.insert(
                json_name(&self.method.input(), ORDER_BY),
                value.clone().into(),
            );
            if let Some(direction) = direction {
                request.insert(
                    json_name(&self.method.input(), DIRECTION),
                    direction.clone().into(),
                );
            }
        }
        let page = call(
            &self.upstream,
            &self.method,
            request,
            token_of(ctx),
            "where",
        )
        .await?;
        Ok(values::to_graphql(&page))
    }

    /// The records `ids` names, in one BatchGet, as a page of its own: no next page, and as
    /// many in all as it found. The List's filters, orderings and cursor do not apply to it.
    async fn page_by_ids(
        &self,
        ctx: &ResolverContext<'_>,
        by_ids: &ByIds,
        ids: serde_json::Value,
        other_filters: &serde_json::Map<String, serde_json::Value>,
    ) -> async_graphql::Result<Value> {
        let filter = format!("where.{}", by_ids.filter);
        let combined = other_filters
            .iter()
            .find(|(_, value)| !value.is_null())
            .map(|(name, _)| format!("where.{name}"))
            .or_else(|| {
                ["orderBy", "after"]
                    .into_iter()
                    .find(|name| argument(ctx, name).is_some())
                    .map(str::to_owned)
            });
        if let Some(combined) = combined {
            return Err(errors::bad_input(
                &filter,
                format!("reads records by id in one batch, so not with `{combined}`"),
            ));
        }
        if self.parent_filter.is_some() {
            return Err(errors::bad_input(
                &filter,
                "reads records by id in one batch: ask for them at the root",
            ));
        }
        let n_ids = ids.as_array().map_or(0, Vec::len);
        if let Some(first) = argument(ctx, "first")
            && first.i64()? < i64::try_from(n_ids).unwrap_or(i64::MAX)
        {
            return Err(errors::bad_input(
                "first",
                format!("is fewer than the {n_ids} ids of `{filter}`"),
            ));
        }
        let records = by_ids
            .batch_get
            .records(&self.upstream, ids, token_of(ctx), &filter)
            .await?;
        let n_records = records.len();
        Ok(object([
            (self.items.as_str(), Value::List(records)),
            ("totalSize", Value::from(n_records.to_string())),
        ]))
    }

    fn records(&self, page: &Value) -> Vec<Value> {
        match page {
            Value::Object(fields) => match fields.get(self.items.as_str()) {
                Some(Value::List(items)) => items.clone(),
                _ => Vec::new(),
            },
            _ => Vec::new(),
        }
    }
}

fn json_name(message: &MessageDescriptor, field: &str) -> String {
    message
        .get_field_by_name(field)
        .map_or_else(|| field.to_owned(), |field| field.json_name().to_owned())
}

fn list_fields(
    resource: &Resource,
    list: &MethodDescriptor,
    object: &str,
    batch_gets: &HashMap<String, BatchGet>,
    types: &mut Types,
    upstream: &Arc<Upstream>,
) -> anyhow::Result<(Field, Field)> {
    let batch_get = batch_gets.get(&resource.type_name);
    let (lister, where_input, order_name) =
        list_parts(resource, list, None, batch_get, types, upstream)?;
    let arguments =
        |field: Field| list_arguments(field, where_input.as_deref(), order_name.as_deref());

    let plain_lister = lister.clone();
    let plain = Field::new(
        &resource.plural,
        TypeRef::named_nn_list_nn(object),
        move |ctx| {
            let lister = plain_lister.clone();
            FieldFuture::new(async move {
                let page = lister
                    .page(&ctx)
                    .await
                    .map_err(|error| errors::at_root_field(&ctx, error))?;
                Ok(Some(FieldValue::list(
                    lister.records(&page).into_iter().map(FieldValue::value),
                )))
            })
        },
    );

    let connection_type = connection_types(types, resource, object)?;
    let connection = Field::new(
        names::connection_field(&resource.plural),
        TypeRef::named_nn(&connection_type),
        move |ctx| {
            let lister = lister.clone();
            FieldFuture::new(async move {
                let page = lister
                    .page(&ctx)
                    .await
                    .map_err(|error| errors::at_root_field(&ctx, error))?;
                Ok(Some(FieldValue::value(connection_value(&lister, &page))))
            })
        },
    );
    Ok((
        described(arguments(plain), list),
        described(arguments(connection), list),
    ))
}

/// The List call of `resource` and the names of its `where` input and `orderBy` enum, made on
/// first use.
fn list_parts(
    resource: &Resource,
    list: &MethodDescriptor,
    parent_filter: Option<(String, String)>,
    batch_get: Option<&BatchGet>,
    types: &mut Types,
    upstream: &Arc<Upstream>,
) -> anyhow::Result<(Lister, Option<String>, Option<String>)> {
    let request = list.input();
    let items = resource
        .list_field(&list.output())
        .with_context(|| format!("{} holds no list of records", list.output().full_name()))?;
    let where_name = format!("{}WhereInput", resource.message.name());
    let mut where_input = types.input_object(
        &request,
        &where_name,
        &[PAGE_SIZE, PAGE_TOKEN, ORDER_BY, DIRECTION],
    )?;
    let by_ids = match batch_get {
        Some(batch_get) => {
            let filter = format!("{}_in", batch_get.key_field);
            if request.fields().all(|field| field.json_name() != filter) {
                where_input = Some(types.ids_filter(&where_name, resource, &request, &filter)?);
                Some(ByIds {
                    filter,
                    batch_get: batch_get.clone(),
                })
            } else {
                None
            }
        }
        None => None,
    };
    let order = orderings(resource, &request, types)?;
    let lister = Lister {
        upstream: Arc::clone(upstream),
        method: list.clone(),
        orderings: order.as_ref().map(|(_, o)| o.clone()).unwrap_or_default(),
        items: items.json_name().to_owned(),
        parent_filter,
        by_ids,
    };
    Ok((lister, where_input, order.map(|(name, _)| name)))
}

/// A List's arguments: its filters, its orderings, and OpenCRUD's paging (of which the
/// services do `first` and `after`).
fn list_arguments(mut field: Field, where_input: Option<&str>, order: Option<&str>) -> Field {
    if let Some(where_input) = where_input {
        field = field.argument(InputValue::new("where", TypeRef::named(where_input)));
    }
    if let Some(order) = order {
        field = field.argument(InputValue::new("orderBy", TypeRef::named(order)));
    }
    field
        .argument(InputValue::new("skip", TypeRef::named(TypeRef::INT)))
        .argument(InputValue::new("after", TypeRef::named(TypeRef::STRING)))
        .argument(InputValue::new("before", TypeRef::named(TypeRef::STRING)))
        .argument(InputValue::new("first", TypeRef::named(TypeRef::INT)))
        .argument(InputValue::new("last", TypeRef::named(TypeRef::INT)))
}

/// Reverse relations: where `resource`'s List can filter by a reference to another resource
/// (`ListProducts.category_id`), that resource's type gets the list (`category.products`), one
/// List call per parent record. Null with its error at its path when the call fails.
fn reverse_fields(
    resource: &Resource,
    list: &MethodDescriptor,
    referable: &HashMap<String, MessageDescriptor>,
    batch_gets: &HashMap<String, BatchGet>,
    types: &mut Types,
    upstream: &Arc<Upstream>,
) -> anyhow::Result<()> {
    let request = list.input();
    let type_name = resource.message.name();
    for filter in request.fields() {
        let Some(parent_type) = resources::resource_reference(&filter) else {
            continue;
        };
        let Some(parent) = referable.get(&parent_type) else {
            continue;
        };
        if filter.is_list() || parent_type == resource.type_name {
            continue;
        }
        // The parent's own fields win over a relation of the same name.
        if parent
            .fields()
            .any(|field| field.json_name() == resource.plural)
        {
            continue;
        }
        let Some(parent_key) = batch_gets
            .get(&parent_type)
            .map(|batch_get| batch_get.key_field.clone())
        else {
            continue;
        };
        let parent_filter = (filter.json_name().to_owned(), parent_key);
        let (lister, where_input, order_name) = list_parts(
            resource,
            list,
            Some(parent_filter),
            batch_gets.get(&resource.type_name),
            types,
            upstream,
        )?;
        let field = Field::new(
            &resource.plural,
            TypeRef::named_nn_list(type_name),
            move |ctx| {
                let lister = lister.clone();
                FieldFuture::new(async move {
                    let outcome = lister.page(&ctx).await.map(|page| {
                        Some(FieldValue::list(
                            lister.records(&page).into_iter().map(FieldValue::value),
                        ))
                    });
                    null_on_error(&ctx, outcome)
                })
            },
        )
        .description(format!(
            "The {} whose `{}` is this record, a page at a time ({}).",
            resource.plural,
            filter.json_name(),
            list.name()
        ));
        let field = list_arguments(field, where_input.as_deref(), order_name.as_deref());
        types.add_field(parent.name(), field);
        types.calls(parent.name(), &resource.plural, list);
    }
    Ok(())
}

/// `<Type>Connection { edges { node cursor } pageInfo aggregate { count } }` and its parts.
fn connection_types(
    types: &mut Types,
    resource: &Resource,
    object: &str,
) -> anyhow::Result<String> {
    let name = format!("{object}Connection");
    let edge = format!("{object}Edge");
    for claimed in [&name, &edge] {
        types.claim(
            claimed,
            &format!("{} (connection)", resource.message.full_name()),
        )?;
    }
    types.objects.insert(
        edge.clone(),
        Some(
            Object::new(&edge)
                .field(value_field(
                    "node",
                    TypeRef::named_nn(object),
                    Shape::Object,
                ))
                .field(
                    value_field("cursor", TypeRef::named(TypeRef::STRING), Shape::Scalar)
                        .description(
                            "The cursor after this record: set on the page's last edge only \
                             (the services hand out one token per page).",
                        ),
                ),
        ),
    );
    if !types.objects.contains_key("PageInfo") {
        types.claim("PageInfo", "(connections)")?;
        types.claim("Aggregate", "(connections)")?;
        types.objects.insert(
            "PageInfo".to_owned(),
            Some(
                Object::new("PageInfo")
                    .field(value_field(
                        "hasNextPage",
                        TypeRef::named_nn(TypeRef::BOOLEAN),
                        Shape::Scalar,
                    ))
                    .field(value_field(
                        "endCursor",
                        TypeRef::named(TypeRef::STRING),
                        Shape::Scalar,
                    )),
            ),
        );
        types.objects.insert(
            "Aggregate".to_owned(),
            Some(Object::new("Aggregate").field(
                value_field("count", TypeRef::named_nn(INT64), Shape::Scalar).description(
                    "Records matching the filter across every page, as counted when the first \
                     page was read.",
                ),
            )),
        );
    }
    types.objects.insert(
        name.clone(),
        Some(
            Object::new(&name)
                .field(value_field(
                    "edges",
                    TypeRef::named_nn_list_nn(&edge),
                    Shape::List(Box::new(Shape::Object)),
                ))
                .field(value_field(
                    "pageInfo",
                    TypeRef::named_nn("PageInfo"),
                    Shape::Object,
                ))
                .field(value_field(
                    "aggregate",
                    TypeRef::named_nn("Aggregate"),
                    Shape::Object,
                )),
        ),
    );
    Ok(name)
}

/// A connection's value from one List page.
fn connection_value(lister: &Lister, page: &Value) -> Value {
    let field = |name: &str| match page {
        Value::Object(fields) => fields.get(name).cloned().unwrap_or(Value::Null),
        _ => Value::Null,
    };
    let next = match field("nextPageToken") {
        Value::String(token) if !token.is_empty() => Some(token),
        _ => None,
    };
    let records = lister.records(page);
    let n_records = records.len();
    let edges = records
        .into_iter()
        .enumerate()
        .map(|(index, node)| {
            let cursor = match &next {
                Some(token) if index + 1 == n_records => Value::from(token.as_str()),
                _ => Value::Null,
            };
            object([("node", node), ("cursor", cursor)])
        })
        .collect();
    object([
        ("edges", Value::List(edges)),
        (
            "pageInfo",
            object([
                ("hasNextPage", Value::from(next.is_some())),
                ("endCursor", next.map_or(Value::Null, Value::from)),
            ]),
        ),
        ("aggregate", object([("count", field("totalSize"))])),
    ])
}

fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    Value::Object(
        fields
            .into_iter()
            .map(|(name, value)| (Name::new(name), value))
            .collect(),
    )
}

/// A mutation calling `method` with `data` (and `where`'s key), answering with its output.
fn mutation_field(
    name: String,
    method: &MethodDescriptor,
    arguments: Vec<InputValue>,
    key: Option<String>,
    types: &mut Types,
    upstream: &Arc<Upstream>,
) -> anyhow::Result<Field> {
    let output = method.output();
    let (type_ref, answers_key) = if output.fields().len() == 0 {
        (TypeRef::named_nn(TypeRef::ID), true)
    } else {
        (TypeRef::named_nn(types.output_object(&output)?), false)
    };
    let upstream = Arc::clone(upstream);
    let described_by = method.clone();
    let method = method.clone();
    let mut field = Field::new(name, type_ref, move |ctx| {
        let upstream = Arc::clone(&upstream);
        let method = method.clone();
        let key = key.clone();
        FieldFuture::new(async move {
            let mut request = object_argument(&ctx, "data");
            request.extend(object_argument(&ctx, "input"));
            let mut unique = serde_json::Value::Null;
            if let Some(key) = &key {
                unique = object_argument(&ctx, "where")
                    .remove(key)
                    .unwrap_or(serde_json::Value::Null);
                request.insert(key.clone(), unique.clone());
            }
            let answer = call(&upstream, &method, request, token_of(&ctx), "data")
                .await
                .map_err(|error| errors::at_root_field(&ctx, error))?;
            if answers_key {
                let id = unique.as_str().unwrap_or_default().to_owned();
                return Ok(Some(FieldValue::value(Value::from(id))));
            }
            Ok(Some(FieldValue::value(values::to_graphql(&answer))))
        })
    });
    for argument in arguments {
        field = field.argument(argument);
    }
    Ok(described(field, &described_by))
}

fn create_field(
    resource: &Resource,
    create: &MethodDescriptor,
    types: &mut Types,
    upstream: &Arc<Upstream>,
) -> anyhow::Result<Field> {
    let type_name = resource.message.name();
    let data = types
        .input_object(&create.input(), &format!("{type_name}CreateInput"), &[])?
        .into_iter()
        .map(|input| InputValue::new("data", TypeRef::named_nn(input)))
        .collect();
    mutation_field(
        names::create_field(type_name),
        create,
        data,
        None,
        types,
        upstream,
    )
}

fn update_field(
    resource: &Resource,
    update: &MethodDescriptor,
    types: &mut Types,
    upstream: &Arc<Upstream>,
) -> anyhow::Result<Field> {
    keyed_mutation(
        resource,
        update,
        "Update",
        names::update_field,
        true,
        types,
        upstream,
    )
}

fn delete_field(
    resource: &Resource,
    delete: &MethodDescriptor,
    types: &mut Types,
    upstream: &Arc<Upstream>,
) -> anyhow::Result<Field> {
    keyed_mutation(
        resource,
        delete,
        "Delete",
        names::delete_field,
        false,
        types,
        upstream,
    )
}

/// `update<Type>` / `delete<Type>`: `where` names the record, `data` holds the rest of the
/// request (required for an update).
fn keyed_mutation(
    resource: &Resource,
    method: &MethodDescriptor,
    verb: &str,
    field_name: fn(&str) -> String,
    data_required: bool,
    types: &mut Types,
    upstream: &Arc<Upstream>,
) -> anyhow::Result<Field> {
    let type_name = resource.message.name();
    let (where_input, key) = where_unique(resource, method, types)?;
    let mut arguments = vec![InputValue::new("where", TypeRef::named_nn(where_input))];
    if let Some(data) = types.input_object(
        &method.input(),
        &format!("{type_name}{verb}Input"),
        &[key.name()],
    )? {
        let type_ref = if data_required {
            TypeRef::named_nn(data)
        } else {
            TypeRef::named(data)
        };
        arguments.push(InputValue::new("data", type_ref));
    }
    mutation_field(
        field_name(type_name),
        method,
        arguments,
        Some(key.json_name().to_owned()),
        types,
        upstream,
    )
}

/// Another RPC of a resource, as the mutation `<methodName>(input:)`.
fn custom_field(
    method: &MethodDescriptor,
    types: &mut Types,
    upstream: &Arc<Upstream>,
) -> anyhow::Result<Field> {
    let input = types
        .input_object(
            &method.input(),
            &format!("{}Input", method.input().name()),
            &[],
        )?
        .into_iter()
        .map(|input| InputValue::new("input", TypeRef::named_nn(input)))
        .collect();
    mutation_field(
        names::lower_camel(method.name()),
        method,
        input,
        None,
        types,
        upstream,
    )
}

fn described(field: Field, method: &MethodDescriptor) -> Field {
    match resources::method_comment(method) {
        Some(comment) => field.description(comment),
        None => field,
    }
}
