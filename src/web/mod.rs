//! The embedded admin web UI: askama templates from `templates/`, CSS and JS from `static/` (rust-embed), no
//! CDN, no JS framework. Pages share the admin services with the JSON API (`tenants`, `admin::tokens`).
//!
//! Every form carries a CSRF token: the session's for signed-in pages, a double-submit cookie for the sign-in
//! and setup forms. Errors render as a readable page, never as JSON.

mod assets;
mod email_pages;
mod identity_pages;
mod oauth_pages;
mod pages;
mod plugin_pages;

pub use pages::CsrfOnly;

use askama::Template;
use axum::Router;
use axum::extract::{Form, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::de::DeserializeOwned;

use crate::admin::accounts;
use crate::admin::{Actor, SESSION_COOKIE, Via};
use crate::app::AppState;
use crate::crypto;
use crate::error::Error;
use crate::http::cookies;

pub fn router() -> Router<AppState> {
    pages::router()
        .merge(email_pages::router())
        .merge(identity_pages::router())
        .merge(oauth_pages::router())
        .merge(plugin_pages::router())
        .merge(assets::router())
}

/// The parts of the page frame every signed-in page fills.
#[derive(Default)]
pub struct Chrome {
    pub nav: &'static str,
    pub csrf_token: String,
    pub who: String,
    pub notice: Option<String>,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "admin/message.html")]
struct MessagePage<'a> {
    heading: &'a str,
    message: &'a str,
}

/// A full page with a heading and a sentence, for errors and dead ends.
pub fn message_page(status: StatusCode, heading: &str, message: &str) -> Response {
    let page = MessagePage { heading, message };
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(_) => (status, message.to_owned()).into_response(),
    }
}

pub fn not_found_page() -> Response {
    message_page(StatusCode::NOT_FOUND, "Page not found", "There is nothing at this address.")
}

/// An error on a UI route, shown as a page.
pub struct PageError(pub Error);

impl From<Error> for PageError {
    fn from(err: Error) -> Self {
        PageError(err)
    }
}

impl From<askama::Error> for PageError {
    fn from(err: askama::Error) -> Self {
        PageError(Error::internal(format!("template: {err}")))
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, _) = self.0.status_and_code();
        if status.is_server_error() {
            tracing::error!(error = %self.0, "page failed");
        }
        let heading = match status {
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::TOO_MANY_REQUESTS => "Slow down",
            s if s.is_server_error() => "Something went wrong",
            _ => "That did not work",
        };
        let mut response = message_page(status, heading, &self.0.public_message());
        if let Error::RateLimited { retry_after_secs } = self.0 {
            response.headers_mut().insert(header::RETRY_AFTER, retry_after_secs.into());
        }
        response
    }
}

pub type PageResult = Result<Response, PageError>;

pub fn render(page: impl Template) -> PageResult {
    Ok(Html(page.render()?).into_response())
}

/// A signed-in admin UI visitor: the actor and the session's CSRF token. Without a session, redirects to the
/// sign-in page.
pub struct UiSession {
    pub actor: Actor,
    pub csrf_token: String,
}

impl UiSession {
    pub fn chrome(&self, nav: &'static str) -> Chrome {
        Chrome { nav, csrf_token: self.csrf_token.clone(), who: self.actor.label.clone(), notice: None, error: None }
    }

    /// `chrome` with a notice (the text for a `?done=` after a redirect, usually).
    pub fn chrome_with(&self, nav: &'static str, notice: Option<String>) -> Chrome {
        Chrome { notice, ..self.chrome(nav) }
    }

    /// The tenant named in a page's path, after checking this admin may act on it.
    pub async fn tenant(
        &self,
        app: &AppState,
        slug: &str,
    ) -> Result<std::sync::Arc<crate::control::tables::Tenant>, PageError> {
        let slug = crate::tenants::TenantSlug::parse(slug).map_err(PageError)?;
        self.actor.require_tenant(&slug)?;
        Ok(app.control.tenant(&slug).await?.ok_or(Error::TenantNotFound)?)
    }

    /// Checks a submitted form's CSRF token against the session's.
    pub fn check_csrf(&self, submitted: &str) -> Result<(), PageError> {
        if crypto::constant_time_eq(submitted, &self.csrf_token) {
            Ok(())
        } else {
            Err(PageError(Error::Forbidden("this form has expired or did not come from this site; reload and retry")))
        }
    }
}

impl FromRequestParts<AppState> for UiSession {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Response> {
        let to_login = || Redirect::to("/admin/login").into_response();
        let Some(cookie) = cookies::get(&parts.headers, SESSION_COOKIE) else { return Err(to_login()) };
        match accounts::session(app, &cookie).await {
            Ok(Some(session)) => Ok(UiSession {
                actor: Actor {
                    id: session.operator.id,
                    label: session.operator.email,
                    scope: session.operator.scope,
                    via: Via::Session,
                },
                csrf_token: session.csrf_token,
            }),
            Ok(None) => Err(to_login()),
            Err(err) => Err(PageError(err).into_response()),
        }
    }
}

/// `Form<T>` whose rejection is a readable page.
pub struct UiForm<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for UiForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        match Form::<T>::from_request(req, state).await {
            Ok(Form(value)) => Ok(UiForm(value)),
            Err(rejection) => {
                Err(message_page(StatusCode::BAD_REQUEST, "That form could not be read", &rejection.body_text()))
            }
        }
    }
}
