//! A minimal browser for the provider's pages: keeps cookies, never follows redirects (tests read
//! `Location` themselves), submits forms. Also plain form POSTs for the token endpoints.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub(crate) struct Browser {
    client: Client<HttpConnector, Full<Bytes>>,
    cookies: Mutex<HashMap<String, String>>,
    /// Sent as `X-Forwarded-For` on every request, as a proxy in front of the provider would.
    forwarded_for: Mutex<Option<String>>,
}

/// A response, body read as text.
#[derive(Debug)]
pub(crate) struct Page {
    pub(crate) status: u16,
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: String,
}

impl Page {
    pub(crate) fn location(&self) -> String {
        self.headers
            .get(http::header::LOCATION)
            .expect("a redirect")
            .to_str()
            .unwrap()
            .to_owned()
    }

    /// A query parameter of the redirect's `Location`.
    pub(crate) fn location_param(&self, name: &str) -> Option<String> {
        let location = self.location();
        let query = location.split_once('?')?.1;
        form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }

    /// The body parsed as JSON.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("JSON, got {}", self.body))
    }

    /// The hidden inputs of the page's form.
    pub(crate) fn hidden_fields(&self) -> Vec<(String, String)> {
        let mut fields = Vec::new();
        for input in self.body.split("<input type=\"hidden\" ").skip(1) {
            let attribute = |name: &str| -> String {
                let start =
                    input.find(&format!("{name}=\"")).expect("the attribute") + name.len() + 2;
                let end = start + input[start..].find('"').expect("a closing quote");
                unescape(&input[start..end])
            };
            fields.push((attribute("name"), attribute("value")));
        }
        fields
    }
}

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

impl Browser {
    pub(crate) fn new() -> Browser {
        Browser {
            client: Client::builder(TokioExecutor::new()).build_http(),
            cookies: Mutex::new(HashMap::new()),
            forwarded_for: Mutex::new(None),
        }
    }

    pub(crate) fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.lock().unwrap().get(name).cloned()
    }

    /// Sends `X-Forwarded-For: <forwarded_for>` from now on (`None`: no such header).
    pub(crate) fn forward_for(&self, forwarded_for: Option<&str>) {
        *self.forwarded_for.lock().unwrap() = forwarded_for.map(str::to_owned);
    }

    pub(crate) fn forget_cookies(&self) {
        self.cookies.lock().unwrap().clear();
    }

    /// Opens `authorize_url`, expects the sign-in page, and submits it with `email` and
    /// `password`: the provider's answer (a redirect when the sign-in worked).
    pub(crate) async fn sign_in(&self, authorize_url: &str, email: &str, password: &str) -> Page {
        let page = self.get(authorize_url).await;
        assert_eq!(page.status, 200, "the sign-in page: {}", page.body);
        let fields = page.hidden_fields();
        let mut form: Vec<(&str, &str)> = fields
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        form.push(("email", email));
        form.push(("password", password));
        let action = authorize_url.split('?').next().unwrap_or(authorize_url);
        self.post_form(action, &form).await
    }

    pub(crate) async fn get(&self, url: &str) -> Page {
        self.send(http::Method::GET, url, None, Vec::new()).await
    }

    /// Posts `fields` as a form, with the browser's cookies.
    pub(crate) async fn post_form(&self, url: &str, fields: &[(&str, &str)]) -> Page {
        self.send(http::Method::POST, url, None, encode(fields))
            .await
    }

    /// Posts `fields` as a form with HTTP Basic client authentication.
    pub(crate) async fn post_form_basic(
        &self,
        url: &str,
        (client_id, secret): (&str, &str),
        fields: &[(&str, &str)],
    ) -> Page {
        let credentials = base64::engine::general_purpose::STANDARD.format_basic(client_id, secret);
        self.send(http::Method::POST, url, Some(credentials), encode(fields))
            .await
    }

    async fn send(
        &self,
        method: http::Method,
        url: &str,
        authorization: Option<String>,
        body: Vec<u8>,
    ) -> Page {
        let mut request = http::Request::builder().method(method.clone()).uri(url);
        let cookie_header = {
            let cookies = self.cookies.lock().unwrap();
            cookies
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        if !cookie_header.is_empty() {
            request = request.header(http::header::COOKIE, cookie_header);
        }
        if let Some(forwarded_for) = self.forwarded_for.lock().unwrap().clone() {
            request = request.header("x-forwarded-for", forwarded_for);
        }
        if let Some(authorization) = authorization {
            request = request.header(http::header::AUTHORIZATION, authorization);
        }
        if method == http::Method::POST {
            request = request.header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            );
        }
        let response = self
            .client
            .request(request.body(Full::new(Bytes::from(body))).unwrap())
            .await
            .expect("the provider answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        for set_cookie in headers.get_all(http::header::SET_COOKIE) {
            let set_cookie = set_cookie.to_str().unwrap();
            let (pair, attributes) = set_cookie.split_once(';').unwrap_or((set_cookie, ""));
            let (name, value) = pair.split_once('=').unwrap();
            let mut cookies = self.cookies.lock().unwrap();
            if attributes.contains("Max-Age=0") || value.is_empty() {
                cookies.remove(name);
            } else {
                cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Page {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }
}

trait FormatBasic {
    fn format_basic(&self, client_id: &str, secret: &str) -> String;
}

impl FormatBasic for base64::engine::GeneralPurpose {
    fn format_basic(&self, client_id: &str, secret: &str) -> String {
        let encode =
            |text: &str| form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
        format!(
            "Basic {}",
            self.encode(format!("{}:{}", encode(client_id), encode(secret)))
        )
    }
}

fn encode(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (name, value) in fields {
        serializer.append_pair(name, value);
    }
    serializer.finish().into_bytes()
}
