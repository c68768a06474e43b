-- SQLite: uuids as 16-byte blobs, times as fixed-width UTC text.
-- What the OAuth2/OIDC provider hands out and must remember: browser sign-in sessions,
-- authorization codes, refresh tokens (grouped in families for rotation and reuse detection) and
-- failed sign-ins (for the lock-out). Every secret value (session cookie, code, refresh token) is
-- stored only as its SHA-256, so a copy of this database cannot be replayed.

CREATE TABLE oauth_sessions (
    id_hash    TEXT        PRIMARY KEY,
    account_id BLOB        NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    auth_time  TEXT        NOT NULL,
    expires_at TEXT        NOT NULL
);
CREATE INDEX oauth_sessions_by_account ON oauth_sessions (account_id);

CREATE TABLE oauth_authorization_codes (
    code_hash      TEXT        PRIMARY KEY,
    client_id      TEXT        NOT NULL REFERENCES oauth_clients (client_id) ON DELETE CASCADE,
    account_id     BLOB        NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    session_hash   TEXT        NULL,
    redirect_uri   TEXT        NOT NULL,
    scope          TEXT        NOT NULL,
    nonce          TEXT        NULL,
    -- BASE64URL(SHA-256(code_verifier)); NULL only for a confidential client that sent none.
    code_challenge TEXT        NULL,
    auth_time      TEXT        NOT NULL,
    expires_at     TEXT        NOT NULL,
    -- The refresh-token family the redemption starts; revoked if the code is presented again.
    family_id      BLOB        NOT NULL,
    redeemed_at    TEXT        NULL
);

CREATE TABLE oauth_refresh_tokens (
    token_hash   TEXT        PRIMARY KEY,
    family_id    BLOB        NOT NULL,
    client_id    TEXT        NOT NULL REFERENCES oauth_clients (client_id) ON DELETE CASCADE,
    account_id   BLOB        NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    session_hash TEXT        NULL,
    scope        TEXT        NOT NULL,
    auth_time    TEXT        NOT NULL,
    created_at   TEXT        NOT NULL,
    expires_at   TEXT        NOT NULL,
    -- Set when this token was exchanged for its successor; presenting it again is reuse.
    rotated_at   TEXT        NULL,
    revoked_at   TEXT        NULL
);
CREATE INDEX oauth_refresh_tokens_by_family ON oauth_refresh_tokens (family_id);
CREATE INDEX oauth_refresh_tokens_by_session ON oauth_refresh_tokens (session_hash);

CREATE TABLE oauth_login_failures (
    -- 'account' (keyed by the email as typed, so unknown emails behave like known ones) or
    -- 'address' (keyed by the client's IP address).
    scope     TEXT        NOT NULL CHECK (scope IN ('account', 'address')),
    key       TEXT        NOT NULL,
    failed_at TEXT        NOT NULL
);
CREATE INDEX oauth_login_failures_by_key ON oauth_login_failures (scope, key, failed_at);
