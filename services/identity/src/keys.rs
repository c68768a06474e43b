//! The keys the identity service signs access tokens with: generated on first use, persisted in
//! its own database so they survive restarts and are shared by replicas, and published (public
//! halves only) as the JWKS every service verifies tokens against.

use anyhow::Context;
use chassis::auth::SigningKey;
use chassis::error::Error;
use chassis::on_backend;
use chassis::storage::{Database, Timestamp};
use jsonwebtoken::jwk::JwkSet;

/// The service's signing keys.
#[derive(Clone, Debug)]
pub struct SigningKeys {
    database: Database,
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    kid: String,
    private_key_pkcs8: Vec<u8>,
}

impl SigningKeys {
    pub fn new(database: Database) -> SigningKeys {
        SigningKeys { database }
    }

    /// The key new tokens are signed with: the newest one, created if there is none yet.
    #[tracing::instrument(skip_all)]
    pub async fn current(&self) -> Result<SigningKey, Error> {
        if let Some(key) = self.newest().await? {
            return Ok(key);
        }
        // Two replicas starting together may both create one; both are published and the newest
        // signs, so that race is harmless.
        let key = SigningKey::generate()?;
        let mut tx = self.database.begin().await?;
        on_backend!(tx, conn => {
            sqlx::query("INSERT INTO signing_keys (kid, private_key_pkcs8, created_at) VALUES ($1, $2, $3)")
                .bind(key.kid())
                .bind(key.pkcs8_der())
                .bind(Timestamp::now())
                .execute(conn)
                .await
                .map(|done| done.rows_affected())
        })?;
        tx.commit().await?;
        tracing::info!(kid = key.kid(), "Created a token signing key");
        Ok(key)
    }

    /// Every key's public half, for `/.well-known/jwks.json`.
    #[tracing::instrument(skip_all)]
    pub async fn key_set(&self) -> Result<JwkSet, Error> {
        let keys = self.all().await?;
        Ok(chassis::auth::key_set(&keys.iter().collect::<Vec<_>>()))
    }

    async fn newest(&self) -> Result<Option<SigningKey>, Error> {
        let mut tx = self.database.begin_read().await?;
        let row = on_backend!(tx, conn => {
            sqlx::query_as::<_, KeyRow>(
                "SELECT kid, private_key_pkcs8 FROM signing_keys ORDER BY created_at DESC, kid DESC LIMIT 1",
            )
            .fetch_optional(conn)
            .await
        })?;
        tx.commit().await?;
        row.map(KeyRow::into_key).transpose()
    }

    async fn all(&self) -> Result<Vec<SigningKey>, Error> {
        let mut tx = self.database.begin_read().await?;
        let rows = on_backend!(tx, conn => {
            sqlx::query_as::<_, KeyRow>(
                "SELECT kid, private_key_pkcs8 FROM signing_keys ORDER BY created_at, kid",
            )
            .fetch_all(conn)
            .await
        })?;
        tx.commit().await?;
        rows.into_iter().map(KeyRow::into_key).collect()
    }
}

impl KeyRow {
    fn into_key(self) -> Result<SigningKey, Error> {
        SigningKey::from_pkcs8_der(&self.kid, &self.private_key_pkcs8)
            .with_context(|| format!("Stored signing key {} is unreadable", self.kid))
            .map_err(Error::Unexpected)
    }
}
