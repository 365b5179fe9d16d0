//! Admin API for a tenant's users under `/admin/api/v1/tenants/{slug}/users`: create, list and search, read,
//! update, disable, enable, delete. Every change is audited and raises its webhook event in the same
//! transaction.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::admin::{Actor, Via};
use crate::app::AppState;
use crate::config::Secret;
use crate::db;
use crate::email::outbox;
use crate::error::{Error, Result};
use crate::http::extract::{ApiJson, RequestOrigin, page_limit};
use crate::identity::audit::{self, Origin};
use crate::identity::{password, users};
use crate::webhooks::events::Event;

pub fn router() -> Router<AppState> {
    let base = "/admin/api/v1/tenants/{slug}/users";
    Router::new()
        .route(base, post(create).get(list))
        .route(&format!("{base}/{{id}}"), get(read).patch(update).delete(remove))
        .route(&format!("{base}/{{id}}/disable"), post(disable))
        .route(&format!("{base}/{{id}}/enable"), post(enable))
}

/// The audit origin of an admin request: `operator:{id}` for a signed-in admin, `token:{id}` for an API token.
fn origin(actor: &Actor, RequestOrigin(mut origin): RequestOrigin) -> Origin {
    origin.actor = match actor.via {
        Via::Session => format!("operator:{}", actor.id),
        Via::Token => format!("token:{}", actor.id),
    };
    origin
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    email: String,
    password: Option<String>,
    #[serde(default)]
    email_verified: bool,
    name: Option<String>,
    fields: Option<Value>,
}

async fn create(
    State(app): State<AppState>,
    actor: Actor,
    from: RequestOrigin,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<CreateUser>,
) -> Result<(StatusCode, Json<users::User>)> {
    let (tenant, db) = actor.open_tenant(&app, &slug).await?;
    let origin = origin(&actor, from);
    let email = users::normalize_email(&body.email)?;
    let name = body.name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
    if let Some(name) = &name {
        users::check_name(name)?;
    }
    let fields = body.fields.unwrap_or_else(|| json!({}));
    users::check_fields(&fields, &tenant.settings.custom_fields)?;
    let password_hash = match body.password {
        None => None,
        Some(pw) => {
            password::check(&pw, tenant.settings.password_min_length)?;
            Some(app.passwords.hash(&Secret::new(pw)).await?)
        }
    };
    let new = users::NewUser { email, email_verified: body.email_verified, password_hash, name, fields };
    let user = db
        .write(move |tx| {
            let user = users::insert(tx, &new)?;
            audit::record(tx, "user_created", Some(&user.id), &origin, json!({ "by": "admin" }))?;
            outbox::enqueue_event(tx, Event::UserCreated { user_id: user.id.clone(), email: user.email.clone() })?;
            Ok(user)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(user)))
}

#[derive(Deserialize)]
struct ListQuery {
    q: Option<String>,
    status: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

async fn list(
    State(app): State<AppState>,
    actor: Actor,
    Path(slug): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    let limit = page_limit(q.limit)?;
    let status = q.status.filter(|s| !s.is_empty());
    if let Some(s) = &status
        && s != "active"
        && s != "disabled"
    {
        return Err(Error::validation("status must be active or disabled"));
    }
    let search = q.q.map(|s| s.trim().to_lowercase()).filter(|s| !s.is_empty());
    let cursor = q.cursor.filter(|c| !c.is_empty());
    let (items, next) = db::with_conn(&db.pool, move |conn| {
        users::list(conn, search.as_deref(), status.as_deref(), cursor.as_deref(), limit)
    })
    .await?;
    Ok(Json(json!({ "items": items, "next_cursor": next })))
}

async fn read(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, id)): Path<(String, String)>,
) -> Result<Json<users::User>> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    Ok(Json(db::with_conn(&db.pool, move |conn| users::get(conn, &id)).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateUser {
    email: Option<String>,
    email_verified: Option<bool>,
    /// An empty string clears the name.
    name: Option<String>,
    /// Replaces the custom fields as a whole.
    fields: Option<Value>,
}

async fn update(
    State(app): State<AppState>,
    actor: Actor,
    from: RequestOrigin,
    Path((slug, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<UpdateUser>,
) -> Result<Json<users::User>> {
    let (tenant, db) = actor.open_tenant(&app, &slug).await?;
    let origin = origin(&actor, from);
    let email = body.email.as_deref().map(users::normalize_email).transpose()?;
    let name = body.name.map(|n| n.trim().to_owned());
    if let Some(name) = name.as_deref().filter(|n| !n.is_empty()) {
        users::check_name(name)?;
    }
    if let Some(fields) = &body.fields {
        users::check_fields(fields, &tenant.settings.custom_fields)?;
    }
    let verified = body.email_verified;
    let user = db
        .write(move |tx| {
            let name = name.as_deref().map(|n| if n.is_empty() { None } else { Some(n) });
            let user = users::update(tx, &id, email.as_deref(), verified, name, body.fields.as_ref())?;
            audit::record(tx, "user_updated", Some(&user.id), &origin, json!({}))?;
            Ok(user)
        })
        .await?;
    Ok(Json(user))
}

async fn set_status(
    app: AppState,
    actor: Actor,
    from: RequestOrigin,
    slug: String,
    id: String,
    status: &'static str,
) -> Result<Json<users::User>> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    let origin = origin(&actor, from);
    let user = db
        .write(move |tx| {
            let user = users::set_status(tx, &id, status)?;
            if status == "disabled" {
                audit::record(tx, "user_disabled", Some(&user.id), &origin, json!({}))?;
                outbox::enqueue_event(tx, Event::UserDisabled { user_id: user.id.clone() })?;
            } else {
                audit::record(tx, "user_updated", Some(&user.id), &origin, json!({ "status": "active" }))?;
            }
            Ok(user)
        })
        .await?;
    Ok(Json(user))
}

async fn disable(
    State(app): State<AppState>,
    actor: Actor,
    from: RequestOrigin,
    Path((slug, id)): Path<(String, String)>,
) -> Result<Json<users::User>> {
    set_status(app, actor, from, slug, id, "disabled").await
}

async fn enable(
    State(app): State<AppState>,
    actor: Actor,
    from: RequestOrigin,
    Path((slug, id)): Path<(String, String)>,
) -> Result<Json<users::User>> {
    set_status(app, actor, from, slug, id, "active").await
}

async fn remove(
    State(app): State<AppState>,
    actor: Actor,
    from: RequestOrigin,
    Path((slug, id)): Path<(String, String)>,
) -> Result<StatusCode> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    let origin = origin(&actor, from);
    db.write(move |tx| {
        let user = users::delete(tx, &id)?;
        audit::record(tx, "user_deleted", Some(&user.id), &origin, json!({ "email": user.email }))?;
        outbox::enqueue_event(tx, Event::UserDeleted { user_id: user.id })?;
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
