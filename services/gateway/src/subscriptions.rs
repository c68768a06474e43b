//! `<resource>Changed(where:)` subscriptions, fed by the bus: for every resource whose contract
//! declares change events (`(emporium.api.v1.events)` on its message) and that has a Get RPC,
//! a subscription field answering, per change, `{ mutation node }` (the event's action,
//! `CREATED` / `UPDATED` / `DELETED`, and the record as the event carries it: its full state
//! after the change, or its last state when deleted).
//!
//! Each gateway replica follows every service stream once ([`Feeds`]: a [`Bus::tail`] per
//! stream, from the moment the gateway starts) and fans the events out to its own subscribers.
//! A live view, not a log: a subscriber sees the changes made while it is subscribed; one that
//! falls more than [`BACKLOG`] changes behind is told how many it missed (`MISSED_CHANGES`), and
//! what the bus publishes while the gateway is cut off from it is not replayed.
//!
//! Who receives what: the gateway delivers the data itself, so it checks, as the service would
//! for the resource's Get RPC, the rule the contract declares for it (`(emporium.api.v1.access)`),
//! against the subscriber's token verified here: when subscribing (refused with
//! `UNAUTHENTICATED` or `FORBIDDEN`) and again before every delivery (a token that expired ends
//! the subscription with `UNAUTHENTICATED`). Reads a service narrows further in its handler
//! (a customer's own records) are not in the contract: such a resource must declare that rule
//! before its changes can be offered here (docs/adr/0005).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_graphql::dynamic::{
    Enum, EnumItem, InputObject, InputValue, Object, SubscriptionField, SubscriptionFieldFuture,
    TypeRef,
};
use async_graphql::{Name, Value};
use chassis::auth::{Caller, TokenVerifier};
use chassis::bus::Bus;
use chassis::cloudevents::CloudEvent;
use contract::access::{Access, AccessProblem};
use contract::events::DeclaredEvent;
use contract::resources::Resource;
use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor};
use tokio::sync::{broadcast, watch};

use crate::errors;
use crate::schema::{BearerToken, Types};
use crate::values;

/// How many changes a subscriber may fall behind before it misses some.
pub const BACKLOG: usize = 1024;

/// The enum of a change's kind, from the actions the contract's events declare.
const MUTATION_TYPE: &str = "MutationType";

/// Where a gateway hears of changes: the bus its services publish on, their namespace (the
/// first token of their subjects, `emporium`), and the verifier of its subscribers' tokens
/// (the same issuer and audience as the services').
#[derive(Clone, Debug)]
pub struct ChangeSource {
    pub bus: Bus,
    pub namespace: String,
    pub verifier: Arc<TokenVerifier>,
}

/// The bus tails of one gateway, one per service stream, each fanning its events out to this
/// replica's subscribers. Dropping it stops them.
pub(crate) struct Feeds {
    verifier: Arc<TokenVerifier>,
    /// By event type (`emporium.catalog.product.updated`): the channel of its stream.
    channels: HashMap<String, Arc<Channel>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// One stream's events, as its tail hands them out.
struct Channel {
    stream: String,
    sender: broadcast::Sender<Arc<CloudEvent>>,
    /// Whether the tail is up: while it is not, changes reach no one.
    following: watch::Receiver<bool>,
}

/// How long a new subscription waits for its stream's tail to be up before it is refused.
const FOLLOW_WAIT: Duration = Duration::from_secs(5);

/// The change events of one resource, as the contract declares them.
pub(crate) struct ResourceEvents {
    /// Event type → the action it stands for (`CREATED`).
    actions: HashMap<String, String>,
}

impl Feeds {
    /// Starts following, on `source`'s bus, the stream of every service that declares change
    /// events in `pool`. Must run inside a Tokio runtime.
    pub(crate) fn start(source: ChangeSource, pool: &DescriptorPool) -> Feeds {
        let mut by_service: HashMap<String, Vec<String>> = HashMap::new();
        for event in change_events(pool) {
            if let Ok(parts) = contract::events::parse_event_type(&event.event_type) {
                by_service
                    .entry(parts.service.to_owned())
                    .or_default()
                    .push(event.event_type.clone());
            }
        }
        let mut channels = HashMap::new();
        let mut tasks = Vec::new();
        for (service, event_types) in by_service {
            let stream = chassis::outbox::stream_name(&source.namespace, &service);
            let (sender, _) = broadcast::channel(BACKLOG);
            let (is_following, following) = watch::channel(false);
            let channel = Arc::new(Channel {
                stream: stream.clone(),
                sender: sender.clone(),
                following,
            });
            for event_type in event_types {
                channels.insert(event_type, Arc::clone(&channel));
            }
            let filter = format!("{}.{service}.>", source.namespace);
            tasks.push(tokio::spawn(follow(
                source.bus.clone(),
                stream,
                filter,
                sender,
                is_following,
            )));
        }
        Feeds {
            verifier: source.verifier,
            channels,
            tasks,
        }
    }
}

impl Feeds {
    /// Each stream followed, and whether its tail is up now.
    pub(crate) fn streams(&self) -> std::collections::BTreeMap<String, bool> {
        self.channels
            .values()
            .map(|channel| (channel.stream.clone(), *channel.following.borrow()))
            .collect()
    }

    /// How many subscriptions this gateway is serving.
    pub(crate) fn n_live(&self) -> usize {
        let mut streams: Vec<&str> = Vec::new();
        let mut n_live = 0;
        for channel in self.channels.values() {
            if !streams.contains(&channel.stream.as_str()) {
                streams.push(&channel.stream);
                n_live += channel.sender.receiver_count();
            }
        }
        n_live
    }
}

impl Drop for Feeds {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Follows `stream` for as long as the gateway runs, handing each event to `sender`; a tail
/// that cannot start (the service has not created its stream yet) or breaks is started again
/// after a backoff, from then on.
async fn follow(
    bus: Bus,
    stream: String,
    filter: String,
    sender: broadcast::Sender<Arc<CloudEvent>>,
    is_following: watch::Sender<bool>,
) {
    const FIRST_RETRY: Duration = Duration::from_millis(250);
    const LAST_RETRY: Duration = Duration::from_secs(30);
    let mut retry = FIRST_RETRY;
    loop {
        match bus.tail(&stream, &filter).await {
            Ok(mut tail) => {
                tracing::debug!(stream, "Following a stream for subscriptions");
                is_following.send_replace(true);
                retry = FIRST_RETRY;
                loop {
                    match tail.next().await {
                        Ok(message) => match serde_json::from_slice::<CloudEvent>(&message.payload)
                        {
                            // No subscriber is no error.
                            Ok(event) => drop(sender.send(Arc::new(event))),
                            Err(error) => tracing::warn!(
                                stream,
                                sequence = message.sequence,
                                error = %error,
                                "A message on the bus is not a CloudEvent: no subscriber sees it"
                            ),
                        },
                        Err(error) => {
                            tracing::warn!(stream, error = %error, "Lost a stream's tail; following it again");
                            is_following.send_replace(false);
                            break;
                        }
                    }
                }
            }
            Err(error) => tracing::warn!(
                stream,
                error = %error,
                retry_in = ?retry,
                "Cannot follow a stream yet: its changes reach no subscriber"
            ),
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(LAST_RETRY);
    }
}

/// Every declared event that is a record's change (not an audit record).
fn change_events(pool: &DescriptorPool) -> impl Iterator<Item = DeclaredEvent> {
    contract::events::declared_events(pool)
        .into_iter()
        .filter(|event| {
            contract::events::parse_event_type(&event.event_type).is_ok_and(|parts| !parts.audit)
        })
}

/// The change events of each resource message (by full name).
pub(crate) fn resource_events(pool: &DescriptorPool) -> HashMap<String, ResourceEvents> {
    let mut by_message: HashMap<String, ResourceEvents> = HashMap::new();
    for event in change_events(pool) {
        let Ok(parts) = contract::events::parse_event_type(&event.event_type) else {
            continue;
        };
        by_message
            .entry(event.message.full_name().to_owned())
            .or_insert_with(|| ResourceEvents {
                actions: HashMap::new(),
            })
            .actions
            .insert(event.event_type.clone(), parts.action.to_uppercase());
    }
    by_message
}

/// `MutationType`: every action of the declared change events.
pub(crate) fn mutation_type(events: &HashMap<String, ResourceEvents>) -> Option<Enum> {
    let actions: BTreeSet<&str> = events
        .values()
        .flat_map(|events| events.actions.values().map(String::as_str))
        .collect();
    (!actions.is_empty()).then(|| {
        Enum::new(MUTATION_TYPE)
            .description("What happened to a record: the action of its change event.")
            .items(actions.into_iter().map(EnumItem::new))
    })
}

/// `productChanged(where:)` for `resource`, whose Get RPC is `get` and object type `object`;
/// `feeds` is the gateway's (none: it follows no bus, and every subscription is UNAVAILABLE).
pub(crate) fn changed_field(
    resource: &Resource,
    events: &ResourceEvents,
    get: &MethodDescriptor,
    where_unique: &str,
    object: &str,
    types: &mut Types,
    feeds: Option<Arc<Feeds>>,
) -> anyhow::Result<SubscriptionField> {
    let type_name = resource.message.name();
    let payload = format!("{type_name}SubscriptionPayload");
    types.claim(
        &payload,
        &format!("{} (change)", resource.message.full_name()),
    )?;
    types.add_object(
        Object::new(&payload)
            .description(format!("A change to one {}.", resource.singular))
            .field(crate::schema::value_field(
                "mutation",
                TypeRef::named_nn(MUTATION_TYPE),
                crate::schema::Shape::Enum,
            ))
            .field(
                crate::schema::value_field(
                    "node",
                    TypeRef::named_nn(object),
                    crate::schema::Shape::Object,
                )
                .description(format!(
                    "The {} after the change; for a deletion, as it last was.",
                    resource.singular
                )),
            ),
    );
    let where_input = format!("{type_name}SubscriptionWhereInput");
    types.claim(
        &where_input,
        &format!("{} (change filter)", resource.message.full_name()),
    )?;
    types.add_input(
        InputObject::new(&where_input)
            .description(format!("Which changes to {}.", resource.plural))
            .field(
                InputValue::new("mutation_in", TypeRef::named_nn_list(MUTATION_TYPE))
                    .description("Only these kinds of change (all when absent)."),
            )
            .field(
                InputValue::new("node", TypeRef::named(where_unique))
                    .description(format!("Only changes to this {}.", resource.singular)),
            ),
    );
    let subscription = Arc::new(Subscription {
        actions: events.actions.clone(),
        message: resource.message.clone(),
        key_field: resource
            .message
            .get_field_by_name(&resource.name_field)
            .map(|field| field.json_name().to_owned())
            .unwrap_or_default(),
        access: contract::access::access_of(get),
        feeds,
    });
    let name = crate::names::changed_field(&resource.singular);
    let field = SubscriptionField::new(name, TypeRef::named_nn(&payload), move |ctx| {
        let subscription = Arc::clone(&subscription);
        SubscriptionFieldFuture::new(async move {
            let token = ctx.data_opt::<BearerToken>().map(|token| token.0.clone());
            let filter = Filter::from_arguments(&ctx, &subscription.key_field)?;
            subscription.open(token, filter).await
        })
    })
    .argument(InputValue::new("where", TypeRef::named(&where_input)))
    .description(format!(
        "Each change to a {} from now on, for callers the contract lets read one.",
        resource.singular
    ));
    Ok(field)
}

/// What one resource's subscription field needs.
struct Subscription {
    /// Its event types and their actions.
    actions: HashMap<String, String>,
    message: prost_reflect::MessageDescriptor,
    /// The record's key, by JSON name (`id`).
    key_field: String,
    /// Who may read the resource (its Get RPC's rule).
    access: Result<Access, AccessProblem>,
    feeds: Option<Arc<Feeds>>,
}

/// Which changes a subscriber asked for.
#[derive(Debug, Default)]
struct Filter {
    actions: Option<Vec<String>>,
    id: Option<String>,
}

impl Filter {
    fn from_arguments(
        ctx: &async_graphql::dynamic::ResolverContext<'_>,
        key_field: &str,
    ) -> async_graphql::Result<Filter> {
        let mut filter = Filter::default();
        let Some(filters) = crate::schema::argument(ctx, "where") else {
            return Ok(filter);
        };
        let filters = filters.object()?;
        if let Some(actions) = filters.get("mutation_in").filter(|value| !value.is_null()) {
            let actions = actions.list()?;
            filter.actions = Some(
                actions
                    .iter()
                    .map(|action| action.enum_name().map(str::to_owned))
                    .collect::<async_graphql::Result<_>>()?,
            );
        }
        if let Some(node) = filters.get("node").filter(|value| !value.is_null())
            && let Some(id) = node
                .object()?
                .get(key_field)
                .filter(|value| !value.is_null())
        {
            filter.id = Some(id.string()?.to_owned());
        }
        Ok(filter)
    }
}

impl Subscription {
    /// The subscriber's stream of changes, once its token is found to let it read them.
    async fn open(
        self: Arc<Self>,
        token: Option<String>,
        filter: Filter,
    ) -> async_graphql::Result<impl futures::Stream<Item = async_graphql::Result<Value>> + use<>>
    {
        let Some(feeds) = self.feeds.clone() else {
            return Err(errors::coded(
                "UNAVAILABLE",
                "this gateway follows no bus, so it has no changes to offer",
            ));
        };
        let Some(token) = token else {
            return Err(errors::coded(
                "UNAUTHENTICATED",
                "this needs a bearer token (sign in first)",
            ));
        };
        self.admit(&feeds, &token).await?;
        let Some(channel) = self
            .actions
            .keys()
            .find_map(|event_type| feeds.channels.get(event_type))
        else {
            return Err(errors::coded(
                "UNAVAILABLE",
                "no stream carries these changes",
            ));
        };
        // Taken only once the stream is followed, so a subscription never misses changes
        // silently from its start.
        let mut following = channel.following.clone();
        if !matches!(
            tokio::time::timeout(FOLLOW_WAIT, following.wait_for(|up| *up)).await,
            Ok(Ok(_))
        ) {
            return Err(errors::coded(
                "UNAVAILABLE",
                format!(
                    "the gateway cannot follow {} on the bus right now; subscribe again later",
                    channel.stream
                ),
            ));
        }
        let live = Live {
            receiver: channel.sender.subscribe(),
            _counted: Counted::new(),
            subscription: self,
            feeds,
            token,
            filter,
        };
        Ok(futures::stream::unfold(Some(live), Live::next))
    }

    /// Whether the holder of `token` may read this resource.
    async fn admit(&self, feeds: &Feeds, token: &str) -> async_graphql::Result<Caller> {
        let caller = feeds
            .verifier
            .verify(token)
            .await
            .map_err(|error| errors::coded("UNAUTHENTICATED", error.reason()))?;
        match &self.access {
            Ok(access) if access.admits(&caller.roles) => Ok(caller),
            Ok(access) => Err(errors::coded("FORBIDDEN", access.refusal())),
            Err(_) => Err(errors::coded(
                "FORBIDDEN",
                "the contract declares no access for reading these records, so nobody may",
            )),
        }
    }

    /// The payload of `event` for a subscriber that asked for `filter`; none when the event is
    /// not one it wants.
    fn payload(&self, event: &CloudEvent, filter: &Filter) -> Option<Value> {
        let action = self.actions.get(&event.event_type)?;
        if filter
            .actions
            .as_ref()
            .is_some_and(|actions| !actions.contains(action))
            || filter.id.as_ref().is_some_and(|id| *id != event.subject)
        {
            return None;
        }
        let record = match DynamicMessage::deserialize(self.message.clone(), &event.data) {
            Ok(record) => record,
            Err(error) => {
                tracing::warn!(
                    event_id = event.id,
                    event_type = event.event_type,
                    error = %error,
                    "An event's data is not its declared message: no subscriber sees it"
                );
                return None;
            }
        };
        let mut payload = async_graphql::indexmap::IndexMap::new();
        payload.insert(
            Name::new("mutation"),
            Value::Enum(Name::new(action.as_str())),
        );
        payload.insert(Name::new("node"), values::to_graphql(&record));
        Some(Value::Object(payload))
    }
}

/// One subscriber's subscription while it lasts.
struct Live {
    receiver: broadcast::Receiver<Arc<CloudEvent>>,
    _counted: Counted,
    subscription: Arc<Subscription>,
    feeds: Arc<Feeds>,
    token: String,
    filter: Filter,
}

type Next = (async_graphql::Result<Value>, Option<Live>);

impl Live {
    /// The subscriber's next change; an error without a state after it ends the subscription.
    async fn next(state: Option<Live>) -> Option<Next> {
        let mut live = state?;
        loop {
            let event = match live.receiver.recv().await {
                Ok(event) => event,
                Err(broadcast::error::RecvError::Lagged(n_missed)) => {
                    let error = errors::coded(
                        "MISSED_CHANGES",
                        format!(
                            "this subscriber fell behind and missed {n_missed} changes; \
                             read the records again"
                        ),
                    );
                    return Some((Err(error), Some(live)));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            let Some(payload) = live.subscription.payload(&event, &live.filter) else {
                continue;
            };
            // Checked again for every delivery: the token may have expired since.
            if let Err(error) = live.subscription.admit(&live.feeds, &live.token).await {
                return Some((Err(error), None));
            }
            return Some((Ok(payload), Some(live)));
        }
    }
}

/// One subscription in `emporium_graphql_subscriptions`, for as long as it lives.
struct Counted;

impl Counted {
    fn new() -> Counted {
        ::metrics::gauge!("emporium_graphql_subscriptions").increment(1);
        Counted
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        ::metrics::gauge!("emporium_graphql_subscriptions").decrement(1);
    }
}
