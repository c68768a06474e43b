-- OAuth2 clients: the applications that ask identity for tokens. A public client (a browser or
-- native app) has no secret and acts only for a user; a confidential client keeps a secret and may
-- hold roles of its own for the client-credentials grant.

CREATE TABLE oauth_clients (
    -- The id of the client's event history.
    id                        BLOB    PRIMARY KEY,
    client_id                 TEXT    NOT NULL CONSTRAINT oauth_clients_client_id_unique UNIQUE
                                      CHECK (length(client_id) BETWEEN 1 AND 64),
    name                      TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    kind                      TEXT    NOT NULL CHECK (kind IN ('public', 'confidential')),
    -- Hex SHA-256 of the secret; NULL for a public client.
    secret_hash               TEXT    NULL,
    -- JSON arrays of absolute URIs, in the order given.
    redirect_uris             TEXT    NOT NULL,
    post_logout_redirect_uris TEXT    NOT NULL DEFAULT '[]',
    disabled                  INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    version                   INTEGER NOT NULL CHECK (version > 0),
    created_at                TEXT    NOT NULL,
    updated_at                TEXT    NOT NULL,
    CHECK ((kind = 'public') = (secret_hash IS NULL))
);

CREATE TABLE oauth_client_roles (
    client_uuid BLOB NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    role        TEXT NOT NULL REFERENCES roles (name) ON DELETE RESTRICT,
    PRIMARY KEY (client_uuid, role)
);
CREATE INDEX oauth_client_roles_by_role ON oauth_client_roles (role);
