-- The durable outbox: one row per email or webhook delivery, inserted in the same transaction as the change
-- that causes it and worked off by the dispatcher (src/email/dispatcher.rs).
--   kind            'email' | 'webhook'
--   topic           the email template or the event type
--   recipient       the address or the webhook URL at enqueue time (for listing)
--   payload         JSON: the email (template + data) or the exact webhook body
--   next_attempt_at unix milliseconds
CREATE TABLE outbox (
    id               TEXT PRIMARY KEY,
    kind             TEXT NOT NULL CHECK (kind IN ('email', 'webhook')),
    topic            TEXT NOT NULL,
    recipient        TEXT NOT NULL,
    payload          TEXT NOT NULL,
    webhook_id       TEXT,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'sending', 'sent', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    last_error       TEXT,
    last_status_code INTEGER,
    last_response    TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX outbox_webhook ON outbox (webhook_id, id) WHERE webhook_id IS NOT NULL;

-- Webhook subscriptions. events is a JSON array of event types ("*" matches every event). The signing secret is
-- sealed with the master key (context "webhook-secret:{slug}:{id}").
CREATE TABLE webhooks (
    id            TEXT PRIMARY KEY,
    url           TEXT NOT NULL,
    events        TEXT NOT NULL,
    description   TEXT NOT NULL DEFAULT '',
    enabled       INTEGER NOT NULL DEFAULT 1,
    secret_sealed TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

-- The dev mailbox: mail kept instead of sent (GATEHOUSE_MAIL_MODE=dev, or no transport configured). The newest
-- 1,000 messages are kept.
CREATE TABLE mailbox (
    id         TEXT PRIMARY KEY,
    message_id TEXT NOT NULL,
    template   TEXT NOT NULL,
    from_addr  TEXT NOT NULL,
    to_addr    TEXT NOT NULL,
    subject    TEXT NOT NULL,
    html       TEXT NOT NULL,
    text       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
