//! The consequential actions on a whole tenant, operators only: suspend and resume (suspending asks first: the
//! form carries `confirm=yes` only from the opened confirmation) and delete, which has its own page where the
//! operator types the tenant's slug, as Keycloak and Auth0 ask for a realm or tenant name.

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use serde::Deserialize;

use super::ui::FieldErrors;
use super::{Chrome, CsrfForm, UiSession};
use crate::app::AppState;
use crate::error::Error;
use crate::http::page::{PageResult, render};
use crate::tenants::{self, TenantSlug, TenantStatus};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/tenants/{slug}/delete", get(delete_page).post(delete))
        .route("/admin/tenants/{slug}/{action}", post(set_status))
}

#[derive(Deserialize)]
struct StatusForm {
    /// `overview`: back to the tenant's overview instead of the list.
    #[serde(default)]
    back: String,
    /// `yes` from the opened confirmation; suspending without it changes nothing.
    #[serde(default)]
    confirm: String,
}

async fn set_status(
    State(app): State<AppState>,
    session: UiSession,
    Path((slug, action)): Path<(String, String)>,
    CsrfForm(form): CsrfForm<StatusForm>,
) -> PageResult {
    session.actor.require_operator()?;
    let slug = TenantSlug::parse(&slug)?;
    let done = match action.as_str() {
        "suspend" if form.confirm != "yes" => "unconfirmed",
        "suspend" => tenants::set_status(&app, &slug, TenantStatus::Suspended).await.map(|_| "suspended")?,
        "resume" => tenants::set_status(&app, &slug, TenantStatus::Active).await.map(|_| "resumed")?,
        _ => return Err(Error::NotFound("action").into()),
    };
    let to = if form.back == "overview" {
        format!("/admin/tenants/{slug}?done={done}")
    } else {
        format!("/admin/tenants?done={done}")
    };
    Ok(Redirect::to(&to).into_response())
}

#[derive(Template)]
#[template(path = "admin/tenant_delete.html")]
struct DeletePage {
    chrome: Chrome,
    slug: String,
    tenant_name: String,
    typed: String,
    errors: FieldErrors,
}

async fn delete_page(State(app): State<AppState>, session: UiSession, Path(slug): Path<String>) -> PageResult {
    session.actor.require_operator()?;
    let tenant = session.tenant(&app, &slug).await?;
    render(DeletePage {
        chrome: session.chrome("tenants"),
        slug: tenant.slug.to_string(),
        tenant_name: tenant.name.clone(),
        typed: String::new(),
        errors: FieldErrors::new(),
    })
}

#[derive(Deserialize)]
struct DeleteForm {
    #[serde(default)]
    confirm_slug: String,
}

async fn delete(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    CsrfForm(form): CsrfForm<DeleteForm>,
) -> PageResult {
    session.actor.require_operator()?;
    let tenant = session.tenant(&app, &slug).await?;
    let typed = form.confirm_slug.trim().to_owned();
    if typed != tenant.slug.as_str() {
        let mut errors = FieldErrors::new();
        errors.add("confirm_slug", format!("type {} exactly to delete this tenant; nothing was deleted", tenant.slug));
        let page = DeletePage {
            chrome: session.chrome("tenants"),
            slug: tenant.slug.to_string(),
            tenant_name: tenant.name.clone(),
            typed: form.confirm_slug,
            errors,
        };
        return Ok((axum::http::StatusCode::BAD_REQUEST, render(page)?).into_response());
    }
    tenants::delete(&app, &tenant.slug).await?;
    Ok(Redirect::to("/admin/tenants?done=deleted").into_response())
}
