//! The keys the identity service signs access tokens with: generated on first use and rotated on a
//! schedule, persisted in its own database (encrypted under the [`KeyEncryptionKey`]) so they
//! survive restarts and are shared by replicas, and published (public halves only) as the JWKS
//! every service verifies tokens against, for as long as a token they signed may still be valid.
//!
//! Time is always passed in (`now`), so tests can step through a rotation without waiting;
//! production callers pass `OffsetDateTime::now_utc()`.

use std::fmt;
use std::time::Duration;

use anyhow::{Context, anyhow};
use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use chacha20poly1305::aead::{Aead, Generate, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use chassis::auth::SigningKey;
use chassis::error::Error;
use chassis::on_backend;
use chassis::storage::{Database, Timestamp};
use jsonwebtoken::jwk::JwkSet;
use time::OffsetDateTime;

/// The setting that holds the [`KeyEncryptionKey`], base64.
pub const KEY_ENCRYPTION_KEY_VARIABLE: &str = "EMPORIUM_IDENTITY_KEY_ENCRYPTION_KEY";

/// How much longer than the token lifetime a replaced key stays published, for issuer and
/// verifier clocks that disagree.
pub const CLOCK_SKEW_MARGIN: Duration = Duration::from_secs(5 * 60);

/// The service's signing keys.
#[derive(Clone, Debug)]
pub struct SigningKeys {
    database: Database,
    encryption_key: KeyEncryptionKey,
    policy: KeyPolicy,
}

/// When keys rotate and how long a replaced key stays published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyPolicy {
    /// Age after which [`SigningKeys::current`] replaces the newest key (default 30 days).
    pub rotate_after: Duration,
    /// The longest lifetime of any token the service signs (default 1 hour): a replaced key is
    /// published until its successor is this old, plus [`CLOCK_SKEW_MARGIN`].
    pub token_lifetime: Duration,
}

/// The 32-byte key the signing keys are encrypted with at rest (XChaCha20-Poly1305). Its Debug
/// output never shows the key.
#[derive(Clone)]
pub struct KeyEncryptionKey([u8; 32]);

/// Why a [`KEY_ENCRYPTION_KEY_VARIABLE`] value is not a key. Never contains the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InvalidKeyEncryptionKey {
    NotBase64,
    WrongLength(usize),
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    kid: String,
    /// The PKCS#8 DER sealed with the key encryption key, `kid` as associated data.
    ciphertext: Vec<u8>,
    nonce: Vec<u8>,
    created_at: Timestamp,
}

/// Base64 in either padding, so a key pasted without its trailing `=` still parses.
const STANDARD_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const URL_SAFE_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

// === impl SigningKeys ===

impl SigningKeys {
    pub fn new(
        database: Database,
        encryption_key: KeyEncryptionKey,
        policy: KeyPolicy,
    ) -> SigningKeys {
        SigningKeys {
            database,
            encryption_key,
            policy,
        }
    }

    /// The key new tokens are signed with: the newest one, or a new one if there is none yet or
    /// the newest is older than [`KeyPolicy::rotate_after`].
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn current(&self, now: OffsetDateTime) -> Result<SigningKey, Error> {
        if let Some(row) = self.newest().await?
            && row.created_at.into_inner() + self.policy.rotate_after > now
        {
            return Ok(self.encryption_key.open(&row)?);
        }
        // Two replicas may both create one; both are published and the newest signs, so that
        // race is harmless.
        self.create(now).await
    }

    /// Replaces the current key with a new one now, whatever its age (for operators who suspect
    /// a key leaked, or want to test rotation). Tokens signed with the old key keep verifying
    /// until they expire.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn rotate(&self, now: OffsetDateTime) -> Result<SigningKey, Error> {
        self.create(now).await
    }

    /// The public halves of every key that may still have valid tokens, for
    /// `/.well-known/jwks.json`: the newest, and each older one until its successor has existed
    /// for the token lifetime plus [`CLOCK_SKEW_MARGIN`]. Keys past that are retired: their rows
    /// are deleted, since nothing they signed can verify any more and an unused private key is
    /// only a liability.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn key_set(&self, now: OffsetDateTime) -> Result<JwkSet, Error> {
        let rows = self.all().await?;
        let retire_until = self.policy.published_after(now);
        // A key's successor is never younger than the key, so the retired keys are a prefix.
        let n_retired = rows
            .windows(2)
            .take_while(|pair| pair[1].created_at.into_inner() <= retire_until)
            .count();
        let (retired, published) = rows.split_at(n_retired);
        let keys = published
            .iter()
            .map(|row| self.encryption_key.open(row))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if !retired.is_empty() {
            self.delete(retired).await?;
        }
        Ok(chassis::auth::key_set(&keys.iter().collect::<Vec<_>>()))
    }

    /// Fails, saying how to fix it, unless every stored key decrypts under this service's key
    /// encryption key: checked at startup, so a wrong key stops the service before it serves.
    pub async fn ensure_readable(&self) -> anyhow::Result<()> {
        for row in self.all().await? {
            self.encryption_key.open(&row)?;
        }
        Ok(())
    }

    async fn create(&self, now: OffsetDateTime) -> Result<SigningKey, Error> {
        let key = SigningKey::generate()?;
        let (nonce, ciphertext) = self.encryption_key.seal(&key)?;
        let mut tx = self.database.begin().await?;
        on_backend!(tx, conn => {
            sqlx::query("INSERT INTO signing_keys (kid, ciphertext, nonce, created_at) VALUES ($1, $2, $3, $4)")
                .bind(key.kid())
                .bind(&ciphertext)
                .bind(&nonce)
                .bind(Timestamp::from(now))
                .execute(conn)
                .await
                .map(|done| done.rows_affected())
        })?;
        tx.commit().await?;
        tracing::info!(kid = key.kid(), "Created a token signing key");
        Ok(key)
    }

    async fn newest(&self) -> anyhow::Result<Option<KeyRow>> {
        let mut tx = self.database.begin_read().await?;
        let row = on_backend!(tx, conn => {
            sqlx::query_as::<_, KeyRow>(
                "SELECT kid, ciphertext, nonce, created_at FROM signing_keys ORDER BY created_at DESC, kid DESC LIMIT 1",
            )
            .fetch_optional(conn)
            .await
        })
        .context("Failed to read the newest signing key")?;
        tx.commit().await?;
        Ok(row)
    }

    /// Every stored key, oldest first.
    async fn all(&self) -> anyhow::Result<Vec<KeyRow>> {
        let mut tx = self.database.begin_read().await?;
        let rows = on_backend!(tx, conn => {
            sqlx::query_as::<_, KeyRow>(
                "SELECT kid, ciphertext, nonce, created_at FROM signing_keys ORDER BY created_at, kid",
            )
            .fetch_all(conn)
            .await
        })
        .context("Failed to read the signing keys")?;
        tx.commit().await?;
        Ok(rows)
    }

    async fn delete(&self, retired: &[KeyRow]) -> anyhow::Result<()> {
        let mut tx = self.database.begin().await?;
        for row in retired {
            on_backend!(tx, conn => {
                sqlx::query("DELETE FROM signing_keys WHERE kid = $1")
                    .bind(&row.kid)
                    .execute(conn)
                    .await
                    .map(|done| done.rows_affected())
            })
            .context("Failed to delete a retired signing key")?;
        }
        tx.commit().await?;
        for row in retired {
            tracing::info!(kid = %row.kid, "Retired a token signing key");
        }
        Ok(())
    }
}

// === impl KeyPolicy ===

impl Default for KeyPolicy {
    fn default() -> KeyPolicy {
        KeyPolicy {
            rotate_after: Duration::from_secs(30 * 24 * 60 * 60),
            token_lifetime: Duration::from_secs(60 * 60),
        }
    }
}

impl KeyPolicy {
    /// A key whose successor was created at or before this instant has no valid tokens left.
    fn published_after(&self, now: OffsetDateTime) -> OffsetDateTime {
        now - self.token_lifetime - CLOCK_SKEW_MARGIN
    }
}

// === impl KeyEncryptionKey ===

impl KeyEncryptionKey {
    /// A fresh random key (for `emporium up`'s data directory, or an operator's secret store).
    pub fn generate() -> anyhow::Result<KeyEncryptionKey> {
        let key = chacha20poly1305::Key::try_generate()
            .map_err(|error| anyhow!("Failed to read random bytes: {error}"))?;
        Ok(KeyEncryptionKey(key.into()))
    }

    /// Parses 32 bytes in base64, standard or URL-safe, padded or not; surrounding whitespace
    /// (a file's trailing newline) is ignored.
    pub fn from_base64(text: &str) -> Result<KeyEncryptionKey, InvalidKeyEncryptionKey> {
        let text = text.trim();
        let bytes = STANDARD_BASE64
            .decode(text)
            .or_else(|_| URL_SAFE_BASE64.decode(text))
            .map_err(|_| InvalidKeyEncryptionKey::NotBase64)?;
        let n_bytes = bytes.len();
        let key = <[u8; 32]>::try_from(bytes)
            .map_err(|_| InvalidKeyEncryptionKey::WrongLength(n_bytes))?;
        Ok(KeyEncryptionKey(key))
    }

    /// The key in padded standard base64, as [`KeyEncryptionKey::from_base64`] reads it.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&chacha20poly1305::Key::from(self.0))
    }

    /// Encrypts `key`'s PKCS#8 under a fresh nonce, bound to its kid: `(nonce, ciphertext)`.
    fn seal(&self, key: &SigningKey) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
        let nonce = XNonce::try_generate()
            .map_err(|error| anyhow!("Failed to read random bytes: {error}"))?;
        let payload = Payload {
            msg: key.pkcs8_der(),
            aad: key.kid().as_bytes(),
        };
        let ciphertext = self
            .cipher()
            .encrypt(&nonce, payload)
            .map_err(|_| anyhow!("Failed to encrypt signing key {}", key.kid()))?;
        Ok((nonce.to_vec(), ciphertext))
    }

    fn open(&self, row: &KeyRow) -> anyhow::Result<SigningKey> {
        // A wrong-length nonce, a wrong key, a tampered ciphertext and one moved from another kid
        // all fail here; the likely cause by far is the first start with another key.
        let undecryptable = || {
            anyhow!(
                "the stored signing keys cannot be decrypted with {KEY_ENCRYPTION_KEY_VARIABLE} \
                 (key {} fails): it is not the key they were encrypted with. Set the original key \
                 again, or delete the rows of table signing_keys to start over with new signing \
                 keys (tokens signed with the old ones will stop verifying)",
                row.kid
            )
        };
        let nonce = XNonce::try_from(row.nonce.as_slice()).map_err(|_| undecryptable())?;
        let payload = Payload {
            msg: &row.ciphertext,
            aad: row.kid.as_bytes(),
        };
        let pkcs8_der = self
            .cipher()
            .decrypt(&nonce, payload)
            .map_err(|_| undecryptable())?;
        SigningKey::from_pkcs8_der(&row.kid, &pkcs8_der)
            .with_context(|| format!("Stored signing key {} is unreadable", row.kid))
    }
}

impl fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyEncryptionKey(<redacted>)")
    }
}

// === impl InvalidKeyEncryptionKey ===

impl fmt::Display for InvalidKeyEncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidKeyEncryptionKey::NotBase64 => write!(
                f,
                "{KEY_ENCRYPTION_KEY_VARIABLE} is not base64 (standard or URL-safe)"
            ),
            InvalidKeyEncryptionKey::WrongLength(n_bytes) => write!(
                f,
                "{KEY_ENCRYPTION_KEY_VARIABLE} decodes to {n_bytes} bytes; it must be 32"
            ),
        }
    }
}

impl std::error::Error for InvalidKeyEncryptionKey {}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use chassis::auth::SigningKey;
    use chassis::storage::Timestamp;

    use super::{InvalidKeyEncryptionKey, KeyEncryptionKey, KeyRow};

    #[test]
    fn a_generated_key_round_trips_through_base64() {
        let key = KeyEncryptionKey::generate().unwrap();

        let parsed = KeyEncryptionKey::from_base64(&key.to_base64()).unwrap();

        assert_eq!(parsed.0, key.0);
        assert_ne!(key.0, KeyEncryptionKey::generate().unwrap().0);
    }

    #[test]
    fn standard_and_url_safe_base64_with_or_without_padding_parse() {
        // Bytes whose base64 uses the alphabets' differing characters (`+/` vs `-_`).
        let bytes = [0xfb_u8; 32];
        let standard = base64::engine::general_purpose::STANDARD.encode(bytes);
        let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        assert!(standard.contains('/') && url_safe.contains('_'));

        for text in [
            standard.clone(),
            format!("{standard}\n"),
            standard.trim_end_matches('=').to_owned(),
            url_safe,
        ] {
            let key = KeyEncryptionKey::from_base64(&text)
                .unwrap_or_else(|error| panic!("{text:?} should parse: {error}"));
            assert_eq!(key.0, bytes);
        }
    }

    #[test]
    fn a_key_of_the_wrong_length_is_rejected() {
        let short = base64::engine::general_purpose::STANDARD.encode([7_u8; 16]);
        let long = base64::engine::general_purpose::STANDARD.encode([7_u8; 33]);

        assert_eq!(
            KeyEncryptionKey::from_base64(&short).unwrap_err(),
            InvalidKeyEncryptionKey::WrongLength(16)
        );
        assert_eq!(
            KeyEncryptionKey::from_base64(&long).unwrap_err(),
            InvalidKeyEncryptionKey::WrongLength(33)
        );
        assert_eq!(
            KeyEncryptionKey::from_base64("").unwrap_err(),
            InvalidKeyEncryptionKey::WrongLength(0)
        );
    }

    #[test]
    fn text_that_is_not_base64_is_rejected_without_echoing_it() {
        let error = KeyEncryptionKey::from_base64("not base64 at all!").unwrap_err();

        assert_eq!(error, InvalidKeyEncryptionKey::NotBase64);
        assert!(!error.to_string().contains("not base64 at all!"));
    }

    #[test]
    fn debug_output_does_not_show_the_key() {
        let key = KeyEncryptionKey::from_base64(&"A".repeat(43)).unwrap();

        let debug = format!("{key:?}");

        assert_eq!(debug, "KeyEncryptionKey(<redacted>)");
        assert!(!debug.contains(&key.to_base64()));
    }

    #[test]
    fn a_sealed_key_opens_only_under_its_own_kid_and_key_encryption_key() {
        let encryption_key = KeyEncryptionKey::generate().unwrap();
        let signing_key = SigningKey::generate().unwrap();
        let (nonce, ciphertext) = encryption_key.seal(&signing_key).unwrap();
        let row = |kid: &str| KeyRow {
            kid: kid.to_owned(),
            ciphertext: ciphertext.clone(),
            nonce: nonce.clone(),
            created_at: Timestamp::now(),
        };

        let opened = encryption_key.open(&row(signing_key.kid())).unwrap();
        let under_another_kid = encryption_key.open(&row("another-kid"));
        let under_another_key = KeyEncryptionKey::generate()
            .unwrap()
            .open(&row(signing_key.kid()));

        assert_eq!(opened.pkcs8_der(), signing_key.pkcs8_der());
        assert_eq!(nonce.len(), 24);
        assert!(under_another_kid.is_err());
        let error = under_another_key.unwrap_err().to_string();
        assert!(
            error.contains("cannot be decrypted with EMPORIUM_IDENTITY_KEY_ENCRYPTION_KEY"),
            "{error}"
        );
    }
}
