//! Zero-trust authorization for every service: access tokens are EdDSA-signed JWTs from the
//! identity service, verified here by each service itself (signature against the issuer's JWKS,
//! fetched over http or https and refreshed when a token names an unknown key id; `iss`, `aud`,
//! `exp`; only `EdDSA` accepted, so `alg: none` and algorithm confusion are refused; only access
//! tokens, `typ: at+jwt`, so an ID token is no bearer token). [`AuthLayer`] verifies a bearer token,
//! puts the typed [`Caller`] in the request and, before any handler runs, enforces who may call the
//! RPC as the contract declares it (`(emporium.api.v1.access)`, read once into an [`AccessTable`]):
//! UNAUTHENTICATED without a valid token, PERMISSION_DENIED without a declared role, refused to
//! everyone when the contract declares nothing. Handlers take the caller with [`authenticated`]
//! and check ownership with [`Caller::require_owner`]; they never check roles themselves.
//!
//! [`SigningKey`] is the other half, used by the identity service to issue tokens and by tests to
//! mint them.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use base64::Engine as _;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::error::Error;

mod eddsa;

/// Makes jsonwebtoken sign and verify with the chassis's EdDSA-only provider (idempotent). The
/// chassis calls it itself before it signs or verifies; other code that calls jsonwebtoken
/// directly calls it first.
pub use eddsa::install as install_jwt_crypto;

pub use rustls::pki_types::CertificateDer;

/// The roles Emporium knows out of the box; accounts may also hold custom ones.
pub mod roles {
    pub const ADMIN: &str = "admin";
    pub const CATALOG_MANAGER: &str = "catalog-manager";
    pub const SALES: &str = "sales";
    pub const CUSTOMER: &str = "customer";
    /// The gateway's token for visitors who have not signed in: admitted only to the RPCs whose
    /// contract declares `visitors: true`.
    pub const VISITOR: &str = contract::access::VISITOR_ROLE;
}

/// The claims of an Emporium access token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The account id, or the client id for a client-credentials token.
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    /// Token id, unique per token.
    pub jti: String,
    /// The OAuth2 client the token was issued to.
    pub client_id: String,
    #[serde(default)]
    pub roles: Vec<String>,
    /// For customers: the customer record they own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
}

/// Who is calling, as proven by a verified token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub subject: String,
    pub client_id: String,
    pub roles: Vec<String>,
    pub customer_id: Option<String>,
    pub token_id: String,
}

/// Why a token was refused. The caller learns only that it was refused (and, for an expired token,
/// that it expired); the detail is logged.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token is signed with algorithm {0:?}; only EdDSA is accepted")]
    WrongAlgorithm(Algorithm),
    #[error("the token's type is {0:?}; only access tokens (at+jwt) are accepted")]
    NotAnAccessToken(Option<String>),
    #[error("the token names no key id")]
    MissingKeyId,
    #[error("the token is signed by an unknown key {0}")]
    UnknownKey(String),
    #[error("the token has expired")]
    Expired,
    #[error("the token is invalid: {0}")]
    Invalid(String),
    #[error("the signing keys cannot be fetched")]
    KeysUnavailable(#[source] anyhow::Error),
}

impl TokenError {
    /// The refusal's `reason` label at `/metrics`.
    pub fn label(&self) -> &'static str {
        match self {
            TokenError::Malformed => "malformed",
            TokenError::WrongAlgorithm(_) => "wrong_algorithm",
            TokenError::NotAnAccessToken(_) => "not_an_access_token",
            TokenError::MissingKeyId => "missing_key_id",
            TokenError::UnknownKey(_) => "unknown_key",
            TokenError::Expired => "expired",
            TokenError::Invalid(_) => "invalid",
            TokenError::KeysUnavailable(_) => "keys_unavailable",
        }
    }

    /// Why the token was refused, as the caller may be told (the detail is for the log).
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Expired => "the token has expired; log in again",
            TokenError::KeysUnavailable(_) => "the token cannot be checked right now",
            TokenError::NotAnAccessToken(_) => {
                "this is not an access token (an ID token cannot call APIs)"
            }
            _ => "the token is not valid",
        }
    }
}

/// Where a verifier gets the issuer's public keys.
#[derive(Clone, Debug)]
pub enum KeySource {
    /// The issuer's `jwks_uri`, fetched over HTTP(S) and cached.
    Url(String),
    /// A fixed key set (tests).
    Fixed(JwkSet),
}

/// Verifies access tokens for one issuer and audience. Cheap to share (`Arc`).
///
/// A token naming an unknown key id makes the verifier fetch the key set, at most one fetch at a
/// time (single flight): tokens that arrive during a fetch wait for its outcome. After every
/// fetch, successful or not, a cool-down of [`TokenVerifier::MIN_REFRESH_INTERVAL`] follows in
/// which an unknown key id is refused at once, without waiting on any lock, so a flood of garbage
/// tokens neither hammers the issuer nor delays a genuine token.
///
/// A client sends the same token with every call for its whole lifetime, so the verifier keeps
/// the callers of the tokens it accepted ([`TokenVerifier::CACHE_CAPACITY`] at most, keyed by the
/// token's SHA-256, so a token differing in any byte, a forged signature or an edited claim, is a
/// miss and is verified in full). A cached token is served only while `now < exp`, never in the
/// leeway the full check allows; refusals are not cached, so a refused token is checked, and
/// refused, again. Against key rotation the cache accepts nothing the full check would refuse:
/// the full check uses the keys of the last successful fetch, and when a fetch drops a key id or
/// changes its key, every cached token it verified is forgotten (one verifying with the old key
/// while the fetch swaps the keys is not cached). Between fetches both keep accepting a key the
/// issuer has stopped publishing, as the verifier always did.
#[derive(Debug)]
pub struct TokenVerifier {
    issuer: String,
    audience: String,
    source: KeySource,
    /// The keys of the last successful fetch, by key id. Locked only to look up or swap the map,
    /// never across an await. A fetch keeps the `Arc` of a key whose JWK did not change, so a
    /// cached token's key is the current one exactly when it is the same `Arc`.
    keys: std::sync::RwLock<Arc<HashMap<String, Arc<VerifyingKey>>>>,
    /// Tokens already verified. Locked only to look up, insert or prune, never across an await.
    verified: std::sync::Mutex<VerifiedTokens>,
    /// Held by the one task fetching the key set.
    fetching: tokio::sync::Mutex<()>,
    /// How the last fetch ended; starts the cool-down. Locked only to read or write it.
    last_fetch: std::sync::Mutex<Option<LastFetch>>,
    min_refresh_interval: Duration,
    /// CA certificates trusted for an https JWKS URL besides the built-in public roots.
    extra_roots: Vec<CertificateDer<'static>>,
}

/// When the last key-set fetch ended, and whether it failed.
#[derive(Clone, Copy, Debug)]
struct LastFetch {
    ended_at: Instant,
    failed: bool,
}

/// One of the issuer's public keys, as published and as decoded for verification.
#[derive(Debug)]
struct VerifyingKey {
    jwk: Jwk,
    decoding_key: DecodingKey,
}

/// The SHA-256 of a token: a fixed-size key, whatever the token's length.
type TokenDigest = [u8; 32];

/// A bounded map of verified tokens. When full, it drops expired tokens first, then those
/// closest to expiry.
struct VerifiedTokens {
    capacity: usize,
    entries: HashMap<TokenDigest, VerifiedToken>,
    /// The keys of `entries` ordered by `exp`, soonest first. Always the same set as `entries`.
    by_expiry: BTreeSet<(i64, TokenDigest)>,
}

#[derive(Debug)]
struct VerifiedToken {
    caller: Arc<Caller>,
    /// The token's `exp` (seconds since the Unix epoch): served only before it.
    exp: i64,
    kid: String,
    /// The key that verified the token.
    key: Arc<VerifyingKey>,
}

/// An Ed25519 signing key with its key id.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    encoding_key: EncodingKey,
    public_jwk: Jwk,
    pkcs8_der: Vec<u8>,
}

// === impl TokenVerifier ===

impl TokenVerifier {
    pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(5);
    /// How many verified tokens are kept: ten thousand callers' tokens, about 4 MB.
    pub const CACHE_CAPACITY: usize = 10_000;
    /// Seconds an `exp` may be past and the full check still accepts the token (clock skew).
    const LEEWAY_SECONDS: i64 = 30;

    pub fn new(issuer: &str, audience: &str, source: KeySource) -> TokenVerifier {
        install_jwt_crypto();
        TokenVerifier {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            source,
            keys: std::sync::RwLock::new(Arc::new(HashMap::new())),
            verified: std::sync::Mutex::new(VerifiedTokens::new(Self::CACHE_CAPACITY)),
            fetching: tokio::sync::Mutex::new(()),
            last_fetch: std::sync::Mutex::new(None),
            min_refresh_interval: Self::MIN_REFRESH_INTERVAL,
            extra_roots: Vec::new(),
        }
    }

    /// Changes how many verified tokens are kept (tests use a handful).
    pub fn with_cache_capacity(self, capacity: usize) -> TokenVerifier {
        *self.verified.lock().unwrap_or_else(PoisonError::into_inner) =
            VerifiedTokens::new(capacity);
        self
    }

    /// Changes how long the cool-down after a fetch lasts (tests use zero).
    pub fn with_min_refresh_interval(mut self, interval: Duration) -> TokenVerifier {
        self.min_refresh_interval = interval;
        self
    }

    /// Also trusts `certificates` (e.g. a private deployment's own CA, see
    /// [`parse_pem_certificates`]) when fetching the JWKS over https.
    pub fn trusting(mut self, certificates: Vec<CertificateDer<'static>>) -> TokenVerifier {
        self.extra_roots = certificates;
        self
    }

    /// Verifies `token` and returns who it speaks for.
    pub async fn verify(&self, token: &str) -> Result<Caller, TokenError> {
        let caller = self.verify_at(token, unix_now()).await?;
        Ok(Arc::unwrap_or_clone(caller))
    }

    /// Verifies `token` as of `now` (seconds since the Unix epoch) and returns who it speaks for,
    /// from the cache when this very token was verified before and has not expired.
    pub async fn verify_at(&self, token: &str, now: i64) -> Result<Arc<Caller>, TokenError> {
        let verified = self.verify_uncounted(token, now).await;
        if let Err(error) = &verified {
            ::metrics::counter!("emporium_auth_tokens_refused_total", "reason" => error.label())
                .increment(1);
        }
        verified
    }

    async fn verify_uncounted(&self, token: &str, now: i64) -> Result<Arc<Caller>, TokenError> {
        let digest: TokenDigest = sha2::Sha256::digest(token.as_bytes()).into();
        if let Some(caller) = self.lock_verified().get(&digest, now) {
            return Ok(caller);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        // Pin the algorithm before looking at keys: `none`, HMAC with the public key as secret
        // and every other substitution are refused here.
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::WrongAlgorithm(header.alg));
        }
        // Only access tokens (RFC 9068): an ID token is signed by the same key and names the
        // same subject, but it is proof of a sign-in for one client, not a grant to call APIs.
        if !header.typ.as_deref().is_some_and(is_access_token_type) {
            return Err(TokenError::NotAnAccessToken(header.typ));
        }
        let kid = header.kid.ok_or(TokenError::MissingKeyId)?;
        let key = match self.cached_key(&kid) {
            Some(key) => key,
            None => self.refresh_for(&kid).await?,
        };
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // `exp` is checked below against `now`, with the same rule and leeway jsonwebtoken
        // applies to the system clock.
        validation.validate_exp = false;
        let claims = jsonwebtoken::decode::<Claims>(token, &key.decoding_key, &validation)
            .map_err(|error| TokenError::Invalid(error.to_string()))?
            .claims;
        if claims.exp < now - Self::LEEWAY_SECONDS {
            return Err(TokenError::Expired);
        }
        let exp = claims.exp;
        let caller = Arc::new(Caller {
            subject: claims.sub,
            client_id: claims.client_id,
            roles: claims.roles,
            customer_id: claims.customer_id,
            token_id: claims.jti,
        });
        let mut verified = self.lock_verified();
        // Not cached if a fetch replaced the key since we read it: the fetch has already pruned
        // the cache, and this token must not outlive its key there.
        if self
            .cached_key(&kid)
            .is_some_and(|current| Arc::ptr_eq(&current, &key))
        {
            verified.insert(
                digest,
                VerifiedToken {
                    caller: Arc::clone(&caller),
                    exp,
                    kid,
                    key,
                },
                now,
            );
        }
        Ok(caller)
    }

    fn lock_verified(&self) -> std::sync::MutexGuard<'_, VerifiedTokens> {
        self.verified.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn cached_key(&self, kid: &str) -> Option<Arc<VerifyingKey>> {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        keys.get(kid).cloned()
    }

    /// The refusal for an unknown `kid` while the last fetch is fresher than the cool-down, or
    /// `None` once a new fetch may start.
    fn refusal_during_cool_down(&self, kid: &str) -> Option<TokenError> {
        let last_fetch = *self
            .last_fetch
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let last_fetch = last_fetch?;
        if last_fetch.ended_at.elapsed() >= self.min_refresh_interval {
            return None;
        }
        Some(if last_fetch.failed {
            TokenError::KeysUnavailable(anyhow::anyhow!(
                "the last fetch of the key set failed less than {:?} ago",
                self.min_refresh_interval
            ))
        } else {
            TokenError::UnknownKey(kid.to_owned())
        })
    }

    /// Fetches the key set, unless the cool-down refuses `kid` first, and returns the key `kid`.
    async fn refresh_for(&self, kid: &str) -> Result<Arc<VerifyingKey>, TokenError> {
        // No lock is awaited before this check: during the cool-down, garbage is refused at once.
        if let Some(refusal) = self.refusal_during_cool_down(kid) {
            return Err(refusal);
        }
        // Single flight: whoever arrives during a fetch waits for it, then looks again.
        let _fetching = self.fetching.lock().await;
        if let Some(key) = self.cached_key(kid) {
            return Ok(key);
        }
        if let Some(refusal) = self.refusal_during_cool_down(kid) {
            return Err(refusal);
        }
        let fetched = match &self.source {
            KeySource::Fixed(key_set) => Ok(key_set.clone()),
            KeySource::Url(url) => {
                let fetched = fetch_key_set(url, &self.extra_roots).await;
                let outcome = if fetched.is_ok() { "ok" } else { "error" };
                ::metrics::counter!("emporium_auth_jwks_fetches_total", "outcome" => outcome)
                    .increment(1);
                fetched
            }
        };
        *self
            .last_fetch
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(LastFetch {
            ended_at: Instant::now(),
            failed: fetched.is_err(),
        });
        let key_set = fetched.map_err(TokenError::KeysUnavailable)?;
        let previous = Arc::clone(&self.keys.read().unwrap_or_else(PoisonError::into_inner));
        let mut keys = HashMap::new();
        for jwk in key_set.keys {
            let Some(key_id) = jwk.common.key_id.clone() else {
                continue;
            };
            let key = match previous.get(&key_id) {
                Some(known) if known.jwk == jwk => Arc::clone(known),
                _ => match DecodingKey::from_jwk(&jwk) {
                    Ok(decoding_key) => Arc::new(VerifyingKey { jwk, decoding_key }),
                    Err(_) => continue,
                },
            };
            keys.insert(key_id, key);
        }
        let found = keys.get(kid).cloned();
        let keys = Arc::new(keys);
        // Swap first, then prune: a verification that read a replaced key either inserted
        // before the prune (and is pruned) or sees the new keys and does not insert.
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::clone(&keys);
        self.lock_verified().retain_verified_by(&keys);
        found.ok_or_else(|| TokenError::UnknownKey(kid.to_owned()))
    }
}

// === impl VerifiedTokens ===

impl std::fmt::Debug for VerifiedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The callers themselves are not worth printing with the verifier.
        f.debug_struct("VerifiedTokens")
            .field("capacity", &self.capacity)
            .field("len", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl VerifiedTokens {
    fn new(capacity: usize) -> VerifiedTokens {
        VerifiedTokens {
            capacity,
            entries: HashMap::new(),
            by_expiry: BTreeSet::new(),
        }
    }

    /// The caller of a token verified before, if it has not expired by `now`.
    fn get(&mut self, digest: &TokenDigest, now: i64) -> Option<Arc<Caller>> {
        let entry = self.entries.get(digest)?;
        if now < entry.exp {
            return Some(Arc::clone(&entry.caller));
        }
        self.remove(digest);
        None
    }

    /// Keeps `token` unless it has expired by `now`, making room first if full.
    fn insert(&mut self, digest: TokenDigest, token: VerifiedToken, now: i64) {
        if now >= token.exp || self.capacity == 0 {
            return;
        }
        self.remove(&digest);
        while self.entries.len() >= self.capacity {
            // The soonest to expire goes first, so expired tokens go before live ones.
            let Some((_, oldest)) = self.by_expiry.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
        self.by_expiry.insert((token.exp, digest));
        self.entries.insert(digest, token);
    }

    /// Forgets every token whose key is not, or no longer the same, among `keys`.
    fn retain_verified_by(&mut self, keys: &HashMap<String, Arc<VerifyingKey>>) {
        let by_expiry = &mut self.by_expiry;
        self.entries.retain(|digest, token| {
            let kept = keys
                .get(&token.kid)
                .is_some_and(|key| Arc::ptr_eq(key, &token.key));
            if !kept {
                by_expiry.remove(&(token.exp, *digest));
            }
            kept
        });
    }

    fn remove(&mut self, digest: &TokenDigest) {
        if let Some(token) = self.entries.remove(digest) {
            self.by_expiry.remove(&(token.exp, *digest));
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        debug_assert_eq!(self.entries.len(), self.by_expiry.len());
        self.entries.len()
    }
}

/// Seconds since the Unix epoch, by the system clock.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

/// `typ` of an access token per RFC 9068: `at+jwt`, or its full media type, in any case.
fn is_access_token_type(typ: &str) -> bool {
    typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt")
}

/// Reads the certificates of a PEM file (e.g. a private CA for the JWKS URL); fails when there
/// is none.
pub fn parse_pem_certificates(pem: &[u8]) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .context("Not a PEM certificate file")?;
    anyhow::ensure!(
        !certificates.is_empty(),
        "no certificate (-----BEGIN CERTIFICATE-----) found"
    );
    Ok(certificates)
}

/// GETs a JWKS document over http or https, in a client span of its own (`GET`, see
/// [`crate::http_client`]) whose context goes along in `traceparent`: inside a call, the fetch
/// its token caused is part of the call's trace.
async fn fetch_key_set(
    url: &str,
    extra_roots: &[CertificateDer<'static>],
) -> anyhow::Result<JwkSet> {
    let answer = crate::http_client::HttpClient::new(extra_roots)?
        .get(url)
        .await
        .context("Failed to fetch the JWKS")?;
    anyhow::ensure!(
        answer.status.is_success(),
        "JWKS request answered {}",
        answer.status
    );
    serde_json::from_slice(&answer.body).context("The JWKS is not a JSON Web Key Set")
}

// === impl Caller ===

impl From<&Caller> for crate::outbox::Actor {
    fn from(caller: &Caller) -> crate::outbox::Actor {
        crate::outbox::Actor {
            subject: caller.subject.clone(),
            client_id: caller.client_id.clone(),
        }
    }
}

impl Caller {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|held| held == role)
    }

    /// Succeeds if the caller holds any of `roles`.
    pub fn require_any(&self, roles: &[&str]) -> Result<(), Error> {
        if roles.iter().any(|role| self.has_role(role)) {
            Ok(())
        } else {
            Err(Error::PermissionDenied(format!(
                "this needs one of the roles: {}",
                roles.join(", ")
            )))
        }
    }

    /// Succeeds for staff holding one of `staff_roles`, or for the customer who owns the record.
    /// A customer asking for another customer's record is told it does not exist, so ids cannot
    /// be probed.
    pub fn require_owner(
        &self,
        owner_customer_id: &str,
        staff_roles: &[&str],
        resource: &'static str,
    ) -> Result<(), Error> {
        if staff_roles.iter().any(|role| self.has_role(role)) {
            return Ok(());
        }
        if self.has_role(roles::CUSTOMER) && self.customer_id.as_deref() == Some(owner_customer_id)
        {
            return Ok(());
        }
        if self.has_role(roles::CUSTOMER) {
            return Err(Error::NotFound {
                resource,
                id: owner_customer_id.to_owned(),
            });
        }
        Err(Error::PermissionDenied(format!(
            "this needs one of the roles: {}",
            staff_roles.join(", ")
        )))
    }
}

/// The verified caller of a request, or UNAUTHENTICATED.
pub fn authenticated<T>(request: &tonic::Request<T>) -> Result<Caller, Error> {
    verified_caller(request.extensions().get::<Authentication>()).cloned()
}

/// Who makes the change a request asks for: the [`Actor`](crate::outbox::Actor) its events
/// name, from the verified caller; UNAUTHENTICATED without one.
pub fn actor<T>(request: &tonic::Request<T>) -> Result<crate::outbox::Actor, Error> {
    verified_caller(request.extensions().get::<Authentication>()).map(crate::outbox::Actor::from)
}

/// The caller `authentication` proves, or why there is none.
fn verified_caller(authentication: Option<&Authentication>) -> Result<&Caller, Error> {
    match authentication {
        Some(Authentication::Verified(caller)) => Ok(caller),
        Some(Authentication::Refused(reason)) => Err(Error::Unauthenticated((*reason).to_owned())),
        None => Err(Error::Unauthenticated(
            "this needs a bearer token (log in first)".to_owned(),
        )),
    }
}

/// The verified caller, if any, for RPCs open to anonymous callers too.
pub fn optional<T>(request: &tonic::Request<T>) -> Result<Option<Caller>, Error> {
    match request.extensions().get::<Authentication>() {
        None => Ok(None),
        Some(_) => authenticated(request).map(Some),
    }
}

/// What [`AuthLayer`] found on a request.
#[derive(Clone, Debug)]
enum Authentication {
    /// Shared with the verifier's cache: no copy per call until a handler asks for it.
    Verified(Arc<Caller>),
    /// A token was presented and refused; the reason is safe to show the caller.
    Refused(&'static str),
}

// === AccessTable ===

/// Who may call each RPC a server serves, read once from its descriptor set: the roles its
/// `(emporium.api.v1.access)` option declares, so what is enforced is what the contract says.
/// Looked up by the request's path, once per call.
#[derive(Clone, Debug, Default)]
pub struct AccessTable {
    /// By gRPC path (`/emporium.catalog.v1.CatalogService/CreateProduct`): every method of every
    /// served service, including those whose access is not declared (refused to everyone).
    rules: HashMap<String, AccessRule>,
}

/// What [`AccessTable`] requires of a call to one RPC.
#[derive(Clone, Debug, PartialEq, Eq)]
enum AccessRule {
    /// A valid access token admitted by `access`; `refusal` is the PERMISSION_DENIED message.
    Declared {
        access: contract::Access,
        refusal: String,
    },
    /// The contract declares no (well-formed) access: refused to every caller, fail closed.
    Undeclared,
}

impl AccessTable {
    /// The table for `services` (full names, e.g. `emporium.catalog.v1.CatalogService`) from an
    /// encoded descriptor set with its options. Fails when one of them is not in the set: its
    /// calls would otherwise go unchecked.
    pub fn from_descriptor_set(
        file_descriptor_set: &[u8],
        services: &[&str],
    ) -> anyhow::Result<AccessTable> {
        let pool = contract::decode_pool(file_descriptor_set)
            .context("Failed to decode the descriptor set")?;
        let declared = contract::method_access(&pool);
        let mut rules = HashMap::new();
        for service in services {
            anyhow::ensure!(
                pool.get_service_by_name(service).is_some(),
                "The descriptor set has no service {service}, so who may call it is unknown"
            );
            for method in declared.iter().filter(|method| method.service == *service) {
                let rule = match &method.access {
                    Ok(access) => AccessRule::Declared {
                        refusal: access.refusal(),
                        access: access.clone(),
                    },
                    Err(problem) => {
                        tracing::warn!(
                            rpc = %method.path,
                            problem = %problem,
                            "The contract declares no access for an RPC: refusing every call"
                        );
                        AccessRule::Undeclared
                    }
                };
                rules.insert(method.path.clone(), rule);
            }
        }
        Ok(AccessTable { rules })
    }

    /// The gRPC path of every method of the served services.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.rules.keys().map(String::as_str)
    }

    /// Whether the call to `path`, authenticated as `authentication`, may reach its handler.
    /// Paths outside the contract (health, reflection, unknown methods) are not this table's
    /// business and pass.
    fn check(&self, path: &str, authentication: Option<&Authentication>) -> Result<(), Error> {
        let Some(rule) = self.rules.get(path) else {
            return Ok(());
        };
        let caller = verified_caller(authentication)?;
        match rule {
            AccessRule::Declared { access, refusal } => {
                if access.admits(&caller.roles) {
                    Ok(())
                } else {
                    Err(Error::PermissionDenied(refusal.clone()))
                }
            }
            AccessRule::Undeclared => Err(Error::PermissionDenied(
                "the contract declares no access for this RPC, so nobody may call it".to_owned(),
            )),
        }
    }
}

// === AuthLayer ===

/// A tower layer that verifies `authorization: Bearer …`, records the outcome for
/// [`authenticated`], and refuses every call its [`AccessTable`] does not admit before the
/// handler (or even the request body) is reached. Requests to paths outside the table pass
/// through unchecked: health and reflection need no token.
#[derive(Clone, Debug)]
pub struct AuthLayer {
    verifier: Option<Arc<TokenVerifier>>,
    access: Arc<AccessTable>,
}

#[derive(Clone, Debug)]
pub struct AuthService<S> {
    inner: S,
    verifier: Option<Arc<TokenVerifier>>,
    access: Arc<AccessTable>,
}

impl AuthLayer {
    pub fn new(verifier: Arc<TokenVerifier>, access: AccessTable) -> AuthLayer {
        AuthLayer {
            verifier: Some(verifier),
            access: Arc::new(access),
        }
    }

    /// Verifies nothing: for services that do not enforce tokens yet. Every RPC of `access`
    /// then answers UNAUTHENTICATED.
    pub fn disabled(access: AccessTable) -> AuthLayer {
        AuthLayer {
            verifier: None,
            access: Arc::new(access),
        }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            verifier: self.verifier.clone(),
            access: Arc::clone(&self.access),
        }
    }
}

impl<S, B, ResponseBody> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<ResponseBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    ResponseBody: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The clone is the one that was not polled ready; swap so the ready one serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        let access = Arc::clone(&self.access);
        Box::pin(async move {
            let token = bearer_token(request.headers());
            if let (Some(token), Some(verifier)) = (token, verifier) {
                let authentication = match verifier.verify_at(&token, unix_now()).await {
                    Ok(caller) => {
                        tracing::Span::current().record("caller", caller.subject.as_str());
                        Authentication::Verified(caller)
                    }
                    Err(error) => {
                        // Per call, and a client's mistake: debug, so garbage cannot flood the log.
                        tracing::debug!(error.message = %error, "Refused a bearer token");
                        Authentication::Refused(error.reason())
                    }
                };
                request.extensions_mut().insert(authentication);
            }
            let admitted = access.check(
                request.uri().path(),
                request.extensions().get::<Authentication>(),
            );
            match admitted {
                Ok(()) => inner.call(request).await,
                Err(refusal) => Ok(tonic::Status::from(refusal).into_http()),
            }
        })
    }
}

/// The token of an `Authorization: Bearer …` header, if the request has one.
pub(crate) fn bearer_token(headers: &http::HeaderMap) -> Option<String> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

// === impl SigningKey ===

impl SigningKey {
    /// A fresh random key with a random key id.
    pub fn generate() -> anyhow::Result<SigningKey> {
        let signing_key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        let pkcs8_der = signing_key
            .to_pkcs8_der()
            .context("Failed to encode the key")?
            .as_bytes()
            .to_vec();
        SigningKey::from_pkcs8_der(&uuid::Uuid::new_v4().simple().to_string(), &pkcs8_der)
    }

    /// A key from its id and PKCS#8 DER encoding (as persisted by the identity service).
    pub fn from_pkcs8_der(kid: &str, pkcs8_der: &[u8]) -> anyhow::Result<SigningKey> {
        install_jwt_crypto();
        use ed25519_dalek::pkcs8::DecodePrivateKey;
        let signing_key = ed25519_dalek::SigningKey::from_pkcs8_der(pkcs8_der)
            .context("Not an Ed25519 PKCS#8 key")?;
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(signing_key.verifying_key().to_bytes());
        let public_jwk: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig",
        }))
        .context("Failed to build the JWK")?;
        Ok(SigningKey {
            kid: kid.to_owned(),
            encoding_key: EncodingKey::from_ed_der(pkcs8_der),
            public_jwk,
            pkcs8_der: pkcs8_der.to_vec(),
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half, for the JWKS.
    pub fn public_jwk(&self) -> &Jwk {
        &self.public_jwk
    }

    /// The private key, for persisting. Keep it secret.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8_der
    }

    /// Signs `claims` as an access token (`typ: at+jwt`, RFC 9068) with this key's id in the
    /// header.
    pub fn sign<C: Serialize>(&self, claims: &C) -> anyhow::Result<String> {
        self.sign_with_type(claims, "at+jwt")
    }

    /// Signs `claims` as a JWT of media type `typ` (`JWT` for an ID token).
    pub fn sign_with_type<C: Serialize>(&self, claims: &C, typ: &str) -> anyhow::Result<String> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        header.typ = Some(typ.to_owned());
        jsonwebtoken::encode(&header, claims, &self.encoding_key).context("Failed to sign a token")
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// A JWKS document holding the public halves of `keys`.
pub fn key_set(keys: &[&SigningKey]) -> JwkSet {
    JwkSet {
        keys: keys.iter().map(|key| key.public_jwk().clone()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use base64::Engine as _;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};

    use super::{
        AccessTable, Authentication, Caller, Claims, KeySource, SigningKey, TokenError,
        TokenVerifier, key_set, roles,
    };

    const ISSUER: &str = "http://localhost:8080";
    const AUDIENCE: &str = "emporium";
    const CATALOG: &str = "emporium.catalog.v1.CatalogService";

    #[test]
    fn the_access_table_admits_exactly_what_the_contract_declares() {
        let table =
            AccessTable::from_descriptor_set(emporium_proto::FILE_DESCRIPTOR_SET, &[CATALOG])
                .unwrap();
        let manager = signed_in(&[roles::CATALOG_MANAGER]);
        let sales = signed_in(&[roles::SALES]);
        let create = "/emporium.catalog.v1.CatalogService/CreateProduct";
        let get = "/emporium.catalog.v1.CatalogService/GetProduct";

        assert!(table.check(create, Some(&manager)).is_ok());
        assert!(matches!(
            table.check(create, Some(&sales)),
            Err(crate::Error::PermissionDenied(message))
                if message == "this needs one of the roles: admin, catalog-manager"
        ));
        assert!(table.check(get, Some(&sales)).is_ok());
        assert!(matches!(
            table.check(get, None),
            Err(crate::Error::Unauthenticated(_))
        ));
        assert!(matches!(
            table.check(get, Some(&Authentication::Refused("the token is not valid"))),
            Err(crate::Error::Unauthenticated(message)) if message == "the token is not valid"
        ));
        assert!(
            table.check("/grpc.health.v1.Health/Check", None).is_ok(),
            "health is not the contract's business"
        );
    }

    #[test]
    fn an_rpc_whose_contract_declares_no_access_is_refused_to_everyone() {
        use prost::Message as _;
        use prost_types::{
            DescriptorProto, FileDescriptorProto, FileDescriptorSet, MethodDescriptorProto,
            ServiceDescriptorProto,
        };
        let file_descriptor_set = FileDescriptorSet {
            file: vec![FileDescriptorProto {
                name: Some("test/v1/test.proto".to_owned()),
                package: Some("test.v1".to_owned()),
                syntax: Some("proto3".to_owned()),
                message_type: vec![DescriptorProto {
                    name: Some("Nothing".to_owned()),
                    ..Default::default()
                }],
                service: vec![ServiceDescriptorProto {
                    name: Some("TestService".to_owned()),
                    method: vec![MethodDescriptorProto {
                        name: Some("Undeclared".to_owned()),
                        input_type: Some(".test.v1.Nothing".to_owned()),
                        output_type: Some(".test.v1.Nothing".to_owned()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let table = AccessTable::from_descriptor_set(
            &file_descriptor_set.encode_to_vec(),
            &["test.v1.TestService"],
        )
        .unwrap();

        let admin = table.check(
            "/test.v1.TestService/Undeclared",
            Some(&signed_in(&[roles::ADMIN])),
        );

        assert!(
            matches!(admin, Err(crate::Error::PermissionDenied(_))),
            "{admin:?}"
        );
    }

    #[test]
    fn a_served_service_the_descriptor_set_lacks_fails_the_start() {
        let table = AccessTable::from_descriptor_set(
            emporium_proto::FILE_DESCRIPTOR_SET,
            &[CATALOG, "emporium.nothing.v1.NothingService"],
        );

        assert!(table.is_err(), "its calls would go unchecked");
    }

    fn signed_in(held: &[&str]) -> Authentication {
        Authentication::Verified(Arc::new(Caller {
            subject: "account-1".to_owned(),
            client_id: "test".to_owned(),
            roles: held.iter().map(|role| (*role).to_owned()).collect(),
            customer_id: None,
            token_id: "t".to_owned(),
        }))
    }

    fn claims(expires_in: i64) -> Claims {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        Claims {
            iss: ISSUER.to_owned(),
            sub: "account-1".to_owned(),
            aud: AUDIENCE.to_owned(),
            exp: now + expires_in,
            iat: now,
            jti: "token-1".to_owned(),
            client_id: "emporiumctl".to_owned(),
            roles: vec![roles::CATALOG_MANAGER.to_owned()],
            customer_id: None,
        }
    }

    fn verifier_trusting(keys: &[&SigningKey]) -> TokenVerifier {
        TokenVerifier::new(ISSUER, AUDIENCE, KeySource::Fixed(key_set(keys)))
    }

    #[tokio::test]
    async fn a_valid_token_names_its_caller() {
        let key = SigningKey::generate().unwrap();
        let token = key.sign(&claims(300)).unwrap();

        let caller = verifier_trusting(&[&key]).verify(&token).await.unwrap();

        assert_eq!(
            caller,
            Caller {
                subject: "account-1".to_owned(),
                client_id: "emporiumctl".to_owned(),
                roles: vec!["catalog-manager".to_owned()],
                customer_id: None,
                token_id: "token-1".to_owned(),
            }
        );
    }

    #[tokio::test]
    async fn an_expired_token_is_refused() {
        let key = SigningKey::generate().unwrap();
        let token = key.sign(&claims(-120)).unwrap();

        let error = verifier_trusting(&[&key]).verify(&token).await.unwrap_err();

        assert!(matches!(error, TokenError::Expired), "{error:?}");
    }

    #[tokio::test]
    async fn a_token_signed_by_another_key_is_refused() {
        let trusted = SigningKey::generate().unwrap();
        let other = SigningKey::generate().unwrap();
        // Same key id as the trusted key, different key: the signature check must catch it.
        let impostor = SigningKey::from_pkcs8_der(trusted.kid(), other.pkcs8_der()).unwrap();

        let unknown = verifier_trusting(&[&trusted])
            .verify(&other.sign(&claims(300)).unwrap())
            .await;
        let forged = verifier_trusting(&[&trusted])
            .verify(&impostor.sign(&claims(300)).unwrap())
            .await;

        assert!(
            matches!(unknown, Err(TokenError::UnknownKey(_))),
            "{unknown:?}"
        );
        assert!(matches!(forged, Err(TokenError::Invalid(_))), "{forged:?}");
    }

    #[tokio::test]
    async fn alg_none_is_refused() {
        let key = SigningKey::generate().unwrap();
        let encode = |json: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json.to_string())
        };
        let header = encode(serde_json::json!({ "alg": "none", "typ": "JWT", "kid": key.kid() }));
        let payload = encode(serde_json::to_value(claims(300)).unwrap());

        let result = verifier_trusting(&[&key])
            .verify(&format!("{header}.{payload}."))
            .await;

        assert!(
            matches!(
                result,
                Err(TokenError::Malformed | TokenError::WrongAlgorithm(_))
            ),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn hmac_signed_with_the_public_key_is_refused() {
        let key = SigningKey::generate().unwrap();
        let public_key = serde_json::to_value(key.public_jwk()).unwrap()["x"]
            .as_str()
            .unwrap()
            .to_owned();
        // Signed by hand: the chassis's provider cannot sign HS256, as it should not.
        let token = {
            use hmac::{KeyInit as _, Mac as _};
            let encode = |json: serde_json::Value| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json.to_string())
            };
            let header = serde_json::json!({ "alg": "HS256", "typ": "at+jwt", "kid": key.kid() });
            let signing_input = format!(
                "{}.{}",
                encode(header),
                encode(serde_json::to_value(claims(300)).unwrap())
            );
            let mut mac =
                hmac::Hmac::<sha2::Sha256>::new_from_slice(public_key.as_bytes()).unwrap();
            mac.update(signing_input.as_bytes());
            let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(mac.finalize().into_bytes());
            format!("{signing_input}.{signature}")
        };

        let result = verifier_trusting(&[&key]).verify(&token).await;

        assert!(
            matches!(result, Err(TokenError::WrongAlgorithm(Algorithm::HS256))),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn another_issuer_or_audience_is_refused() {
        let key = SigningKey::generate().unwrap();
        let other_issuer = key
            .sign(&Claims {
                iss: "http://evil.example".to_owned(),
                ..claims(300)
            })
            .unwrap();
        let other_audience = key
            .sign(&Claims {
                aud: "someone-else".to_owned(),
                ..claims(300)
            })
            .unwrap();
        let verifier = verifier_trusting(&[&key]);

        assert!(matches!(
            verifier.verify(&other_issuer).await,
            Err(TokenError::Invalid(_))
        ));
        assert!(matches!(
            verifier.verify(&other_audience).await,
            Err(TokenError::Invalid(_))
        ));
        assert!(matches!(
            verifier.verify("not.a.token").await,
            Err(TokenError::Malformed)
        ));
    }

    #[tokio::test]
    async fn a_rotated_key_is_fetched_from_the_jwks_uri_on_first_sight() {
        let old_key = SigningKey::generate().unwrap();
        let new_key = SigningKey::generate().unwrap();
        let server = JwksServer::start(&key_set(&[&old_key]), Answer::Document, None).await;
        let verifier = TokenVerifier::new(ISSUER, AUDIENCE, KeySource::Url(server.url.clone()))
            .with_min_refresh_interval(Duration::ZERO);
        verifier
            .verify(&old_key.sign(&claims(300)).unwrap())
            .await
            .expect("the old key is served");
        let new_token = new_key.sign(&claims(300)).unwrap();
        assert!(matches!(
            verifier.verify(&new_token).await,
            Err(TokenError::UnknownKey(_))
        ));

        server.serve(&key_set(&[&old_key, &new_key]));

        verifier
            .verify(&new_token)
            .await
            .expect("the rotated key is fetched");
        verifier
            .verify(&old_key.sign(&claims(300)).unwrap())
            .await
            .expect("the old key still verifies");
    }

    #[tokio::test]
    async fn a_fetch_inside_a_call_is_a_client_span_of_its_trace_and_sends_its_context() {
        // Arrange: spans kept in a ring, a call's span open, a token signed by an unseen key.
        let (recent, subscriber) = crate::telemetry::kept_in_a_ring();
        let _default = tracing::subscriber::set_default(subscriber);
        let key = SigningKey::generate().unwrap();
        let server = JwksServer::start(&key_set(&[&key]), Answer::Document, None).await;
        let verifier = TokenVerifier::new(ISSUER, AUDIENCE, KeySource::Url(server.url.clone()));
        let call = tracing::info_span!("grpc", otel.name = "a.v1.A/Get", otel.kind = "server");

        // Act
        tracing::Instrument::instrument(
            verifier.verify(&key.sign(&claims(300)).unwrap()),
            call.clone(),
        )
        .await
        .expect("the key is fetched");
        drop(call);

        // Assert: the fetch is the call's child, and the JWKS server got its context.
        let traces = recent.summaries();
        assert_eq!(traces.len(), 1, "{traces:#?}");
        let spans = &traces[0].spans;
        let call = spans.iter().find(|span| span.name == "a.v1.A/Get").unwrap();
        let fetch = spans.iter().find(|span| span.name == "GET").unwrap();
        assert_eq!(fetch.kind, "client");
        assert_eq!(fetch.parent_span_id.as_ref(), Some(&call.span_id));
        assert_eq!(fetch.attributes["http.request.method"], "GET");
        assert_eq!(fetch.attributes["url.full"], server.url.as_str());
        assert_eq!(fetch.attributes["server.address"], "127.0.0.1");
        assert_eq!(fetch.attributes["http.response.status_code"], 200);
        assert_eq!(
            server.last_header("traceparent"),
            Some(format!("00-{}-{}-01", traces[0].trace_id, fetch.span_id))
        );
    }

    /// A moment far from the real clock: the cache tests pass `now` themselves.
    const EXP: i64 = 2_000_000_000;

    fn claims_expiring_at(exp: i64, jti: &str) -> Claims {
        Claims {
            exp,
            iat: exp - 600,
            jti: jti.to_owned(),
            ..claims(0)
        }
    }

    #[tokio::test]
    async fn a_cached_token_is_never_served_past_its_exp() {
        let key = SigningKey::generate().unwrap();
        let token = key.sign(&claims_expiring_at(EXP, "t")).unwrap();
        let verifier = verifier_trusting(&[&key]);

        let fresh = verifier.verify_at(&token, EXP - 600).await;
        let last_second = verifier.verify_at(&token, EXP - 1).await;
        let past_the_leeway = verifier.verify_at(&token, EXP + 31).await;

        assert_eq!(fresh.unwrap().subject, "account-1");
        assert_eq!(last_second.unwrap().subject, "account-1");
        assert!(
            matches!(past_the_leeway, Err(TokenError::Expired)),
            "an expired token was served from the cache: {past_the_leeway:?}"
        );
    }

    #[test]
    fn the_cache_forgets_a_token_at_its_exp_and_keeps_its_capacity() {
        let key = Arc::new(super::VerifyingKey {
            jwk: SigningKey::generate().unwrap().public_jwk().clone(),
            decoding_key: jsonwebtoken::DecodingKey::from_secret(b"unused"),
        });
        let caller = Arc::new(Caller {
            subject: "account-1".to_owned(),
            client_id: "emporiumctl".to_owned(),
            roles: Vec::new(),
            customer_id: None,
            token_id: "t".to_owned(),
        });
        let token = |exp: i64| super::VerifiedToken {
            caller: Arc::clone(&caller),
            exp,
            kid: "k".to_owned(),
            key: Arc::clone(&key),
        };
        let mut cache = super::VerifiedTokens::new(2);

        cache.insert([1; 32], token(EXP), EXP - 10);
        assert!(cache.get(&[1; 32], EXP - 1).is_some());
        assert!(cache.get(&[1; 32], EXP).is_none(), "served at its exp");
        assert_eq!(cache.len(), 0, "an expired token is dropped when met");
        cache.insert([2; 32], token(EXP), EXP);
        assert_eq!(cache.len(), 0, "an expired token is not kept");

        cache.insert([3; 32], token(EXP + 100), EXP);
        cache.insert([4; 32], token(EXP + 300), EXP);
        cache.insert([5; 32], token(EXP + 200), EXP);

        assert_eq!(cache.len(), 2);
        assert!(
            cache.get(&[3; 32], EXP).is_none(),
            "the soonest to expire goes first"
        );
        assert!(cache.get(&[4; 32], EXP).is_some());
        assert!(cache.get(&[5; 32], EXP).is_some());
    }

    #[tokio::test]
    async fn the_verifier_keeps_at_most_its_cache_capacity() {
        let key = SigningKey::generate().unwrap();
        let verifier = verifier_trusting(&[&key]).with_cache_capacity(3);

        for index in 0..10 {
            let token = key
                .sign(&claims_expiring_at(EXP + index, &format!("t{index}")))
                .unwrap();
            verifier.verify_at(&token, EXP - 600).await.unwrap();
        }

        assert_eq!(verifier.lock_verified().len(), 3);
    }

    #[tokio::test]
    async fn a_changed_token_is_not_served_from_the_cache() {
        let key = SigningKey::generate().unwrap();
        let token = key.sign(&claims_expiring_at(EXP, "t")).unwrap();
        let verifier = verifier_trusting(&[&key]);
        verifier.verify_at(&token, EXP - 600).await.unwrap();
        let (header, rest) = token.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        let promoted = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&Claims {
                roles: vec![roles::ADMIN.to_owned()],
                ..claims_expiring_at(EXP, "t")
            })
            .unwrap(),
        );
        let edited_claims = format!("{header}.{promoted}.{signature}");
        // One character of the signature changed (not the last, whose low bits are padding).
        let at = token.len() - 10;
        let flipped = if &token[at..=at] == "A" { "B" } else { "A" };
        let forged_signature = format!("{}{flipped}{}", &token[..at], &token[at + 1..]);

        let edited = verifier.verify_at(&edited_claims, EXP - 600).await;
        let forged = verifier.verify_at(&forged_signature, EXP - 600).await;

        assert!(matches!(edited, Err(TokenError::Invalid(_))), "{edited:?}");
        assert!(matches!(forged, Err(TokenError::Invalid(_))), "{forged:?}");
    }

    #[tokio::test]
    async fn a_refused_token_stays_refused() {
        let key = SigningKey::generate().unwrap();
        let token = key
            .sign(&Claims {
                aud: "someone-else".to_owned(),
                ..claims_expiring_at(EXP, "t")
            })
            .unwrap();
        let verifier = verifier_trusting(&[&key]);

        let first = verifier.verify_at(&token, EXP - 600).await;
        let again = verifier.verify_at(&token, EXP - 600).await;

        assert!(matches!(first, Err(TokenError::Invalid(_))), "{first:?}");
        assert!(matches!(again, Err(TokenError::Invalid(_))), "{again:?}");
    }

    #[tokio::test]
    async fn a_cached_token_goes_with_its_key_when_a_fetch_changes_or_drops_it() {
        let old_key = SigningKey::generate().unwrap();
        let kept_key = SigningKey::generate().unwrap();
        let other = SigningKey::generate().unwrap();
        let reused_kid = SigningKey::from_pkcs8_der(old_key.kid(), other.pkcs8_der()).unwrap();
        let new_key = SigningKey::generate().unwrap();
        let newer_key = SigningKey::generate().unwrap();
        let server =
            JwksServer::start(&key_set(&[&old_key, &kept_key]), Answer::Document, None).await;
        let verifier = TokenVerifier::new(ISSUER, AUDIENCE, KeySource::Url(server.url.clone()))
            .with_min_refresh_interval(Duration::ZERO);
        let token_of = |key: &SigningKey| key.sign(&claims_expiring_at(EXP, key.kid())).unwrap();
        let now = EXP - 600;
        let (old_token, kept_token) = (token_of(&old_key), token_of(&kept_key));
        verifier.verify_at(&old_token, now).await.unwrap();
        verifier.verify_at(&kept_token, now).await.unwrap();

        // The old key id now names another key; a token of a new key makes the verifier fetch.
        server.serve(&key_set(&[&reused_kid, &kept_key, &new_key]));
        verifier.verify_at(&token_of(&new_key), now).await.unwrap();
        let changed = verifier.verify_at(&old_token, now).await;
        let kept = verifier.verify_at(&kept_token, now).await;
        // Then the kept key goes too.
        server.serve(&key_set(&[&new_key, &newer_key]));
        verifier
            .verify_at(&token_of(&newer_key), now)
            .await
            .unwrap();
        let dropped = verifier.verify_at(&kept_token, now).await;

        assert!(
            matches!(changed, Err(TokenError::Invalid(_))),
            "a token of a replaced key was served: {changed:?}"
        );
        kept.expect("a token of a key the fetch kept stays valid");
        assert!(
            matches!(dropped, Err(TokenError::UnknownKey(_))),
            "a token of a dropped key was served: {dropped:?}"
        );
    }

    #[test]
    fn customers_reach_only_their_own_records() {
        let customer = Caller {
            subject: "account-7".to_owned(),
            client_id: "store".to_owned(),
            roles: vec![roles::CUSTOMER.to_owned()],
            customer_id: Some("customer-7".to_owned()),
            token_id: "t".to_owned(),
        };
        let sales = Caller {
            roles: vec![roles::SALES.to_owned()],
            customer_id: None,
            ..customer.clone()
        };

        assert!(
            customer
                .require_owner("customer-7", &[roles::SALES], "customer")
                .is_ok()
        );
        assert!(matches!(
            customer.require_owner("customer-8", &[roles::SALES], "customer"),
            Err(crate::Error::NotFound { .. })
        ));
        assert!(
            sales
                .require_owner("customer-8", &[roles::SALES], "customer")
                .is_ok()
        );
        assert!(matches!(
            sales.require_any(&[roles::ADMIN]),
            Err(crate::Error::PermissionDenied(_))
        ));
    }

    #[tokio::test]
    async fn an_id_token_or_an_untyped_token_is_refused() {
        let key = SigningKey::generate().unwrap();
        let verifier = verifier_trusting(&[&key]);

        let id_token = verifier
            .verify(&key.sign_with_type(&claims(300), "JWT").unwrap())
            .await;
        let untyped = {
            let mut header = Header::new(Algorithm::EdDSA);
            header.kid = Some(key.kid().to_owned());
            header.typ = None;
            let encoding_key = EncodingKey::from_ed_der(key.pkcs8_der());
            verifier
                .verify(&jsonwebtoken::encode(&header, &claims(300), &encoding_key).unwrap())
                .await
        };
        let media_type = verifier
            .verify(
                &key.sign_with_type(&claims(300), "Application/AT+JWT")
                    .unwrap(),
            )
            .await;

        assert!(
            matches!(id_token, Err(TokenError::NotAnAccessToken(Some(ref typ))) if typ == "JWT"),
            "{id_token:?}"
        );
        assert!(
            matches!(untyped, Err(TokenError::NotAnAccessToken(None))),
            "{untyped:?}"
        );
        media_type.expect("the full media type of an access token, in any case, is accepted");
    }

    #[tokio::test]
    async fn a_jwks_served_over_tls_is_fetched_when_its_ca_is_trusted() {
        let key = SigningKey::generate().unwrap();
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let server = JwksServer::start(
            &key_set(&[&key]),
            Answer::Document,
            Some(tls_acceptor(&certified)),
        )
        .await;
        assert!(server.url.starts_with("https://"), "{}", server.url);
        let token = key.sign(&claims(300)).unwrap();
        let trusted_ca = super::parse_pem_certificates(certified.cert.pem().as_bytes()).unwrap();

        let trusting = TokenVerifier::new(ISSUER, AUDIENCE, KeySource::Url(server.url.clone()))
            .trusting(trusted_ca)
            .verify(&token)
            .await;
        let not_trusting = TokenVerifier::new(ISSUER, AUDIENCE, KeySource::Url(server.url.clone()))
            .verify(&token)
            .await;

        assert_eq!(
            trusting.expect("the key is fetched over TLS").subject,
            "account-1"
        );
        assert!(
            matches!(not_trusting, Err(TokenError::KeysUnavailable(_))),
            "a certificate no trusted CA signed must be refused: {not_trusting:?}"
        );
        assert_eq!(
            server.n_requests(),
            1,
            "the untrusted fetch never got to HTTP"
        );
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        assert!(super::parse_pem_certificates(b"not a certificate").is_err());
        assert!(super::parse_pem_certificates(b"").is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_of_unknown_key_ids_fetches_a_handful_of_times_and_valid_tokens_pass() {
        let key = SigningKey::generate().unwrap();
        let server = JwksServer::start(&key_set(&[&key]), Answer::Document, None).await;
        let verifier = Arc::new(TokenVerifier::new(
            ISSUER,
            AUDIENCE,
            KeySource::Url(server.url.clone()),
        ));
        let valid_token = key.sign(&claims(300)).unwrap();

        let (garbage, valid) = flood(&verifier, &key, &valid_token).await;

        assert!(
            garbage
                .iter()
                .all(|result| matches!(result, Err(TokenError::UnknownKey(_)))),
            "{:?}",
            garbage
                .iter()
                .find(|result| !matches!(result, Err(TokenError::UnknownKey(_))))
        );
        assert!(
            valid.iter().all(Result::is_ok),
            "{:?}",
            valid.iter().find(|result| result.is_err())
        );
        assert!(
            server.n_requests() <= 3,
            "{} fetches for 1,000 unknown key ids",
            server.n_requests()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_fetch_starts_the_cool_down_too() {
        let key = SigningKey::generate().unwrap();
        let server = JwksServer::start(&key_set(&[&key]), Answer::ServerError, None).await;
        let verifier = Arc::new(TokenVerifier::new(
            ISSUER,
            AUDIENCE,
            KeySource::Url(server.url.clone()),
        ));
        let tokens = garbage_tokens(&key, 1_000);

        let results = futures::future::join_all(tokens.iter().map(|token| {
            let verifier = Arc::clone(&verifier);
            async move { verifier.verify(token).await }
        }))
        .await;

        assert!(
            results
                .iter()
                .all(|result| matches!(result, Err(TokenError::KeysUnavailable(_)))),
            "{:?}",
            results.first()
        );
        assert!(
            server.n_requests() <= 3,
            "{} fetches for 1,000 unknown key ids while the issuer fails",
            server.n_requests()
        );
    }

    #[tokio::test]
    async fn during_the_cool_down_an_unknown_key_id_is_refused_without_waiting_on_a_lock() {
        use futures::FutureExt as _;
        let key = SigningKey::generate().unwrap();
        let verifier = verifier_trusting(&[&key]);
        let tokens = garbage_tokens(&key, 2);
        let first = verifier.verify(&tokens[0]).await;
        assert!(matches!(first, Err(TokenError::UnknownKey(_))), "{first:?}");

        // Hold the fetch lock as a hung fetch would: a refusal must not need it.
        let _fetching = verifier.fetching.lock().await;
        let during_cool_down = verifier.verify(&tokens[1]).now_or_never();

        assert!(
            matches!(during_cool_down, Some(Err(TokenError::UnknownKey(_)))),
            "the refusal waited: {during_cool_down:?}"
        );
    }

    /// Verifies 1,000 tokens with random key ids and, at the same time, 100 times `valid_token`.
    #[allow(clippy::type_complexity)]
    async fn flood(
        verifier: &Arc<TokenVerifier>,
        key: &SigningKey,
        valid_token: &str,
    ) -> (
        Vec<Result<Caller, TokenError>>,
        Vec<Result<Caller, TokenError>>,
    ) {
        let garbage = garbage_tokens(key, 1_000);
        let garbage = garbage.iter().map(|token| {
            let verifier = Arc::clone(verifier);
            async move { verifier.verify(token).await }
        });
        let valid = (0..100).map(|_| {
            let verifier = Arc::clone(verifier);
            async move {
                tokio::task::yield_now().await;
                verifier.verify(valid_token).await
            }
        });
        tokio::join!(
            futures::future::join_all(garbage),
            futures::future::join_all(valid)
        )
    }

    /// Tokens signed by `key` but naming random key ids, as an attacker would send.
    fn garbage_tokens(key: &SigningKey, count: usize) -> Vec<String> {
        (0..count)
            .map(|_| {
                let impostor =
                    SigningKey::from_pkcs8_der(&uuid::Uuid::new_v4().to_string(), key.pkcs8_der())
                        .unwrap();
                impostor.sign(&claims(300)).unwrap()
            })
            .collect()
    }

    fn tls_acceptor(certified: &rcgen::CertifiedKey<rcgen::KeyPair>) -> tokio_rustls::TlsAcceptor {
        let private_key = rustls::pki_types::PrivateKeyDer::Pkcs8(
            rustls::pki_types::PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()),
        );
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], private_key)
        .unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }

    /// How [`JwksServer`] answers.
    #[derive(Clone, Copy, Debug)]
    enum Answer {
        Document,
        ServerError,
    }

    /// A minimal HTTP(S) server answering every request with the current JWKS document (or an
    /// error), counting the requests.
    struct JwksServer {
        url: String,
        document: Arc<std::sync::Mutex<String>>,
        n_requests: Arc<AtomicUsize>,
        /// The head of the last request (its request line and headers).
        last_request: Arc<std::sync::Mutex<String>>,
    }

    impl JwksServer {
        async fn start(
            key_set: &jsonwebtoken::jwk::JwkSet,
            answer: Answer,
            tls: Option<tokio_rustls::TlsAcceptor>,
        ) -> JwksServer {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let scheme = if tls.is_some() { "https" } else { "http" };
            let server = JwksServer {
                url: format!("{scheme}://{addr}/.well-known/jwks.json"),
                document: Arc::new(std::sync::Mutex::new(
                    serde_json::to_string(key_set).unwrap(),
                )),
                n_requests: Arc::new(AtomicUsize::new(0)),
                last_request: Arc::default(),
            };
            let seen = Seen {
                document: Arc::clone(&server.document),
                n_requests: Arc::clone(&server.n_requests),
                last_request: Arc::clone(&server.last_request),
            };
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let seen = seen.clone();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        match tls {
                            None => respond(stream, &seen, answer).await,
                            Some(acceptor) => {
                                if let Ok(stream) = acceptor.accept(stream).await {
                                    respond(stream, &seen, answer).await;
                                }
                            }
                        }
                    });
                }
            });
            server
        }

        fn serve(&self, key_set: &jsonwebtoken::jwk::JwkSet) {
            *self.document.lock().unwrap() = serde_json::to_string(key_set).unwrap();
        }

        fn n_requests(&self) -> usize {
            self.n_requests.load(Ordering::SeqCst)
        }

        /// The value of the last request's `header` (lower case), if it had one.
        fn last_header(&self, header: &str) -> Option<String> {
            let request = self.last_request.lock().unwrap();
            request.lines().find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case(header)
                    .then(|| value.trim().to_owned())
            })
        }
    }

    /// What the server answers with and what it saw, shared with its connections.
    #[derive(Clone)]
    struct Seen {
        document: Arc<std::sync::Mutex<String>>,
        n_requests: Arc<AtomicUsize>,
        last_request: Arc<std::sync::Mutex<String>>,
    }

    async fn respond<S>(mut stream: S, seen: &Seen, answer: Answer)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut request = vec![0u8; 4096];
        let n_read = match stream.read(&mut request).await {
            Ok(n_read) if n_read > 0 => n_read,
            _ => return,
        };
        *seen.last_request.lock().unwrap() =
            String::from_utf8_lossy(&request[..n_read]).into_owned();
        seen.n_requests.fetch_add(1, Ordering::SeqCst);
        let (status, body) = match answer {
            Answer::Document => ("200 OK", seen.document.lock().unwrap().clone()),
            Answer::ServerError => ("500 Internal Server Error", String::new()),
        };
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    }
}
