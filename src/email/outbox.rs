//! The durable outbox: one row per email or webhook delivery in the tenant file, inserted in the same
//! transaction as the change that causes it.
//!
//! Rows move `pending → sending → sent`, or back to `pending` with a later `next_attempt_at` after a failed
//! attempt, or to `dead` after `GATEHOUSE_OUTBOX_MAX_ATTEMPTS`. An admin retry moves `dead → pending`.
//!
//! Delivery is at least once. A row is set to `sending` before its attempt and to `sent` right after the SMTP
//! server or webhook receiver accepted it. A crash between the two leaves the row in `sending`, and the start-up
//! recovery puts it back to `pending`, so it is sent again. Duplicates are therefore bounded by the rows that
//! were in flight at the crash: at most `GATEHOUSE_OUTBOX_TENANTS × GATEHOUSE_OUTBOX_PER_TENANT`. Receivers
//! can drop them by Message-ID (derived from the row id) or the `Gatehouse-Delivery` header.
//!
//! `Wakeups` is the dispatcher's to-do list: tenants with due work and when. `TenantDb::write` reports rows
//! enqueued by a committed transaction to it, and a start-up scan fills it, so an idle tenant costs nothing.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::ops::Deref;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use rand::Rng;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use serde::Serialize;
use tokio::sync::Notify;

use crate::email::EmailKind;
use crate::error::{Error, Result};
use crate::tenants::TenantSlug;
use crate::webhooks::events::Event;

/// What an outbox row carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = OutboxKind)]
pub enum Kind {
    Email,
    Webhook,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::Email, Kind::Webhook];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Email => "email",
            Kind::Webhook => "webhook",
        }
    }

    pub fn parse(raw: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == raw)
    }

    fn index(self) -> usize {
        self as usize
    }
}

pub const STATUSES: [&str; 4] = ["pending", "sending", "sent", "dead"];

/// A tenant transaction that knows its tenant and counts the outbox rows it adds. Made by `TenantDb::write`,
/// which commits it and then wakes the dispatcher.
pub struct TenantTx<'conn> {
    tx: Transaction<'conn>,
    slug: TenantSlug,
    enqueued: Cell<[i64; 2]>,
    touched: std::cell::RefCell<Touched>,
}

/// What a committed transaction changed that someone outside it waits for: orders whose timeline grew, SKUs
/// whose stock moved (the live event streams), and the earliest new order expiry (the expiry due list).
#[derive(Debug, Default, Clone)]
pub struct Touched {
    pub orders: Vec<String>,
    pub skus: Vec<String>,
    pub expires_at: Option<i64>,
    /// Card payments (Stripe PaymentIntents) of orders cancelled unpaid: they are cancelled at the provider too.
    pub cancelled_intents: Vec<String>,
}

impl Touched {
    pub fn is_empty(&self) -> bool {
        self.orders.is_empty() && self.skus.is_empty() && self.expires_at.is_none() && self.cancelled_intents.is_empty()
    }
}

impl<'conn> TenantTx<'conn> {
    pub fn new(tx: Transaction<'conn>, slug: TenantSlug) -> Self {
        Self { tx, slug, enqueued: Cell::new([0, 0]), touched: Default::default() }
    }

    pub fn slug(&self) -> &TenantSlug {
        &self.slug
    }

    /// Commits, returning how many rows of each kind were enqueued and what it touched.
    pub fn commit(self) -> Result<([i64; 2], Touched)> {
        let counts = self.enqueued.get();
        self.tx.commit()?;
        Ok((counts, self.touched.into_inner()))
    }

    /// Order `id`'s timeline grew in this transaction.
    pub fn touch_order(&self, id: &str) {
        let mut touched = self.touched.borrow_mut();
        if !touched.orders.iter().any(|o| o == id) {
            touched.orders.push(id.to_owned());
        }
    }

    /// `sku`'s stock moved in this transaction.
    pub fn touch_sku(&self, sku: &str) {
        let mut touched = self.touched.borrow_mut();
        if !touched.skus.iter().any(|s| s == sku) {
            touched.skus.push(sku.to_owned());
        }
    }

    /// An unpaid order's card payment `intent` is to be cancelled at its provider.
    pub fn touch_cancelled_intent(&self, intent: &str) {
        self.touched.borrow_mut().cancelled_intents.push(intent.to_owned());
    }

    /// An unpaid order now expires at `at` (unix seconds).
    pub fn touch_expiry(&self, at: i64) {
        let mut touched = self.touched.borrow_mut();
        touched.expires_at = Some(touched.expires_at.map_or(at, |e| e.min(at)));
    }

    fn count(&self, kind: Kind) {
        let mut counts = self.enqueued.get();
        counts[kind.index()] += 1;
        self.enqueued.set(counts);
    }
}

impl<'conn> Deref for TenantTx<'conn> {
    type Target = Transaction<'conn>;
    fn deref(&self) -> &Transaction<'conn> {
        &self.tx
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Queues `email`; it is sent after the surrounding transaction commits. Returns the outbox row id.
pub fn enqueue_email(tx: &TenantTx<'_>, email: EmailKind) -> Result<String> {
    email.validate()?;
    let id = new_id();
    let payload = serde_json::to_string(&email).map_err(Error::internal)?;
    insert(tx, &id, Kind::Email, email.template(), email.to(), &payload, None)?;
    Ok(id)
}

/// Queues one delivery of `event` per enabled webhook subscribed to it. Returns the delivery ids.
pub fn enqueue_event(tx: &TenantTx<'_>, event: Event) -> Result<Vec<String>> {
    let name = event.name();
    let mut stmt = tx.prepare_cached("SELECT id, url, events FROM webhooks WHERE enabled = 1 ORDER BY id")?;
    let subscribed: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))?
        .filter_map(|row| row.ok())
        .filter(|(_, _, events)| {
            serde_json::from_str::<Vec<String>>(events).is_ok_and(|list| list.iter().any(|e| e == name || e == "*"))
        })
        .map(|(id, url, _)| (id, url))
        .collect();
    if subscribed.is_empty() {
        return Ok(Vec::new());
    }
    let body = event_body(tx.slug(), &event);
    let mut ids = Vec::with_capacity(subscribed.len());
    for (webhook_id, url) in subscribed {
        let id = new_id();
        insert(tx, &id, Kind::Webhook, name, &url, &body, Some(&webhook_id))?;
        ids.push(id);
    }
    Ok(ids)
}

/// Queues one delivery of `event` to the webhook `webhook_id`, subscribed or not (ping).
pub fn enqueue_event_to(tx: &TenantTx<'_>, webhook_id: &str, event: Event) -> Result<String> {
    let url: String = tx
        .query_row("SELECT url FROM webhooks WHERE id = ?1", [webhook_id], |r| r.get(0))
        .optional()?
        .ok_or(Error::NotFound("webhook"))?;
    let id = new_id();
    insert(tx, &id, Kind::Webhook, event.name(), &url, &event_body(tx.slug(), &event), Some(webhook_id))?;
    Ok(id)
}

/// Queues a new delivery with the same body (same event id) as delivery `delivery_id` of `webhook_id`.
pub fn redeliver(tx: &TenantTx<'_>, webhook_id: &str, delivery_id: &str) -> Result<String> {
    let found: Option<(String, String)> = tx
        .query_row(
            "SELECT topic, payload FROM outbox WHERE id = ?1 AND webhook_id = ?2 AND kind = 'webhook'",
            [delivery_id, webhook_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (topic, payload) = found.ok_or(Error::NotFound("delivery"))?;
    let url: String = tx
        .query_row("SELECT url FROM webhooks WHERE id = ?1", [webhook_id], |r| r.get(0))
        .optional()?
        .ok_or(Error::NotFound("webhook"))?;
    let id = new_id();
    insert(tx, &id, Kind::Webhook, &topic, &url, &payload, Some(webhook_id))?;
    Ok(id)
}

/// The exact bytes a webhook receives for `event`; the event id is fixed here, so every delivery and
/// redelivery of one event carries the same id.
fn event_body(slug: &TenantSlug, event: &Event) -> String {
    serde_json::json!({
        "id": new_id(),
        "type": event.name(),
        "tenant": slug.as_str(),
        "created_at": crate::format_time(crate::now_unix()),
        "data": event.data(),
    })
    .to_string()
}

fn insert(
    tx: &TenantTx<'_>,
    id: &str,
    kind: Kind,
    topic: &str,
    recipient: &str,
    payload: &str,
    webhook_id: Option<&str>,
) -> Result<()> {
    let now = crate::now_unix();
    tx.prepare_cached(
        "INSERT INTO outbox (id, kind, topic, recipient, payload, webhook_id, status, attempts, next_attempt_at,
                             created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', 0, ?7, ?8, ?8)",
    )?
    .execute(params![id, kind.as_str(), topic, recipient, payload, webhook_id, now_ms(), now])?;
    tx.count(kind);
    Ok(())
}

/// A row taken for one delivery attempt.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: String,
    pub kind: Kind,
    pub topic: String,
    pub payload: String,
    pub webhook_id: Option<String>,
    /// Attempts before this one.
    pub attempts: u32,
}

/// Takes the next due row (oldest first) and marks it `sending`.
pub fn claim_next(conn: &Connection, now_ms: i64) -> Result<Option<Claimed>> {
    let mut stmt = conn.prepare_cached(
        "UPDATE outbox SET status = 'sending', updated_at = ?2
         WHERE id = (SELECT id FROM outbox WHERE status = 'pending' AND next_attempt_at <= ?1
                     ORDER BY next_attempt_at, id LIMIT 1)
         RETURNING id, kind, topic, payload, webhook_id, attempts",
    )?;
    let claimed = stmt
        .query_row(params![now_ms, crate::now_unix()], |r| {
            let kind: String = r.get(1)?;
            Ok(Claimed {
                id: r.get(0)?,
                kind: Kind::parse(&kind).unwrap_or(Kind::Email),
                topic: r.get(2)?,
                payload: r.get(3)?,
                webhook_id: r.get(4)?,
                attempts: r.get(5)?,
            })
        })
        .optional()?;
    Ok(claimed)
}

/// What the receiving end said, kept on the row (webhooks: status code and the first 1 KiB of the body).
#[derive(Debug, Clone, Default)]
pub struct Response {
    pub status_code: Option<u16>,
    pub body: Option<String>,
}

pub fn mark_sent(conn: &Connection, id: &str, response: &Response) -> Result<()> {
    conn.prepare_cached(
        "UPDATE outbox SET status = 'sent', attempts = attempts + 1, last_error = NULL, last_status_code = ?2,
                last_response = ?3, updated_at = ?4
         WHERE id = ?1",
    )?
    .execute(params![id, response.status_code, response.body, crate::now_unix()])?;
    Ok(())
}

/// Records a failed attempt: back to `pending` after the backoff, or `dead` once `max_attempts` are used up.
/// A dead email raises `email.dead` for the tenant's webhooks. Returns whether the row is dead.
pub fn mark_failed(
    tx: &TenantTx<'_>,
    row: &Claimed,
    error: &str,
    response: &Response,
    max_attempts: u32,
) -> Result<bool> {
    let attempts = row.attempts + 1;
    let dead = attempts >= max_attempts;
    let next = now_ms() + backoff_ms(attempts);
    tx.prepare_cached(
        "UPDATE outbox SET status = ?2, attempts = ?3, next_attempt_at = ?4, last_error = ?5, last_status_code = ?6,
                last_response = ?7, updated_at = ?8
         WHERE id = ?1",
    )?
    .execute(params![
        row.id,
        if dead { "dead" } else { "pending" },
        attempts,
        next,
        truncate(error, 1000),
        response.status_code,
        response.body,
        crate::now_unix()
    ])?;
    if dead && row.kind == Kind::Email {
        let to = serde_json::from_str::<EmailKind>(&row.payload).map(|e| e.to().to_owned()).unwrap_or_default();
        enqueue_event(
            tx,
            Event::EmailDead {
                message_id: row.id.clone(),
                template: row.topic.clone(),
                to,
                attempts,
                last_error: truncate(error, 1000).to_owned(),
            },
        )?;
    }
    Ok(dead)
}

/// Exponential backoff after the `attempts`-th failure: 1 s, 2 s, 4 s … capped at 1 h, ±20% jitter so
/// messages that failed together do not retry together.
pub fn backoff_ms(attempts: u32) -> i64 {
    let base = 1000i64.saturating_mul(1i64 << attempts.saturating_sub(1).min(20)).min(3_600_000);
    let jitter = rand::rng().random_range(0.8..1.2);
    (base as f64 * jitter) as i64
}

pub fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// When the tenant's next pending row is due (unix ms), if any.
pub fn next_due(conn: &Connection) -> Result<Option<i64>> {
    Ok(conn.query_row("SELECT MIN(next_attempt_at) FROM outbox WHERE status = 'pending'", [], |r| r.get(0))?)
}

/// Start-up recovery of one tenant file: rows a crash left in `sending` go back to `pending`; returns the
/// pending count per kind and when the next row is due. A file without an outbox table has nothing to do.
pub fn recover(conn: &Connection) -> Result<(HashMap<Kind, i64>, Option<i64>)> {
    let has_table: bool = conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'outbox')",
        [],
        |r| r.get(0),
    )?;
    if !has_table {
        return Ok((HashMap::new(), None));
    }
    let reset = conn.execute(
        "UPDATE outbox SET status = 'pending', updated_at = ?1 WHERE status = 'sending'",
        [crate::now_unix()],
    )?;
    if reset > 0 {
        tracing::warn!(rows = reset, "outbox rows were mid-send at the last stop; they will be sent again");
    }
    let mut counts = HashMap::new();
    let mut stmt = conn.prepare("SELECT kind, COUNT(*) FROM outbox WHERE status = 'pending' GROUP BY kind")?;
    for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
        let (kind, n) = row?;
        if let Some(kind) = Kind::parse(&kind) {
            counts.insert(kind, n);
        }
    }
    Ok((counts, next_due(conn)?))
}

/// One outbox row as the admin API shows it (no payload: it can hold one-time links).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OutboxItem {
    pub id: String,
    pub kind: Kind,
    /// The template name of a mail, the event type of a webhook delivery.
    pub topic: String,
    /// The address of a mail, the URL of a webhook delivery.
    pub recipient: String,
    /// The webhook of a delivery; `null` for mail.
    pub webhook_id: Option<String>,
    /// `pending`, `sending`, `sent` or `dead`.
    pub status: String,
    pub attempts: u32,
    #[serde(with = "crate::rfc3339_ms")]
    #[schema(value_type = String, format = DateTime)]
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub last_status_code: Option<u16>,
    pub last_response: Option<String>,
    #[serde(with = "crate::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(with = "crate::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
}

const ITEM_COLUMNS: &str = "id, kind, topic, recipient, webhook_id, status, attempts, next_attempt_at, last_error,
                            last_status_code, last_response, created_at, updated_at";

fn item_from_row(r: &Row<'_>) -> rusqlite::Result<OutboxItem> {
    let kind: String = r.get(1)?;
    Ok(OutboxItem {
        id: r.get(0)?,
        kind: Kind::parse(&kind).unwrap_or(Kind::Email),
        topic: r.get(2)?,
        recipient: r.get(3)?,
        webhook_id: r.get(4)?,
        status: r.get(5)?,
        attempts: r.get(6)?,
        next_attempt_at: r.get(7)?,
        last_error: r.get(8)?,
        last_status_code: r.get(9)?,
        last_response: r.get(10)?,
        created_at: r.get(11)?,
        updated_at: r.get(12)?,
    })
}

/// Filters of an outbox listing; newest first, `cursor` is the last id of the previous page.
#[derive(Debug, Default)]
pub struct Filter {
    pub status: Option<String>,
    pub kind: Option<Kind>,
    pub webhook_id: Option<String>,
    pub cursor: Option<String>,
    pub limit: u32,
}

pub fn list(conn: &Connection, filter: &Filter) -> Result<(Vec<OutboxItem>, Option<String>)> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ITEM_COLUMNS} FROM outbox
         WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR kind = ?2) AND (?3 IS NULL OR webhook_id = ?3)
           AND (?4 IS NULL OR id < ?4)
         ORDER BY id DESC LIMIT ?5"
    ))?;
    let items: Vec<OutboxItem> = stmt
        .query_map(
            params![filter.status, filter.kind.map(Kind::as_str), filter.webhook_id, filter.cursor, filter.limit],
            item_from_row,
        )?
        .collect::<rusqlite::Result<_>>()?;
    let next = (items.len() == filter.limit as usize).then(|| items.last().map(|i| i.id.clone())).flatten();
    Ok((items, next))
}

/// The `WHERE` clause of `count_matching` and `page_matching`: status, kind, webhook, and a LIKE pattern for the
/// recipient or the topic.
const MATCHING: &str = "(?1 IS NULL OR status = ?1) AND (?2 IS NULL OR kind = ?2) AND (?3 IS NULL OR webhook_id = ?3)
           AND (?4 IS NULL OR recipient LIKE ?4 ESCAPE '\\' OR topic LIKE ?4 ESCAPE '\\')";

fn like_pattern(text: Option<&str>) -> Option<String> {
    text.map(|t| format!("%{}%", t.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")))
}

/// How many rows match `filter` (its cursor and limit aside) and `text`, a part of the recipient (address or URL)
/// or of the topic (template or event type), case-insensitive.
pub fn count_matching(conn: &Connection, filter: &Filter, text: Option<&str>) -> Result<u64> {
    let total: i64 = conn.prepare_cached(&format!("SELECT COUNT(*) FROM outbox WHERE {MATCHING}"))?.query_row(
        params![filter.status, filter.kind.map(Kind::as_str), filter.webhook_id, like_pattern(text)],
        |r| r.get(0),
    )?;
    Ok(total.max(0) as u64)
}

/// One page of the rows `count_matching` counts, newest first: `filter.limit` rows from `offset` (the cursor is
/// not used).
pub fn page_matching(conn: &Connection, filter: &Filter, text: Option<&str>, offset: u64) -> Result<Vec<OutboxItem>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ITEM_COLUMNS} FROM outbox WHERE {MATCHING} ORDER BY id DESC LIMIT ?5 OFFSET ?6"
    ))?;
    let offset = i64::try_from(offset).unwrap_or(i64::MAX);
    let items: Vec<OutboxItem> = stmt
        .query_map(
            params![
                filter.status,
                filter.kind.map(Kind::as_str),
                filter.webhook_id,
                like_pattern(text),
                filter.limit,
                offset
            ],
            item_from_row,
        )?
        .collect::<rusqlite::Result<_>>()?;
    Ok(items)
}

pub fn get(conn: &Connection, id: &str) -> Result<OutboxItem> {
    conn.query_row(&format!("SELECT {ITEM_COLUMNS} FROM outbox WHERE id = ?1"), [id], item_from_row)
        .optional()?
        .ok_or(Error::NotFound("outbox message"))
}

/// `dead → pending` with the attempt count reset. Anything but a dead row is a conflict.
pub fn retry(tx: &TenantTx<'_>, id: &str) -> Result<()> {
    let status: Option<(String, String)> = tx
        .query_row("SELECT status, kind FROM outbox WHERE id = ?1", [id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((status, kind)) = status else { return Err(Error::NotFound("outbox message")) };
    if status != "dead" {
        return Err(Error::Conflict(format!("only dead messages can be retried; this one is {status}")));
    }
    tx.execute(
        "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, now_ms(), crate::now_unix()],
    )?;
    tx.count(Kind::parse(&kind).unwrap_or(Kind::Email));
    Ok(())
}

/// The dispatcher's to-do list: which tenants have work due and when (unix ms), plus approximate pending counts
/// per kind for `/metrics`.
#[derive(Default)]
pub struct Wakeups {
    due: Mutex<HashMap<TenantSlug, i64>>,
    notify: Notify,
    pending: [AtomicI64; 2],
}

impl Wakeups {
    /// Work for `slug` is due at `at_ms` (an earlier time already known wins).
    pub fn schedule(&self, slug: &TenantSlug, at_ms: i64) {
        let mut due = self.due.lock().unwrap_or_else(|e| e.into_inner());
        let entry = due.entry(slug.clone()).or_insert(at_ms);
        *entry = (*entry).min(at_ms);
        drop(due);
        self.notify.notify_one();
    }

    /// A committed transaction of `slug` added `counts` rows (email, webhook).
    pub fn enqueued(&self, slug: &TenantSlug, counts: [i64; 2]) {
        if counts.iter().sum::<i64>() == 0 {
            return;
        }
        for kind in Kind::ALL {
            self.pending[kind.index()].fetch_add(counts[kind.index()], Ordering::Relaxed);
        }
        self.schedule(slug, now_ms());
    }

    /// A pending row of `kind` reached `sent` or `dead`.
    pub fn settled(&self, kind: Kind) {
        self.pending[kind.index()].fetch_sub(1, Ordering::Relaxed);
    }

    pub fn add_pending(&self, kind: Kind, n: i64) {
        self.pending[kind.index()].fetch_add(n, Ordering::Relaxed);
    }

    pub fn pending(&self, kind: Kind) -> i64 {
        self.pending[kind.index()].load(Ordering::Relaxed).max(0)
    }

    /// Removes and returns up to `max` tenants due by `now_ms` that are not `busy`, and when the next remaining
    /// entry is due.
    pub fn take_due(&self, now_ms: i64, busy: &HashSet<TenantSlug>, max: usize) -> (Vec<TenantSlug>, Option<i64>) {
        let mut due = self.due.lock().unwrap_or_else(|e| e.into_inner());
        let mut ready: Vec<(i64, TenantSlug)> = due
            .iter()
            .filter(|(slug, at)| **at <= now_ms && !busy.contains(*slug))
            .map(|(slug, at)| (*at, slug.clone()))
            .collect();
        ready.sort();
        ready.truncate(max);
        for (_, slug) in &ready {
            due.remove(slug);
        }
        let next = due.iter().filter(|(slug, _)| !busy.contains(*slug)).map(|(_, at)| *at).min();
        (ready.into_iter().map(|(_, slug)| slug).collect(), next)
    }

    /// Tenants waiting in the list.
    pub fn waiting(&self) -> usize {
        self.due.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn forget(&self, slug: &TenantSlug) {
        self.due.lock().unwrap_or_else(|e| e.into_inner()).remove(slug);
    }

    /// Resolves when `schedule` was called since the last wait.
    pub async fn notified(&self) {
        self.notify.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_and_caps_at_an_hour() {
        for (attempts, base) in [(1, 1000), (2, 2000), (3, 4000), (10, 512_000), (13, 3_600_000), (40, 3_600_000)] {
            let ms = backoff_ms(attempts);
            assert!((base * 8 / 10..=base * 12 / 10).contains(&ms), "attempt {attempts}: {ms} ms");
        }
    }

    #[test]
    fn wakeups_hand_out_due_tenants_once_and_skip_busy_ones() {
        let w = Wakeups::default();
        let a = TenantSlug::parse("aa").unwrap();
        let b = TenantSlug::parse("bb").unwrap();
        w.schedule(&a, 100);
        w.schedule(&a, 50);
        w.schedule(&b, 500);
        let (ready, next) = w.take_due(200, &HashSet::new(), 10);
        assert_eq!(ready, vec![a.clone()]);
        assert_eq!(next, Some(500));
        w.schedule(&a, 10);
        let busy = HashSet::from([a.clone()]);
        let (ready, _) = w.take_due(1000, &busy, 10);
        assert_eq!(ready, vec![b]);
        assert_eq!(w.waiting(), 1, "the busy tenant's wake-up is kept for later");
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
