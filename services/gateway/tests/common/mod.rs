//! The harness the gateway's tests share: the real catalog on port 0 (a throwaway database and
//! bus namespace) with the gateway built from the compiled-in contract in front of it.

#![allow(dead_code)] // Each test binary uses part of it.

use catalog::CatalogParts;
use chassis::auth::roles;
use serde_json::Value;
use test_support::{Backend, TestApp, spawn_service};

pub(crate) struct Gateway {
    pub(crate) app: TestApp<CatalogParts>,
    gateway: gateway::Gateway,
}

impl Gateway {
    pub(crate) async fn spawn(backend: Backend) -> Gateway {
        let app = spawn_service::<CatalogParts>(backend, ())
            .with_caller("catalog-manager-1", &[roles::CATALOG_MANAGER])
            .await;
        let pool = contract::decode_pool(emporium_proto::FILE_DESCRIPTOR_SET)
            .expect("the contract decodes");
        let upstream = gateway::Upstream::new().with_every_service(&pool, &app.channel());
        let changes = gateway::ChangeSource {
            bus: app.bus.clone(),
            namespace: app.test_bus.namespace.clone(),
            verifier: app.issuer.verifier(),
        };
        let gateway = gateway::build(&pool, upstream, Some(changes), &Default::default())
            .expect("the schema builds");
        Gateway { app, gateway }
    }

    pub(crate) fn live_subscriptions(&self) -> usize {
        self.gateway.live_subscriptions()
    }

    /// Starts the subscription `query` sent with `token`, and returns once the gateway serves
    /// it (or refused it: then its one answer is the refusal).
    pub(crate) async fn subscribe(&self, query: &str, token: Option<&str>) -> Subscription {
        let before = self.gateway.live_subscriptions();
        let mut answers = Box::pin(
            self.gateway
                .execute_stream(async_graphql::Request::new(query), token.map(str::to_owned)),
        );
        // The subscription starts when its stream is first polled: poll until it is served or
        // has answered.
        let first = test_support::eventually(
            std::time::Duration::from_secs(20),
            "the subscription to start",
            || {
                let started = self.gateway.live_subscriptions() > before;
                let polled =
                    futures::FutureExt::now_or_never(futures::StreamExt::next(&mut answers));
                async move {
                    match polled {
                        Some(answer) => Some(Some(answer)),
                        None if started => Some(None),
                        None => None,
                    }
                }
            },
        )
        .await;
        Subscription { answers, first }
    }

    /// Runs `query` as the catalog manager: its data, or the errors' codes as a panic.
    pub(crate) async fn run(&self, query: &str) -> Value {
        let answer = self.run_with(query, Some(&self.app.token)).await;
        assert!(
            answer["errors"].is_null(),
            "{query} failed: {:#}",
            answer["errors"]
        );
        answer["data"].clone()
    }

    /// The whole answer to `request`, sent as the catalog manager.
    pub(crate) async fn execute(&self, request: async_graphql::Request) -> Value {
        let answer = self
            .gateway
            .execute(request, Some(self.app.token.clone()))
            .await;
        serde_json::to_value(&answer).expect("the answer is JSON")
    }

    /// The whole answer (`data` and `errors`) to `query` sent with `token`.
    pub(crate) async fn run_with(&self, query: &str, token: Option<&str>) -> Value {
        let answer = self
            .gateway
            .execute(async_graphql::Request::new(query), token.map(str::to_owned))
            .await;
        serde_json::to_value(&answer).expect("the answer is JSON")
    }

    pub(crate) async fn create_category(&self, name: &str) -> String {
        let data = self
            .run(&format!(
                r#"mutation {{ createCategory(data: {{ name: "{name}", description: "All about {name}" }}) {{ id }} }}"#
            ))
            .await;
        data["createCategory"]["id"].as_str().unwrap().to_owned()
    }

    pub(crate) async fn create_product(&self, category_id: &str, sku: &str, name: &str) -> Value {
        let data = self
            .run(&format!(
                r#"mutation {{ createProduct(data: {{ sku: "{sku}", name: "{name}", categoryId: "{category_id}", price: {{ amountMinor: 1299, currency: "EUR" }}, stockOnHand: 10 }}) {{ id sku name version price {{ amountMinor currency }} createTime }} }}"#
            ))
            .await;
        data["createProduct"].clone()
    }

    /// The id of a new product, `TEA-1` "Sencha" at version 1, in a new category.
    pub(crate) async fn sencha(&self) -> String {
        let category_id = self.create_category("Tea").await;
        let created = self.create_product(&category_id, "TEA-1", "Sencha").await;
        created["id"].as_str().unwrap().to_owned()
    }

    pub(crate) async fn product_count(&self) -> Value {
        let data = self
            .run("{ productsConnection(first: 1) { aggregate { count } } }")
            .await;
        data["productsConnection"]["aggregate"]["count"].clone()
    }
}

/// A subscription's answers, as JSON.
pub(crate) struct Subscription {
    answers: std::pin::Pin<Box<dyn futures::Stream<Item = async_graphql::Response> + Send>>,
    first: Option<Option<async_graphql::Response>>,
}

impl Subscription {
    /// The next answer (data and errors); fails the test after 20 s without one, or when the
    /// subscription has ended.
    pub(crate) async fn next(&mut self) -> Value {
        let answer = match self.first.take() {
            Some(answer) => answer,
            None => tokio::time::timeout(
                std::time::Duration::from_secs(20),
                futures::StreamExt::next(&mut self.answers),
            )
            .await
            .expect("an answer within 20 s"),
        };
        let answer = answer.expect("the subscription goes on");
        serde_json::to_value(&answer).expect("the answer is JSON")
    }

    /// Whether the subscription has ended (after its last answer was read).
    pub(crate) async fn has_ended(&mut self) -> bool {
        self.first.is_none()
            && tokio::time::timeout(
                std::time::Duration::from_secs(20),
                futures::StreamExt::next(&mut self.answers),
            )
            .await
            .expect("the end within 20 s")
            .is_none()
    }
}
