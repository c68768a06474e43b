//! OAuth2 clients: the applications that ask identity for tokens. A public client (a browser or
//! native app) keeps no secret, must name where to send the user back, and acts only for a user,
//! so it holds no roles. A confidential client keeps a secret, may have no redirect URIs at all
//! (a server using the client-credentials grant), and may hold roles, which go into its own
//! tokens. A client secret's plaintext is shown once; only its hash is kept.

use chassis::error::FieldViolation;
use chassis::storage::Timestamp;
use chassis::text::{Text, TextField, TextRule, is_forbidden_character};
use secrecy::SecretString;
use uuid::Uuid;

use super::RoleName;

/// A client's public identifier: 1 to 64 of `a-z 0-9 . _ -`, starting with a letter or digit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientId(String);

/// One line of 1 to 100 characters after trimming, without control characters.
pub type ClientName = Text<ClientNameRule>;

/// The rule of a [`ClientName`].
#[derive(Debug)]
pub enum ClientNameRule {}

impl TextField for ClientNameRule {
    const RULE: TextRule = TextRule::single_line(100);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientKind {
    /// Cannot keep a secret: needs a redirect URI, holds no roles.
    Public,
    /// Keeps a secret; may hold roles for the client-credentials grant.
    Confidential,
}

/// Where a client may send the user back: an absolute `https` URL (or `http` on a loopback host)
/// with no fragment and no userinfo, at most 512 characters. Kept exactly as given, since OAuth2
/// compares redirect URIs as plain strings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedirectUri(String);

/// A client as stored, without its secret hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    /// The client's event-history id; `client_id` is its key.
    pub id: Uuid,
    pub client_id: ClientId,
    pub name: String,
    pub kind: ClientKind,
    pub redirect_uris: Vec<RedirectUri>,
    pub post_logout_redirect_uris: Vec<RedirectUri>,
    /// Sorted; always empty for a public client.
    pub roles: Vec<RoleName>,
    /// A disabled client gets no tokens.
    pub disabled: bool,
    /// Starts at 1; every change (secret resets included) adds 1.
    pub version: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A client to register. Build it with [`NewClient::new`], which applies the rules of its kind.
#[derive(Clone, Debug)]
pub struct NewClient {
    pub client_id: ClientId,
    pub name: ClientName,
    pub kind: ClientKind,
    pub redirect_uris: Vec<RedirectUri>,
    pub post_logout_redirect_uris: Vec<RedirectUri>,
    /// Sorted, without duplicates.
    pub roles: Vec<RoleName>,
}

/// The fields to change; `None` keeps the current value, a list replaces the current one.
#[derive(Clone, Debug)]
pub struct ClientChanges {
    /// The version the caller read; the change is refused if the client moved on.
    pub expected_version: i64,
    pub name: Option<ClientName>,
    pub redirect_uris: Option<Vec<RedirectUri>>,
    pub post_logout_redirect_uris: Option<Vec<RedirectUri>>,
    /// Sorted, without duplicates.
    pub roles: Option<Vec<RoleName>>,
    pub disabled: Option<bool>,
}

/// Mints client secrets. A secret is 32 random bytes (256 bits), base64url without padding; it is
/// stored as the hex SHA-256 of that text. A fast hash is enough, and a slow password KDF (argon2)
/// would be wrong here: a KDF makes guessing a *human* password expensive, but a 256-bit random
/// value cannot be guessed anyway, so the KDF would add only latency to every token request and a
/// CPU-exhaustion (DoS) surface for anyone who can send one, and no strength.
#[derive(Debug)]
pub struct ClientSecret;

/// Redirect URIs in one list, at most.
pub const MAX_REDIRECT_URIS: usize = 10;

// === impl ClientId ===

impl ClientId {
    /// Not trimmed: the alphabet has no whitespace.
    pub const RULE: TextRule = TextRule::single_line(64).untrimmed();

    pub fn parse(text: &str) -> Result<ClientId, String> {
        let text = Self::RULE.parse(text)?;
        let Some(first) = text.chars().next() else {
            return Err("must not be empty".to_owned());
        };
        if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
            return Err("must start with a-z or 0-9".to_owned());
        }
        if let Some(bad) = text.chars().find(|c| {
            !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        }) {
            return Err(format!("must use only a-z 0-9 . _ - (found {bad:?})"));
        }
        Ok(ClientId(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// === impl ClientKind ===

impl ClientKind {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientKind::Public => "public",
            ClientKind::Confidential => "confidential",
        }
    }

    pub fn parse(text: &str) -> Result<ClientKind, String> {
        match text {
            "public" => Ok(ClientKind::Public),
            "confidential" => Ok(ClientKind::Confidential),
            _ => Err(format!("{text:?} is not a client kind")),
        }
    }

    /// What a client of this kind with these redirect URIs and roles breaks, by field: a public
    /// client needs a redirect URI (it has no other way to receive a code) and holds no roles
    /// (its tokens act for a user, with the user's roles).
    pub fn violations(
        self,
        redirect_uris: &[RedirectUri],
        roles: &[RoleName],
    ) -> Vec<FieldViolation> {
        let mut violations = Vec::new();
        if self == ClientKind::Public {
            if redirect_uris.is_empty() {
                violations.push(FieldViolation {
                    field: "redirect_uris".to_owned(),
                    description: "a public client needs at least one".to_owned(),
                });
            }
            if !roles.is_empty() {
                violations.push(FieldViolation {
                    field: "roles".to_owned(),
                    description: "a public client acts for a user and cannot hold roles".to_owned(),
                });
            }
        }
        violations
    }
}

// === impl RedirectUri ===

impl RedirectUri {
    /// Not trimmed: OAuth2 compares redirect URIs exactly, so nothing may be fixed up.
    pub const RULE: TextRule = TextRule::single_line(512).untrimmed();

    pub fn parse(text: &str) -> Result<RedirectUri, String> {
        let text = Self::RULE.parse(text)?;
        // The URL parser would quietly strip these; the stored text must be what is matched.
        if text
            .chars()
            .any(|c| c.is_whitespace() || is_forbidden_character(c))
        {
            return Err("must not contain whitespace or control characters".to_owned());
        }
        let url = url::Url::parse(&text)
            .map_err(|_| "must be an absolute URL like https://app.example.com/callback")?;
        if url.fragment().is_some() {
            return Err("must not have a fragment (#…)".to_owned());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not carry a user name or password".to_owned());
        }
        match url.scheme() {
            "https" if url.host().is_some() => {}
            "http" if is_loopback(&url) => {}
            "http" => {
                return Err(
                    "must use https; http is only for localhost, 127.0.0.1 and [::1]".to_owned(),
                );
            }
            _ => return Err("must be an https URL".to_owned()),
        }
        Ok(RedirectUri(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// === impl NewClient ===

impl NewClient {
    /// The client, or every rule of `kind` it breaks, by field.
    pub fn new(
        client_id: ClientId,
        name: ClientName,
        kind: ClientKind,
        redirect_uris: Vec<RedirectUri>,
        post_logout_redirect_uris: Vec<RedirectUri>,
        roles: Vec<RoleName>,
    ) -> Result<NewClient, Vec<FieldViolation>> {
        let roles = sorted_roles(roles);
        let violations = kind.violations(&redirect_uris, &roles);
        if !violations.is_empty() {
            return Err(violations);
        }
        Ok(NewClient {
            client_id,
            name,
            kind,
            redirect_uris,
            post_logout_redirect_uris,
            roles,
        })
    }
}

// === impl ClientChanges ===

impl ClientChanges {
    /// Every rule `client`'s kind would break once these changes apply, by field.
    pub fn violations_for(&self, client: &Client) -> Vec<FieldViolation> {
        let redirect_uris = self.redirect_uris.as_ref().unwrap_or(&client.redirect_uris);
        let roles = self.roles.as_ref().unwrap_or(&client.roles);
        client.kind.violations(redirect_uris, roles)
    }
}

// === impl ClientSecret ===

impl ClientSecret {
    pub const N_BYTES: usize = 32;

    /// A fresh secret and its hash: show the first once, store the second.
    pub fn generate() -> (SecretString, String) {
        use base64::Engine as _;
        use rand::RngCore as _;

        let mut bytes = [0_u8; Self::N_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let plaintext = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let hash = hash_client_secret(&plaintext);
        (SecretString::from(plaintext), hash)
    }
}

/// Whether `presented` is the secret whose hash is `stored_hash`. The comparison takes the same
/// time wherever the hashes differ, so timing reveals nothing about the stored hash.
pub fn verify_client_secret(presented: &str, stored_hash: &str) -> bool {
    use subtle::ConstantTimeEq as _;

    let presented_hash = hash_client_secret(presented);
    // Lengths are public (a hex SHA-256 is always 64 characters); `ct_eq` is false on a mismatch.
    presented_hash
        .as_bytes()
        .ct_eq(stored_hash.as_bytes())
        .into()
}

/// Roles sorted by name, duplicates dropped.
pub fn sorted_roles(mut roles: Vec<RoleName>) -> Vec<RoleName> {
    roles.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    roles.dedup();
    roles
}

/// Hex SHA-256 of the secret's text.
fn hash_client_secret(secret: &str) -> String {
    use sha2::Digest as _;
    use std::fmt::Write as _;

    let digest = sha2::Sha256::digest(secret.as_bytes());
    let mut hex = String::with_capacity(digest.len() * 2);
    for byte in digest {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain == "localhost",
        Some(url::Host::Ipv4(address)) => address == std::net::Ipv4Addr::LOCALHOST,
        Some(url::Host::Ipv6(address)) => address == std::net::Ipv6Addr::LOCALHOST,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::{
        ClientId, ClientKind, ClientName, ClientSecret, NewClient, RedirectUri, RoleName,
        verify_client_secret,
    };

    #[test]
    fn client_ids_take_a_restricted_alphabet() {
        for good in ["web", "0app", "shop.web-2_b", &"a".repeat(64)] {
            assert!(ClientId::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Web",
            ".web",
            "-web",
            "_web",
            "has space",
            "web/1",
            "wéb",
            &"a".repeat(65),
        ] {
            assert!(ClientId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn redirect_uris_are_https_or_loopback_http() {
        for good in [
            "https://app.example.com/callback",
            "https://app.example.com:8443/cb?tenant=1",
            "http://localhost:3000/callback",
            "http://127.0.0.1/cb",
            "http://[::1]:8080/cb",
        ] {
            assert_eq!(RedirectUri::parse(good).unwrap().as_str(), good);
        }
        for bad in [
            "",
            "/callback",
            "app.example.com/callback",
            "http://app.example.com/callback",
            "http://localhost.example.com/cb",
            "http://127.0.0.2/cb",
            "https://app.example.com/callback#done",
            "https://app.example.com/callback#",
            "https://user@app.example.com/cb",
            "https://user:pw@app.example.com/cb",
            "ftp://app.example.com/cb",
            "com.example.app:/callback",
            "javascript:alert(1)",
            " https://app.example.com/cb",
            "https://app.example.com/c b",
            "https://app.example.com/cb\0",
            "https://app.example.com/\u{202E}bc",
        ] {
            assert!(RedirectUri::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn redirect_uris_are_at_most_512_characters() {
        let prefix = "https://app.example.com/";
        let longest = format!("{prefix}{}", "a".repeat(512 - prefix.len()));
        assert!(RedirectUri::parse(&longest).is_ok());
        assert!(RedirectUri::parse(&format!("{longest}a")).is_err());
    }

    #[test]
    fn the_error_says_why_http_is_refused() {
        let reason = RedirectUri::parse("http://app.example.com/cb").unwrap_err();
        assert!(reason.contains("localhost"), "{reason}");
    }

    #[test]
    fn public_clients_need_a_redirect_uri_and_hold_no_roles() {
        let new = |kind, redirect_uris: &[&str], roles: &[&str]| {
            NewClient::new(
                ClientId::parse("web").unwrap(),
                ClientName::parse("Web").unwrap(),
                kind,
                redirect_uris
                    .iter()
                    .map(|uri| RedirectUri::parse(uri).unwrap())
                    .collect(),
                Vec::new(),
                roles
                    .iter()
                    .map(|role| RoleName::parse(role).unwrap())
                    .collect(),
            )
            .map_err(|violations| {
                violations
                    .into_iter()
                    .map(|violation| violation.field)
                    .collect::<Vec<_>>()
            })
        };
        let uri = "https://app.example.com/cb";

        assert!(new(ClientKind::Public, &[uri], &[]).is_ok());
        assert_eq!(
            new(ClientKind::Public, &[], &["sales"]).unwrap_err(),
            ["redirect_uris", "roles"]
        );
        let confidential =
            new(ClientKind::Confidential, &[], &["sales", "admin", "sales"]).unwrap();
        let roles: Vec<&str> = confidential.roles.iter().map(RoleName::as_str).collect();
        assert_eq!(roles, ["admin", "sales"]);
    }

    #[test]
    fn a_secret_verifies_against_its_hash_only() {
        let (secret, hash) = ClientSecret::generate();
        let (other, _) = ClientSecret::generate();

        // 32 bytes in base64url without padding: 43 characters.
        assert_eq!(secret.expose_secret().len(), 43);
        assert!(
            secret
                .expose_secret()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(hash.len(), 64);
        assert!(verify_client_secret(secret.expose_secret(), &hash));
        assert!(!verify_client_secret(other.expose_secret(), &hash));
        assert!(!verify_client_secret("", &hash));
        assert!(!verify_client_secret(secret.expose_secret(), ""));
        assert!(!format!("{secret:?}").contains(secret.expose_secret()));
    }
}
