-- Commerce I: the store's catalog. Amounts are integers in minor units of the store currency
-- (settings.commerce.currency, in control.db). Times are unix seconds.

-- Products. `seq` is the stable integer key the search index uses as its rowid; `id` (UUIDv7) is the public id.
-- min_price, max_price and in_stock summarise the variants (kept by the catalog in the same transaction) so
-- listings filter and sort without touching variants.
CREATE TABLE products (
    seq         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    handle      TEXT NOT NULL UNIQUE,
    title       TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    status      TEXT NOT NULL CHECK (status IN ('draft', 'active', 'archived')),
    options     TEXT NOT NULL DEFAULT '[]',
    attributes  TEXT NOT NULL DEFAULT '{}',
    images      TEXT NOT NULL DEFAULT '[]',
    min_price   INTEGER NOT NULL DEFAULT 0,
    max_price   INTEGER NOT NULL DEFAULT 0,
    in_stock    INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX products_newest ON products (status, created_at DESC, seq DESC);
CREATE INDEX products_price ON products (status, min_price, seq);

-- Variants: every product has at least one. `stock` is the sum of the variant's inventory movements, written in
-- the same transaction as each movement (a test checks the two agree).
CREATE TABLE variants (
    id               TEXT PRIMARY KEY,
    product_id       TEXT NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    sku              TEXT NOT NULL UNIQUE,
    position         INTEGER NOT NULL,
    option_values    TEXT NOT NULL DEFAULT '{}',
    price            INTEGER NOT NULL CHECK (price >= 0),
    compare_at_price INTEGER CHECK (compare_at_price >= 0),
    weight_grams     INTEGER CHECK (weight_grams >= 0),
    track_inventory  INTEGER NOT NULL DEFAULT 1,
    allow_backorder  INTEGER NOT NULL DEFAULT 0,
    stock            INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX variants_product ON variants (product_id, position);

-- The inventory ledger: append-only. A variant's movements stay when the variant is deleted (history).
CREATE TABLE inventory_movements (
    id          INTEGER PRIMARY KEY,
    variant_id  TEXT NOT NULL,
    sku         TEXT NOT NULL,
    delta       INTEGER NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('adjustment', 'order', 'cancel', 'return', 'import')),
    reason      TEXT NOT NULL,
    actor       TEXT NOT NULL,
    stock_after INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX inventory_movements_variant ON inventory_movements (variant_id, id);
CREATE TRIGGER inventory_movements_no_update BEFORE UPDATE ON inventory_movements
BEGIN SELECT RAISE(ABORT, 'inventory movements are append-only'); END;
CREATE TRIGGER inventory_movements_no_delete BEFORE DELETE ON inventory_movements
BEGIN SELECT RAISE(ABORT, 'inventory movements are append-only'); END;

-- Categories: a tree. A category with children cannot be deleted (move or delete them first).
CREATE TABLE categories (
    id         TEXT PRIMARY KEY,
    parent_id  TEXT REFERENCES categories (id),
    handle     TEXT NOT NULL UNIQUE,
    title      TEXT NOT NULL,
    position   INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX categories_parent ON categories (parent_id, position);

CREATE TABLE product_categories (
    product_id  TEXT NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    category_id TEXT NOT NULL REFERENCES categories (id) ON DELETE CASCADE,
    PRIMARY KEY (product_id, category_id)
);
CREATE INDEX product_categories_category ON product_categories (category_id, product_id);

-- Full-text search over what a shopper types: title, description, SKUs and option values (rowid = products.seq).
CREATE VIRTUAL TABLE product_search USING fts5 (
    title, description, skus, options,
    tokenize = 'unicode61 remove_diacritics 2'
);

-- CSV imports: the job, its progress when it ended, and the per-row error report (JSON array).
CREATE TABLE catalog_imports (
    id          TEXT PRIMARY KEY,
    mode        TEXT NOT NULL CHECK (mode IN ('all_or_nothing', 'skip_bad_rows')),
    status      TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    total       INTEGER NOT NULL DEFAULT 0,
    done        INTEGER NOT NULL DEFAULT 0,
    created     INTEGER NOT NULL DEFAULT 0,
    updated     INTEGER NOT NULL DEFAULT 0,
    errors      TEXT NOT NULL DEFAULT '[]',
    error_count INTEGER NOT NULL DEFAULT 0,
    message     TEXT,
    actor       TEXT NOT NULL,
    boot        TEXT,
    created_at  INTEGER NOT NULL,
    finished_at INTEGER
);

-- The catalog's version: any change to what the storefront shows bumps it (the storefront caches search answers
-- under it, so a cached answer is never older than the catalog).
INSERT OR IGNORE INTO tenant_meta (key, value) VALUES ('catalog_version', '0');
CREATE TRIGGER products_version_insert AFTER INSERT ON products
BEGIN UPDATE tenant_meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'catalog_version'; END;
CREATE TRIGGER products_version_update AFTER UPDATE ON products
BEGIN UPDATE tenant_meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'catalog_version'; END;
CREATE TRIGGER products_version_delete AFTER DELETE ON products
BEGIN UPDATE tenant_meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'catalog_version'; END;
CREATE TRIGGER variants_version_insert AFTER INSERT ON variants
BEGIN UPDATE tenant_meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'catalog_version'; END;
CREATE TRIGGER variants_version_update AFTER UPDATE ON variants
BEGIN UPDATE tenant_meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'catalog_version'; END;
CREATE TRIGGER variants_version_delete AFTER DELETE ON variants
BEGIN UPDATE tenant_meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'catalog_version'; END;
CREATE TRIGGER categories_version_insert AFTER INSERT ON categories
BEGIN UPDATE tenant_meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'catalog_version'; END;
CREATE TRIGGER categories_version_update AFTER UPDATE ON categories
BEGIN UPDATE tenant_meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'catalog_version'; END;
CREATE TRIGGER categories_version_delete AFTER DELETE ON categories
BEGIN UPDATE tenant_meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'catalog_version'; END;
CREATE TRIGGER product_categories_version_insert AFTER INSERT ON product_categories
BEGIN UPDATE tenant_meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'catalog_version'; END;
CREATE TRIGGER product_categories_version_delete AFTER DELETE ON product_categories
BEGIN UPDATE tenant_meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'catalog_version'; END;
