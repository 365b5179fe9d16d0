//! The page a browser gets instead of the JSON error when a hosted page's tenant is suspended or unknown.
//!
//! `TenantCtx` refuses such requests with `Error::TenantSuspended` / `Error::TenantNotFound`, answered as JSON with
//! the code in the response's extensions (`ErrorCode`). `tenant_unavailable`, a layer on the hosted-page routers
//! only (sign-in, sign-up, recovery, account, authorize, consent: never the JSON APIs, the token endpoint,
//! discovery or JWKS), swaps that answer for a page when the request prefers `text/html`: a suspended tenant's page
//! is branded ("{name} is temporarily unavailable", 503 with `Retry-After`), an unknown tenant's is neutral ("Not
//! found", 404). Other clients keep the JSON. The words are English or German, by `Accept-Language`, then by the
//! tenant's locale.

use askama::Template;
use axum::extract::{Request, State};
use axum::http::header::{ACCEPT, ACCEPT_LANGUAGE, CACHE_CONTROL, RETRY_AFTER, VARY};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};

use super::{Frame, MessagePage};
use crate::app::AppState;
use crate::control::Tenant;
use crate::error::ErrorCode;
use crate::http::page::PageError;
use crate::tenants::TenantSlug;

/// When a browser should come back to a suspended tenant's page.
const RETRY_AFTER_SECS: u32 = 300;

/// The languages these pages are written in; the first is the fallback.
const LANGUAGES: [&str; 2] = ["en", "de"];

/// The layer (see the module docs).
pub async fn tenant_unavailable(State(app): State<AppState>, req: Request, next: Next) -> Response {
    if !prefers_html(req.headers()) {
        return next.run(req).await;
    }
    let accept_language = req.headers().get(ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let slug = req.uri().path().strip_prefix("/t/").and_then(|rest| rest.split('/').next()).map(str::to_owned);
    let response = next.run(req).await;
    let code = response.extensions().get::<ErrorCode>().map(|c| c.0);
    match code {
        Some("tenant_not_found") => unknown_page(language(&accept_language, "en")),
        Some("tenant_suspended") => {
            let slug = slug.and_then(|s| TenantSlug::from_path_segment(&s));
            let tenant = match &slug {
                Some(slug) => app.control.tenant(slug).await.ok().flatten(),
                None => None,
            };
            match tenant {
                Some(tenant) => suspended_page(&tenant, language(&accept_language, &tenant.settings.locale)),
                // Deleted since, or the control plane failed: the JSON answer stands.
                None => response,
            }
        }
        _ => response,
    }
}

fn suspended_page(tenant: &Tenant, lang: &'static str) -> Response {
    let s = &tenant.settings;
    let name = s.display_name.clone().unwrap_or_else(|| tenant.name.clone());
    let (heading, text) = match lang {
        "de" => (
            format!("{name} ist vorübergehend nicht verfügbar"),
            format!(
                "Die Anmelde- und Kontoseiten von {name} sind zurzeit abgeschaltet. Bitte versuchen Sie es später \
                 noch einmal."
            ),
        ),
        _ => (
            format!("{name} is temporarily unavailable"),
            format!("Sign-in and account pages of {name} are switched off for the moment. Please try again later."),
        ),
    };
    let frame = Frame {
        slug: tenant.slug.to_string(),
        name,
        logo: s.branding.logo_url.clone(),
        lang: lang.to_owned(),
        csrf_token: String::new(),
        notice: None,
        error: None,
    };
    let mut response = page(StatusCode::SERVICE_UNAVAILABLE, MessagePage { frame, heading, text, link: None });
    response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    response
}

/// Neutral: nothing names or styles a tenant that does not exist.
#[derive(Template)]
#[template(path = "hosted/unknown_tenant.html")]
struct UnknownTenantPage {
    lang: &'static str,
    heading: &'static str,
    text: &'static str,
}

fn unknown_page(lang: &'static str) -> Response {
    let (heading, text) = match lang {
        "de" => ("Nicht gefunden", "Unter dieser Adresse gibt es keine Seite. Bitte prüfen Sie den Link."),
        _ => ("Not found", "There is no page at this address. Please check the link."),
    };
    page(StatusCode::NOT_FOUND, UnknownTenantPage { lang, heading, text })
}

fn page(status: StatusCode, page: impl Template) -> Response {
    match page.render() {
        Ok(html) => {
            let mut response = (status, Html(html)).into_response();
            response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            // The same URL answers JSON to API clients and other languages to other browsers.
            response.headers_mut().insert(VARY, HeaderValue::from_static("Accept, Accept-Language"));
            response
        }
        Err(err) => PageError::from(err).into_response(),
    }
}

/// Whether `Accept` ranks HTML above JSON: a browser navigating, not an API client (`*/*` or nothing is not).
fn prefers_html(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(ACCEPT).and_then(|v| v.to_str().ok()) else { return false };
    let html = quality(accept, "text/html").max(quality(accept, "application/xhtml+xml"));
    html > 0.0 && html > quality(accept, "application/json")
}

/// The `q` an `Accept`-style header gives `wanted` by name (wildcards do not count); 0 when it is not listed.
fn quality(header: &str, wanted: &str) -> f32 {
    header
        .split(',')
        .filter_map(|item| {
            let mut parts = item.split(';');
            let name = parts.next()?.trim();
            name.eq_ignore_ascii_case(wanted).then(|| q_of(parts))
        })
        .fold(0.0, f32::max)
}

fn q_of<'a>(mut params: impl Iterator<Item = &'a str>) -> f32 {
    params.find_map(|p| p.trim().strip_prefix("q=")).and_then(|v| v.trim().parse().ok()).unwrap_or(1.0)
}

/// The visitor's most wanted language these pages have (`Accept-Language`), else `fallback`'s, else English.
fn language(accept_language: &str, fallback: &str) -> &'static str {
    let mut wanted: Vec<(f32, String)> = accept_language
        .split(',')
        .filter_map(|item| {
            let mut parts = item.split(';');
            let tag = parts.next()?.trim();
            let primary = tag.split('-').next().unwrap_or(tag).to_ascii_lowercase();
            (!primary.is_empty()).then(|| (q_of(parts), primary))
        })
        .filter(|(q, _)| *q > 0.0)
        .collect();
    // Stable: equal weights keep the header's order.
    wanted.sort_by(|a, b| b.0.total_cmp(&a.0));
    let fallback = fallback.split('-').next().unwrap_or(fallback).to_ascii_lowercase();
    wanted
        .iter()
        .map(|(_, tag)| tag.as_str())
        .chain([fallback.as_str()])
        .find_map(|tag| LANGUAGES.iter().find(|l| **l == tag).copied())
        .unwrap_or(LANGUAGES[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browsers_prefer_html_and_api_clients_do_not() {
        let accept = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(ACCEPT, HeaderValue::from_str(v).unwrap());
            prefers_html(&h)
        };
        assert!(accept("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"));
        assert!(accept("text/html"));
        assert!(!accept("application/json"));
        assert!(!accept("*/*"));
        assert!(!accept("application/json, text/html;q=0.5"));
        assert!(!accept("application/json, text/html"), "a tie keeps JSON");
        assert!(!accept("text/html;q=0"));
        assert!(!prefers_html(&HeaderMap::new()));
    }

    #[test]
    fn language_follows_accept_language_then_the_tenant() {
        assert_eq!(language("de-DE,de;q=0.9,en;q=0.8", "en"), "de");
        assert_eq!(language("fr-FR, en;q=0.5, de;q=0.7", "en"), "de");
        assert_eq!(language("fr", "de-AT"), "de");
        assert_eq!(language("", "pt-BR"), "en");
        assert_eq!(language("en;q=0, de", "en"), "de");
    }
}
