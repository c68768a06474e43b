-- The catalog's schema on SQLite (uuids as 16-byte blobs, times as fixed-width UTC text).

CREATE TABLE categories (
    id          BLOB    PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    description TEXT    NOT NULL DEFAULT '',
    version     INTEGER NOT NULL CHECK (version > 0),
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL
);
CREATE INDEX categories_by_created ON categories (created_at, id);
CREATE INDEX categories_by_updated ON categories (updated_at, id);

CREATE TABLE products (
    id            BLOB    PRIMARY KEY,
    sku           TEXT    NOT NULL UNIQUE,
    name          TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description   TEXT    NOT NULL DEFAULT '',
    category_id   BLOB    NOT NULL REFERENCES categories (id) ON DELETE RESTRICT,
    price_minor   INTEGER NOT NULL CHECK (price_minor >= 0),
    currency      TEXT    NOT NULL CHECK (length(currency) = 3 AND currency = upper(currency)),
    stock_on_hand INTEGER NOT NULL CHECK (stock_on_hand >= 0),
    version       INTEGER NOT NULL CHECK (version > 0),
    created_at    TEXT    NOT NULL,
    updated_at    TEXT    NOT NULL
);
CREATE INDEX products_by_category ON products (category_id, id);
CREATE INDEX products_by_name ON products (name, id);
CREATE INDEX products_by_price ON products (price_minor, id);
CREATE INDEX products_by_created ON products (created_at, id);
CREATE INDEX products_by_updated ON products (updated_at, id);
