//! The provider's SQL: sessions, authorization codes, refresh-token families and failed sign-ins.
//! One query text for both backends; each function takes the caller's transaction. Secrets arrive
//! here already digested ([`super::secrets::digest`]).

use chassis::error::Error;
use chassis::on_backend;
use chassis::storage::{Timestamp, Transaction};
use uuid::Uuid;

/// A browser's sign-in session.
#[derive(Clone, Debug, sqlx::FromRow)]
pub(crate) struct Session {
    pub(crate) account_id: Uuid,
    pub(crate) auth_time: Timestamp,
}

/// What an authorization code stands for.
#[derive(Clone, Debug, sqlx::FromRow)]
pub(crate) struct CodeGrant {
    pub(crate) client_id: String,
    pub(crate) account_id: Uuid,
    pub(crate) session_hash: Option<String>,
    pub(crate) redirect_uri: String,
    pub(crate) scope: String,
    pub(crate) nonce: Option<String>,
    pub(crate) code_challenge: Option<String>,
    pub(crate) auth_time: Timestamp,
    pub(crate) expires_at: Timestamp,
    pub(crate) family_id: Uuid,
}

/// What a refresh token stands for.
#[derive(Clone, Debug, sqlx::FromRow)]
pub(crate) struct RefreshGrant {
    pub(crate) family_id: Uuid,
    pub(crate) client_id: String,
    pub(crate) account_id: Uuid,
    pub(crate) session_hash: Option<String>,
    pub(crate) scope: String,
    pub(crate) auth_time: Timestamp,
}

/// The outcome of presenting a code or a refresh token.
#[derive(Debug)]
pub(crate) enum Exchange<T> {
    /// First use: here is what it stands for; it is now spent.
    Spent(T),
    /// It was spent before: someone is replaying it. The family it belongs to.
    Replayed(Uuid),
    /// Unknown, expired or revoked.
    Invalid,
}

/// The recent failed sign-ins that concern one attempt, within the lock-out window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RecentFailures {
    /// For this email from this address.
    pub(crate) by_pair: i64,
    /// For this email from any address.
    pub(crate) by_email: i64,
    /// From this address for any email.
    pub(crate) by_address: i64,
    /// When this email last failed (from any address).
    pub(crate) last_for_email: Option<Timestamp>,
}

// === sessions ===

pub(crate) async fn insert_session(
    tx: &mut Transaction,
    id_hash: &str,
    account_id: Uuid,
    auth_time: Timestamp,
    expires_at: Timestamp,
) -> Result<(), Error> {
    on_backend!(tx, conn => {
        sqlx::query("INSERT INTO oauth_sessions (id_hash, account_id, auth_time, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(id_hash)
            .bind(account_id)
            .bind(auth_time)
            .bind(expires_at)
            .execute(conn)
            .await
            .map(|_| ())
    })?;
    Ok(())
}

/// The live session with this id, if any.
pub(crate) async fn find_session(
    tx: &mut Transaction,
    id_hash: &str,
    now: Timestamp,
) -> Result<Option<Session>, Error> {
    let session = on_backend!(tx, conn => {
        sqlx::query_as::<_, Session>(
            "SELECT account_id, auth_time FROM oauth_sessions WHERE id_hash = $1 AND expires_at > $2",
        )
        .bind(id_hash)
        .bind(now)
        .fetch_optional(conn)
        .await
    })?;
    Ok(session)
}

/// Ends a session and revokes every refresh-token family started in it.
pub(crate) async fn end_session(
    tx: &mut Transaction,
    id_hash: &str,
    now: Timestamp,
) -> Result<(), Error> {
    on_backend!(tx, conn => {
        sqlx::query("UPDATE oauth_refresh_tokens SET revoked_at = $2 WHERE session_hash = $1 AND revoked_at IS NULL")
            .bind(id_hash)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        sqlx::query("DELETE FROM oauth_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&mut *conn)
            .await
            .map(|_| ())
    })?;
    Ok(())
}

// === authorization codes ===

pub(crate) async fn insert_code(
    tx: &mut Transaction,
    code_hash: &str,
    grant: &CodeGrant,
) -> Result<(), Error> {
    on_backend!(tx, conn => {
        sqlx::query(
            "INSERT INTO oauth_authorization_codes (code_hash, client_id, account_id, session_hash, redirect_uri, scope, nonce, code_challenge, auth_time, expires_at, family_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(code_hash)
        .bind(&grant.client_id)
        .bind(grant.account_id)
        .bind(&grant.session_hash)
        .bind(&grant.redirect_uri)
        .bind(&grant.scope)
        .bind(&grant.nonce)
        .bind(&grant.code_challenge)
        .bind(grant.auth_time)
        .bind(grant.expires_at)
        .bind(grant.family_id)
        .execute(conn)
        .await
        .map(|_| ())
    })?;
    Ok(())
}

/// Spends a code: the first presentation gets its grant (expiry checked by the caller, who
/// reports it), every later one is a replay.
pub(crate) async fn redeem_code(
    tx: &mut Transaction,
    code_hash: &str,
    now: Timestamp,
) -> Result<Exchange<CodeGrant>, Error> {
    let spent = on_backend!(tx, conn => {
        sqlx::query_as::<_, CodeGrant>(
            "UPDATE oauth_authorization_codes SET redeemed_at = $2 WHERE code_hash = $1 AND redeemed_at IS NULL \
             RETURNING client_id, account_id, session_hash, redirect_uri, scope, nonce, code_challenge, auth_time, expires_at, family_id",
        )
        .bind(code_hash)
        .bind(now)
        .fetch_optional(conn)
        .await
    })?;
    if let Some(grant) = spent {
        return Ok(Exchange::Spent(grant));
    }
    let replayed = on_backend!(tx, conn => {
        sqlx::query_scalar::<_, Uuid>("SELECT family_id FROM oauth_authorization_codes WHERE code_hash = $1")
            .bind(code_hash)
            .fetch_optional(conn)
            .await
    })?;
    Ok(replayed.map_or(Exchange::Invalid, Exchange::Replayed))
}

/// Forgets codes that expired before `before`.
pub(crate) async fn prune_codes(tx: &mut Transaction, before: Timestamp) -> Result<(), Error> {
    on_backend!(tx, conn => {
        sqlx::query("DELETE FROM oauth_authorization_codes WHERE expires_at < $1")
            .bind(before)
            .execute(conn)
            .await
            .map(|_| ())
    })?;
    Ok(())
}

// === refresh tokens ===

pub(crate) async fn insert_refresh_token(
    tx: &mut Transaction,
    token_hash: &str,
    grant: &RefreshGrant,
    created_at: Timestamp,
    expires_at: Timestamp,
) -> Result<(), Error> {
    on_backend!(tx, conn => {
        sqlx::query(
            "INSERT INTO oauth_refresh_tokens (token_hash, family_id, client_id, account_id, session_hash, scope, auth_time, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(token_hash)
        .bind(grant.family_id)
        .bind(&grant.client_id)
        .bind(grant.account_id)
        .bind(&grant.session_hash)
        .bind(&grant.scope)
        .bind(grant.auth_time)
        .bind(created_at)
        .bind(expires_at)
        .execute(conn)
        .await
        .map(|_| ())
    })?;
    Ok(())
}

/// Spends a refresh token for its successor. The `rotated_at IS NULL` condition makes two
/// concurrent presentations of one token resolve to one success and one replay.
pub(crate) async fn rotate_refresh_token(
    tx: &mut Transaction,
    token_hash: &str,
    now: Timestamp,
) -> Result<Exchange<RefreshGrant>, Error> {
    let spent = on_backend!(tx, conn => {
        sqlx::query_as::<_, RefreshGrant>(
            "UPDATE oauth_refresh_tokens SET rotated_at = $2 \
             WHERE token_hash = $1 AND rotated_at IS NULL AND revoked_at IS NULL AND expires_at > $2 \
             RETURNING family_id, client_id, account_id, session_hash, scope, auth_time",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(conn)
        .await
    })?;
    if let Some(grant) = spent {
        return Ok(Exchange::Spent(grant));
    }
    let replayed = on_backend!(tx, conn => {
        sqlx::query_scalar::<_, Uuid>(
            "SELECT family_id FROM oauth_refresh_tokens WHERE token_hash = $1 AND rotated_at IS NOT NULL",
        )
        .bind(token_hash)
        .fetch_optional(conn)
        .await
    })?;
    Ok(replayed.map_or(Exchange::Invalid, Exchange::Replayed))
}

/// The family and client of a refresh token, whatever its state (for revocation).
pub(crate) async fn find_refresh_family(
    tx: &mut Transaction,
    token_hash: &str,
) -> Result<Option<(Uuid, String)>, Error> {
    let found = on_backend!(tx, conn => {
        sqlx::query_as::<_, (Uuid, String)>(
            "SELECT family_id, client_id FROM oauth_refresh_tokens WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(conn)
        .await
    })?;
    Ok(found)
}

/// Revokes every token of a family. Returns how many were still live.
pub(crate) async fn revoke_family(
    tx: &mut Transaction,
    family_id: Uuid,
    now: Timestamp,
) -> Result<u64, Error> {
    let revoked = on_backend!(tx, conn => {
        sqlx::query("UPDATE oauth_refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL")
            .bind(family_id)
            .bind(now)
            .execute(conn)
            .await
            .map(|done| done.rows_affected())
    })?;
    Ok(revoked)
}

// === failed sign-ins ===

/// Locks the email's guard row until `tx` ends, so that attempts for one email are counted and
/// admitted one at a time (on SQLite the write transaction already holds the only write lock).
pub(crate) async fn lock_email_attempts(tx: &mut Transaction, email: &str) -> Result<(), Error> {
    on_backend!(tx, conn => {
        sqlx::query(
            "INSERT INTO oauth_sign_in_guards (email) VALUES ($1) \
             ON CONFLICT (email) DO UPDATE SET email = excluded.email",
        )
        .bind(email)
        .execute(conn)
        .await
        .map(|_| ())
    })?;
    Ok(())
}

/// The failures recorded since `since` that concern `email` from `address`.
pub(crate) async fn recent_failures(
    tx: &mut Transaction,
    email: &str,
    address: &str,
    since: Timestamp,
) -> Result<RecentFailures, Error> {
    let (by_pair, by_email, by_address, last_for_email) = on_backend!(tx, conn => {
        sqlx::query_as::<_, (i64, i64, i64, Option<Timestamp>)>(
            "SELECT \
             (SELECT COUNT(*) FROM oauth_sign_in_failures WHERE email = $1 AND address = $2 AND failed_at > $3), \
             (SELECT COUNT(*) FROM oauth_sign_in_failures WHERE email = $1 AND failed_at > $3), \
             (SELECT COUNT(*) FROM oauth_sign_in_failures WHERE address = $2 AND failed_at > $3), \
             (SELECT MAX(failed_at) FROM oauth_sign_in_failures WHERE email = $1 AND failed_at > $3)",
        )
        .bind(email)
        .bind(address)
        .bind(since)
        .fetch_one(conn)
        .await
    })?;
    Ok(RecentFailures {
        by_pair,
        by_email,
        by_address,
        last_for_email,
    })
}

pub(crate) async fn record_failure(
    tx: &mut Transaction,
    email: &str,
    address: &str,
    at: Timestamp,
) -> Result<(), Error> {
    on_backend!(tx, conn => {
        sqlx::query("INSERT INTO oauth_sign_in_failures (email, address, failed_at) VALUES ($1, $2, $3)")
            .bind(email)
            .bind(address)
            .bind(at)
            .execute(conn)
            .await
            .map(|_| ())
    })?;
    Ok(())
}

/// Forgets every failure of `email` (it just signed in).
pub(crate) async fn clear_failures(tx: &mut Transaction, email: &str) -> Result<(), Error> {
    on_backend!(tx, conn => {
        sqlx::query("DELETE FROM oauth_sign_in_failures WHERE email = $1")
            .bind(email)
            .execute(conn)
            .await
            .map(|_| ())
    })?;
    Ok(())
}

/// Forgets failures older than `before` (they no longer count), and the guards of emails left
/// without any.
pub(crate) async fn prune_failures(tx: &mut Transaction, before: Timestamp) -> Result<(), Error> {
    on_backend!(tx, conn => {
        sqlx::query("DELETE FROM oauth_sign_in_failures WHERE failed_at < $1")
            .bind(before)
            .execute(&mut *conn)
            .await?;
        sqlx::query(
            "DELETE FROM oauth_sign_in_guards WHERE NOT EXISTS \
             (SELECT 1 FROM oauth_sign_in_failures WHERE oauth_sign_in_failures.email = oauth_sign_in_guards.email)",
        )
        .execute(&mut *conn)
        .await
        .map(|_| ())
    })?;
    Ok(())
}
