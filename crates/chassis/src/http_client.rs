//! The suite's own outgoing HTTP calls (the JWKS fetch, the gateway's OAuth requests): http or
//! https (rustls on the ring provider, trusting the public web's roots, Mozilla's list built in,
//! plus any given), each in a client span of its own (named after the method, with the HTTP
//! semantic conventions' attributes) whose context goes along in `traceparent`, and bounded in
//! time.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::pki_types::CertificateDer;

/// How long a request may take to be answered, and its answer to be read.
const TIMEOUT: Duration = Duration::from_secs(5);

/// A client for http and https URLs. Cheap to clone (one connection pool).
#[derive(Clone, Debug)]
pub struct HttpClient {
    client: hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// Whether each request has a client span (and sends its `traceparent`).
    traced: bool,
}

/// An answer: its status and its whole body.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: http::StatusCode,
    pub body: Bytes,
}

impl HttpClient {
    /// A client trusting the public web's roots and `extra_roots` (a private CA).
    pub fn new(extra_roots: &[CertificateDer<'static>]) -> anyhow::Result<HttpClient> {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(https_connector(extra_roots)?);
        Ok(HttpClient {
            client,
            traced: true,
        })
    }

    /// The same client, its requests without spans: for what is polled all day (the admin
    /// console's ops page), which would push the traces worth reading out of the ones kept.
    pub fn untraced(&self) -> HttpClient {
        HttpClient {
            client: self.client.clone(),
            traced: false,
        }
    }

    /// GETs `url`.
    pub async fn get(&self, url: &str) -> anyhow::Result<Answer> {
        self.send(http::Method::GET, url, None, None, Bytes::new())
            .await
    }

    /// GETs `url` with `authorization: Bearer <token>`.
    pub async fn get_with_bearer(&self, url: &str, token: &str) -> anyhow::Result<Answer> {
        let authorization = Some(format!("Bearer {token}"));
        self.send(http::Method::GET, url, authorization, None, Bytes::new())
            .await
    }

    /// POSTs the JSON `body` to `url` with `authorization: Bearer <token>`.
    pub async fn post_json_with_bearer(
        &self,
        url: &str,
        token: &str,
        body: Bytes,
    ) -> anyhow::Result<Answer> {
        let authorization = Some(format!("Bearer {token}"));
        let json = Some("application/json");
        self.send(http::Method::POST, url, authorization, json, body)
            .await
    }

    /// POSTs `form` (`application/x-www-form-urlencoded`) to `url`, authenticated with HTTP
    /// Basic `credentials` (user and password form-encoded first, as OAuth 2.0's
    /// `client_secret_basic` has it) when given.
    pub async fn post_form(
        &self,
        url: &str,
        credentials: Option<(&str, &str)>,
        form: &[(&str, &str)],
    ) -> anyhow::Result<Answer> {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let authorization = credentials.map(|(user, password)| {
            use base64::Engine as _;
            let encode =
                |text: &str| form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
            let pair = format!("{}:{}", encode(user), encode(password));
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        });
        let form = Some("application/x-www-form-urlencoded");
        self.send(
            http::Method::POST,
            url,
            authorization,
            form,
            Bytes::from(body),
        )
        .await
    }

    async fn send(
        &self,
        method: http::Method,
        url: &str,
        authorization: Option<String>,
        content_type: Option<&'static str>,
        body: Bytes,
    ) -> anyhow::Result<Answer> {
        let uri: http::Uri = url.parse().with_context(|| format!("Invalid URL {url}"))?;
        let default_port = if uri.scheme() == Some(&http::uri::Scheme::HTTPS) {
            443
        } else {
            80
        };
        if !self.traced {
            let untraced = tracing::Span::none();
            return self
                .exchange(method, uri, authorization, content_type, body, &untraced)
                .await
                .with_context(|| format!("Failed to call {url}"));
        }
        let span = tracing::info_span!(
            "http_client",
            otel.name = method.as_str(),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            http.request.method = method.as_str(),
            url.full = url,
            server.address = uri.host().unwrap_or_default(),
            server.port = i64::from(uri.port_u16().unwrap_or(default_port)),
            http.response.status_code = tracing::field::Empty,
        );
        let sent = tracing::Instrument::instrument(
            self.exchange(method, uri, authorization, content_type, body, &span),
            span.clone(),
        )
        .await;
        if sent.is_err() {
            span.record("otel.status_code", "error");
        }
        sent.with_context(|| format!("Failed to call {url}"))
    }

    async fn exchange(
        &self,
        method: http::Method,
        uri: http::Uri,
        authorization: Option<String>,
        content_type: Option<&'static str>,
        body: Bytes,
        span: &tracing::Span,
    ) -> anyhow::Result<Answer> {
        let mut request = http::Request::builder().method(method.clone()).uri(uri);
        if let Some(traceparent) = crate::telemetry::current_traceparent() {
            request = request.header("traceparent", traceparent);
        }
        if let Some(authorization) = authorization {
            request = request.header(http::header::AUTHORIZATION, authorization);
        }
        if let Some(content_type) = content_type {
            request = request.header(http::header::CONTENT_TYPE, content_type);
        }
        let request = request
            .body(Full::new(body))
            .context("Failed to make the request")?;
        let response = tokio::time::timeout(TIMEOUT, self.client.request(request))
            .await
            .context("Timed out waiting for the answer")??;
        let status = response.status();
        span.record("http.response.status_code", i64::from(status.as_u16()));
        if status.is_server_error() {
            span.record("otel.status_code", "error");
        }
        let body = tokio::time::timeout(TIMEOUT, response.into_body().collect())
            .await
            .context("Timed out reading the answer")?
            .context("Failed to read the answer")?
            .to_bytes();
        Ok(Answer { status, body })
    }
}

/// A connector for http and https URLs: rustls on the ring provider, trusting the public web's
/// roots plus `extra_roots`.
fn https_connector(
    extra_roots: &[CertificateDer<'static>],
) -> anyhow::Result<HttpsConnector<HttpConnector>> {
    let mut roots =
        rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for certificate in extra_roots {
        roots
            .add(certificate.clone())
            .context("A trusted CA certificate is not valid")?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("The TLS provider supports no protocol version")?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .build())
}
