//! The page-side counterparts of `error.rs` and `extract::ApiJson`: `PageError`, a page handler's error rendered as
//! a readable HTML page (never the JSON error body), `UiForm`, the form extractor whose rejection is such a page,
//! and `render` for askama templates. The admin UI (`web`) and the hosted pages (`identity::pages`,
//! `oidc::authorize`) all use these, so none of them imports another for its error type.

use askama::Template;
use axum::extract::{Form, FromRequest, Request};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::error::Error;

#[derive(Template)]
#[template(path = "admin/message.html")]
struct MessagePage<'a> {
    heading: &'a str,
    message: &'a str,
    /// Links back to the console and to sign out: on admin pages only (`with_admin_links`), never on an end
    /// user's.
    admin: bool,
}

/// What a message page said, kept on its response so the admin UI can render it again with its links.
#[derive(Clone)]
struct Message {
    heading: String,
    message: String,
}

fn render_message(status: StatusCode, heading: &str, message: &str, admin: bool) -> Response {
    match (MessagePage { heading, message, admin }).render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(_) => (status, message.to_owned()).into_response(),
    }
}

/// A full page with a heading and a sentence, for errors and dead ends.
pub fn message_page(status: StatusCode, heading: &str, message: &str) -> Response {
    let mut response = render_message(status, heading, message, false);
    response.extensions_mut().insert(Message { heading: heading.to_owned(), message: message.to_owned() });
    response
}

/// A layer for the admin UI's routes: its message pages get the links back to the console and to sign out (a
/// tenant admin whose tenant cannot open must still be able to leave).
pub async fn with_admin_links(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let response = next.run(req).await;
    let Some(said) = response.extensions().get::<Message>().cloned() else { return response };
    let (mut parts, _) = response.into_parts();
    let page = render_message(parts.status, &said.heading, &said.message, true);
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, page.into_body())
}

pub fn not_found_page() -> Response {
    message_page(StatusCode::NOT_FOUND, "Page not found", "There is nothing at this address.")
}

/// An error on a UI route, shown as a page.
#[derive(Debug)]
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

/// A form that carries nothing but its CSRF token (sign-out, revoke buttons and the like).
#[derive(serde::Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    pub csrf_token: String,
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
