-- Commerce III: orders. Amounts in minor units of the order's currency. Order numbers are per tenant, gap-free:
-- the next one is taken inside the checkout's IMMEDIATE transaction, which also writes the order.

CREATE TABLE orders (
    id               TEXT PRIMARY KEY,
    number           INTEGER NOT NULL UNIQUE,
    status           TEXT NOT NULL CHECK (status IN ('pending_payment', 'paid', 'fulfilled', 'delivered',
                                                     'cancelled', 'refunded', 'partially_refunded')),
    email            TEXT NOT NULL,
    customer_id      TEXT,
    currency         TEXT NOT NULL,
    subtotal         INTEGER NOT NULL,
    discount_total   INTEGER NOT NULL,
    shipping_total   INTEGER NOT NULL,
    tax_total        INTEGER NOT NULL,
    fee_total        INTEGER NOT NULL,
    total            INTEGER NOT NULL,
    -- The quote as priced at checkout: every line, adjustment and its source (JSON).
    pricing          TEXT NOT NULL,
    shipping_address TEXT NOT NULL,
    billing_address  TEXT,
    payment_method   TEXT NOT NULL CHECK (payment_method IN ('manual', 'stripe')),
    -- SHA-256 of the order token a guest reads the order with.
    token_hash       TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    -- When an unpaid order gives its stock back.
    expires_at       INTEGER
);
CREATE INDEX orders_customer ON orders (customer_id, created_at DESC) WHERE customer_id IS NOT NULL;
-- The admin list filters by status and pages by number, newest first.
CREATE INDEX orders_status ON orders (status, number DESC);
CREATE INDEX orders_expiry ON orders (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE order_lines (
    order_id   TEXT NOT NULL REFERENCES orders (id),
    position   INTEGER NOT NULL,
    sku        TEXT NOT NULL,
    variant_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    title      TEXT NOT NULL,
    quantity   INTEGER NOT NULL CHECK (quantity > 0),
    unit_price INTEGER NOT NULL,
    -- The line after its own discounts and taxes, as priced.
    total      INTEGER NOT NULL,
    PRIMARY KEY (order_id, position)
);

-- The discount codes an order redeemed (per-customer limits count these).
CREATE TABLE order_codes (
    order_id    TEXT NOT NULL REFERENCES orders (id),
    code        TEXT NOT NULL COLLATE NOCASE,
    customer_id TEXT,
    email       TEXT NOT NULL COLLATE NOCASE,
    PRIMARY KEY (order_id, code)
);
CREATE INDEX order_codes_customer ON order_codes (code, customer_id);
CREATE INDEX order_codes_email ON order_codes (code, email);

-- The order's timeline: append-only.
CREATE TABLE order_events (
    id         INTEGER PRIMARY KEY,
    order_id   TEXT NOT NULL REFERENCES orders (id),
    kind       TEXT NOT NULL,
    from_status TEXT,
    to_status  TEXT,
    detail     TEXT NOT NULL DEFAULT '{}',
    actor      TEXT NOT NULL,
    at         INTEGER NOT NULL
);
CREATE INDEX order_events_order ON order_events (order_id, id);
CREATE TRIGGER order_events_no_update BEFORE UPDATE ON order_events
BEGIN SELECT RAISE(ABORT, 'order events are append-only'); END;

-- Checkout idempotency: a key answers the same (status and body) for 24 hours; another body under it is refused.
CREATE TABLE idempotency_keys (
    key          TEXT PRIMARY KEY,
    request_hash TEXT NOT NULL,
    status       INTEGER NOT NULL,
    body         TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);
