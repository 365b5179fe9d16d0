//! Admin API for a tenant's webhooks under `/admin/api/v1/tenants/{slug}/webhooks`: create (the signing secret
//! is shown once), list (with the event catalogue), read, update, delete, ping, deliveries and redelivery.
//!
//! Who may call: every route needs an operator or an actor scoped to that tenant.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::admin::Actor;
use crate::app::{App, AppState};
use crate::db::{self, registry::TenantDb};
use crate::email::api::{OutboxPage, outbox_filter};
use crate::email::outbox;
use crate::error::Result;
use crate::http::extract::ApiJson;
use crate::http::openapi::ApiErrors;
use crate::tenants::TenantSlug;
use crate::webhooks::{self, Webhook, events};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(read, update, remove))
        .routes(routes!(ping))
        .routes(routes!(deliveries))
        .routes(routes!(redeliver))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// http(s); unless the server allows private addresses, the host must not be or resolve to one.
    pub url: String,
    /// Event types from the listing's `event_types`, or `*` for every event.
    pub events: Vec<String>,
    #[serde(default)]
    pub description: String,
}

/// Checks and saves a new webhook; returns it with its secret.
pub async fn create_webhook(app: &App, db: &TenantDb, body: CreateWebhook) -> Result<(Webhook, String)> {
    let url = webhooks::parse_url(&body.url, app.config.webhook_allow_private)?;
    webhooks::check_resolves(&url, app.config.webhook_allow_private).await?;
    let events = webhooks::check_events(&body.events)?;
    webhooks::check_description(&body.description)?;
    let (key, slug, description) = (app.master_key.clone(), db.slug.clone(), body.description.trim().to_owned());
    db::with_conn(&db.pool, move |conn| webhooks::create(conn, &key, &slug, url.as_str(), &events, &description)).await
}

/// A new webhook with its signing secret, which is shown only here.
#[derive(Serialize, ToSchema)]
struct CreatedWebhook {
    #[serde(flatten)]
    webhook: Webhook,
    /// The HMAC-SHA256 key of the `Gatehouse-Signature` header; keep it, it is not shown again.
    secret: String,
}

/// Creates a webhook; the answer carries its signing secret, shown this once.
#[utoipa::path(
    post,
    path = "/admin/api/v1/tenants/{slug}/webhooks",
    tag = "webhooks",
    operation_id = "webhooks_create",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    request_body = CreateWebhook,
    responses((status = 201, description = "Created, with its secret", body = CreatedWebhook), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn create(
    State(app): State<AppState>,
    actor: Actor,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<CreateWebhook>,
) -> Result<(StatusCode, Json<CreatedWebhook>)> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    let (webhook, secret) = create_webhook(&app, &db, body).await?;
    Ok((StatusCode::CREATED, Json(CreatedWebhook { webhook, secret })))
}

/// An event a webhook can subscribe to.
#[derive(Serialize, ToSchema)]
struct WebhookEventType {
    /// The event type, e.g. `user.created`.
    #[serde(rename = "type")]
    name: &'static str,
    description: &'static str,
}

/// The tenant's webhooks and the event catalogue.
#[derive(Serialize, ToSchema)]
struct WebhookList {
    items: Vec<Webhook>,
    /// Every event type a webhook can subscribe to.
    event_types: Vec<WebhookEventType>,
}

/// Lists the tenant's webhooks, with the event types they can subscribe to.
#[utoipa::path(
    get,
    path = "/admin/api/v1/tenants/{slug}/webhooks",
    tag = "webhooks",
    operation_id = "webhooks_list",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    responses((status = 200, description = "The webhooks and the event catalogue", body = WebhookList), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn list(State(app): State<AppState>, actor: Actor, Path(slug): Path<String>) -> Result<Json<WebhookList>> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    let items = db::with_conn(&db.pool, |conn| webhooks::list(conn)).await?;
    let event_types =
        events::CATALOGUE.iter().map(|&(name, description)| WebhookEventType { name, description }).collect();
    Ok(Json(WebhookList { items, event_types }))
}

/// Reads a webhook (without its secret).
#[utoipa::path(
    get,
    path = "/admin/api/v1/tenants/{slug}/webhooks/{id}",
    tag = "webhooks",
    operation_id = "webhooks_read",
    params(("slug" = TenantSlug, Path, description = "The tenant"), ("id" = String, Path, description = "The webhook")),
    responses((status = 200, description = "The webhook", body = Webhook), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn read(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, id)): Path<(String, String)>,
) -> Result<Json<Webhook>> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    Ok(Json(db::with_conn(&db.pool, move |conn| webhooks::get(conn, &id)).await?))
}

/// What to change; a missing field is kept.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    pub url: Option<String>,
    /// Event types, or `*` for every event.
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
    /// A disabled webhook gets no new deliveries.
    pub enabled: Option<bool>,
}

/// Checks and applies a change to a webhook: a new URL passes the same guard as on create.
pub async fn update_webhook(app: &App, db: &TenantDb, id: String, body: UpdateWebhook) -> Result<Webhook> {
    let allow = app.config.webhook_allow_private;
    let url = match body.url {
        None => None,
        Some(raw) => {
            let url = webhooks::parse_url(&raw, allow)?;
            webhooks::check_resolves(&url, allow).await?;
            Some(url.to_string())
        }
    };
    let events = body.events.as_deref().map(webhooks::check_events).transpose()?;
    if let Some(d) = &body.description {
        webhooks::check_description(d)?;
    }
    db::with_conn(&db.pool, move |conn| {
        webhooks::update(conn, &id, url.as_deref(), events.as_deref(), body.description.as_deref(), body.enabled)
    })
    .await
}

/// Changes a webhook's URL, events, description or enabled flag.
#[utoipa::path(
    patch,
    path = "/admin/api/v1/tenants/{slug}/webhooks/{id}",
    tag = "webhooks",
    operation_id = "webhooks_update",
    params(("slug" = TenantSlug, Path, description = "The tenant"), ("id" = String, Path, description = "The webhook")),
    request_body = UpdateWebhook,
    responses((status = 200, description = "The webhook as updated", body = Webhook), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn update(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<UpdateWebhook>,
) -> Result<Json<Webhook>> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    Ok(Json(update_webhook(&app, &db, id, body).await?))
}

/// Deletes a webhook.
#[utoipa::path(
    delete,
    path = "/admin/api/v1/tenants/{slug}/webhooks/{id}",
    tag = "webhooks",
    operation_id = "webhooks_remove",
    params(("slug" = TenantSlug, Path, description = "The tenant"), ("id" = String, Path, description = "The webhook")),
    responses((status = 204, description = "Deleted"), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn remove(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, id)): Path<(String, String)>,
) -> Result<StatusCode> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    db::with_conn(&db.pool, move |conn| webhooks::delete(conn, &id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Queues a `webhook.ping` to one webhook.
pub async fn send_ping(db: &TenantDb, id: String) -> Result<String> {
    db.write(move |tx| outbox::enqueue_event_to(tx, &id, events::Event::WebhookPing { webhook_id: id.clone() })).await
}

/// A queued webhook delivery.
#[derive(Serialize, ToSchema)]
struct DeliveryQueued {
    /// The outbox row of the delivery.
    delivery_id: String,
}

/// Queues a `webhook.ping` delivery to this webhook, subscribed to it or not.
#[utoipa::path(
    post,
    path = "/admin/api/v1/tenants/{slug}/webhooks/{id}/ping",
    tag = "webhooks",
    operation_id = "webhooks_ping",
    params(("slug" = TenantSlug, Path, description = "The tenant"), ("id" = String, Path, description = "The webhook")),
    responses((status = 202, description = "Queued in the outbox", body = DeliveryQueued), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn ping(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<DeliveryQueued>)> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    let delivery_id = send_ping(&db, id).await?;
    Ok((StatusCode::ACCEPTED, Json(DeliveryQueued { delivery_id })))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DeliveriesQuery {
    /// `pending`, `sending`, `sent` or `dead`.
    status: Option<String>,
    /// 1-200, default 50.
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Lists a webhook's deliveries (its outbox rows), newest first.
#[utoipa::path(
    get,
    path = "/admin/api/v1/tenants/{slug}/webhooks/{id}/deliveries",
    tag = "webhooks",
    operation_id = "webhooks_deliveries",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("id" = String, Path, description = "The webhook"),
        DeliveriesQuery,
    ),
    responses((status = 200, description = "A page of deliveries", body = OutboxPage), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn deliveries(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, id)): Path<(String, String)>,
    Query(q): Query<DeliveriesQuery>,
) -> Result<Json<OutboxPage>> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    let mut filter = outbox_filter(q.status, Some("webhook"), q.limit, q.cursor)?;
    filter.webhook_id = Some(id.clone());
    let (items, next_cursor) = db::with_conn(&db.pool, move |conn| {
        webhooks::get(conn, &id)?;
        outbox::list(conn, &filter)
    })
    .await?;
    Ok(Json(OutboxPage { items, next_cursor }))
}

/// Queues a new delivery of a past delivery's event, with the same body (same event id).
#[utoipa::path(
    post,
    path = "/admin/api/v1/tenants/{slug}/webhooks/{id}/deliveries/{delivery}/redeliver",
    tag = "webhooks",
    operation_id = "webhooks_redeliver",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("id" = String, Path, description = "The webhook"),
        ("delivery" = String, Path, description = "The delivery to send again"),
    ),
    responses((status = 202, description = "The new delivery, queued in the outbox", body = DeliveryQueued), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn redeliver(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, id, delivery)): Path<(String, String, String)>,
) -> Result<(StatusCode, Json<DeliveryQueued>)> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    let delivery_id = db.write(move |tx| outbox::redeliver(tx, &id, &delivery)).await?;
    Ok((StatusCode::ACCEPTED, Json(DeliveryQueued { delivery_id })))
}
