-- The identity schema on PostgreSQL: native types, constraints the domain also checks.

CREATE TABLE accounts (
    id            UUID        PRIMARY KEY,
    -- Stored lower-cased, so uniqueness is case-insensitive.
    email         TEXT        NOT NULL CONSTRAINT accounts_email_unique UNIQUE
                              CHECK (email = lower(email)),
    first_name    TEXT        NOT NULL CHECK (char_length(first_name) BETWEEN 1 AND 100),
    last_name     TEXT        NOT NULL CHECK (char_length(last_name) BETWEEN 1 AND 100),
    nickname      TEXT        NOT NULL DEFAULT '',
    country       CHAR(2)     NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    -- argon2id PHC string; NULL until a password is set.
    password_hash TEXT        NULL,
    disabled      BOOLEAN     NOT NULL DEFAULT FALSE,
    version       BIGINT      NOT NULL CHECK (version > 0),
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX accounts_by_created ON accounts (created_at, id);
CREATE INDEX accounts_by_country ON accounts (country, id);

CREATE TABLE roles (
    name        TEXT        PRIMARY KEY CHECK (name ~ '^[a-z0-9-]{1,64}$'),
    -- The id of the role's event history.
    id          UUID        NOT NULL CONSTRAINT roles_id_unique UNIQUE,
    description TEXT        NOT NULL DEFAULT '',
    builtin     BOOLEAN     NOT NULL DEFAULT FALSE,
    version     BIGINT      NOT NULL CHECK (version > 0),
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE account_roles (
    account_id UUID NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    role       TEXT NOT NULL REFERENCES roles (name) ON DELETE RESTRICT,
    PRIMARY KEY (account_id, role)
);
CREATE INDEX account_roles_by_role ON account_roles (role);

INSERT INTO roles (name, id, description, builtin, version, created_at, updated_at) VALUES
    ('admin', '00000000-0000-7000-8000-000000000001', 'Everything, including accounts and roles', TRUE, 1, '2026-11-23T00:00:00Z', '2026-11-23T00:00:00Z'),
    ('catalog-manager', '00000000-0000-7000-8000-000000000002', 'Manages categories and products', TRUE, 1, '2026-11-23T00:00:00Z', '2026-11-23T00:00:00Z'),
    ('sales', '00000000-0000-7000-8000-000000000003', 'Handles customers and orders', TRUE, 1, '2026-11-23T00:00:00Z', '2026-11-23T00:00:00Z'),
    ('customer', '00000000-0000-7000-8000-000000000004', 'Shops and sees their own records', TRUE, 1, '2026-11-23T00:00:00Z', '2026-11-23T00:00:00Z');
