//! Admin API for a tenant's webhooks under `/admin/api/v1/tenants/{slug}/webhooks`: create (the signing secret
//! is shown once), list (with the event catalogue), read, update, delete, ping, deliveries and redelivery.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::admin::Actor;
use crate::app::{App, AppState};
use crate::db::{self, registry::TenantDb};
use crate::email::api::outbox_filter;
use crate::email::outbox;
use crate::error::Result;
use crate::http::extract::ApiJson;
use crate::webhooks::{self, Webhook, events};

pub fn router() -> Router<AppState> {
    let base = "/admin/api/v1/tenants/{slug}/webhooks";
    Router::new()
        .route(base, post(create).get(list))
        .route(&format!("{base}/{{id}}"), get(read).patch(update).delete(remove))
        .route(&format!("{base}/{{id}}/ping"), post(ping))
        .route(&format!("{base}/{{id}}/deliveries"), get(deliveries))
        .route(&format!("{base}/{{id}}/deliveries/{{delivery}}/redeliver"), post(redeliver))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    pub url: String,
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

async fn create(
    State(app): State<AppState>,
    actor: Actor,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<CreateWebhook>,
) -> Result<(StatusCode, Json<Value>)> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    let (webhook, secret) = create_webhook(&app, &db, body).await?;
    let mut out = serde_json::to_value(&webhook).unwrap_or_default();
    out["secret"] = Value::String(secret);
    Ok((StatusCode::CREATED, Json(out)))
}

async fn list(State(app): State<AppState>, actor: Actor, Path(slug): Path<String>) -> Result<Json<Value>> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    let items = db::with_conn(&db.pool, |conn| webhooks::list(conn)).await?;
    let catalogue: Vec<Value> =
        events::CATALOGUE.iter().map(|(name, about)| json!({ "type": name, "description": about })).collect();
    Ok(Json(json!({ "items": items, "event_types": catalogue })))
}

async fn read(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, id)): Path<(String, String)>,
) -> Result<Json<Webhook>> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    Ok(Json(db::with_conn(&db.pool, move |conn| webhooks::get(conn, &id)).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateWebhook {
    url: Option<String>,
    events: Option<Vec<String>>,
    description: Option<String>,
    enabled: Option<bool>,
}

async fn update(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<UpdateWebhook>,
) -> Result<Json<Webhook>> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
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
    let webhook = db::with_conn(&db.pool, move |conn| {
        webhooks::update(conn, &id, url.as_deref(), events.as_deref(), body.description.as_deref(), body.enabled)
    })
    .await?;
    Ok(Json(webhook))
}

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

async fn ping(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Value>)> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    let delivery = send_ping(&db, id).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "delivery_id": delivery }))))
}

#[derive(Deserialize)]
struct DeliveriesQuery {
    status: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

async fn deliveries(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, id)): Path<(String, String)>,
    Query(q): Query<DeliveriesQuery>,
) -> Result<Json<Value>> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    let mut filter = outbox_filter(q.status, Some("webhook"), q.limit, q.cursor)?;
    filter.webhook_id = Some(id.clone());
    let (items, next) = db::with_conn(&db.pool, move |conn| {
        webhooks::get(conn, &id)?;
        outbox::list(conn, &filter)
    })
    .await?;
    Ok(Json(json!({ "items": items, "next_cursor": next })))
}

async fn redeliver(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, id, delivery)): Path<(String, String, String)>,
) -> Result<(StatusCode, Json<Value>)> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    let new_id = db.write(move |tx| outbox::redeliver(tx, &id, &delivery)).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "delivery_id": new_id }))))
}
