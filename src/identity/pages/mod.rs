//! The hosted pages of a tenant under `/t/{slug}/`, branded per tenant (`/t/{slug}/theme.css` carries the
//! colours), one file per flow: sign-up and email verification (`signup`), sign-in, the second factor and
//! sign-out (`signin`), the account page with profile, password, TOTP, sessions and connected apps (`account`),
//! forgotten password and reset (`recovery`), and the page a browser gets instead when the tenant is suspended or
//! unknown (`unavailable`, a layer `http::router` puts on these routes and the authorize ones). This file holds the
//! router and what the flows share: `Visit` (the tenant, the visitor's session, CSRF values, the page frame and the
//! response cookies), `safe_return_to`, the choice between a message on the form and an error page (`on_form`),
//! and the custom-field inputs.
//!
//! CSRF: every form carries `csrf_token`. A signed-in visitor's token is the session's; before sign-in it is the
//! double-submit cookie `gh_csrf` (`Path=/t/{slug}/`, `SameSite=Strict`). A POST is accepted when its token
//! matches either. Errors are shown on the page with the input kept (never a password).

mod account;
mod recovery;
mod signin;
mod signup;
mod theme;
mod unavailable;

pub use unavailable::tenant_unavailable;

use std::collections::HashMap;

use askama::Template;
use axum::Router;
use axum::http::header::{CACHE_CONTROL, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value};

use crate::app::{App, AppState};
use crate::control::Tenant;
use crate::crypto;
use crate::db::registry::TenantDb;
use crate::error::Error;
use crate::http::cookies;
use crate::http::extract::TenantCtx;
use crate::http::page::{PageError, PageResult};
use crate::identity::flows;
use crate::identity::sessions::{self, Session, Stage};
use crate::identity::settings::FieldType;
use crate::web::ui::FieldErrors;

const CSRF_COOKIE: &str = "gh_csrf";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/t/{slug}/theme.css", get(theme::theme))
        .route("/t/{slug}/register", get(signup::register_form).post(signup::register))
        .route("/t/{slug}/login", get(signin::login_form).post(signin::login))
        .route("/t/{slug}/logout", post(signin::logout))
        .route("/t/{slug}/forgot", get(recovery::forgot_form).post(recovery::forgot))
        .route("/t/{slug}/reset", get(recovery::reset_form).post(recovery::reset))
        .route("/t/{slug}/verify", get(signup::verify))
        .route("/t/{slug}/mfa", get(signin::mfa_form).post(signin::mfa_submit))
        .route("/t/{slug}/account", get(account::account))
        .route("/t/{slug}/account/profile", post(account::account_profile))
        .route("/t/{slug}/account/password", post(account::account_password))
        .route("/t/{slug}/account/sessions/{id}/revoke", post(account::account_revoke))
        .route("/t/{slug}/account/apps/{client_id}/revoke", post(account::account_revoke_app))
        .route("/t/{slug}/account/totp/start", post(account::totp_start))
        .route("/t/{slug}/account/totp", get(account::totp_form).post(account::totp_confirm))
        .route("/t/{slug}/account/totp/disable", post(account::totp_disable))
}

/// What every hosted page shows around its content.
pub struct Frame {
    pub slug: String,
    pub name: String,
    pub logo: Option<String>,
    pub lang: String,
    pub csrf_token: String,
    pub notice: Option<String>,
    pub error: Option<String>,
}

/// One request to a hosted page: the tenant, its database, the visitor's session and CSRF values.
pub(crate) struct Visit {
    pub(crate) tenant: std::sync::Arc<Tenant>,
    pub(crate) db: TenantDb,
    pub(crate) session: Option<Session>,
    cookie_csrf: Option<String>,
    /// Set when the visitor had no CSRF cookie yet: sent with the response.
    new_csrf_cookie: Option<String>,
    pub(crate) secure: bool,
}

impl Visit {
    pub(crate) async fn new(app: &App, ctx: TenantCtx, headers: &HeaderMap) -> Result<Visit, PageError> {
        let session = flows::current_session(&ctx.tenant, &ctx.db, headers).await?;
        let secure = app.config.is_https();
        let (cookie_csrf, new_csrf_cookie) = match cookies::get(headers, CSRF_COOKIE).filter(|v| v.len() >= 32) {
            Some(v) => (Some(v), None),
            None => {
                let value = crypto::random_token("");
                let path = format!("/t/{}/", ctx.tenant.slug);
                let set = cookies::set(CSRF_COOKIE, &value, &path, "Strict", secure, None);
                (Some(value), Some(set))
            }
        };
        Ok(Visit { tenant: ctx.tenant, db: ctx.db, session, cookie_csrf, new_csrf_cookie, secure })
    }

    pub(crate) fn slug(&self) -> &str {
        self.tenant.slug.as_str()
    }

    pub(crate) fn active(&self) -> Option<&Session> {
        self.session.as_ref().filter(|s| s.stage == Stage::Active)
    }

    pub(crate) fn frame(&self) -> Frame {
        let s = &self.tenant.settings;
        let csrf_token = match &self.session {
            Some(session) => session.csrf_token.clone(),
            None => self.cookie_csrf.clone().unwrap_or_default(),
        };
        Frame {
            slug: self.slug().to_owned(),
            name: s.display_name.clone().unwrap_or_else(|| self.tenant.name.clone()),
            logo: s.branding.logo_url.clone(),
            lang: s.locale.clone(),
            csrf_token,
            notice: None,
            error: None,
        }
    }

    /// A form's token must match the session's or the CSRF cookie's (only one set by this response is unknown
    /// to the browser, so it cannot match).
    pub(crate) fn check_csrf(&self, submitted: &str) -> Result<(), PageError> {
        let by_session = self.session.as_ref().is_some_and(|s| crypto::constant_time_eq(submitted, &s.csrf_token));
        let by_cookie = self.new_csrf_cookie.is_none()
            && self.cookie_csrf.as_deref().is_some_and(|c| crypto::constant_time_eq(submitted, c));
        if !submitted.is_empty() && (by_session || by_cookie) {
            Ok(())
        } else {
            Err(PageError(Error::Forbidden("this form has expired or did not come from this site; reload and retry")))
        }
    }

    pub(crate) fn session_cookie(&self, value: Option<&str>) -> String {
        sessions::active_cookie(&self.tenant, value, self.secure)
    }

    /// The response with the CSRF cookie (when new) and `extra` cookies attached.
    pub(crate) fn finish(&self, mut response: Response, extra: &[String]) -> Response {
        for cookie in self.new_csrf_cookie.iter().chain(extra) {
            if let Ok(value) = cookie.parse() {
                response.headers_mut().append(SET_COOKIE, value);
            }
        }
        response.headers_mut().insert(CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
        response
    }

    pub(crate) fn page(&self, status: StatusCode, page: impl Template) -> PageResult {
        let html = page.render()?;
        Ok(self.finish((status, axum::response::Html(html)).into_response(), &[]))
    }

    pub(crate) fn message(
        &self,
        status: StatusCode,
        heading: &str,
        text: &str,
        link: Option<(String, String)>,
    ) -> PageResult {
        self.page(status, MessagePage { frame: self.frame(), heading: heading.to_owned(), text: text.to_owned(), link })
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("/t/{}/{path}", self.slug())
    }
}

/// `return_to` when it is a path inside this tenant (`/t/{slug}/…`), else the account page. Refuses anything a
/// browser could resolve elsewhere: other origins, `//`, backslashes, dot segments (also percent-encoded).
pub fn safe_return_to(slug: &str, raw: Option<&str>) -> String {
    let fallback = format!("/t/{slug}/account");
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else { return fallback };
    let lower = raw.to_ascii_lowercase();
    let ok = raw.starts_with(&format!("/t/{slug}/"))
        && !raw.contains("//")
        && !raw.contains('\\')
        && !raw.chars().any(|c| c.is_control() || c.is_whitespace())
        && !lower.contains("%2e")
        && !lower.contains("%2f")
        && !lower.contains("%5c")
        && !raw.split(['/', '?', '#']).any(|seg| seg == "." || seg == "..")
        && raw.len() <= 2048;
    if ok { raw.to_owned() } else { fallback }
}

pub(crate) fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

fn login_redirect(visit: &Visit, return_to: &str) -> Response {
    let encoded: String = url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect();
    visit.finish(see_other(&visit.url(&format!("login?return_to={encoded}"))), &[])
}

/// A flow error to show on the form (validation and the like), or one to show as an error page.
fn on_form(err: Error) -> Result<(StatusCode, String), PageError> {
    match err {
        Error::Validation(_)
        | Error::BadRequest(_)
        | Error::Conflict(_)
        | Error::InvalidCredentials
        | Error::InvalidToken
        | Error::EmailNotVerified
        | Error::RateLimited { .. }
        | Error::PluginDenied(_)
        | Error::Forbidden(_) => {
            let (status, _) = err.status_and_code();
            Ok((status, err.to_string()))
        }
        other => Err(PageError(other)),
    }
}

#[derive(Template)]
#[template(path = "hosted/message.html")]
struct MessagePage {
    frame: Frame,
    heading: String,
    text: String,
    link: Option<(String, String)>,
}

// ---- custom fields (the sign-up form and the account profile) ----

/// A custom field as a form shows it.
pub struct FieldInput {
    pub name: String,
    pub label: String,
    pub kind: &'static str,
    pub required: bool,
    pub value: String,
}

fn field_inputs(tenant: &Tenant, values: &Map<String, Value>) -> Vec<FieldInput> {
    tenant
        .settings
        .custom_fields
        .iter()
        .map(|f| FieldInput {
            name: f.name.clone(),
            label: f.display_label(),
            kind: match f.kind {
                FieldType::String => "string",
                FieldType::Number => "number",
                FieldType::Bool => "bool",
            },
            required: f.required,
            value: match values.get(&f.name) {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            },
        })
        .collect()
}

/// The custom fields posted as `field_{name}`, typed per the tenant's definitions. Empty optional values are
/// left out; an unchecked box is `false`.
fn posted_fields(tenant: &Tenant, form: &HashMap<String, String>, errors: &mut FieldErrors) -> Map<String, Value> {
    let mut out = Map::new();
    for def in &tenant.settings.custom_fields {
        let id = format!("field_{}", def.name);
        let raw = form.get(&id).map(|v| v.trim()).unwrap_or("");
        let value = match def.kind {
            FieldType::Bool => Value::Bool(matches!(raw, "true" | "on" | "1")),
            _ if raw.is_empty() => {
                if def.required {
                    errors.add(&id, format!("{} is required", def.display_label()));
                }
                continue;
            }
            FieldType::String => Value::String(raw.to_owned()),
            FieldType::Number => match raw.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
                Some(n) => Value::Number(n),
                None => {
                    errors.add(&id, format!("{} must be a number", def.display_label()));
                    continue;
                }
            },
        };
        out.insert(def.name.clone(), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::safe_return_to;

    #[test]
    fn return_to_stays_in_the_tenant() {
        assert_eq!(safe_return_to("acme", Some("/t/acme/account")), "/t/acme/account");
        assert_eq!(safe_return_to("acme", Some("/t/acme/oauth2/authorize?x=1")), "/t/acme/oauth2/authorize?x=1");
        for bad in [
            "https://evil.example/",
            "//evil.example/",
            "/t/other/account",
            "/t/acme/../other/account",
            "/t/acme/%2e%2e/other",
            "/t/acme/\\evil",
            "/t/acme//evil.example",
            "/t/acmex/account",
            "javascript:alert(1)",
        ] {
            assert_eq!(safe_return_to("acme", Some(bad)), "/t/acme/account", "{bad}");
        }
    }
}
