//! The gateway's HTTP surface: a query also by GET, a mutation only by POST; and what a request
//! may ask, from the settings: too deep, too complex or too aliased a query is refused before
//! any call, too large a body gets 413, and a request the services do not answer in time gets
//! 504.

use std::time::Duration;

use axum::body::Body;
use chassis::settings::GraphqlSettings;
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

const LIMITS: GraphqlSettings = GraphqlSettings {
    max_depth: 3,
    max_complexity: 10,
    max_aliases: 12,
    max_body_bytes: 512,
    timeout: Duration::from_secs(1),
};

fn router(upstream: gateway::Upstream) -> axum::Router {
    router_with_graphiql(upstream, false)
}

fn router_with_graphiql(upstream: gateway::Upstream, graphiql: bool) -> axum::Router {
    let pool =
        contract::decode_pool(emporium_proto::FILE_DESCRIPTOR_SET).expect("the contract decodes");
    let gateway = gateway::build(&pool, upstream, None, &LIMITS).expect("the schema builds");
    gateway::router(gateway, &LIMITS, None, graphiql)
}

/// POSTs `body` to `/graphql`: the status and the JSON answer (null when not JSON).
async fn post(router: axum::Router, body: String) -> (u16, serde_json::Value) {
    let request = http::Request::post("/graphql")
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    send(router, request).await
}

/// GETs `/graphql` with `query` in the query string.
async fn get(router: axum::Router, query: &str) -> (u16, serde_json::Value) {
    let query_string: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("query", query)
        .finish();
    let request = http::Request::get(format!("/graphql?{query_string}"))
        .body(Body::empty())
        .unwrap();
    send(router, request).await
}

async fn send(router: axum::Router, request: http::Request<Body>) -> (u16, serde_json::Value) {
    let response = router.oneshot(request).await.expect("the router answers");
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

fn query(text: &str) -> String {
    serde_json::json!({ "query": text }).to_string()
}

#[tokio::test]
async fn a_query_nested_too_deep_is_refused_before_any_call() {
    let (status, answer) = post(
        router(gateway::Upstream::new()),
        query("{ products(first: 1) { category { events { type } } } }"),
    )
    .await;

    assert_eq!(status, 200);
    let message = answer["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("nested too deep"), "{answer}");
    assert!(answer["data"].is_null(), "{answer}");
}

#[tokio::test]
async fn a_query_selecting_too_many_fields_is_refused_before_any_call() {
    let aliases: String = (0..11)
        .map(|index| format!(r#"p{index}: product(where: {{ id: "x" }}) {{ id }} "#))
        .collect();

    let (status, answer) = post(
        router(gateway::Upstream::new()),
        query(&format!("{{ {aliases} }}")),
    )
    .await;

    assert_eq!(status, 200);
    let message = answer["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("too complex"), "{answer}");
}

#[tokio::test]
async fn a_request_with_too_many_aliases_is_refused_before_any_call() {
    // Cheap fields, named over and over: the alias limit stops them, not the complexity.
    let aliases: String = (0..13)
        .map(|index| format!("t{index}: __typename "))
        .collect();

    let (status, answer) = post(
        router(gateway::Upstream::new()),
        query(&format!("{{ {aliases} }}")),
    )
    .await;

    assert_eq!(status, 200);
    assert_eq!(
        answer["errors"][0]["message"], "the request has 13 aliased fields; at most 12 are allowed",
        "{answer}"
    );
    assert_eq!(answer["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    assert!(answer["data"].is_null(), "{answer}");
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413() {
    let padding = " ".repeat(600);

    let (status, _) = post(
        router(gateway::Upstream::new()),
        query(&format!(
            "{{ product(where: {{ id: \"x\" }}) {{ id }} }}{padding}"
        )),
    )
    .await;

    assert_eq!(status, 413);
}

#[tokio::test]
async fn a_request_the_services_do_not_answer_in_time_gets_504() {
    // A "service" that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let _held = tokio::spawn(async move {
        let mut connections = Vec::new();
        while let Ok((connection, _)) = silent.accept().await {
            connections.push(connection);
        }
    });
    let pool = contract::decode_pool(emporium_proto::FILE_DESCRIPTOR_SET).unwrap();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    let upstream = gateway::Upstream::new().with_every_service(&pool, &channel);

    let (status, answer) = post(
        router(upstream),
        query(r#"{ product(where: { id: "x" }) { id } }"#),
    )
    .await;

    assert_eq!(status, 504, "{answer}");
    assert_eq!(answer["errors"][0]["extensions"]["code"], "TIMEOUT");
}

#[tokio::test]
async fn a_query_is_answered_by_get_and_a_mutation_is_not() {
    let (status, answer) = get(router(gateway::Upstream::new()), "{ __typename }").await;
    assert_eq!(
        (status, answer),
        (
            200,
            serde_json::json!({ "data": { "__typename": "Query" } })
        )
    );

    let (status, answer) = get(
        router(gateway::Upstream::new()),
        r#"mutation { createCategory(data: { name: "Tea" }) { id } }"#,
    )
    .await;
    assert_eq!(status, 405, "{answer}");
    assert_eq!(answer["errors"][0]["message"], "a mutation needs POST");
}

#[tokio::test]
async fn a_browser_opening_graphql_gets_graphiql_in_the_embedded_mode_only() {
    let page = |graphiql: bool, path: &'static str| async move {
        let request = http::Request::get(path)
            .header("accept", "text/html,application/xhtml+xml")
            .body(Body::empty())
            .unwrap();
        let response = router_with_graphiql(gateway::Upstream::new(), graphiql)
            .oneshot(request)
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    };

    let (status, body) = page(true, "/graphql").await;
    let (_, alone) = page(false, "/graphql").await;
    let (query_status, answer) = page(true, "/graphql?query=%7B__typename%7D").await;

    assert_eq!(status, 200);
    assert!(body.contains("GraphiQL.createFetcher"), "{body}");
    assert!(
        body.contains("integrity=\"sha384-"),
        "pinned and checked assets"
    );
    assert!(!alone.contains("GraphiQL"), "no page on its own: {alone}");
    assert_eq!(query_status, 200);
    assert!(
        answer.contains("\"__typename\":\"Query\""),
        "a query is still a query: {answer}"
    );
}

/// GETs `path` from the admin console's routes over `dir`: status, headers and body.
async fn admin_get(dir: &std::path::Path, path: &str) -> (u16, http::HeaderMap, String) {
    let routes = gateway::admin::routes(dir).expect("the console's routes");
    let request = http::Request::get(path).body(Body::empty()).unwrap();
    let response = routes.oneshot(request).await.expect("the router answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

#[tokio::test]
async fn the_admin_console_is_served_from_its_directory_with_its_routes_and_policy() {
    let dir = std::env::temp_dir().join(format!("emporium-admin-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("assets")).unwrap();
    std::fs::write(
        dir.join("index.html"),
        "<!doctype html><title>console</title>",
    )
    .unwrap();
    std::fs::write(dir.join("assets/index-abc123.js"), "console.log(1)").unwrap();

    // The page, at /admin/ and at any of the console's own routes, revalidated on each load.
    for path in ["/admin/", "/admin/Product/7/show"] {
        let (status, headers, body) = admin_get(&dir, path).await;
        assert_eq!(status, 200, "{path}");
        assert!(body.contains("<title>console</title>"), "{path}: {body}");
        assert_eq!(headers["cache-control"], "no-cache", "{path}");
        assert!(
            headers["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("script-src 'self'"),
            "{path}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
    }
    // A hashed bundle is cached for good; one that is not there is a 404, never the page.
    let (status, headers, body) = admin_get(&dir, "/admin/assets/index-abc123.js").await;
    assert_eq!((status, body.as_str()), (200, "console.log(1)"));
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
    assert!(
        headers["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    let (status, headers, _) = admin_get(&dir, "/admin/assets/index-gone.js").await;
    assert_eq!(status, 404);
    assert_eq!(headers["cache-control"], "no-cache");
    // Nothing outside the directory.
    let (status, _, body) = admin_get(&dir, "/admin/assets/../../../etc/passwd").await;
    assert!(status == 404 || !body.contains("root:"), "{status}: {body}");
    // /admin goes to /admin/.
    let (status, headers, _) = admin_get(&dir, "/admin").await;
    assert_eq!(
        (status, &headers["location"]),
        (308, &"/admin/".parse::<http::HeaderValue>().unwrap())
    );

    // A directory with no console in it fails the start, naming it.
    let empty = dir.join("assets");
    let error = gateway::admin::routes(&empty).expect_err("no index.html");
    assert!(error.to_string().contains("not built"), "{error}");
    let _ = std::fs::remove_dir_all(&dir);
}
