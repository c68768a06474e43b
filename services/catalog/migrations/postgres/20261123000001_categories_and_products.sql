-- The catalog's schema on PostgreSQL: native types, constraints the domain also checks.

CREATE TABLE categories (
    id          UUID        PRIMARY KEY,
    name        TEXT        NOT NULL CONSTRAINT categories_name_unique UNIQUE,
    description TEXT        NOT NULL DEFAULT '',
    version     BIGINT      NOT NULL CHECK (version > 0),
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX categories_by_created ON categories (created_at, id);
CREATE INDEX categories_by_updated ON categories (updated_at, id);

CREATE TABLE products (
    id            UUID        PRIMARY KEY,
    sku           TEXT        NOT NULL CONSTRAINT products_sku_unique UNIQUE,
    name          TEXT        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    description   TEXT        NOT NULL DEFAULT '',
    category_id   UUID        NOT NULL REFERENCES categories (id) ON DELETE RESTRICT,
    price_minor   BIGINT      NOT NULL CHECK (price_minor >= 0),
    currency      TEXT        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    stock_on_hand BIGINT      NOT NULL CHECK (stock_on_hand >= 0),
    version       BIGINT      NOT NULL CHECK (version > 0),
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX products_by_category ON products (category_id, id);
CREATE INDEX products_by_name ON products (name, id);
CREATE INDEX products_by_price ON products (price_minor, id);
CREATE INDEX products_by_created ON products (created_at, id);
CREATE INDEX products_by_updated ON products (updated_at, id);
