-- Commerce II: store rules (discount codes, tax rates, shipping methods) and carts. Amounts in minor units.

CREATE TABLE discount_codes (
    code               TEXT PRIMARY KEY COLLATE NOCASE,
    kind               TEXT NOT NULL CHECK (kind IN ('percent', 'fixed', 'free_shipping')),
    value              INTEGER NOT NULL,
    min_subtotal       INTEGER,
    starts_at          INTEGER,
    ends_at            INTEGER,
    usage_limit        INTEGER,
    per_customer_limit INTEGER,
    used               INTEGER NOT NULL DEFAULT 0,
    category_ids       TEXT NOT NULL DEFAULT '[]',
    skus               TEXT NOT NULL DEFAULT '[]',
    combinable         INTEGER NOT NULL DEFAULT 0,
    created_at         INTEGER NOT NULL
);

-- One rate per country, or per country and region (a region's rate wins over its country's).
CREATE TABLE tax_rates (
    id       TEXT PRIMARY KEY,
    country  TEXT NOT NULL,
    region   TEXT NOT NULL DEFAULT '',
    rate_bps INTEGER NOT NULL CHECK (rate_bps BETWEEN 0 AND 10000),
    name     TEXT NOT NULL,
    UNIQUE (country, region)
);

CREATE TABLE shipping_methods (
    code       TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    countries  TEXT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('flat', 'weight', 'subtotal')),
    price      INTEGER NOT NULL DEFAULT 0,
    brackets   TEXT NOT NULL DEFAULT '[]',
    free_over  INTEGER,
    created_at INTEGER NOT NULL
);

-- Carts: the id is the capability (256 random bits), kept as its SHA-256 only. Idle carts expire.
CREATE TABLE carts (
    id_hash         TEXT PRIMARY KEY,
    customer_id     TEXT,
    country         TEXT,
    region          TEXT,
    postcode        TEXT,
    shipping_method TEXT,
    codes           TEXT NOT NULL DEFAULT '[]',
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL
);
CREATE INDEX carts_expiry ON carts (expires_at);

CREATE TABLE cart_lines (
    cart_hash TEXT NOT NULL REFERENCES carts (id_hash) ON DELETE CASCADE,
    sku       TEXT NOT NULL,
    quantity  INTEGER NOT NULL CHECK (quantity BETWEEN 1 AND 999),
    added_at  INTEGER NOT NULL,
    PRIMARY KEY (cart_hash, sku)
);
