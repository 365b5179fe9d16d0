//! The browser-facing side of the provider: `/oauth2/authorize` (and its resumption after sign-in), the consent
//! page and RP-initiated logout. Sign-in itself is the identity pages' job; an authorization request waits in
//! `oauth_requests` while the user signs in (`return_to` brings them back to `/oauth2/resume`).
//!
//! Errors follow RFC 6749 §4.1.2.1: while the client or its redirect URI is unknown the user sees an error page
//! (never a redirect to an unverified URI); after that, errors go back to the client as `error` parameters with
//! `state` and `iss` (RFC 9207).

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::{App, AppState};
use crate::crypto;
use crate::db;
use crate::error::Error;
use crate::http::extract::{RequestOrigin, TenantCtx};
use crate::http::page::{PageError, PageResult};
use crate::identity::audit;
use crate::identity::pages::{Frame, Visit, see_other};
use crate::identity::{flows, users};
use crate::oidc::clients::{Client, ClientType};
use crate::oidc::endpoints::Params;
use crate::oidc::keys::Typ;
use crate::oidc::store::{self, AuthRequest, CodeGrant};
use crate::tenants::TenantSlug;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/t/{slug}/oauth2/authorize", get(authorize).post(authorize))
        .route("/t/{slug}/oauth2/resume", get(resume))
        .route("/t/{slug}/consent", get(consent_page).post(consent_submit))
        .route("/t/{slug}/oauth2/logout", get(logout).post(logout))
}

fn refused(visit: &Visit, text: &str) -> PageResult {
    visit.message(StatusCode::BAD_REQUEST, "This sign-in request cannot be completed", text, None)
}

/// The client's redirect URI with `pairs` added to its query.
fn redirect_with(uri: &str, pairs: &[(&str, &str)]) -> Response {
    let target = match url::Url::parse(uri) {
        Ok(mut url) => {
            {
                let mut q = url.query_pairs_mut();
                for (k, v) in pairs {
                    q.append_pair(k, v);
                }
            }
            url.to_string()
        }
        Err(_) => uri.to_owned(),
    };
    let mut response = Redirect::to(&target).into_response();
    response.headers_mut().insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    response
}

/// An error sent back to the client (RFC 6749 §4.1.2.1).
fn client_error(
    app: &App,
    visit: &Visit,
    req_uri: &str,
    state: Option<&str>,
    error: &str,
    description: &str,
) -> PageResult {
    let iss = crate::oidc::state::issuer(app, visit.slug());
    let mut pairs = vec![("error", error), ("error_description", description)];
    if let Some(s) = state {
        pairs.push(("state", s));
    }
    pairs.push(("iss", iss.as_str()));
    Ok(visit.finish(redirect_with(req_uri, &pairs), &[]))
}

fn page_params(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Result<Params, String> {
    let parsed = if *method == Method::POST {
        Params::parse(headers, body)
    } else {
        Params::from_pairs(url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()))
    };
    parsed.map_err(|e| e.description().to_owned())
}

/// A suspended tenant's authorize request from a registered client with an exact redirect URI goes back to the
/// client with `error=temporarily_unavailable` (RFC 6749 §4.1.2.1), so the application can say so itself; any other
/// request gets the tenant's "temporarily unavailable" page (`identity::pages::tenant_unavailable`).
async fn suspended_redirect(app: &App, uri: &Uri, params: &Params) -> Option<Response> {
    let slug = uri.path().strip_prefix("/t/").and_then(|rest| rest.split('/').next()).unwrap_or("");
    let slug = TenantSlug::from_path_segment(slug)?;
    let (client_id, redirect_uri) = (params.get("client_id")?, params.get("redirect_uri")?);
    // A failed lookup is not the client's to hear about: the tenant's page stands.
    let client = app.oidc.client(app, &slug, client_id).await.ok().flatten()?;
    if !client.redirect_uri_matches(redirect_uri) {
        return None;
    }
    let iss = crate::oidc::state::issuer(app, slug.as_str());
    let mut pairs = vec![
        ("error", "temporarily_unavailable"),
        ("error_description", "this site is temporarily unavailable; try again later"),
    ];
    if let Some(state) = params.get("state") {
        pairs.push(("state", state));
    }
    pairs.push(("iss", iss.as_str()));
    Some(redirect_with(redirect_uri, &pairs))
}

async fn authorize(
    State(app): State<AppState>,
    ctx: Result<TenantCtx, Error>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let ctx = match ctx {
        Ok(ctx) => ctx,
        Err(Error::TenantSuspended) => {
            let redirect = match page_params(&method, &uri, &headers, &body) {
                Ok(params) => suspended_redirect(&app, &uri, &params).await,
                Err(_) => None,
            };
            // The error's own answer: the hosted layer turns it into the tenant's page for browsers.
            return Ok(redirect.unwrap_or_else(|| Error::TenantSuspended.into_response()));
        }
        // The extractor's own answer (JSON with its code), which the hosted layer shows browsers as a page.
        Err(err) => return Ok(err.into_response()),
    };
    let visit = Visit::new(&app, ctx, &headers).await?;
    let params = match page_params(&method, &uri, &headers, &body) {
        Ok(p) => p,
        Err(message) => return refused(&visit, &message),
    };
    let Some(client_id) = params.get("client_id") else {
        return refused(&visit, "The request names no client (client_id).");
    };
    let Some(client) = app.oidc.client(&app, &visit.tenant.slug, client_id).await? else {
        return refused(&visit, "The application that sent you here is not registered with this site.");
    };
    let Some(redirect_uri) = params.get("redirect_uri") else {
        return refused(&visit, "The request has no redirect_uri.");
    };
    if !client.redirect_uri_matches(redirect_uri) {
        return refused(&visit, "The request's redirect_uri is not registered for this application.");
    }
    let state = params.get("state");
    let fail = |error: &str, description: &str| client_error(&app, &visit, redirect_uri, state, error, description);

    if params.get("request").is_some() {
        return fail("request_not_supported", "request objects are not supported");
    }
    if params.get("request_uri").is_some() {
        return fail("request_uri_not_supported", "request_uri is not supported");
    }
    match params.get("response_type") {
        Some("code") => {}
        Some(_) => return fail("unsupported_response_type", "only response_type=code is supported"),
        None => return fail("invalid_request", "response_type is required"),
    }
    if params.get("response_mode").is_some_and(|m| m != "query") {
        return fail("invalid_request", "only response_mode=query is supported");
    }
    if !client.allows_grant("authorization_code") {
        return fail("unauthorized_client", "this client may not use the authorization code grant");
    }
    let Some(raw_scope) = params.get("scope") else { return fail("invalid_scope", "scope is required") };
    let mut scope: Vec<String> = Vec::new();
    for s in raw_scope.split(' ').filter(|s| !s.is_empty()) {
        if !visit.tenant.settings.oidc.knows_scope(s) || !client.scopes.iter().any(|c| c == s) {
            return fail("invalid_scope", &format!("scope {s} is not available to this client"));
        }
        if !scope.iter().any(|x| x == s) {
            scope.push(s.to_owned());
        }
    }
    let challenge = params.get("code_challenge");
    match (challenge, params.get("code_challenge_method")) {
        (Some(_), Some("S256")) => {}
        (Some(_), _) => return fail("invalid_request", "code_challenge_method must be S256"),
        (None, Some(_)) => return fail("invalid_request", "code_challenge_method without code_challenge"),
        (None, None) if client.client_type == ClientType::Public => {
            return fail("invalid_request", "PKCE (code_challenge with S256) is required for this client");
        }
        (None, None) => {}
    }
    if let Some(c) = challenge
        && !((43..=128).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)))
    {
        return fail("invalid_request", "code_challenge must be a base64url SHA-256 (43 characters)");
    }
    let prompt: Vec<String> =
        params.get("prompt").unwrap_or("").split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect();
    if prompt.iter().any(|p| p == "none") && prompt.len() > 1 {
        return fail("invalid_request", "prompt=none cannot be combined with other values");
    }
    if let Some(p) = prompt.iter().find(|p| !matches!(p.as_str(), "none" | "login" | "consent" | "select_account")) {
        return fail("invalid_request", &format!("unsupported prompt value {p}"));
    }
    let max_age = match params.get("max_age").map(str::parse::<i64>) {
        None => None,
        Some(Ok(v)) if v >= 0 => Some(v),
        Some(_) => return fail("invalid_request", "max_age must be a non-negative integer"),
    };
    if state.is_some_and(|s| s.len() > 2048) || params.get("nonce").is_some_and(|n| n.len() > 512) {
        return fail("invalid_request", "state or nonce is too long");
    }
    let req = AuthRequest {
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.to_owned(),
        scope,
        state: state.map(str::to_owned),
        nonce: params.get("nonce").map(str::to_owned),
        code_challenge: challenge.map(str::to_owned),
        prompt,
        max_age,
        login_hint: params.get("login_hint").map(str::to_owned),
    };
    let login_after = req.prompt.iter().any(|p| p == "login").then(crate::now_unix);
    proceed(&app, &visit, &client, req, None, login_after, false).await
}

/// Takes a validated request as far as it can go: sign-in, then consent, then a code back to the client.
async fn proceed(
    app: &App,
    visit: &Visit,
    client: &Client,
    req: AuthRequest,
    request_id: Option<String>,
    login_after: Option<i64>,
    consented_now: bool,
) -> PageResult {
    let now = crate::now_unix();
    let prompt_none = req.prompt.iter().any(|p| p == "none");
    let fail = |error: &str, description: &str| {
        client_error(app, visit, &req.redirect_uri, req.state.as_deref(), error, description)
    };
    let session = visit.active().cloned();
    let fresh_enough =
        |auth_time: i64| login_after.is_none_or(|t| auth_time >= t) && req.max_age.is_none_or(|m| now - auth_time <= m);
    let Some(session) = session.filter(|s| fresh_enough(s.auth_time)) else {
        if prompt_none {
            return fail("login_required", "the user is not signed in");
        }
        let id = save(visit, &req, request_id, login_after, now).await?;
        let return_to = format!("/t/{}/oauth2/resume?request={id}", visit.slug());
        let mut target = format!("login?return_to={}", enc(&return_to));
        if visit.active().is_some() {
            target.push_str("&prompt=login");
        }
        if let Some(hint) = &req.login_hint {
            target.push_str(&format!("&login_hint={}", enc(hint)));
        }
        return Ok(visit.finish(see_other(&visit.url(&target)), &[]));
    };

    if !client.first_party && !consented_now {
        let (user_id, client_id) = (session.user_id.clone(), client.client_id.clone());
        let granted =
            db::with_conn(&visit.db.pool, move |conn| store::consented_scopes(conn, &user_id, &client_id)).await?;
        let missing = req.scope.iter().any(|s| !granted.contains(s));
        if missing || req.prompt.iter().any(|p| p == "consent") {
            if prompt_none {
                return fail("consent_required", "the user has not consented to this client");
            }
            let id = save(visit, &req, request_id, login_after, now).await?;
            return Ok(visit.finish(see_other(&visit.url(&format!("consent?request={id}"))), &[]));
        }
    }

    // Issue the code.
    let code = crypto::random_token("ghc_");
    let grant = CodeGrant {
        client_id: client.client_id.clone(),
        user_id: session.user_id.clone(),
        session_id: session.id.clone(),
        redirect_uri: req.redirect_uri.clone(),
        scope: req.scope.join(" "),
        nonce: req.nonce.clone(),
        code_challenge: req.code_challenge.clone(),
        auth_time: session.auth_time,
        amr: session.amr.clone(),
    };
    let code_hash = crypto::hash_token(&code);
    visit
        .db
        .write(move |tx| {
            store::insert_code(tx, &code_hash, &grant, now)?;
            if let Some(id) = request_id {
                store::delete_request(tx, &id)?;
            }
            Ok(())
        })
        .await?;
    let iss = crate::oidc::state::issuer(app, visit.slug());
    let mut pairs = vec![("code", code.as_str())];
    if let Some(s) = &req.state {
        pairs.push(("state", s));
    }
    pairs.push(("iss", iss.as_str()));
    Ok(visit.finish(redirect_with(&req.redirect_uri, &pairs), &[]))
}

fn enc(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// Keeps the request while the user signs in or consents; returns its id.
async fn save(
    visit: &Visit,
    req: &AuthRequest,
    existing: Option<String>,
    login_after: Option<i64>,
    now: i64,
) -> Result<String, PageError> {
    if let Some(id) = existing {
        return Ok(id);
    }
    let id = crypto::random_token("")[..32].to_owned();
    let (req, id2) = (req.clone(), id.clone());
    visit.db.write(move |tx| store::save_request(tx, &id2, &req, login_after, now)).await?;
    Ok(id)
}

#[derive(Deserialize)]
struct RequestQuery {
    request: Option<String>,
}

async fn load_pending(
    app: &App,
    visit: &Visit,
    id: Option<&str>,
) -> Result<Option<(String, AuthRequest, Option<i64>, Arc<Client>)>, PageError> {
    let Some(id) = id.filter(|i| i.len() <= 64).map(str::to_owned) else { return Ok(None) };
    let now = crate::now_unix();
    let id2 = id.clone();
    let Some((req, login_after)) =
        db::with_conn(&visit.db.pool, move |conn| store::load_request(conn, &id2, now)).await?
    else {
        return Ok(None);
    };
    let Some(client) = app.oidc.client(app, &visit.tenant.slug, &req.client_id).await? else { return Ok(None) };
    // The client may have changed since: the redirect URI must still be registered.
    if !client.redirect_uri_matches(&req.redirect_uri) {
        return Ok(None);
    }
    Ok(Some((id, req, login_after, client)))
}

fn expired(visit: &Visit) -> PageResult {
    visit.message(
        StatusCode::BAD_REQUEST,
        "This sign-in request has expired",
        "Go back to the application you came from and start again.",
        None,
    )
}

async fn resume(
    State(app): State<AppState>,
    ctx: TenantCtx,
    headers: HeaderMap,
    Query(q): Query<RequestQuery>,
) -> PageResult {
    let visit = Visit::new(&app, ctx, &headers).await?;
    let Some((id, req, login_after, client)) = load_pending(&app, &visit, q.request.as_deref()).await? else {
        return expired(&visit);
    };
    proceed(&app, &visit, &client, req, Some(id), login_after, false).await
}

// ---- consent ----

#[derive(Template)]
#[template(path = "hosted/consent.html")]
struct ConsentPage {
    frame: Frame,
    client_name: String,
    email: String,
    scopes: Vec<(String, String)>,
    request_id: String,
}

fn describe(visit: &Visit, scope: &str) -> String {
    match scope {
        "openid" => "sign you in".into(),
        "profile" => "see your name and roles".into(),
        "email" => "see your email address".into(),
        "offline_access" => "keep access while you are away".into(),
        "account:read" => "see your account, its sessions and sign-ins".into(),
        "account:write" => "change your account, password and sessions".into(),
        other => visit
            .tenant
            .settings
            .oidc
            .custom_scopes
            .iter()
            .find(|s| s.name == other)
            .map(|s| if s.description.is_empty() { format!("use {other}") } else { s.description.clone() })
            .unwrap_or_else(|| format!("use {other}")),
    }
}

async fn consent_page(
    State(app): State<AppState>,
    ctx: TenantCtx,
    headers: HeaderMap,
    Query(q): Query<RequestQuery>,
) -> PageResult {
    let visit = Visit::new(&app, ctx, &headers).await?;
    let Some((id, req, login_after, client)) = load_pending(&app, &visit, q.request.as_deref()).await? else {
        return expired(&visit);
    };
    let Some(session) = visit.active().cloned() else {
        return proceed(&app, &visit, &client, req, Some(id), login_after, false).await;
    };
    let user_id = session.user_id.clone();
    let user = db::with_conn(&visit.db.pool, move |conn| users::get(conn, &user_id)).await?;
    let page = ConsentPage {
        frame: visit.frame(),
        client_name: client.name.clone(),
        email: user.email,
        scopes: req.scope.iter().map(|s| (s.clone(), describe(&visit, s))).collect(),
        request_id: id,
    };
    visit.page(StatusCode::OK, page)
}

#[derive(Deserialize)]
struct ConsentForm {
    #[serde(default)]
    csrf_token: String,
    request: Option<String>,
    decision: Option<String>,
}

async fn consent_submit(
    State(app): State<AppState>,
    ctx: TenantCtx,
    headers: HeaderMap,
    RequestOrigin(origin): RequestOrigin,
    axum::Form(form): axum::Form<ConsentForm>,
) -> PageResult {
    let visit = Visit::new(&app, ctx, &headers).await?;
    visit.check_csrf(&form.csrf_token)?;
    let Some((id, req, login_after, client)) = load_pending(&app, &visit, form.request.as_deref()).await? else {
        return expired(&visit);
    };
    let Some(session) = visit.active().cloned() else {
        return proceed(&app, &visit, &client, req, Some(id), login_after, false).await;
    };
    let now = crate::now_unix();
    if form.decision.as_deref() != Some("allow") {
        let id2 = id.clone();
        visit.db.write(move |tx| store::delete_request(tx, &id2)).await?;
        return client_error(
            &app,
            &visit,
            &req.redirect_uri,
            req.state.as_deref(),
            "access_denied",
            "the user denied the request",
        );
    }
    let (user_id, client_id, scopes) = (session.user_id.clone(), client.client_id.clone(), req.scope.clone());
    visit
        .db
        .write(move |tx| {
            store::grant_consent(tx, &user_id, &client_id, &scopes, now)?;
            let mut origin = origin;
            origin.actor = format!("user:{user_id}");
            audit::record(
                tx,
                "consent_granted",
                Some(&user_id),
                &origin,
                json!({"client_id": client_id, "scopes": scopes}),
            )
        })
        .await?;
    proceed(&app, &visit, &client, req, Some(id), login_after, true).await
}

// ---- RP-initiated logout ----

#[derive(Template)]
#[template(path = "hosted/logout.html")]
struct LogoutPage {
    frame: Frame,
    client_name: Option<String>,
    client_id: Option<String>,
    post_logout_redirect_uri: Option<String>,
    state: Option<String>,
}

async fn logout(
    State(app): State<AppState>,
    ctx: TenantCtx,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    RequestOrigin(origin): RequestOrigin,
    body: Bytes,
) -> PageResult {
    let visit = Visit::new(&app, ctx, &headers).await?;
    let params = match page_params(&method, &uri, &headers, &body) {
        Ok(p) => p,
        Err(message) => return refused(&visit, &message),
    };
    let ring = app.oidc.keyring(&app, &visit.tenant).await?;
    // An expired ID token is a fine hint: it still says who and which session.
    let hint = match params.get("id_token_hint") {
        Some(token) => match ring.verify(token, Typ::Jwt, true) {
            Ok(claims) => Some(claims),
            Err(_) => return refused(&visit, "The id_token_hint is not a valid ID token of this site."),
        },
        None => None,
    };
    let hint_aud = hint.as_ref().and_then(|c| match &c["aud"] {
        Value::String(s) => Some(s.clone()),
        Value::Array(a) => a.first().and_then(Value::as_str).map(str::to_owned),
        _ => None,
    });
    let client_id = match (params.get("client_id"), hint_aud) {
        (Some(given), Some(aud)) if given != aud => {
            return refused(&visit, "client_id does not match the id_token_hint.");
        }
        (Some(given), _) => Some(given.to_owned()),
        (None, aud) => aud,
    };
    let client = match &client_id {
        Some(id) => app.oidc.client(&app, &visit.tenant.slug, id).await?,
        None => None,
    };
    let redirect = params.get("post_logout_redirect_uri").map(str::to_owned);
    if let Some(uri) = &redirect {
        let registered = client.as_ref().is_some_and(|c| c.post_logout_redirect_uris.iter().any(|u| u == uri));
        if !registered {
            return refused(&visit, "The post_logout_redirect_uri is not registered for this application.");
        }
    }
    let state = params.get("state").map(str::to_owned);
    if let Some(session) = visit.active().cloned() {
        let hint_matches = hint.as_ref().is_some_and(|c| {
            c["sid"].as_str() == Some(session.id.as_str()) && c["sub"].as_str() == Some(session.user_id.as_str())
        });
        let confirmed = method == Method::POST && params.get("confirm") == Some("yes") && {
            visit.check_csrf(params.get("csrf_token").unwrap_or_default())?;
            true
        };
        if !hint_matches && !confirmed {
            let page = LogoutPage {
                frame: visit.frame(),
                client_name: client.as_ref().map(|c| c.name.clone()),
                client_id,
                post_logout_redirect_uri: redirect,
                state,
            };
            return visit.page(StatusCode::OK, page);
        }
        flows::logout(&visit.db, &session, origin).await?;
    }
    let clear = visit.session_cookie(None);
    let response = match redirect {
        Some(uri) => {
            let pairs: Vec<(&str, &str)> = state.as_deref().map(|s| vec![("state", s)]).unwrap_or_default();
            redirect_with(&uri, &pairs)
        }
        None => {
            let done = visit.message(StatusCode::OK, "You are signed out", "You can close this window.", None)?;
            return Ok(with_cookie(done, &clear));
        }
    };
    Ok(visit.finish(response, &[clear]))
}

fn with_cookie(mut response: Response, cookie: &str) -> Response {
    if let Ok(value) = cookie.parse() {
        response.headers_mut().append(axum::http::header::SET_COOKIE, value);
    }
    response
}
