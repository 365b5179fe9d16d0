//! Live order status and stock levels as server-sent events.
//!
//! - `GET /t/{slug}/api/v1/orders/{id}/events`: the order's timeline, then each new entry as it is committed
//!   (`status_changed`, `shipment_updated`, `refund`, `payment`, `created`), each with its timeline id as the SSE
//!   `id`, so `Last-Event-ID` resumes exactly where a dropped stream stopped. Who may call: the order's owner
//!   (session cookie, or an access token with `account:read`) or the holder of its order token (`?token=`, since
//!   `EventSource` cannot send headers); anyone else and every other tenant gets 404.
//! - `GET /t/{slug}/api/v1/stock/events?sku=A,B`: `stock` events when those SKUs' stock moves (the count only when
//!   the store shows counts). Who may call: anyone (public, like the catalog), active products only.
//!
//! One in-process hub per tenant (`Hubs`), made when the first stream opens and dropped with its last one: a
//! committed write tells it which orders and SKUs it touched (`TenantTx::touch_*`, via the registry's commit
//! listener), and each stream re-reads what it needs from the tenant file, so nothing is lost when a stream
//! lags. A comment line goes out every 15 s. Opening a stream counts against the storefront's per-IP limit;
//! open streams are limited per client (an IPv6 client is its /64), per tenant and kind, and per node (429
//! beyond); a stream ends after an hour (clients reconnect with `Last-Event-ID`) and at shutdown (`Hubs::close`).
//! Buyers see each entry's facts (`shown`), not the admins' notes or references.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::cart_api::{Customer, answer, limit};
use super::checkout;
use crate::app::AppState;
use crate::db;
use crate::email::outbox::Touched;
use crate::error::{Error, Result};
use crate::http::extract::{TenantCtx, client_ip};
use crate::http::openapi::ApiErrors;
use crate::tenants::TenantSlug;

/// Open streams one client may hold on this node (an IPv6 client is its /64).
pub const STREAMS_PER_IP: usize = 32;
/// Open streams of each kind (order, stock) one tenant may have on this node: anonymous stock streams cannot
/// take the places of buyers following their orders.
pub const STREAMS_PER_TENANT: usize = 5_000;
/// Open streams on this node.
pub const STREAMS_PER_NODE: usize = 20_000;
/// A stream ends after this long; `EventSource` reconnects by itself (with `Last-Event-ID`).
const MAX_LIFETIME: Duration = Duration::from_secs(3600);
/// How often an idle stream sends a comment (keeps proxies from closing it).
const HEARTBEAT: Duration = Duration::from_secs(15);
/// SKUs one stock stream may follow.
const MAX_SKUS: usize = 50;

/// What a hub passes on: which order or SKU changed (streams re-read the rest).
#[derive(Debug, Clone)]
enum Signal {
    Order(Arc<str>),
    Stock(Arc<str>),
}

/// What a stream follows (each kind has its own places per tenant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Order,
    Stock,
}

#[derive(Default)]
struct Inner {
    hubs: HashMap<TenantSlug, broadcast::Sender<Signal>>,
    per_tenant: HashMap<(TenantSlug, Kind), usize>,
    per_ip: HashMap<IpAddr, usize>,
    total: usize,
}

/// The address a client's streams count against: an IPv6 client is its /64 (one subscriber's prefix).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::V6(std::net::Ipv6Addr::from(octets))
        }
        IpAddr::V6(v6) => IpAddr::V4(v6.to_ipv4_mapped().unwrap_or(std::net::Ipv4Addr::UNSPECIFIED)),
        v4 => v4,
    }
}

/// Every tenant's hub, the stream counts, and the shutdown signal.
#[derive(Clone)]
pub struct Hubs {
    state: Arc<Mutex<Inner>>,
    stop: Arc<watch::Sender<bool>>,
}

impl Default for Hubs {
    fn default() -> Self {
        Hubs { state: Arc::default(), stop: Arc::new(watch::channel(false).0) }
    }
}

impl Hubs {
    /// Passes on what a committed write of `slug` touched, if anyone listens there.
    pub fn publish(&self, slug: &TenantSlug, touched: &Touched) {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(hub) = state.hubs.get(slug) else { return };
        for order in &touched.orders {
            let _ = hub.send(Signal::Order(order.as_str().into()));
        }
        for sku in &touched.skus {
            let _ = hub.send(Signal::Stock(sku.as_str().into()));
        }
    }

    /// Ends every open stream (graceful shutdown) and refuses new ones.
    pub fn close(&self) {
        let _ = self.stop.send(true);
    }

    /// Open streams on this node.
    pub fn open_streams(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).total
    }

    /// A new stream of `kind` in `slug` for the client at `ip`, within the limits.
    fn open(&self, slug: &TenantSlug, kind: Kind, ip: IpAddr) -> Result<Subscription> {
        if *self.stop.borrow() {
            return Err(Error::NotReady("the server is shutting down".into()));
        }
        let ip = client_key(ip);
        let key = (slug.clone(), kind);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let tenant_count = state.per_tenant.get(&key).copied().unwrap_or(0);
        let ip_count = state.per_ip.get(&ip).copied().unwrap_or(0);
        if tenant_count >= STREAMS_PER_TENANT || ip_count >= STREAMS_PER_IP || state.total >= STREAMS_PER_NODE {
            return Err(Error::RateLimited { retry_after_secs: 30 });
        }
        *state.per_tenant.entry(key.clone()).or_default() += 1;
        *state.per_ip.entry(ip).or_default() += 1;
        state.total += 1;
        let rx = state.hubs.entry(slug.clone()).or_insert_with(|| broadcast::channel(256).0).subscribe();
        metrics::gauge!("gatehouse_live_streams").increment(1.0);
        let until = tokio::time::Instant::now() + MAX_LIFETIME;
        Ok(Subscription { hubs: self.clone(), key, ip, rx, stop: self.stop.subscribe(), until })
    }
}

/// One open stream's place in its hub; dropping it gives the place back (and the hub, with its last stream).
struct Subscription {
    hubs: Hubs,
    key: (TenantSlug, Kind),
    ip: IpAddr,
    rx: broadcast::Receiver<Signal>,
    stop: watch::Receiver<bool>,
    /// When the stream ends by itself.
    until: tokio::time::Instant,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut state = self.hubs.state.lock().unwrap_or_else(|e| e.into_inner());
        let left = state.per_tenant.get_mut(&self.key).map(|n| {
            *n -= 1;
            *n
        });
        if left == Some(0) {
            state.per_tenant.remove(&self.key);
            let slug = &self.key.0;
            if !state.per_tenant.keys().any(|(s, _)| s == slug) {
                state.hubs.remove(slug);
            }
        }
        state.total -= 1;
        if let Some(n) = state.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                state.per_ip.remove(&self.ip);
            }
        }
        metrics::gauge!("gatehouse_live_streams").decrement(1.0);
    }
}

impl Subscription {
    /// The next signal, or `None` at shutdown or the end of the stream's lifetime. A lagging receiver gets
    /// `None` for the signal it missed and re-reads (`Some(None)`).
    async fn next(&mut self) -> Option<Option<Signal>> {
        if *self.stop.borrow() {
            return None;
        }
        tokio::select! {
            () = tokio::time::sleep_until(self.until) => None,
            got = self.rx.recv() => match got {
                Ok(signal) => Some(Some(signal)),
                Err(broadcast::error::RecvError::Lagged(_)) => Some(None),
                Err(broadcast::error::RecvError::Closed) => None,
            },
            _ = self.stop.changed() => None,
        }
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(order_events)).routes(routes!(stock_events))
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// The order's timeline as server-sent events, then live: `status_changed` (data `{"from","to","at",…}`),
/// `shipment_updated`, `refund`, `payment`. Each event's `id` resumes the stream (`Last-Event-ID`).
#[utoipa::path(
    get,
    path = "/t/{slug}/api/v1/orders/{id}/events",
    tag = "storefront",
    operation_id = "orders_events",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("id" = String, Path, description = "The order's id"),
        ("token" = Option<String>, Query, description = "The order token (EventSource cannot send headers)"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event")
    ),
    responses(
        (status = 200, description = "An event stream", content_type = "text/event-stream", body = String),
        ApiErrors
    ),
    security((), ("user_session" = []), ("access_token" = []))
)]
async fn order_events(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ctx: TenantCtx,
    headers: HeaderMap,
    customer: Customer,
    Path((_, id)): Path<(String, String)>,
    Query(q): Query<TokenQuery>,
) -> Response {
    let result = async {
        limit(&app, &headers, peer)?;
        let who = customer.0?;
        let after = last_event_id(&headers)?;
        let (order, pool) = (id.clone(), ctx.db.pool.clone());
        db::with_conn(&pool, move |conn| checkout::find_for(conn, &order, who.as_deref(), q.token.as_deref())).await?;
        let ip = client_ip(&headers, peer.ip(), app.config.trust_proxy);
        let subscription = app.store.live.open(&ctx.tenant.slug, Kind::Order, ip)?;
        Ok(stream_response(order_stream(subscription, ctx.db.pool.clone(), id, after)))
    }
    .await;
    answer(&ctx.tenant, &headers, result)
}

fn last_event_id(headers: &HeaderMap) -> Result<i64> {
    match headers.get("last-event-id").map(|v| v.to_str().map(str::trim)) {
        None => Ok(0),
        Some(Ok("")) => Ok(0),
        Some(Ok(v)) => v.parse::<i64>().map_err(|_| Error::BadRequest("Last-Event-ID must be an event's id".into())),
        Some(Err(_)) => Err(Error::BadRequest("Last-Event-ID must be an event's id".into())),
    }
}

fn stream_response(stream: impl Stream<Item = std::result::Result<Event, Infallible>> + Send + 'static) -> Response {
    let mut response = Sse::new(stream).keep_alive(KeepAlive::new().interval(HEARTBEAT).text("")).into_response();
    // Proxies (nginx) must not buffer the stream.
    response.headers_mut().insert("x-accel-buffering", axum::http::HeaderValue::from_static("no"));
    response.headers_mut().insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    response
}

/// The timeline after `after`, then every entry as it is committed, until shutdown or the client leaves.
fn order_stream(
    subscription: Subscription,
    pool: db::Pool,
    order: String,
    after: i64,
) -> impl Stream<Item = std::result::Result<Event, Infallible>> + Send + 'static {
    let state = (subscription, pool, order, after, std::collections::VecDeque::<Event>::new(), true);
    futures_util::stream::unfold(state, |(mut sub, pool, order, mut after, mut queue, mut reread)| async move {
        loop {
            if let Some(event) = queue.pop_front() {
                return Some((Ok(event), (sub, pool, order, after, queue, reread)));
            }
            if reread {
                reread = false;
                let (o, p) = (order.clone(), pool.clone());
                match db::with_conn(&p, move |conn| timeline_after(conn, &o, after)).await {
                    Ok(rows) => {
                        for (id, event) in rows {
                            after = id;
                            queue.push_back(event);
                        }
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "order stream could not read the timeline");
                        return None;
                    }
                }
                continue;
            }
            match sub.next().await {
                None => return None,
                Some(Some(Signal::Order(changed))) => reread = *changed == *order,
                Some(Some(Signal::Stock(_))) => {}
                Some(None) => reread = true,
            }
        }
    })
}

/// Timeline entries of `order` after `after`, as events (the actor is not shown to buyers).
fn timeline_after(conn: &rusqlite::Connection, order: &str, after: i64) -> Result<Vec<(i64, Event)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, kind, from_status, to_status, detail, at FROM order_events
         WHERE order_id = ?1 AND id > ?2 ORDER BY id LIMIT 500",
    )?;
    let rows = stmt.query_map(rusqlite::params![order, after], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, Option<String>>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, i64>(5)?,
        ))
    })?;
    let mut events = Vec::new();
    for row in rows {
        let (id, kind, from, to, detail, at) = row?;
        let detail = serde_json::from_str::<Value>(&detail).unwrap_or_else(|_| json!({}));
        let mut data = shown(&kind, &detail);
        data["from"] = json!(from);
        data["to"] = json!(to);
        data["at"] = json!(crate::format_time(at));
        data["order_id"] = json!(order);
        let event = Event::default().id(id.to_string()).event(kind).data(data.to_string());
        events.push((id, event));
    }
    Ok(events)
}

/// What a buyer sees of a timeline entry's detail: the facts about their order, never the admins' notes and
/// references or a provider's error text.
fn shown(kind: &str, detail: &Value) -> Value {
    let fields: &[&str] = match kind {
        "created" => &["number"],
        "shipment_updated" => &["shipment_id", "status", "carrier", "tracking_number", "tracking_url"],
        "refund" => &["amount", "refunded_total"],
        "payment" => &["status"],
        _ => &[],
    };
    let mut data = json!({});
    for field in fields {
        if let Some(value) = detail.get(*field).filter(|v| !v.is_null()) {
            data[*field] = value.clone();
        }
    }
    data
}

#[derive(Deserialize)]
struct StockQuery {
    sku: Option<String>,
}

/// `stock` events (`{"sku","in_stock","stock"?}`) for the listed SKUs (comma-separated, at most 50, each of an
/// active product; else 404): first their levels now, then each change.
#[utoipa::path(
    get,
    path = "/t/{slug}/api/v1/stock/events",
    tag = "storefront",
    operation_id = "stock_events",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("sku" = String, Query, description = "Comma-separated SKUs, 1-50")
    ),
    responses(
        (status = 200, description = "An event stream", content_type = "text/event-stream", body = String),
        ApiErrors
    ),
    security(())
)]
async fn stock_events(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ctx: TenantCtx,
    headers: HeaderMap,
    Query(q): Query<StockQuery>,
) -> Response {
    let result = async {
        limit(&app, &headers, peer)?;
        let mut skus: Vec<String> = q
            .sku
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        skus.sort_unstable();
        skus.dedup();
        if skus.is_empty() || skus.len() > MAX_SKUS || skus.iter().any(|s| s.len() > 64) {
            return Err(Error::validation(format!("sku must list 1-{MAX_SKUS} SKUs, comma-separated")));
        }
        // Every SKU must be on sale (a stream that could never say anything is a mistake, and 404 is its answer).
        let wanted = skus.clone();
        let known = db::with_conn(&ctx.db.pool, move |conn| Ok(levels(conn, &wanted, false)?.len())).await?;
        if known != skus.len() {
            return Err(Error::NotFound("sku"));
        }
        let ip = client_ip(&headers, peer.ip(), app.config.trust_proxy);
        let subscription = app.store.live.open(&ctx.tenant.slug, Kind::Stock, ip)?;
        let show = ctx.tenant.settings.commerce.show_stock_counts;
        Ok(stream_response(stock_stream(subscription, ctx.db.pool.clone(), skus, show)))
    }
    .await;
    answer(&ctx.tenant, &headers, result)
}

fn stock_stream(
    subscription: Subscription,
    pool: db::Pool,
    skus: Vec<String>,
    show: bool,
) -> impl Stream<Item = std::result::Result<Event, Infallible>> + Send + 'static {
    let state = (subscription, pool, skus.clone(), skus, std::collections::VecDeque::<Event>::new());
    futures_util::stream::unfold(state, move |(mut sub, pool, skus, mut due, mut queue)| async move {
        loop {
            if let Some(event) = queue.pop_front() {
                return Some((Ok(event), (sub, pool, skus, due, queue)));
            }
            if !due.is_empty() {
                let wanted = std::mem::take(&mut due);
                match db::with_conn(&pool, move |conn| levels(conn, &wanted, show)).await {
                    Ok(events) => queue.extend(events),
                    Err(err) => {
                        tracing::warn!(error = %err, "stock stream could not read stock");
                        return None;
                    }
                }
                continue;
            }
            match sub.next().await {
                None => return None,
                Some(Some(Signal::Stock(sku))) if skus.iter().any(|s| **s == *sku) => due.push(sku.to_string()),
                Some(Some(_)) => {}
                Some(None) => due.clone_from(&skus),
            }
        }
    })
}

/// The stock events of `skus` (active products only).
fn levels(conn: &rusqlite::Connection, skus: &[String], show: bool) -> Result<Vec<Event>> {
    let mut stmt = conn.prepare_cached(
        "SELECT v.stock, v.track_inventory, v.allow_backorder FROM variants v JOIN products p ON p.id = v.product_id
         WHERE v.sku = ?1 AND p.status = 'active'",
    )?;
    let mut events = Vec::new();
    for sku in skus {
        let found: Option<(i64, bool, bool)> =
            rusqlite::OptionalExtension::optional(stmt.query_row([sku], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))))?;
        let Some((stock, tracked, backorder)) = found else { continue };
        let mut data = json!({"sku": sku, "in_stock": !tracked || backorder || stock > 0});
        if show && tracked {
            data["stock"] = json!(stock.max(0));
        }
        events.push(Event::default().event("stock").data(data.to_string()));
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_count_by_their_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(other));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(client_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
        assert_eq!(client_key("192.0.2.7".parse().unwrap()), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn buyers_see_facts_not_notes() {
        let paid = json!({"reference": "BANK-1"});
        assert_eq!(shown("status_changed", &paid), json!({}));
        let refund =
            json!({"amount": 5, "refunded_total": 5, "reason": "damaged, customer rude", "provider_ref": "re_1"});
        assert_eq!(shown("refund", &refund), json!({"amount": 5, "refunded_total": 5}));
        let failed = json!({"status": "unavailable", "error": "Stripe answered 401: Invalid API Key sk_live_…"});
        assert_eq!(shown("payment", &failed), json!({"status": "unavailable"}));
        let tracked = json!({"shipment_id": "s", "status": "in_transit", "note": "back door code 1234"});
        assert_eq!(shown("shipment_updated", &tracked), json!({"shipment_id": "s", "status": "in_transit"}));
    }
}
