//! Typed settings, parsed once from environment variables (12-factor) over defaults that run the
//! embedded mode. Parsing takes a key–value map, so tests pass a map instead of mutating the
//! process environment. Every variable is listed in README.md.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

use crate::auth::{CertificateDer, KeySource, TokenVerifier};
use crate::bus::{BusSettings, NatsStreamSettings, NatsStreamStorage};
use crate::proxies::TrustedProxies;

/// The port of [`Settings::grpc_addr`]: no service's own default, so `emporium up` and a service
/// served alone on its default port can run side by side.
pub const DEFAULT_GRPC_PORT: u16 = 50050;

/// Settings shared by every service in a process. Its Debug output leaves out the raw variables,
/// which may hold secrets.
#[derive(Clone)]
pub struct Settings {
    /// `EMPORIUM_DATA_DIR`: where embedded-mode files live (default `./data`).
    pub data_dir: PathBuf,
    /// `EMPORIUM_BUS_URL`: `embedded` (default) or `nats://host:4222`.
    pub bus: BusSettings,
    /// `EMPORIUM_NAMESPACE`: first token of bus subjects and prefix of stream names (default
    /// `emporium`). Lets several installations share one NATS server.
    pub namespace: String,
    pub telemetry: TelemetrySettings,
    /// `EMPORIUM_SHUTDOWN_GRACE_SECONDS`: how long in-flight calls and background work may take
    /// to finish after a stop signal (default 30).
    pub shutdown_grace: Duration,
    /// `EMPORIUM_SHUTDOWN_DELAY_SECONDS`: how long a stopping service keeps serving after it
    /// reports NOT_SERVING, before it stops accepting (default 0; behind a load balancer that
    /// polls health, e.g. Kubernetes, set it above the readiness probe's period).
    pub shutdown_delay: Duration,
    pub auth: AuthSettings,
    /// `EMPORIUM_GRPC_ADDR`: where a process running every service (`emporium up`) serves them
    /// all on one gRPC address (default `127.0.0.1:50050`). A process running one service
    /// (`emporium serve <service>`) listens on the service's own `EMPORIUM_<SERVICE>_GRPC_ADDR`.
    pub grpc_addr: SocketAddr,
    /// `EMPORIUM_HTTP_ADDR`: where the suite's HTTP origin listens (the identity provider's
    /// sign-in pages, token endpoint and JWKS; default `127.0.0.1:8080`).
    pub http_addr: SocketAddr,
    /// `EMPORIUM_METRICS_ADDR`: where the process also serves its operations endpoints on their
    /// own, `/metrics`, `/healthz` and `/readyz` (default none: they are served on the HTTP origin only, when
    /// the process has one). Set it for `emporium serve <service>` behind a load balancer or
    /// Kubernetes probes.
    pub metrics_addr: Option<SocketAddr>,
    /// `EMPORIUM_TRUSTED_PROXIES`: the reverse proxies (IP addresses, CIDR networks) whose
    /// `X-Forwarded-For` names the client (default none: the header is ignored).
    pub trusted_proxies: TrustedProxies,
    /// `EMPORIUM_DATABASE_MAX_CONNECTIONS`: the pool size of every service in the process
    /// (default per backend: 5 on PostgreSQL, 8 on SQLite).
    pub database_max_connections: Option<u32>,
    pub graphql: GraphqlSettings,
    /// `EMPORIUM_ADMIN_DIR`: the built admin console (`web/admin/dist`, made by
    /// `npm run build`), which the gateway serves at `/admin/` (default none: no console).
    pub admin_dir: Option<PathBuf>,
    variables: HashMap<String, String>,
}

/// What one GraphQL request may ask of the gateway; past a limit it is refused before any call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GraphqlSettings {
    /// `EMPORIUM_GRAPHQL_MAX_DEPTH`: how deep a query's selections may nest (default 10).
    pub max_depth: usize,
    /// `EMPORIUM_GRAPHQL_MAX_COMPLEXITY`: how many fields a query may select in all, aliases
    /// included (default 500).
    pub max_complexity: usize,
    /// `EMPORIUM_GRAPHQL_MAX_ALIASES`: how many aliased fields a request may have, counting a
    /// fragment at each spread (default 30).
    pub max_aliases: usize,
    /// `EMPORIUM_GRAPHQL_MAX_BODY_BYTES`: the largest request body (default 65536).
    pub max_body_bytes: usize,
    /// `EMPORIUM_GRAPHQL_TIMEOUT_SECONDS`: how long a request may take in all (default 30).
    pub timeout: Duration,
}

impl Default for GraphqlSettings {
    fn default() -> GraphqlSettings {
        GraphqlSettings {
            max_depth: 10,
            max_complexity: 500,
            max_aliases: 30,
            max_body_bytes: 64 * 1024,
            timeout: Duration::from_secs(30),
        }
    }
}

impl GraphqlSettings {
    fn from_variables(
        get: &impl Fn(&str) -> Option<String>,
    ) -> Result<GraphqlSettings, SettingsError> {
        let defaults = GraphqlSettings::default();
        let positive = |variable: &str, default: usize| -> Result<usize, SettingsError> {
            let Some(text) = get(variable) else {
                return Ok(default);
            };
            text.trim()
                .parse::<usize>()
                .ok()
                .filter(|value| *value > 0)
                .ok_or_else(|| SettingsError {
                    variable: variable.to_owned(),
                    value: text.clone(),
                    reason: "expected a whole number above 0".to_owned(),
                })
        };
        Ok(GraphqlSettings {
            max_depth: positive("EMPORIUM_GRAPHQL_MAX_DEPTH", defaults.max_depth)?,
            max_complexity: positive("EMPORIUM_GRAPHQL_MAX_COMPLEXITY", defaults.max_complexity)?,
            max_aliases: positive("EMPORIUM_GRAPHQL_MAX_ALIASES", defaults.max_aliases)?,
            max_body_bytes: positive("EMPORIUM_GRAPHQL_MAX_BODY_BYTES", defaults.max_body_bytes)?,
            timeout: Duration::from_secs(positive(
                "EMPORIUM_GRAPHQL_TIMEOUT_SECONDS",
                defaults.timeout.as_secs() as usize,
            )? as u64),
        })
    }
}

/// Whose access tokens the services accept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthSettings {
    /// `EMPORIUM_AUTH_ISSUER`: the identity provider's issuer URL, as tokens name it in `iss`
    /// (default `http://localhost:8080`; http(s), no trailing slash).
    pub issuer: String,
    /// `EMPORIUM_AUTH_AUDIENCE`: the `aud` every token must carry (default `emporium`).
    pub audience: String,
    /// `EMPORIUM_AUTH_JWKS_URL`: where the issuer's public keys are fetched (default
    /// `<issuer>/.well-known/jwks.json`).
    pub jwks_url: String,
    /// `EMPORIUM_AUTH_JWKS_CA_FILE`: a PEM file of CA certificates trusted for an https JWKS URL
    /// besides the public web's roots (a private deployment's own CA). Read once, at start.
    pub jwks_trusted_certificates: Vec<CertificateDer<'static>>,
}

/// Logs and traces. The `OTEL_*` variables are OpenTelemetry's standard ones, read here like
/// every other setting (the OpenTelemetry SDK is never left to read the environment itself).
#[derive(Clone, Debug, PartialEq)]
pub struct TelemetrySettings {
    /// `EMPORIUM_LOG` (or `RUST_LOG`): a tracing filter (default `info`).
    pub filter: String,
    /// `EMPORIUM_LOG_FORMAT`: `json` or `text`; unset, text when stderr is a terminal and JSON
    /// otherwise.
    pub format: LogFormat,
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, else `OTEL_EXPORTER_OTLP_ENDPOINT`: the OTLP/gRPC
    /// collector spans are exported to, e.g. `http://localhost:4317` (default none: nothing is
    /// exported, and the process keeps its recent traces in memory instead).
    pub otlp_endpoint: Option<String>,
    /// `OTEL_SERVICE_NAME`: the `service.name` of every span (default: the binary's own name
    /// for what it runs, e.g. `emporium` for `up`, `emporium-catalog` for `serve catalog`).
    pub service_name: Option<String>,
    /// `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` (default `parentbased_always_on`).
    pub sampler: TraceSampler,
    /// `OTEL_RESOURCE_ATTRIBUTES`: `key=value` pairs, comma-separated (values percent-decoded),
    /// added to every span's resource; `service.name` here is used when `OTEL_SERVICE_NAME` is
    /// unset.
    pub resource_attributes: Vec<(String, String)>,
    /// `OTEL_SDK_DISABLED=true`: make no OpenTelemetry spans at all (default false). Logs still
    /// carry each request's trace and span ids, and events their `traceparent`; nothing is
    /// exported or kept in memory.
    pub sdk_disabled: bool,
    /// `EMPORIUM_TRACES_KEPT`: how many recent traces the process keeps in memory when it exports
    /// none (default 100, at most 10000; 0 keeps none). Each keeps at most
    /// [`crate::telemetry::SPANS_KEPT_PER_TRACE`] spans.
    pub traces_kept: usize,
}

/// Which traces are recorded, as `OTEL_TRACES_SAMPLER` names them. A trace that is not sampled
/// still carries its ids (logs and events keep them), it is only not recorded.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TraceSampler {
    /// `always_on`
    AlwaysOn,
    /// `always_off`
    AlwaysOff,
    /// `traceidratio`: this fraction of traces, chosen by trace id.
    TraceIdRatio(f64),
    /// `parentbased_always_on` (the default): follow the caller's decision, record new traces.
    ParentBasedAlwaysOn,
    /// `parentbased_always_off`: follow the caller's decision, record no new trace.
    ParentBasedAlwaysOff,
    /// `parentbased_traceidratio`: follow the caller's decision, record this fraction of new
    /// traces.
    ParentBasedTraceIdRatio(f64),
}

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Text for a person at a terminal, JSON for everything else (containers, CI, files).
    Auto,
    /// One JSON object per line.
    Json,
    /// One readable line per event.
    Text,
}

/// Settings of one service.
#[derive(Clone, Debug)]
pub struct ServiceSettings {
    pub name: &'static str,
    /// `EMPORIUM_<SERVICE>_GRPC_ADDR` (default `127.0.0.1:<the service's port>`).
    pub grpc_addr: SocketAddr,
    /// `EMPORIUM_<SERVICE>_DATABASE_URL` (default `sqlite://<data_dir>/<service>.db`). May hold
    /// a password, hence secret.
    pub database_url: SecretString,
    /// The bus namespace (copied from [`Settings::namespace`]).
    pub namespace: String,
    /// `EMPORIUM_DATABASE_MAX_CONNECTIONS`: the most connections the service's pool opens
    /// (`None`: the backend's default, see [`crate::storage::default_max_connections`]).
    pub database_max_connections: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid {variable}={value:?}: {reason}")]
pub struct SettingsError {
    pub variable: String,
    pub value: String,
    pub reason: String,
}

// === impl Settings ===

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("data_dir", &self.data_dir)
            .field("bus", &self.bus)
            .field("namespace", &self.namespace)
            .field("telemetry", &self.telemetry)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("shutdown_delay", &self.shutdown_delay)
            .field("grpc_addr", &self.grpc_addr)
            .field("http_addr", &self.http_addr)
            .field("metrics_addr", &self.metrics_addr)
            .field("auth", &self.auth)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("database_max_connections", &self.database_max_connections)
            .field("graphql", &self.graphql)
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Settings, SettingsError> {
        Settings::from_map(std::env::vars().collect())
    }

    pub fn from_map(variables: HashMap<String, String>) -> Result<Settings, SettingsError> {
        let get = |name: &str| {
            variables
                .get(name)
                .filter(|value| !value.is_empty())
                .cloned()
        };
        let data_dir = PathBuf::from(get("EMPORIUM_DATA_DIR").unwrap_or_else(|| "data".to_owned()));
        let streams = nats_stream_settings(&get)?;
        let bus = match get("EMPORIUM_BUS_URL").as_deref() {
            None | Some("embedded") => BusSettings::Embedded {
                path: data_dir.join("bus.db"),
            },
            Some(url) if url.starts_with("nats://") || url.starts_with("tls://") => {
                BusSettings::Nats {
                    url: url.to_owned(),
                    streams,
                }
            }
            Some(other) => {
                return Err(SettingsError {
                    variable: "EMPORIUM_BUS_URL".to_owned(),
                    value: other.to_owned(),
                    reason: "expected `embedded` or a nats:// URL".to_owned(),
                });
            }
        };
        let namespace = get("EMPORIUM_NAMESPACE").unwrap_or_else(|| "emporium".to_owned());
        if namespace.is_empty()
            || !namespace
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(SettingsError {
                variable: "EMPORIUM_NAMESPACE".to_owned(),
                value: namespace,
                reason: "use lower-case letters, digits and _".to_owned(),
            });
        }
        let format = match get("EMPORIUM_LOG_FORMAT").as_deref() {
            None | Some("") => LogFormat::Auto,
            Some("json") => LogFormat::Json,
            Some("text") => LogFormat::Text,
            Some(other) => {
                return Err(SettingsError {
                    variable: "EMPORIUM_LOG_FORMAT".to_owned(),
                    value: other.to_owned(),
                    reason: "expected `json` or `text` (unset: text on a terminal, else JSON)"
                        .to_owned(),
                });
            }
        };
        let filter = get("EMPORIUM_LOG")
            .or_else(|| get("RUST_LOG"))
            .unwrap_or_else(|| "info".to_owned());
        let telemetry = TelemetrySettings {
            filter,
            format,
            ..TelemetrySettings::from_otel_variables(&get)?
        };
        let shutdown_grace = match get("EMPORIUM_SHUTDOWN_GRACE_SECONDS") {
            None => Duration::from_secs(30),
            Some(text) => Duration::from_secs(text.parse().map_err(|_| SettingsError {
                variable: "EMPORIUM_SHUTDOWN_GRACE_SECONDS".to_owned(),
                value: text.clone(),
                reason: "expected a whole number of seconds".to_owned(),
            })?),
        };
        let shutdown_delay = match get("EMPORIUM_SHUTDOWN_DELAY_SECONDS") {
            None => Duration::ZERO,
            Some(text) => Duration::from_secs(text.parse().map_err(|_| SettingsError {
                variable: "EMPORIUM_SHUTDOWN_DELAY_SECONDS".to_owned(),
                value: text.clone(),
                reason: "expected a whole number of seconds".to_owned(),
            })?),
        };
        let database_max_connections = match get("EMPORIUM_DATABASE_MAX_CONNECTIONS") {
            None => None,
            Some(text) => Some(
                text.parse::<u32>()
                    .ok()
                    .filter(|n| (1..=10_000).contains(n))
                    .ok_or_else(|| SettingsError {
                        variable: "EMPORIUM_DATABASE_MAX_CONNECTIONS".to_owned(),
                        value: text.clone(),
                        reason: "expected a whole number of connections from 1 to 10000".to_owned(),
                    })?,
            ),
        };
        let auth = AuthSettings::from_variables(&get)?;
        let grpc_addr = match get("EMPORIUM_GRPC_ADDR") {
            None => SocketAddr::from(([127, 0, 0, 1], DEFAULT_GRPC_PORT)),
            Some(text) => text.parse().map_err(|_| SettingsError {
                variable: "EMPORIUM_GRPC_ADDR".to_owned(),
                value: text.clone(),
                reason: "expected host:port, e.g. 0.0.0.0:50050".to_owned(),
            })?,
        };
        let http_addr = match get("EMPORIUM_HTTP_ADDR") {
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
            Some(text) => text.parse().map_err(|_| SettingsError {
                variable: "EMPORIUM_HTTP_ADDR".to_owned(),
                value: text.clone(),
                reason: "expected host:port, e.g. 0.0.0.0:8080".to_owned(),
            })?,
        };
        let metrics_addr = match get("EMPORIUM_METRICS_ADDR") {
            None => None,
            Some(text) => Some(text.parse().map_err(|_| SettingsError {
                variable: "EMPORIUM_METRICS_ADDR".to_owned(),
                value: text.clone(),
                reason: "expected host:port, e.g. 0.0.0.0:9464".to_owned(),
            })?),
        };
        let trusted_proxies = match get("EMPORIUM_TRUSTED_PROXIES") {
            None => TrustedProxies::none(),
            Some(text) => TrustedProxies::parse(&text).map_err(|reason| SettingsError {
                variable: "EMPORIUM_TRUSTED_PROXIES".to_owned(),
                value: text.clone(),
                reason,
            })?,
        };
        Ok(Settings {
            data_dir,
            bus,
            namespace,
            telemetry,
            shutdown_grace,
            shutdown_delay,
            auth,
            grpc_addr,
            http_addr,
            metrics_addr,
            trusted_proxies,
            database_max_connections,
            graphql: GraphqlSettings::from_variables(&get)?,
            admin_dir: get("EMPORIUM_ADMIN_DIR").map(PathBuf::from),
            variables,
        })
    }

    /// A service-specific variable, if set and not empty.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.variables
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }

    /// A service-specific secret variable, if set and not empty.
    pub fn secret(&self, name: &str) -> Option<SecretString> {
        self.value(name).map(SecretString::from)
    }

    /// What the HTTP routes of a service learn about the suite's origin they are served on.
    pub fn http_origin(&self) -> crate::runtime::HttpOrigin {
        crate::runtime::HttpOrigin {
            issuer: self.auth.issuer.clone(),
            audience: self.auth.audience.clone(),
            trusted_proxies: self.trusted_proxies.clone(),
        }
    }

    /// The settings of service `name`, whose gRPC port defaults to `default_port`.
    pub fn service(
        &self,
        name: &'static str,
        default_port: u16,
    ) -> Result<ServiceSettings, SettingsError> {
        let prefix = format!("EMPORIUM_{}", name.to_uppercase());
        let addr_variable = format!("{prefix}_GRPC_ADDR");
        let grpc_addr = match self.variables.get(&addr_variable).filter(|v| !v.is_empty()) {
            None => SocketAddr::from(([127, 0, 0, 1], default_port)),
            Some(text) => text.parse().map_err(|_| SettingsError {
                variable: addr_variable.clone(),
                value: text.clone(),
                reason: "expected host:port, e.g. 0.0.0.0:50052".to_owned(),
            })?,
        };
        let url_variable = format!("{prefix}_DATABASE_URL");
        let database_url = match self.variables.get(&url_variable).filter(|v| !v.is_empty()) {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}",
                self.data_dir.join(format!("{name}.db")).display()
            ),
        };
        Ok(ServiceSettings {
            name,
            grpc_addr,
            database_url: SecretString::from(database_url),
            namespace: self.namespace.clone(),
            database_max_connections: self.database_max_connections,
        })
    }
}

// === impl TelemetrySettings ===

impl Default for TelemetrySettings {
    /// Logs at `info` in the terminal's format, no export, the last 100 traces kept in memory.
    fn default() -> TelemetrySettings {
        TelemetrySettings {
            filter: "info".to_owned(),
            format: LogFormat::Auto,
            otlp_endpoint: None,
            service_name: None,
            sampler: TraceSampler::ParentBasedAlwaysOn,
            resource_attributes: Vec::new(),
            sdk_disabled: false,
            traces_kept: DEFAULT_TRACES_KEPT,
        }
    }
}

/// [`TelemetrySettings::traces_kept`] unless `EMPORIUM_TRACES_KEPT` says otherwise.
pub const DEFAULT_TRACES_KEPT: usize = 100;

impl TelemetrySettings {
    /// The tracing settings from this process's environment, as [`ServiceSettings`] reads them
    /// (for tools that run services in-process, e.g. the benchmark).
    pub fn from_env() -> Result<TelemetrySettings, SettingsError> {
        TelemetrySettings::from_otel_variables(&|variable| std::env::var(variable).ok())
    }

    /// The tracing settings, from OpenTelemetry's standard variables and `EMPORIUM_TRACES_KEPT`
    /// (the log filter and format left at their defaults).
    fn from_otel_variables(
        get: &impl Fn(&str) -> Option<String>,
    ) -> Result<TelemetrySettings, SettingsError> {
        let endpoint_variable = if get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some() {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        } else {
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        };
        let otlp_endpoint = get(endpoint_variable);
        if let Some(endpoint) = &otlp_endpoint {
            check_http_url(endpoint_variable, endpoint)?;
        }
        let service_name = get("OTEL_SERVICE_NAME");
        let sampler_argument = get("OTEL_TRACES_SAMPLER_ARG");
        let ratio = || -> Result<f64, SettingsError> {
            let Some(text) = sampler_argument.as_deref() else {
                return Ok(1.0);
            };
            text.trim()
                .parse::<f64>()
                .ok()
                .filter(|ratio| (0.0..=1.0).contains(ratio))
                .ok_or_else(|| SettingsError {
                    variable: "OTEL_TRACES_SAMPLER_ARG".to_owned(),
                    value: text.to_owned(),
                    reason: "expected a sampling ratio from 0 to 1, e.g. 0.25".to_owned(),
                })
        };
        let sampler = match get("OTEL_TRACES_SAMPLER").as_deref() {
            None | Some("parentbased_always_on") => TraceSampler::ParentBasedAlwaysOn,
            Some("always_on") => TraceSampler::AlwaysOn,
            Some("always_off") => TraceSampler::AlwaysOff,
            Some("traceidratio") => TraceSampler::TraceIdRatio(ratio()?),
            Some("parentbased_always_off") => TraceSampler::ParentBasedAlwaysOff,
            Some("parentbased_traceidratio") => TraceSampler::ParentBasedTraceIdRatio(ratio()?),
            Some(other) => {
                return Err(SettingsError {
                    variable: "OTEL_TRACES_SAMPLER".to_owned(),
                    value: other.to_owned(),
                    reason: "expected always_on, always_off, traceidratio, parentbased_always_on, \
                             parentbased_always_off or parentbased_traceidratio"
                        .to_owned(),
                });
            }
        };
        let resource_attributes = match get("OTEL_RESOURCE_ATTRIBUTES") {
            None => Vec::new(),
            Some(text) => parse_resource_attributes(&text).map_err(|reason| SettingsError {
                variable: "OTEL_RESOURCE_ATTRIBUTES".to_owned(),
                value: text.clone(),
                reason,
            })?,
        };
        // The specification's value is case-insensitive `true`; anything else leaves it on.
        let sdk_disabled = match get("OTEL_SDK_DISABLED") {
            None => false,
            Some(text) if text.trim().eq_ignore_ascii_case("true") => true,
            Some(text) if text.trim().eq_ignore_ascii_case("false") || text.trim().is_empty() => {
                false
            }
            Some(text) => {
                return Err(SettingsError {
                    variable: "OTEL_SDK_DISABLED".to_owned(),
                    value: text,
                    reason: "expected true or false".to_owned(),
                });
            }
        };
        let traces_kept = match get("EMPORIUM_TRACES_KEPT") {
            None => DEFAULT_TRACES_KEPT,
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|n_traces| *n_traces <= 10_000)
                .ok_or_else(|| SettingsError {
                    variable: "EMPORIUM_TRACES_KEPT".to_owned(),
                    value: text.clone(),
                    reason: "expected a whole number of traces from 0 to 10000".to_owned(),
                })?,
        };
        Ok(TelemetrySettings {
            otlp_endpoint,
            service_name,
            sampler,
            resource_attributes,
            sdk_disabled,
            traces_kept,
            ..TelemetrySettings::default()
        })
    }
}

/// `key1=value1,key2=value2` (W3C Baggage-like, as OpenTelemetry specifies the variable), each
/// value percent-decoded; blanks around entries are ignored.
fn parse_resource_attributes(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut attributes = Vec::new();
    for entry in text
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
    {
        let Some((key, value)) = entry.split_once('=') else {
            return Err(format!(
                "expected key=value pairs separated by commas, not {entry:?}"
            ));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(format!("an attribute has no key: {entry:?}"));
        }
        let value = percent_decode(value.trim())
            .ok_or_else(|| format!("the value of {key} is not valid percent-encoded UTF-8"))?;
        attributes.push((key.to_owned(), value));
    }
    Ok(attributes)
}

/// `a%20b` → `a b`; `None` for a malformed escape or bytes that are not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, after)) = rest.split_first() {
        if byte == b'%' {
            let hex = after
                .get(..2)
                .filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))?;
            bytes.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            rest = &after[2..];
        } else {
            bytes.push(byte);
            rest = after;
        }
    }
    String::from_utf8(bytes).ok()
}

// === impl AuthSettings ===

impl AuthSettings {
    fn from_variables(
        get: &impl Fn(&str) -> Option<String>,
    ) -> Result<AuthSettings, SettingsError> {
        let issuer =
            get("EMPORIUM_AUTH_ISSUER").unwrap_or_else(|| "http://localhost:8080".to_owned());
        check_http_url("EMPORIUM_AUTH_ISSUER", &issuer)?;
        if issuer.ends_with('/') {
            return Err(SettingsError {
                variable: "EMPORIUM_AUTH_ISSUER".to_owned(),
                value: issuer,
                reason: "drop the trailing slash: tokens name the issuer exactly".to_owned(),
            });
        }
        let audience = get("EMPORIUM_AUTH_AUDIENCE").unwrap_or_else(|| "emporium".to_owned());
        let jwks_url = get("EMPORIUM_AUTH_JWKS_URL")
            .unwrap_or_else(|| format!("{issuer}/.well-known/jwks.json"));
        check_http_url("EMPORIUM_AUTH_JWKS_URL", &jwks_url)?;
        let jwks_trusted_certificates = match get("EMPORIUM_AUTH_JWKS_CA_FILE") {
            None => Vec::new(),
            Some(path) => std::fs::read(&path)
                .map_err(anyhow::Error::from)
                .and_then(|pem| crate::auth::parse_pem_certificates(&pem))
                .map_err(|error| SettingsError {
                    variable: "EMPORIUM_AUTH_JWKS_CA_FILE".to_owned(),
                    value: path.clone(),
                    reason: format!("expected a readable PEM file of CA certificates: {error:#}"),
                })?,
        };
        Ok(AuthSettings {
            issuer,
            audience,
            jwks_url,
            jwks_trusted_certificates,
        })
    }

    /// A verifier for this issuer and audience that fetches the keys from [`Self::jwks_url`]
    /// (lazily, on the first token it sees), trusting [`Self::jwks_trusted_certificates`] too.
    pub fn verifier(&self) -> Arc<TokenVerifier> {
        Arc::new(
            TokenVerifier::new(
                &self.issuer,
                &self.audience,
                KeySource::Url(self.jwks_url.clone()),
            )
            .trusting(self.jwks_trusted_certificates.clone()),
        )
    }
}

/// `EMPORIUM_NATS_STREAM_REPLICAS` (1..=5, the most JetStream allows) and
/// `EMPORIUM_NATS_STREAM_STORAGE`; checked even on the embedded bus, so a typo fails at once.
fn nats_stream_settings(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<NatsStreamSettings, SettingsError> {
    let defaults = NatsStreamSettings::default();
    let replicas = match get("EMPORIUM_NATS_STREAM_REPLICAS") {
        None => defaults.replicas,
        Some(text) => match text.parse::<usize>() {
            Ok(replicas) if (1..=5).contains(&replicas) => replicas,
            _ => {
                return Err(SettingsError {
                    variable: "EMPORIUM_NATS_STREAM_REPLICAS".to_owned(),
                    value: text,
                    reason: "expected a whole number from 1 to 5".to_owned(),
                });
            }
        },
    };
    let storage = match get("EMPORIUM_NATS_STREAM_STORAGE").as_deref() {
        None | Some("file") => NatsStreamStorage::File,
        Some("memory") => NatsStreamStorage::Memory,
        Some(other) => {
            return Err(SettingsError {
                variable: "EMPORIUM_NATS_STREAM_STORAGE".to_owned(),
                value: other.to_owned(),
                reason: "expected `file` or `memory`".to_owned(),
            });
        }
    };
    Ok(NatsStreamSettings { replicas, storage })
}

/// Accepts `http://host…` and `https://host…` with a non-empty host.
fn check_http_url(variable: &str, url: &str) -> Result<(), SettingsError> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(rest)
            if !rest.is_empty()
                && !rest.starts_with('/')
                && !rest.contains(char::is_whitespace) =>
        {
            Ok(())
        }
        _ => Err(SettingsError {
            variable: variable.to_owned(),
            value: url.to_owned(),
            reason: "expected an http:// or https:// URL".to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use secrecy::ExposeSecret;

    use super::{
        AuthSettings, BusSettings, GraphqlSettings, NatsStreamSettings, NatsStreamStorage,
        Settings, TelemetrySettings, TraceSampler,
    };

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, super::SettingsError> {
        Settings::from_map(
            pairs
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect::<HashMap<_, _>>(),
        )
    }

    #[test]
    fn the_log_format_follows_the_terminal_unless_forced() {
        let format = |value: Option<&str>| {
            let pairs: Vec<(&str, &str)> = value
                .map(|value| vec![("EMPORIUM_LOG_FORMAT", value)])
                .unwrap_or_default();
            settings(&pairs).map(|settings| settings.telemetry.format)
        };
        use super::LogFormat;
        assert_eq!(format(None).unwrap(), LogFormat::Auto);
        assert_eq!(format(Some("json")).unwrap(), LogFormat::Json);
        assert_eq!(format(Some("text")).unwrap(), LogFormat::Text);
        let error = format(Some("pretty")).unwrap_err();
        assert_eq!(error.variable, "EMPORIUM_LOG_FORMAT");
    }

    #[test]
    fn tracing_defaults_to_no_export_and_the_last_hundred_traces_in_memory() {
        let telemetry = settings(&[]).unwrap().telemetry;

        assert_eq!(telemetry, TelemetrySettings::default());
        assert_eq!(telemetry.otlp_endpoint, None);
        assert_eq!(telemetry.sampler, TraceSampler::ParentBasedAlwaysOn);
        assert_eq!(telemetry.traces_kept, 100);
        assert!(!telemetry.sdk_disabled);
    }

    #[test]
    fn tracing_follows_the_standard_opentelemetry_variables() {
        let telemetry = settings(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_SERVICE_NAME", "catalog-eu"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment.name=prod, team=commerce%20core",
            ),
            ("EMPORIUM_TRACES_KEPT", "0"),
            ("OTEL_SDK_DISABLED", "TRUE"),
        ])
        .unwrap()
        .telemetry;

        assert_eq!(
            telemetry.otlp_endpoint.as_deref(),
            Some("http://collector:4317")
        );
        assert_eq!(telemetry.service_name.as_deref(), Some("catalog-eu"));
        assert_eq!(
            telemetry.sampler,
            TraceSampler::ParentBasedTraceIdRatio(0.25)
        );
        assert_eq!(
            telemetry.resource_attributes,
            [
                ("deployment.environment.name".to_owned(), "prod".to_owned()),
                ("team".to_owned(), "commerce core".to_owned()),
            ]
        );
        assert_eq!(telemetry.traces_kept, 0);
        assert!(telemetry.sdk_disabled);
    }

    #[test]
    fn the_graphql_limits_have_safe_defaults_and_refuse_nonsense() {
        assert_eq!(settings(&[]).unwrap().graphql, GraphqlSettings::default());
        let limits = settings(&[
            ("EMPORIUM_GRAPHQL_MAX_DEPTH", "4"),
            ("EMPORIUM_GRAPHQL_TIMEOUT_SECONDS", "5"),
        ])
        .unwrap()
        .graphql;
        assert_eq!(limits.max_depth, 4);
        assert_eq!(limits.timeout, Duration::from_secs(5));
        for (variable, value) in [
            ("EMPORIUM_GRAPHQL_MAX_DEPTH", "0"),
            ("EMPORIUM_GRAPHQL_MAX_COMPLEXITY", "many"),
            ("EMPORIUM_GRAPHQL_MAX_BODY_BYTES", "-1"),
            ("EMPORIUM_GRAPHQL_MAX_ALIASES", "0"),
        ] {
            let error = settings(&[(variable, value)]).unwrap_err();
            assert_eq!(error.variable, variable, "{value}");
        }
    }

    #[test]
    fn the_traces_endpoint_overrides_the_general_one() {
        let telemetry = settings(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4317"),
        ])
        .unwrap()
        .telemetry;

        assert_eq!(
            telemetry.otlp_endpoint.as_deref(),
            Some("http://traces:4317")
        );
    }

    #[test]
    fn a_bad_tracing_value_names_its_variable() {
        for (variable, value) in [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "grpc://collector"),
            ("OTEL_TRACES_SAMPLER", "sometimes"),
            ("OTEL_RESOURCE_ATTRIBUTES", "team"),
            ("OTEL_RESOURCE_ATTRIBUTES", "team=a%zz"),
            ("EMPORIUM_TRACES_KEPT", "-1"),
            ("EMPORIUM_TRACES_KEPT", "10001"),
            ("OTEL_SDK_DISABLED", "yes"),
        ] {
            let error = settings(&[(variable, value)]).unwrap_err();
            assert_eq!(error.variable, variable, "{value}");
        }
        let error = settings(&[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
        ])
        .unwrap_err();
        assert_eq!(error.variable, "OTEL_TRACES_SAMPLER_ARG");
    }

    #[test]
    fn defaults_run_the_embedded_mode() {
        let settings = settings(&[]).unwrap();
        assert_eq!(
            settings.bus,
            BusSettings::Embedded {
                path: "data/bus.db".into()
            }
        );
        assert_eq!(settings.grpc_addr.to_string(), "127.0.0.1:50050");
        let catalog = settings.service("catalog", 50052).unwrap();
        assert_eq!(catalog.grpc_addr.to_string(), "127.0.0.1:50052");
        assert_eq!(
            catalog.database_url.expose_secret(),
            "sqlite://data/catalog.db"
        );
    }

    #[test]
    fn service_variables_override_defaults() {
        let settings = settings(&[
            ("EMPORIUM_BUS_URL", "nats://127.0.0.1:4222"),
            ("EMPORIUM_CATALOG_GRPC_ADDR", "0.0.0.0:6000"),
            ("EMPORIUM_GRPC_ADDR", "0.0.0.0:7000"),
            (
                "EMPORIUM_CATALOG_DATABASE_URL",
                "postgres://postgres@localhost/catalog",
            ),
        ])
        .unwrap();
        assert_eq!(settings.grpc_addr.to_string(), "0.0.0.0:7000");
        let catalog = settings.service("catalog", 50052).unwrap();
        assert_eq!(catalog.grpc_addr.to_string(), "0.0.0.0:6000");
        assert_eq!(
            catalog.database_url.expose_secret(),
            "postgres://postgres@localhost/catalog"
        );
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let error = settings(&[("EMPORIUM_BUS_URL", "kafka://x")]).unwrap_err();
        assert!(error.to_string().contains("EMPORIUM_BUS_URL"), "{error}");
        let error = settings(&[("EMPORIUM_CATALOG_GRPC_ADDR", "nowhere")])
            .unwrap()
            .service("catalog", 1)
            .unwrap_err();
        assert!(
            error.to_string().contains("EMPORIUM_CATALOG_GRPC_ADDR"),
            "{error}"
        );
    }

    #[test]
    fn trusted_proxies_default_to_none_and_a_bad_entry_names_the_variable() {
        assert!(settings(&[]).unwrap().trusted_proxies.is_empty());
        let trusted = settings(&[("EMPORIUM_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.7")])
            .unwrap()
            .trusted_proxies;
        assert!(trusted.trusts("10.20.30.40".parse().unwrap()));
        assert!(trusted.trusts("192.168.1.7".parse().unwrap()));
        assert!(!trusted.trusts("192.168.1.8".parse().unwrap()));
        let error = settings(&[("EMPORIUM_TRUSTED_PROXIES", "10.0.0.0/33")]).unwrap_err();
        assert!(
            error.to_string().contains("EMPORIUM_TRUSTED_PROXIES"),
            "{error}"
        );
    }

    #[test]
    fn the_pool_size_is_a_positive_whole_number_or_the_backend_default() {
        let default = settings(&[]).unwrap().service("catalog", 1).unwrap();
        let set = settings(&[("EMPORIUM_DATABASE_MAX_CONNECTIONS", "3")])
            .unwrap()
            .service("catalog", 1)
            .unwrap();

        assert_eq!(default.database_max_connections, None);
        assert_eq!(set.database_max_connections, Some(3));
        for bad in ["0", "-1", "lots", "2.5", "100000"] {
            let error = settings(&[("EMPORIUM_DATABASE_MAX_CONNECTIONS", bad)]).unwrap_err();
            assert!(
                error
                    .to_string()
                    .contains("EMPORIUM_DATABASE_MAX_CONNECTIONS"),
                "{error}"
            );
        }
    }

    #[test]
    fn the_shutdown_delay_defaults_to_zero_and_is_whole_seconds() {
        assert_eq!(settings(&[]).unwrap().shutdown_delay, Duration::ZERO);
        let set = settings(&[("EMPORIUM_SHUTDOWN_DELAY_SECONDS", "15")]).unwrap();
        assert_eq!(set.shutdown_delay, Duration::from_secs(15));
        let error = settings(&[("EMPORIUM_SHUTDOWN_DELAY_SECONDS", "5s")]).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("EMPORIUM_SHUTDOWN_DELAY_SECONDS"),
            "{error}"
        );
    }

    #[test]
    fn auth_defaults_to_the_local_identity_provider() {
        let settings = settings(&[]).unwrap();

        assert_eq!(
            settings.auth,
            AuthSettings {
                issuer: "http://localhost:8080".to_owned(),
                audience: "emporium".to_owned(),
                jwks_url: "http://localhost:8080/.well-known/jwks.json".to_owned(),
                jwks_trusted_certificates: Vec::new(),
            }
        );
    }

    #[test]
    fn the_jwks_url_follows_the_issuer_unless_set() {
        let derived = settings(&[("EMPORIUM_AUTH_ISSUER", "https://id.example.com")]).unwrap();
        let explicit = settings(&[
            ("EMPORIUM_AUTH_ISSUER", "https://id.example.com"),
            ("EMPORIUM_AUTH_AUDIENCE", "shop"),
            ("EMPORIUM_AUTH_JWKS_URL", "http://identity:8080/keys"),
        ])
        .unwrap();

        assert_eq!(
            derived.auth.jwks_url,
            "https://id.example.com/.well-known/jwks.json"
        );
        assert_eq!(explicit.auth.jwks_url, "http://identity:8080/keys");
        assert_eq!(explicit.auth.audience, "shop");
    }

    #[test]
    fn a_bad_issuer_or_jwks_url_names_its_variable() {
        for issuer in [
            "localhost:8080",
            "ftp://id.example.com",
            "http://",
            "http://id.example.com/",
        ] {
            let error = settings(&[("EMPORIUM_AUTH_ISSUER", issuer)]).unwrap_err();
            assert!(
                error.to_string().contains("EMPORIUM_AUTH_ISSUER"),
                "{error}"
            );
        }
        let error = settings(&[("EMPORIUM_AUTH_JWKS_URL", "/keys")]).unwrap_err();
        assert!(
            error.to_string().contains("EMPORIUM_AUTH_JWKS_URL"),
            "{error}"
        );
    }

    #[test]
    fn a_jwks_ca_file_is_read_or_named_in_the_error() {
        let directory =
            std::env::temp_dir().join(format!("emporium-settings-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&directory).unwrap();
        let certificate = rcgen::generate_simple_self_signed(vec!["identity".to_owned()]).unwrap();
        let good = directory.join("ca.pem");
        std::fs::write(&good, certificate.cert.pem()).unwrap();
        let bad = directory.join("not-a-ca.pem");
        std::fs::write(&bad, "hello").unwrap();

        let read = settings(&[("EMPORIUM_AUTH_JWKS_CA_FILE", good.to_str().unwrap())]).unwrap();
        let not_pem = settings(&[("EMPORIUM_AUTH_JWKS_CA_FILE", bad.to_str().unwrap())]);
        let missing = settings(&[("EMPORIUM_AUTH_JWKS_CA_FILE", "/nonexistent/ca.pem")]);
        let _ = std::fs::remove_dir_all(&directory);

        assert_eq!(
            read.auth.jwks_trusted_certificates,
            vec![certificate.cert.der().clone()]
        );
        for result in [not_pem, missing] {
            let error = result.unwrap_err();
            assert!(
                error.to_string().contains("EMPORIUM_AUTH_JWKS_CA_FILE"),
                "{error}"
            );
        }
    }

    #[test]
    fn nats_streams_default_to_one_file_backed_replica() {
        let settings = settings(&[("EMPORIUM_BUS_URL", "nats://127.0.0.1:4222")]).unwrap();

        assert_eq!(
            settings.bus,
            BusSettings::Nats {
                url: "nats://127.0.0.1:4222".to_owned(),
                streams: NatsStreamSettings {
                    replicas: 1,
                    storage: NatsStreamStorage::File,
                },
            }
        );
    }

    #[test]
    fn nats_stream_replicas_and_storage_come_from_settings() {
        let settings = settings(&[
            ("EMPORIUM_BUS_URL", "nats://nats:4222"),
            ("EMPORIUM_NATS_STREAM_REPLICAS", "3"),
            ("EMPORIUM_NATS_STREAM_STORAGE", "memory"),
        ])
        .unwrap();

        let BusSettings::Nats { streams, .. } = settings.bus else {
            panic!("expected the NATS bus, got {:?}", settings.bus);
        };
        assert_eq!(
            streams,
            NatsStreamSettings {
                replicas: 3,
                storage: NatsStreamStorage::Memory,
            }
        );
    }

    #[test]
    fn bad_nats_stream_settings_name_their_variable() {
        for replicas in ["0", "6", "-1", "three", "1.5"] {
            let error = settings(&[
                ("EMPORIUM_BUS_URL", "nats://nats:4222"),
                ("EMPORIUM_NATS_STREAM_REPLICAS", replicas),
            ])
            .unwrap_err();
            assert!(
                error.to_string().contains("EMPORIUM_NATS_STREAM_REPLICAS"),
                "{error}"
            );
        }
        for replicas in ["1", "5"] {
            settings(&[("EMPORIUM_NATS_STREAM_REPLICAS", replicas)]).unwrap();
        }
        let error = settings(&[("EMPORIUM_NATS_STREAM_STORAGE", "disk")]).unwrap_err();
        assert!(
            error.to_string().contains("EMPORIUM_NATS_STREAM_STORAGE"),
            "{error}"
        );
    }
}
