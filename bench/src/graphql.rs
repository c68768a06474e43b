//! The gateway's part: GraphQL requests over HTTP/1.1 to the real gateway in front of the real
//! catalog, beside a bare axum handler answering a canned body on the same kind of server, in
//! one run: the gateway's own cost is the difference.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::load::Workload;

/// A canned answer the size of a single product's.
const CANNED: &str = r#"{"data":{"product":{"id":"0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","name":"Tea SENCHA","price":{"amountMinor":"1250","currency":"EUR"}}}}"#;

/// One HTTP/1.1 keep-alive connection to a `/graphql`, sending a bearer token.
pub(crate) struct Connection {
    send: SendRequest<Full<Bytes>>,
    authority: String,
    authorization: String,
}

/// A GraphQL request after another over one connection, cycling through `bodies` (each a
/// JSON request), each client starting at its own place.
pub(crate) struct Query {
    pub(crate) bodies: Arc<Vec<Bytes>>,
    pub(crate) next: usize,
}

/// A server answering `POST /graphql` with a canned body, on `runtime`, served as the gateway
/// is: the baseline.
pub(crate) async fn start_bare(runtime: &tokio::runtime::Handle) -> anyhow::Result<SocketAddr> {
    let router = axum::Router::new().route(
        "/graphql",
        axum::routing::post(|_body: Bytes| async {
            ([("content-type", "application/json")], CANNED)
        }),
    );
    serve(runtime, router).await
}

/// The gateway, built from the compiled-in contract, calling the catalog at `catalog`, served
/// on `runtime` with the default limits.
pub(crate) async fn start_gateway(
    runtime: &tokio::runtime::Handle,
    catalog: SocketAddr,
) -> anyhow::Result<SocketAddr> {
    let router = runtime
        .spawn(async move {
            let pool = contract::decode_pool(emporium_proto::FILE_DESCRIPTOR_SET)?;
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{catalog}"))?
                .tcp_nodelay(true)
                .connect_lazy();
            let upstream = gateway::Upstream::new().with_every_service(&pool, &channel);
            let limits = chassis::settings::GraphqlSettings::default();
            let gateway = gateway::build(&pool, upstream, None, &limits)?;
            anyhow::Ok(gateway::router(gateway, &limits, None, false))
        })
        .await
        .context("Building the gateway panicked")??;
    serve(runtime, router).await
}

async fn serve(
    runtime: &tokio::runtime::Handle,
    router: axum::Router,
) -> anyhow::Result<SocketAddr> {
    let listener = runtime
        .spawn(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .await
        .context("Binding panicked")?
        .context("Failed to bind a local port")?;
    let addr = listener.local_addr()?;
    // As the suite serves HTTP (TCP_NODELAY on every accepted socket); runs until the
    // runtime stops.
    runtime.spawn(chassis::runtime::serve_http(
        listener,
        router,
        tokio_util::sync::CancellationToken::new(),
        std::time::Duration::ZERO,
        std::time::Duration::ZERO,
    ));
    Ok(addr)
}

/// `n` connections to `addr`'s `/graphql`, each sending `token`.
pub(crate) async fn connect(
    addr: SocketAddr,
    token: &str,
    n: usize,
) -> anyhow::Result<Vec<Connection>> {
    let mut connections = Vec::with_capacity(n);
    for _ in 0..n {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("Failed to connect to {addr}"))?;
        tcp.set_nodelay(true)?;
        let (send, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .context("The HTTP handshake failed")?;
        tokio::spawn(connection);
        connections.push(Connection {
            send,
            authority: addr.to_string(),
            authorization: format!("Bearer {token}"),
        });
    }
    Ok(connections)
}

/// A GraphQL request's JSON body.
pub(crate) fn body(query: &str) -> Bytes {
    Bytes::from(serde_json::json!({ "query": query }).to_string())
}

// === impl Query ===

impl Workload for Query {
    type Client = Connection;

    async fn call(&mut self, connection: &mut Connection) -> Result<(), String> {
        let body = self.bodies[self.next % self.bodies.len()].clone();
        self.next = self.next.wrapping_add(1);
        let request = http::Request::post("/graphql")
            .header(http::header::HOST, &connection.authority)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::AUTHORIZATION, &connection.authorization)
            .body(Full::new(body))
            .map_err(|error| error.to_string())?;
        connection
            .send
            .ready()
            .await
            .map_err(|error| format!("the connection closed: {error}"))?;
        let response = connection
            .send
            .send_request(request)
            .await
            .map_err(|error| format!("the request failed: {error}"))?;
        let status = response.status();
        let answer = response
            .into_body()
            .collect()
            .await
            .map_err(|error| format!("the answer broke off: {error}"))?
            .to_bytes();
        // Every answer is read whole; one that carries errors is an error.
        if status != http::StatusCode::OK || contains(&answer, b"\"errors\"") {
            return Err(format!("{status}: {}", String::from_utf8_lossy(&answer)));
        }
        Ok(())
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}
