//! A tenant's signing keys and token settings in the admin UI (`/admin/tenants/{slug}/keys`): the keys (list,
//! rotate with a confirmation) through `oidc::admin_api` (`keys`, `rotate`), and the `settings.oidc` form (signing
//! algorithm, token lifetimes, custom scopes as JSON) through `tenants::update`, as `PATCH /tenants/{slug}` does;
//! it keeps what was typed and shows every error by its field. Who may: an operator or the tenant's admins.

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ui::FieldErrors;
use super::{Chrome, CsrfForm, UiSession};
use crate::app::AppState;
use crate::control::tables::Tenant;
use crate::http::page::{PageError, PageResult, render};
use crate::oidc::admin_api;
use crate::oidc::keys::SigningAlg;
use crate::oidc::settings::{MAX_ACCESS_TTL, MAX_REFRESH_TTL, MIN_TTL};
use crate::tenants;

pub fn router() -> Router<AppState> {
    let base = "/admin/tenants/{slug}/keys";
    Router::new().route(base, get(keys_page).post(settings_save)).route(&format!("{base}/rotate"), post(keys_rotate))
}

#[derive(Deserialize)]
struct DoneQuery {
    done: Option<String>,
}

fn notice(done: Option<&str>) -> Option<String> {
    let text = match done? {
        "rotated" => "A new signing key is active.",
        "saved" => "Token settings saved.",
        "unconfirmed" => "Nothing was changed: confirm the rotation in the box that opens under its button.",
        _ => return None,
    };
    Some(text.to_owned())
}

struct KeyRow {
    kid: String,
    alg: String,
    status: String,
    retires: String,
}

/// The token settings form: the saved values, or what was typed.
#[derive(Deserialize, Clone, Default)]
struct TokenForm {
    #[serde(default)]
    signing_alg: String,
    #[serde(default)]
    access_token_ttl: String,
    #[serde(default)]
    id_token_ttl: String,
    #[serde(default)]
    refresh_token_ttl: String,
    #[serde(default)]
    custom_scopes: String,
}

#[derive(Template)]
#[template(path = "admin/keys.html")]
struct KeysPage {
    chrome: Chrome,
    slug: String,
    tenant_name: String,
    tab: &'static str,
    issuer: String,
    alg: String,
    rows: Vec<KeyRow>,
    algs: [&'static str; 3],
    f: TokenForm,
    errors: FieldErrors,
}

impl KeysPage {
    /// The lifetime fields: (id, label, largest value, value).
    fn lifetimes(&self) -> [(&'static str, &'static str, u32, &str); 3] {
        [
            ("access_token_ttl", "Access token lifetime (seconds)", MAX_ACCESS_TTL, &self.f.access_token_ttl),
            ("id_token_ttl", "ID token lifetime (seconds)", MAX_ACCESS_TTL, &self.f.id_token_ttl),
            ("refresh_token_ttl", "Refresh token lifetime (seconds)", MAX_REFRESH_TTL, &self.f.refresh_token_ttl),
        ]
    }

    fn min_ttl(&self) -> u32 {
        MIN_TTL
    }
}

async fn render_keys(
    app: &AppState,
    tenant: &Arc<Tenant>,
    chrome: Chrome,
    typed: Option<(TokenForm, FieldErrors)>,
) -> Result<Response, PageError> {
    let keys = admin_api::keys(app, tenant).await?;
    let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
    let code = if typed.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let (f, errors) = typed.unwrap_or_else(|| {
        let o = &tenant.settings.oidc;
        let form = TokenForm {
            signing_alg: o.signing_alg.to_string(),
            access_token_ttl: o.access_token_ttl.to_string(),
            id_token_ttl: o.id_token_ttl.to_string(),
            refresh_token_ttl: o.refresh_token_ttl.to_string(),
            custom_scopes: serde_json::to_string_pretty(&o.custom_scopes).unwrap_or_default(),
        };
        (form, FieldErrors::new())
    });
    let page = KeysPage {
        chrome,
        slug: tenant.slug.to_string(),
        tenant_name: tenant.name.clone(),
        tab: "keys",
        issuer: crate::oidc::state::issuer(app, tenant.slug.as_str()),
        alg: tenant.settings.oidc.signing_alg.to_string(),
        rows: keys
            .iter()
            .map(|k| KeyRow {
                kid: text(&k["kid"]),
                alg: text(&k["alg"]),
                status: text(&k["status"]),
                retires: k["retires_at"].as_str().map(str::to_owned).unwrap_or_else(|| "—".into()),
            })
            .collect(),
        algs: SigningAlg::ALL.map(SigningAlg::as_str),
        f,
        errors,
    };
    Ok((code, render(page)?).into_response())
}

async fn keys_page(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    Query(q): Query<DoneQuery>,
) -> PageResult {
    let tenant = session.tenant(&app, &slug).await?;
    render_keys(&app, &tenant, session.chrome_with("tenants", notice(q.done.as_deref())), None).await
}

#[derive(Deserialize)]
struct RotateForm {
    #[serde(default)]
    confirm: String,
}

async fn keys_rotate(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    CsrfForm(form): CsrfForm<RotateForm>,
) -> PageResult {
    let tenant = session.tenant(&app, &slug).await?;
    if form.confirm != "yes" {
        return Ok(Redirect::to(&format!("/admin/tenants/{slug}/keys?done=unconfirmed")).into_response());
    }
    app.oidc.keyring(&app, &tenant).await?;
    admin_api::rotate(&app, &tenant, None).await?;
    Ok(Redirect::to(&format!("/admin/tenants/{slug}/keys?done=rotated")).into_response())
}

/// Where `OidcSettings::validate`'s errors belong on the form.
const TOKEN_FIELDS: &[(&str, &str)] = &[
    ("access_token_ttl", "access_token_ttl"),
    ("settings.oidc.access_token_ttl", "access_token_ttl"),
    ("id_token_ttl", "id_token_ttl"),
    ("settings.oidc.id_token_ttl", "id_token_ttl"),
    ("refresh_token_ttl", "refresh_token_ttl"),
    ("settings.oidc.refresh_token_ttl", "refresh_token_ttl"),
    ("settings.oidc.custom_scopes", "custom_scopes"),
    ("settings.oidc.signing_alg", "signing_alg"),
    ("settings: ", "custom_scopes"),
];

async fn settings_save(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    CsrfForm(form): CsrfForm<TokenForm>,
) -> PageResult {
    let tenant = session.tenant(&app, &slug).await?;
    let mut errors = FieldErrors::new();
    if SigningAlg::parse(&form.signing_alg).is_none() {
        errors.add("signing_alg", "choose RS256, ES256 or EdDSA");
    }
    let mut ttl = |field: &str, what: &str, raw: &str, max: u32| -> Option<u32> {
        match raw.trim().parse::<u32>() {
            Ok(n) if (MIN_TTL..=max).contains(&n) => Some(n),
            _ => {
                errors.add(field, format!("{what} must be a whole number of seconds, {MIN_TTL} to {max}"));
                None
            }
        }
    };
    let access = ttl("access_token_ttl", "the access token lifetime", &form.access_token_ttl, MAX_ACCESS_TTL);
    let id = ttl("id_token_ttl", "the ID token lifetime", &form.id_token_ttl, MAX_ACCESS_TTL);
    let refresh = ttl("refresh_token_ttl", "the refresh token lifetime", &form.refresh_token_ttl, MAX_REFRESH_TTL);
    let scopes: Option<Value> = match form.custom_scopes.trim() {
        "" => Some(json!([])),
        raw => match serde_json::from_str(raw) {
            Ok(v) => Some(v),
            Err(e) => {
                errors.add("custom_scopes", format!("the custom scopes are not JSON: {e}"));
                None
            }
        },
    };
    if errors.is_empty() {
        let patch = json!({"oidc": {
            "signing_alg": form.signing_alg,
            "access_token_ttl": access,
            "id_token_ttl": id,
            "refresh_token_ttl": refresh,
            "custom_scopes": scopes,
        }});
        match tenants::update(&app, &tenant.slug, None, Some(&patch)).await {
            Ok(_) => return Ok(Redirect::to(&format!("/admin/tenants/{slug}/keys?done=saved")).into_response()),
            Err(err) => errors.absorb(err, TOKEN_FIELDS)?,
        }
    }
    render_keys(&app, &tenant, session.chrome("tenants"), Some((form, errors))).await
}
