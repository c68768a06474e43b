-- Failed sign-ins, now one row per attempt keyed by both the email as typed and the client's
-- address, so the lock-out can count per (email, address) pair, per address and per email. An
-- attempt is recorded when it is let through (before its password is checked) and the email's
-- rows are deleted when a sign-in succeeds, so concurrent attempts cannot slip past a limit.
--
-- The rows of oauth_login_failures are dropped, not converted: they only ever count for the
-- current 15-minute window, so an upgrade forgets at most one window of failures.
DROP TABLE oauth_login_failures;

CREATE TABLE oauth_sign_in_failures (
    -- Lower-cased as typed, so unknown emails behave exactly like known ones.
    email     TEXT        NOT NULL,
    -- The client's IP address (an IPv6 client by its /64 network), or 'unknown'.
    address   TEXT        NOT NULL,
    failed_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX oauth_sign_in_failures_by_email ON oauth_sign_in_failures (email, failed_at);
CREATE INDEX oauth_sign_in_failures_by_address ON oauth_sign_in_failures (address, failed_at);

-- One row per email with recent attempts: the row an attempt locks (an upsert) so that attempts
-- for one email are counted and admitted one at a time on PostgreSQL too.
CREATE TABLE oauth_sign_in_guards (
    email TEXT PRIMARY KEY
);
