//! A resource the suite does not have appears in the admin console, with no code for it: the
//! fixture contract `tests/fixtures/emporium/suppliers/v1/suppliers.proto` (a service with one
//! resource, `Supplier`), its standard methods answered from memory by a generic gRPC server
//! below, behind the real gateway built from that contract, which serves the built console.
//! `tests/browser/admin_fixture.mjs` finds Suppliers in the menu and lists, creates, shows and
//! edits one through the console's screens. The fixture server checks no token (signing in is
//! `admin.rs`'s subject), so the script answers `/auth/session` as an admin's session. The same
//! console's ops page reads a real ops API (`ops.rs`'s projection, whose consumer dead-lettered
//! an event), the script adding the admin's bearer token the gateway adds for a session (the
//! gateway's forwarding is `services/gateway/tests/sessions.rs`'s), and re-drives the event,
//! which the consumer then applies.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use futures::future::BoxFuture;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};
use serde_json::{Value, json};
use test_support::Backend;
use tonic::Status;

const SERVICE: &str = "emporium.suppliers.v1.SupplierService";

/// The fixture compiled as `crates/proto` compiles the real contracts.
fn fixture_pool() -> DescriptorPool {
    let manifest_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    contract::fixtures::compile(
        &manifest_dir.join("tests/fixtures"),
        &manifest_dir.join("../proto"),
        "emporium/suppliers/v1/suppliers.proto",
    )
    .expect("the fixture compiles")
}

/// The fixture's suppliers, in memory, in proto3 JSON.
#[derive(Clone, Default)]
struct Suppliers {
    records: Arc<Mutex<Vec<Value>>>,
}

impl Suppliers {
    /// The answer of `method` to `request`, as the fixture contract documents it.
    fn answer(&self, method: &str, request: Value) -> Result<Value, Status> {
        let mut records = self.records.lock().expect("the store's lock");
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .expect("a time formats");
        let position = |records: &[Value], id: &Value| {
            records
                .iter()
                .position(|record| &record["id"] == id)
                .ok_or_else(|| Status::not_found(format!("supplier {id} not found")))
        };
        let version = |value: &Value| {
            value
                .as_str()
                .and_then(|text| text.parse::<i64>().ok())
                .unwrap_or(0)
        };
        match method {
            "CreateSupplier" => {
                let mut record = request;
                record["id"] = json!(uuid::Uuid::now_v7().to_string());
                record["version"] = json!("1");
                record["createTime"] = json!(now);
                record["updateTime"] = json!(now);
                records.push(record.clone());
                Ok(record)
            }
            "GetSupplier" => Ok(records[position(&records, &request["id"])?].clone()),
            "BatchGetSuppliers" => {
                let ids = request["ids"].as_array().cloned().unwrap_or_default();
                let (found, missing): (Vec<_>, Vec<_>) = ids
                    .into_iter()
                    .partition(|id| records.iter().any(|record| &record["id"] == id));
                let found: Vec<Value> = found
                    .iter()
                    .filter_map(|id| records.iter().find(|record| &record["id"] == id))
                    .cloned()
                    .collect();
                Ok(json!({ "suppliers": found, "missingIds": missing }))
            }
            "ListSuppliers" => {
                let query = request["query"].as_str().unwrap_or_default().to_lowercase();
                let matched: Vec<Value> = records
                    .iter()
                    .filter(|record| {
                        let name = record["name"].as_str().unwrap_or_default();
                        name.to_lowercase().contains(&query)
                    })
                    .cloned()
                    .collect();
                let total = matched.len().to_string();
                Ok(json!({ "suppliers": matched, "totalSize": total }))
            }
            "UpdateSupplier" => {
                let index = position(&records, &request["id"])?;
                let record = &mut records[index];
                let current = version(&record["version"]);
                if version(&request["expectedVersion"]) != current {
                    return Err(Status::aborted(format!(
                        "supplier is at version {current}: it changed since you read it"
                    )));
                }
                if let Value::Object(changes) = request {
                    for (field, value) in changes {
                        if field != "id" && field != "expectedVersion" {
                            record[field.as_str()] = value;
                        }
                    }
                }
                record["version"] = json!((current + 1).to_string());
                record["updateTime"] = json!(now);
                Ok(record.clone())
            }
            "DeleteSupplier" => {
                let index = position(&records, &request["id"])?;
                records.remove(index);
                Ok(json!({}))
            }
            other => Err(Status::unimplemented(format!(
                "{other} is not in the fixture"
            ))),
        }
    }
}

/// One call of the fixture's service: the request as proto3 JSON in, the answer out.
struct Call {
    suppliers: Suppliers,
    method: String,
    output: MessageDescriptor,
}

impl tonic::server::UnaryService<DynamicMessage> for Call {
    type Response = DynamicMessage;
    type Future = BoxFuture<'static, Result<tonic::Response<DynamicMessage>, Status>>;

    fn call(&mut self, request: tonic::Request<DynamicMessage>) -> Self::Future {
        let (suppliers, method, output) = (
            self.suppliers.clone(),
            self.method.clone(),
            self.output.clone(),
        );
        Box::pin(async move {
            let request = serde_json::to_value(request.into_inner())
                .map_err(|error| Status::internal(error.to_string()))?;
            let answer = suppliers.answer(&method, request)?;
            DynamicMessage::deserialize(output, answer)
                .map(tonic::Response::new)
                .map_err(|error| Status::internal(error.to_string()))
        })
    }
}

/// The fixture's SupplierService on a free port (HTTP/2, as gRPC clients speak it).
async fn serve_suppliers(pool: &DescriptorPool) -> std::net::SocketAddr {
    let service = pool
        .get_service_by_name(SERVICE)
        .expect("the fixture's service");
    let suppliers = Suppliers::default();
    let grpc = tower::service_fn(move |request: http::Request<Body>| {
        let name = request.uri().path().rsplit('/').next().unwrap_or_default();
        let method = service.methods().find(|method| method.name() == name);
        let suppliers = suppliers.clone();
        async move {
            let Some(method) = method else {
                return Ok::<_, std::convert::Infallible>(
                    Status::unimplemented("no such method").into_http(),
                );
            };
            let mut server =
                tonic::server::Grpc::new(contract::grpc::DynamicCodec::new(method.input()));
            let call = Call {
                suppliers,
                method: method.name().to_owned(),
                output: method.output(),
            };
            Ok(server.unary(call, request).await.map(Body::new))
        }
    });
    let router = axum::Router::new().route_service(&format!("/{SERVICE}/{{method}}"), grpc);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_added_to_a_contract_appears_in_the_admin_console_with_no_code_for_it() {
    let (console, screenshots) = crate::admin::built_console();

    let pool = fixture_pool();
    let suppliers = serve_suppliers(&pool).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{suppliers}"))
        .unwrap()
        .connect_lazy();
    let limits = chassis::settings::GraphqlSettings::default();
    let upstream = gateway::Upstream::new().with_every_service(&pool, &channel);
    let built = gateway::build(&pool, upstream, None, &limits).expect("the fixture's schema");
    let routes = gateway::router(built, &limits, None, false)
        .merge(gateway::admin::routes(&console).expect("the console's routes"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, routes).await });

    // A process's ops API with a consumer and a dead letter in it, for the ops page: the
    // consumer refuses the event once (it gives up at once), then would take it.
    let ops = crate::ops::Suite::start(Backend::SqliteEmbedded).await;
    let poison = crate::product_created(uuid::Uuid::new_v4());
    ops.gate.refuse(&poison.id);
    ops.publish(poison.clone()).await;
    ops.until("the event to be dead-lettered", |consumer| {
        consumer["dead_letters"] == 1
    })
    .await;
    ops.gate.accept_all();
    let admin = ops.issuer.token("admin-1", &[chassis::auth::roles::ADMIN]);

    crate::assert_node_check_passes(
        "browser",
        "admin_fixture.mjs",
        vec![
            ("EMPORIUM_ORIGIN", origin),
            ("EMPORIUM_SCREENSHOTS", screenshots.display().to_string()),
            ("EMPORIUM_OPS_ORIGIN", format!("http://{}", ops.http_addr)),
            ("EMPORIUM_OPS_TOKEN", admin),
            ("EMPORIUM_DEAD_EVENT_ID", poison.id.clone()),
        ],
    )
    .await;

    // The re-drive from the page reached the consumer, which applied the event.
    ops.until("the re-driven event to be applied", |consumer| {
        consumer["dead_letters"] == 0 && consumer["deliveries"]["applied"] == 1
    })
    .await;
    ops.stop().await;
}
