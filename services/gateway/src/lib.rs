//! Emporium's GraphQL gateway: one API over every service, in OpenCRUD's naming, built at run
//! time from the contracts' descriptors (docs/adr/0005). Nothing here names a resource:
//! [`schema::build`] reads the resource model of [`contract::resources`] and makes, for each
//! resource, its object type, `product(where:)` and `products(where:, orderBy:, first:, after:)`
//! queries and `createProduct` / `updateProduct` / `deleteProduct` mutations, every one resolved
//! by the same generic code through [`upstream::Upstream`], which calls the service's RPC with a
//! dynamic message and the caller's bearer token. [`values`] converts between GraphQL and
//! protobuf values through the proto3 JSON mapping; [`errors`] maps a gRPC status to a GraphQL
//! error with its `extensions.code`, once; [`http`] serves the schema at `POST /graphql`.
//!
//! The gateway holds no data and is not trusted: the services verify the forwarded token.

mod access_rules;
pub mod admin;
pub mod errors;
pub mod http;
mod limits;
mod loader;
mod names;
pub mod ops;
mod references;
pub mod schema;
pub mod sessions;
pub mod subscriptions;
pub mod upstream;
mod values;

pub use http::router;
pub use schema::{BearerToken, Gateway, build};
pub use sessions::{BrowserSessions, BrowserSignIn};
pub use subscriptions::ChangeSource;
pub use upstream::Upstream;

use tokio_util::sync::CancellationToken;

/// The gateway of a suite whose services all listen on `grpc_addr` (`emporium up`): the
/// compiled-in contract's schema, calling them there (connecting on first use), its
/// subscriptions fed by `changes`, browsers signed in by `sign_in`, GraphiQL for a browser
/// opening `/graphql`, and the admin console built into `admin_dir` at `/admin/`, as routes for
/// the suite's HTTP origin.
pub fn suite_router(
    grpc_addr: std::net::SocketAddr,
    changes: ChangeSource,
    sign_in: Option<BrowserSignIn>,
    limits: &chassis::settings::GraphqlSettings,
    admin_dir: Option<&std::path::Path>,
) -> anyhow::Result<axum::Router> {
    use anyhow::Context as _;
    let pool = contract::decode_pool(emporium_proto::FILE_DESCRIPTOR_SET)
        .context("The compiled-in contract does not decode")?;
    // A wildcard listening address is reached on loopback.
    let host = if grpc_addr.ip().is_unspecified() {
        std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), grpc_addr.port())
    } else {
        grpc_addr
    };
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{host}"))
        .context("The services' address is not a URI")?
        .tcp_nodelay(true)
        .connect_lazy();
    let upstream = Upstream::new().with_every_service(&pool, &channel);
    // The console's ops page reads the suite's own ops API, on the origin browsers sign in at.
    let sessions = sign_in.map(|sign_in| {
        let suite = ops::OpsOrigin {
            name: "suite".to_owned(),
            url: sign_in.public_origin.clone(),
        };
        BrowserSessions::new(sign_in).with_ops(vec![suite])
    });
    let routes = router(
        build(&pool, upstream, Some(changes), limits)?,
        limits,
        sessions,
        true,
    );
    with_admin(routes, admin_dir)
}

/// `routes` with the admin console built into `dir` at `/admin/`, when there is a `dir`.
fn with_admin(routes: axum::Router, dir: Option<&std::path::Path>) -> anyhow::Result<axum::Router> {
    Ok(match dir {
        Some(dir) => routes.merge(admin::routes(dir)?),
        None => routes,
    })
}

/// The gateway on its own (`emporium serve gateway`): each service of the compiled-in contract
/// reached at `EMPORIUM_<SERVICE>_URL` (`EMPORIUM_CATALOG_URL=http://catalog:50051`; the
/// service is the package's second part), its routes with `/healthz`, `/readyz` (503 once
/// `shutdown` is cancelled) and `/metrics` beside them. A service without a URL is named in a
/// warning, and its fields answer UNAVAILABLE.
/// Subscriptions follow the services' streams on `EMPORIUM_BUS_URL` (in `EMPORIUM_NAMESPACE`),
/// and their subscribers' tokens are verified as the services verify them (`EMPORIUM_AUTH_*`).
/// Browser sessions are on when `EMPORIUM_GATEWAY_CLIENT_SECRET` is set: the gateway signs
/// browsers in at `EMPORIUM_AUTH_ISSUER` as the confidential client
/// `EMPORIUM_GATEWAY_CLIENT_ID` (default `emporium-gateway`), reached by them at
/// `EMPORIUM_PUBLIC_URL`; their sessions may use the ops API of the processes
/// `EMPORIUM_OPS_ORIGINS` names (the console's ops page). The admin console is served at
/// `/admin/` from `EMPORIUM_ADMIN_DIR`.
pub async fn standalone_router(
    settings: &chassis::settings::Settings,
    shutdown: &CancellationToken,
) -> anyhow::Result<axum::Router> {
    use anyhow::Context as _;
    let pool = contract::decode_pool(emporium_proto::FILE_DESCRIPTOR_SET)
        .context("The compiled-in contract does not decode")?;
    let mut upstream = Upstream::new();
    for service in pool.services() {
        let Some(name) = service.package_name().split('.').nth(1) else {
            continue;
        };
        let variable = format!("EMPORIUM_{}_URL", name.to_uppercase());
        let Some(url) = settings.value(&variable) else {
            tracing::warn!(
                service = service.full_name(),
                variable = variable.as_str(),
                "No address for a service: its fields will answer UNAVAILABLE"
            );
            continue;
        };
        let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
            .with_context(|| format!("{variable} is not a URL: {url}"))?
            .tcp_nodelay(true)
            .connect_lazy();
        upstream = upstream.with_service(service.full_name(), channel);
    }
    let bus = chassis::bus::Bus::connect(&settings.bus)
        .await
        .context("Failed to connect to the bus (EMPORIUM_BUS_URL)")?;
    let changes = ChangeSource {
        bus,
        namespace: settings.namespace.clone(),
        verifier: settings.auth.verifier(),
    };
    let gateway = build(&pool, upstream, Some(changes), &settings.graphql)?;
    let streams = gateway.streams();
    let draining = shutdown.clone();
    let probes = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "live" }))
        .route(
            "/readyz",
            axum::routing::get(move || async move { readiness(&draining, &streams()) }),
        )
        .route(
            "/metrics",
            axum::routing::get(|| async { chassis::metrics::render() }),
        );
    let routes = router(
        gateway,
        &settings.graphql,
        browser_sign_in(settings)?,
        false,
    )
    .merge(probes);
    with_admin(routes, settings.admin_dir.as_deref())
}

/// `/readyz` of a gateway on its own: 200 `SERVING` until `draining` is cancelled (the stop
/// signal: a load balancer takes it out of rotation during the shutdown delay), then 503
/// `NOT_SERVING`. Each stream it follows is listed, `FOLLOWING` or `NOT_FOLLOWING`, without
/// deciding readiness: queries and mutations are served either way, and only new
/// subscriptions to a stream not followed are refused (UNAVAILABLE).
fn readiness(
    draining: &CancellationToken,
    streams: &std::collections::BTreeMap<String, bool>,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let (status, served) = if draining.is_cancelled() {
        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "NOT_SERVING")
    } else {
        (axum::http::StatusCode::OK, "SERVING")
    };
    let streams: serde_json::Map<String, serde_json::Value> = streams
        .iter()
        .map(|(stream, following)| {
            let state = if *following {
                "FOLLOWING"
            } else {
                "NOT_FOLLOWING"
            };
            (stream.clone(), state.into())
        })
        .collect();
    (
        status,
        axum::Json(serde_json::json!({ "status": served, "streams": streams })),
    )
        .into_response()
}

/// The browser sessions' settings of a gateway on its own, when it has a client secret.
fn browser_sign_in(
    settings: &chassis::settings::Settings,
) -> anyhow::Result<Option<BrowserSessions>> {
    use anyhow::Context as _;
    let Some(client_secret) = settings.secret("EMPORIUM_GATEWAY_CLIENT_SECRET") else {
        tracing::info!(
            "No EMPORIUM_GATEWAY_CLIENT_SECRET: browsers cannot sign in here (API clients send \
             bearer tokens)"
        );
        return Ok(None);
    };
    let public_origin = settings
        .value("EMPORIUM_PUBLIC_URL")
        .context("EMPORIUM_PUBLIC_URL is needed with EMPORIUM_GATEWAY_CLIENT_SECRET: where browsers reach the gateway, e.g. https://shop.example.com")?
        .trim_end_matches('/')
        .to_owned();
    anyhow::ensure!(
        public_origin.starts_with("https://") || public_origin.starts_with("http://"),
        "EMPORIUM_PUBLIC_URL must be an http(s) origin, not {public_origin}"
    );
    let ops = match settings.value("EMPORIUM_OPS_ORIGINS") {
        Some(text) => ops::OpsOrigin::parse_list(text)
            .map_err(|reason| anyhow::anyhow!("EMPORIUM_OPS_ORIGINS: {reason}"))?,
        None => Vec::new(),
    };
    Ok(Some(
        BrowserSessions::new(BrowserSignIn {
            issuer: settings.auth.issuer.clone(),
            client_id: settings
                .value("EMPORIUM_GATEWAY_CLIENT_ID")
                .unwrap_or("emporium-gateway")
                .to_owned(),
            client_secret,
            public_origin,
            http: chassis::http_client::HttpClient::new(&settings.auth.jwks_trusted_certificates)?,
        })
        .with_ops(ops),
    ))
}
