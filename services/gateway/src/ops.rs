//! The ops API of the suite's processes (`/ops/v1/…`, `chassis::ops`, for admins' bearer
//! tokens) for a browser signed in through its session, which holds no token: the admin
//! console's ops page. `GET /admin/api/ops` names the processes and the roles their ops API
//! admits; `GET` and `POST
//! /admin/api/ops/<name>/v1/<path>` are forwarded to that process's ops API with the session's
//! access token, and its answer comes back as it is. The process decides who may see what: the
//! gateway only adds the token the browser cannot hold. A POST must come from this origin, as
//! every change signed in by the cookie must.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chassis::http_client::HttpClient;

use crate::sessions::{BrowserSessions, CrossSite};

/// A process whose ops API the console reads: its name and its HTTP origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpsOrigin {
    pub name: String,
    pub url: String,
}

impl OpsOrigin {
    /// `name=url` pairs separated by commas (`EMPORIUM_OPS_ORIGINS`):
    /// `identity=http://identity:8080, catalog=http://catalog:9464`.
    pub fn parse_list(text: &str) -> Result<Vec<OpsOrigin>, String> {
        text.split(',')
            .map(str::trim)
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (name, url) = pair
                    .split_once('=')
                    .ok_or_else(|| format!("`{pair}` is not name=url"))?;
                let (name, url) = (name.trim(), url.trim().trim_end_matches('/'));
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                    return Err(format!("`{name}` is not a name (letters, digits and -)"));
                }
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(format!("`{url}` is not an http(s) origin"));
                }
                Ok(OpsOrigin {
                    name: name.to_owned(),
                    url: url.to_owned(),
                })
            })
            .collect()
    }
}

struct Forwarding {
    sessions: Arc<BrowserSessions>,
    origins: Vec<OpsOrigin>,
    http: HttpClient,
}

/// The routes under `/admin/api/ops`.
pub fn routes(
    sessions: Arc<BrowserSessions>,
    origins: Vec<OpsOrigin>,
    http: HttpClient,
) -> axum::Router {
    let forwarding = Arc::new(Forwarding {
        sessions,
        origins,
        http,
    });
    axum::Router::new()
        .route("/admin/api/ops", get(names))
        .route(
            "/admin/api/ops/{name}/v1/{*path}",
            get(forward).post(forward),
        )
        .with_state(forwarding)
}

/// `{"processes": ["suite"], "roles": ["admin"]}`: the processes whose ops API the console may
/// read, and the roles their ops API admits.
async fn names(State(forwarding): State<Arc<Forwarding>>) -> Response {
    let names: Vec<&str> = forwarding
        .origins
        .iter()
        .map(|origin| origin.name.as_str())
        .collect();
    let roles = [chassis::ops::ROLE];
    no_store(Json(serde_json::json!({ "processes": names, "roles": roles })).into_response())
}

async fn forward(
    State(forwarding): State<Arc<Forwarding>>,
    Path((name, path)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(origin) = forwarding.origins.iter().find(|origin| origin.name == name) else {
        return refusal(StatusCode::NOT_FOUND, format!("no process is named {name}"));
    };
    let changes = method == Method::POST;
    let token = match forwarding.sessions.access_token(&headers, changes).await {
        Ok(Some(token)) => token,
        Ok(None) => return refusal(StatusCode::UNAUTHORIZED, "sign in first".to_owned()),
        Err(CrossSite) => {
            return refusal(
                StatusCode::FORBIDDEN,
                "a change signed in by the session cookie must come from this site".to_owned(),
            );
        }
    };
    let mut url = format!("{}/ops/v1/{path}", origin.url);
    if let Some(query) = query {
        url = format!("{url}?{query}");
    }
    let answer = if changes {
        forwarding
            .http
            .post_json_with_bearer(&url, &token, body)
            .await
    } else {
        forwarding.http.get_with_bearer(&url, &token).await
    };
    match answer {
        Ok(answer) => {
            let mut response = (answer.status, answer.body).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            no_store(response)
        }
        Err(error) => {
            tracing::warn!(process = %name, error = %format!("{error:#}"), "Could not reach a process's ops API");
            refusal(
                StatusCode::BAD_GATEWAY,
                format!("the ops API of {name} did not answer"),
            )
        }
    }
}

fn refusal(status: StatusCode, message: String) -> Response {
    no_store((status, Json(serde_json::json!({ "error": message }))).into_response())
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_name_url_pairs() {
        assert_eq!(
            OpsOrigin::parse_list(" identity=http://identity:8080/ , catalog=https://c:9464"),
            Ok(vec![
                OpsOrigin {
                    name: "identity".to_owned(),
                    url: "http://identity:8080".to_owned()
                },
                OpsOrigin {
                    name: "catalog".to_owned(),
                    url: "https://c:9464".to_owned()
                },
            ])
        );
        assert!(OpsOrigin::parse_list("catalog").is_err());
        assert!(OpsOrigin::parse_list("a b=http://x").is_err());
        assert!(OpsOrigin::parse_list("catalog=ftp://x").is_err());
    }
}
