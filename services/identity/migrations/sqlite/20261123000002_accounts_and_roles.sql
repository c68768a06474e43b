-- The identity schema on SQLite (uuids as 16-byte blobs, times as fixed-width UTC text,
-- booleans as INTEGER 0/1).

CREATE TABLE accounts (
    id            BLOB    PRIMARY KEY,
    -- Stored lower-cased, so uniqueness is case-insensitive.
    email         TEXT    NOT NULL UNIQUE CHECK (email = lower(email)),
    first_name    TEXT    NOT NULL CHECK (length(first_name) BETWEEN 1 AND 100),
    last_name     TEXT    NOT NULL CHECK (length(last_name) BETWEEN 1 AND 100),
    nickname      TEXT    NOT NULL DEFAULT '',
    country       TEXT    NOT NULL CHECK (length(country) = 2 AND country = upper(country)),
    -- argon2id PHC string; NULL until a password is set.
    password_hash TEXT    NULL,
    disabled      INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    version       INTEGER NOT NULL CHECK (version > 0),
    created_at    TEXT    NOT NULL,
    updated_at    TEXT    NOT NULL
);
CREATE INDEX accounts_by_created ON accounts (created_at, id);
CREATE INDEX accounts_by_country ON accounts (country, id);

CREATE TABLE roles (
    name        TEXT    PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 64),
    -- The id of the role's event history.
    id          BLOB    NOT NULL UNIQUE,
    description TEXT    NOT NULL DEFAULT '',
    builtin     INTEGER NOT NULL DEFAULT 0 CHECK (builtin IN (0, 1)),
    version     INTEGER NOT NULL CHECK (version > 0),
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL
);

CREATE TABLE account_roles (
    account_id BLOB NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    role       TEXT NOT NULL REFERENCES roles (name) ON DELETE RESTRICT,
    PRIMARY KEY (account_id, role)
);
CREATE INDEX account_roles_by_role ON account_roles (role);

INSERT INTO roles (name, id, description, builtin, version, created_at, updated_at) VALUES
    ('admin', X'00000000000070008000000000000001', 'Everything, including accounts and roles', 1, 1, '2026-11-23T00:00:00.000000Z', '2026-11-23T00:00:00.000000Z'),
    ('catalog-manager', X'00000000000070008000000000000002', 'Manages categories and products', 1, 1, '2026-11-23T00:00:00.000000Z', '2026-11-23T00:00:00.000000Z'),
    ('sales', X'00000000000070008000000000000003', 'Handles customers and orders', 1, 1, '2026-11-23T00:00:00.000000Z', '2026-11-23T00:00:00.000000Z'),
    ('customer', X'00000000000070008000000000000004', 'Shops and sees their own records', 1, 1, '2026-11-23T00:00:00.000000Z', '2026-11-23T00:00:00.000000Z');
