-- Commerce III, second part: payments, refunds, shipments with tracking, provider events, customers' address books.

-- How the order is being paid: `pending` (nothing asked of a provider yet, or `manual`), `unavailable` (the provider
-- could not be reached after the order was committed; `POST …/orders/{id}/payment` asks again), `requires_payment`
-- (an intent exists; the buyer pays with its client secret), `succeeded`, `failed` (the last attempt was declined).
ALTER TABLE orders ADD COLUMN payment_status TEXT NOT NULL DEFAULT 'pending';
-- The manual payment's reference, or the provider's payment id (a Stripe PaymentIntent `pi_…`).
ALTER TABLE orders ADD COLUMN payment_ref TEXT;
-- The provider's client secret for the storefront (Stripe's is meant for the buyer's browser).
ALTER TABLE orders ADD COLUMN client_secret TEXT;
ALTER TABLE orders ADD COLUMN refunded_total INTEGER NOT NULL DEFAULT 0;
-- The checkout's Idempotency-Key, so the stored answer can carry the payment once the provider gave one.
ALTER TABLE orders ADD COLUMN idempotency_key TEXT;
-- The tenant overview counts orders per hour and day.
CREATE INDEX orders_created ON orders (created_at);
CREATE UNIQUE INDEX orders_stripe_payment ON orders (payment_ref) WHERE payment_method = 'stripe' AND payment_ref IS NOT NULL;

-- A refund is `pending` from before the provider is asked until its answer is recorded (its amount counts as
-- taken meanwhile, so a provider event arriving in between adds nothing), then `done`.
CREATE TABLE refunds (
    id           TEXT PRIMARY KEY,
    order_id     TEXT NOT NULL REFERENCES orders (id),
    amount       INTEGER NOT NULL CHECK (amount > 0),
    restock      INTEGER NOT NULL DEFAULT 0,
    reason       TEXT,
    -- The provider's refund id (`re_…`); NULL for manual refunds.
    provider_ref TEXT UNIQUE,
    state        TEXT NOT NULL DEFAULT 'done' CHECK (state IN ('pending', 'done')),
    -- Part of a cancellation: the order is cancelled, not moved to refunded.
    for_cancel   INTEGER NOT NULL DEFAULT 0,
    actor        TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE INDEX refunds_order ON refunds (order_id, created_at);

CREATE TABLE shipments (
    id              TEXT PRIMARY KEY,
    order_id        TEXT NOT NULL REFERENCES orders (id),
    carrier         TEXT NOT NULL,
    tracking_number TEXT NOT NULL,
    tracking_url    TEXT,
    courier_name    TEXT,
    courier_phone   TEXT,
    status          TEXT NOT NULL DEFAULT 'created'
                    CHECK (status IN ('created', 'in_transit', 'out_for_delivery', 'delivered', 'failed_attempt')),
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX shipments_order ON shipments (order_id, created_at);
CREATE INDEX shipments_tracking ON shipments (tracking_number);

-- Which order lines (and how many of their units) a shipment carries.
CREATE TABLE shipment_lines (
    shipment_id TEXT NOT NULL REFERENCES shipments (id),
    order_id    TEXT NOT NULL,
    position    INTEGER NOT NULL,
    quantity    INTEGER NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (shipment_id, position)
);
CREATE INDEX shipment_lines_order ON shipment_lines (order_id, position);

CREATE TABLE shipment_events (
    id          INTEGER PRIMARY KEY,
    shipment_id TEXT NOT NULL REFERENCES shipments (id),
    status      TEXT NOT NULL,
    note        TEXT,
    actor       TEXT NOT NULL,
    at          INTEGER NOT NULL
);
CREATE INDEX shipment_events_shipment ON shipment_events (shipment_id, id);

-- Provider webhook events already handled (a redelivery is answered 200 and ignored).
CREATE TABLE provider_events (
    provider    TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (provider, event_id)
);

-- A signed-in customer's saved addresses.
CREATE TABLE addresses (
    id          TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    label       TEXT,
    address     TEXT NOT NULL,
    is_default  INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX addresses_customer ON addresses (customer_id, created_at);
