//! Admin UI pages of a tenant's OAuth provider: clients (list with search, sort, totals and paging; create with
//! the secret shown once, edit, new secret, delete). They call the same services as `oidc::admin_api`:
//! `oidc::clients` (`find`, `create`, `update`, `rotate_secret`). Signing keys and token settings are
//! `key_pages.rs`.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, RawForm, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::lists::{Sort, SortHeader, list_base, offset_of};
use super::ui::{Paging, When};
use super::{Chrome, CsrfForm, CsrfOnly, UiSession};
use crate::app::AppState;
use crate::control::tables::Tenant;
use crate::error::Error;
use crate::http::page::{PageError, PageResult, render};
use crate::oidc::clients::{self, Client, ClientType};

pub fn router() -> Router<AppState> {
    let base = "/admin/tenants/{slug}";
    Router::new()
        .route(&format!("{base}/clients"), get(clients_page).post(client_create))
        .route(&format!("{base}/clients/{{id}}"), get(client_page).post(client_save))
        .route(&format!("{base}/clients/{{id}}/secret"), post(client_secret))
        .route(&format!("{base}/clients/{{id}}/delete"), post(client_delete))
}

#[derive(Deserialize, Default)]
struct DoneQuery {
    done: Option<String>,
}

/// Clients per page of the list.
const CLIENTS_PAGE: u64 = 50;
/// The list's sort keys, each with whether it sorts descending by default; the first is the default sort.
const CLIENT_SORTS: [(&str, bool); 2] = [("created", false), ("name", false)];

/// The clients list's view: a part of the name or client id, the sort and the offset.
#[derive(Deserialize, Default)]
struct ClientsQuery {
    q: Option<String>,
    sort: Option<String>,
    dir: Option<String>,
    offset: Option<String>,
    done: Option<String>,
}

fn notice(done: Option<&str>) -> Option<String> {
    let text = match done? {
        "saved" => "Client saved.",
        "deleted" => "Client deleted.",
        _ => return None,
    };
    Some(text.to_owned())
}

/// What the client form shows.
#[derive(Default)]
struct ClientForm {
    creating: bool,
    name: String,
    kind: String,
    redirect_uris: String,
    post_logout_redirect_uris: String,
    code: bool,
    refresh: bool,
    credentials: bool,
    scopes: String,
    origins: String,
    first_party: bool,
    resource_server: bool,
}

impl ClientForm {
    fn new_client() -> ClientForm {
        ClientForm {
            creating: true,
            kind: "confidential".into(),
            code: true,
            refresh: true,
            scopes: "openid profile email offline_access".into(),
            ..Default::default()
        }
    }

    fn of(c: &Client) -> ClientForm {
        ClientForm {
            creating: false,
            name: c.name.clone(),
            kind: if c.client_type == ClientType::Public { "public".into() } else { "confidential".into() },
            redirect_uris: c.redirect_uris.join("\n"),
            post_logout_redirect_uris: c.post_logout_redirect_uris.join("\n"),
            code: c.allows_grant("authorization_code"),
            refresh: c.allows_grant("refresh_token"),
            credentials: c.allows_grant("client_credentials"),
            scopes: c.scopes.join(" "),
            origins: c.allowed_cors_origins.join(" "),
            first_party: c.first_party,
            resource_server: c.resource_server,
        }
    }

    /// Reads a posted form (checkboxes are present only when ticked).
    fn parse(raw: &[u8], creating: bool) -> (ClientForm, String) {
        let mut f = ClientForm { creating, kind: "confidential".into(), ..Default::default() };
        let mut csrf = String::new();
        for (k, v) in url::form_urlencoded::parse(raw) {
            let v = v.into_owned();
            match k.as_ref() {
                "csrf_token" => csrf = v,
                "name" => f.name = v,
                "type" => f.kind = v,
                "redirect_uris" => f.redirect_uris = v,
                "post_logout_redirect_uris" => f.post_logout_redirect_uris = v,
                "grant_authorization_code" => f.code = true,
                "grant_refresh_token" => f.refresh = true,
                "grant_client_credentials" => f.credentials = true,
                "scopes" => f.scopes = v,
                "allowed_cors_origins" => f.origins = v,
                "first_party" => f.first_party = true,
                "resource_server" => f.resource_server = true,
                _ => {}
            }
        }
        (f, csrf)
    }

    /// The admin API's JSON body for this form.
    fn to_json(&self) -> Value {
        let list =
            |s: &str| s.split([' ', '\n', '\r', ',']).filter(|x| !x.is_empty()).map(str::to_owned).collect::<Vec<_>>();
        let mut grants = Vec::new();
        for (on, name) in [
            (self.code, "authorization_code"),
            (self.refresh, "refresh_token"),
            (self.credentials, "client_credentials"),
        ] {
            if on {
                grants.push(name);
            }
        }
        let mut body = json!({
            "name": self.name,
            "redirect_uris": list(&self.redirect_uris),
            "post_logout_redirect_uris": list(&self.post_logout_redirect_uris),
            "grant_types": grants,
            "scopes": list(&self.scopes),
            "allowed_cors_origins": list(&self.origins),
            "first_party": self.first_party,
            "resource_server": self.resource_server,
        });
        if self.creating {
            body["type"] = json!(self.kind);
        }
        body
    }
}

struct ClientRow {
    id: String,
    name: String,
    kind: &'static str,
    first_party: bool,
    grants: String,
    created: When,
}

#[derive(Template)]
#[template(path = "admin/clients.html")]
struct ClientsPage {
    chrome: Chrome,
    slug: String,
    tenant_name: String,
    tab: &'static str,
    issuer: String,
    q: String,
    sort: &'static str,
    dir: &'static str,
    sort_name: SortHeader,
    sort_created: SortHeader,
    rows: Vec<ClientRow>,
    paging: Paging,
    form: ClientForm,
}

/// The clients list (a tenant's clients are few: filtered, sorted and paged here) and the new-client form.
async fn render_clients(
    app: &AppState,
    tenant: &Tenant,
    chrome: Chrome,
    q: &ClientsQuery,
    form: ClientForm,
) -> PageResult {
    let slug = tenant.slug.clone();
    let list = app.control.read(move |conn| clients::list(conn, &slug)).await?;
    let text = super::lists::search_text(q.q.as_deref());
    let needle = text.to_lowercase();
    let sort = Sort::parse(q.sort.as_deref(), q.dir.as_deref(), &CLIENT_SORTS);
    let mut list: Vec<Client> = list
        .into_iter()
        .filter(|c| {
            needle.is_empty() || c.name.to_lowercase().contains(&needle) || c.client_id.to_lowercase().contains(&needle)
        })
        .collect();
    match sort.key {
        "name" => list.sort_by(|a, b| {
            a.name.to_lowercase().cmp(&b.name.to_lowercase()).then_with(|| a.client_id.cmp(&b.client_id))
        }),
        _ => list.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.client_id.cmp(&b.client_id))),
    }
    if sort.descending {
        list.reverse();
    }
    let path = format!("/admin/tenants/{}/clients", tenant.slug);
    let search = [("q", text.as_str())];
    let base = list_base(&path, &text, &sort);
    let paging = Paging::new(list.len() as u64, offset_of(q.offset.as_deref()), CLIENTS_PAGE, &base);
    let rows = paging
        .window(&list)
        .map(|c| ClientRow {
            id: c.client_id.clone(),
            name: c.name.clone(),
            kind: if c.client_type == ClientType::Public { "public" } else { "confidential" },
            first_party: c.first_party,
            grants: c.grant_types.join(", "),
            created: When::at(c.created_at),
        })
        .collect();
    let code = if chrome.error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let page = ClientsPage {
        chrome,
        slug: tenant.slug.to_string(),
        tenant_name: tenant.name.clone(),
        tab: "clients",
        issuer: crate::oidc::state::issuer(app, tenant.slug.as_str()),
        sort_name: sort.header("name", false, &path, &search),
        sort_created: sort.header("created", false, &path, &search),
        q: text,
        sort: sort.key,
        dir: sort.dir(),
        rows,
        paging,
        form,
    };
    Ok((code, render(page)?).into_response())
}

async fn clients_page(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    Query(q): Query<ClientsQuery>,
) -> PageResult {
    let tenant = session.tenant(&app, &slug).await?;
    let chrome = session.chrome_with("tenants", notice(q.done.as_deref()));
    render_clients(&app, &tenant, chrome, &q, ClientForm::new_client()).await
}

fn form_error(err: Error) -> Result<String, PageError> {
    match err {
        Error::Validation(_) | Error::BadRequest(_) | Error::Conflict(_) => Ok(err.to_string()),
        other => Err(PageError(other)),
    }
}

async fn client_create(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    RawForm(raw): RawForm,
) -> PageResult {
    let (form, csrf) = ClientForm::parse(&raw, true);
    session.check_csrf(&csrf)?;
    let tenant = session.tenant(&app, &slug).await?;
    match clients::create(&app, &tenant, form.to_json()).await {
        Ok((client, secret)) => render_client(&app, &tenant, session.chrome("tenants"), &client, None, secret).await,
        Err(err) => {
            let mut chrome = session.chrome("tenants");
            chrome.error = Some(form_error(err)?);
            render_clients(&app, &tenant, chrome, &ClientsQuery::default(), form).await
        }
    }
}

#[derive(Template)]
#[template(path = "admin/client.html")]
struct ClientPage {
    chrome: Chrome,
    slug: String,
    tenant_name: String,
    tab: &'static str,
    client_id: String,
    form: ClientForm,
    new_secret: Option<String>,
}

async fn render_client(
    _app: &AppState,
    tenant: &Tenant,
    chrome: Chrome,
    client: &Client,
    form: Option<ClientForm>,
    new_secret: Option<String>,
) -> PageResult {
    let code = if chrome.error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let page = ClientPage {
        chrome,
        slug: tenant.slug.to_string(),
        tenant_name: tenant.name.clone(),
        tab: "clients",
        client_id: client.client_id.clone(),
        form: form.unwrap_or_else(|| ClientForm::of(client)),
        new_secret,
    };
    Ok((code, render(page)?).into_response())
}

async fn client_page(
    State(app): State<AppState>,
    session: UiSession,
    Path((slug, id)): Path<(String, String)>,
    Query(q): Query<DoneQuery>,
) -> PageResult {
    let tenant = session.tenant(&app, &slug).await?;
    let client = clients::find(&app, &tenant.slug, &id).await?;
    let chrome = session.chrome_with("tenants", notice(q.done.as_deref()));
    render_client(&app, &tenant, chrome, &client, None, None).await
}

async fn client_save(
    State(app): State<AppState>,
    session: UiSession,
    Path((slug, id)): Path<(String, String)>,
    RawForm(raw): RawForm,
) -> PageResult {
    let (form, csrf) = ClientForm::parse(&raw, false);
    session.check_csrf(&csrf)?;
    let tenant = session.tenant(&app, &slug).await?;
    let client = clients::find(&app, &tenant.slug, &id).await?;
    match clients::update(&app, &tenant, client.clone(), form.to_json()).await {
        Ok(_) => Ok(Redirect::to(&format!("/admin/tenants/{slug}/clients/{id}?done=saved")).into_response()),
        Err(err) => {
            let mut chrome = session.chrome("tenants");
            chrome.error = Some(form_error(err)?);
            let mut form = form;
            form.kind = ClientForm::of(&client).kind;
            render_client(&app, &tenant, chrome, &client, Some(form), None).await
        }
    }
}

async fn client_secret(
    State(app): State<AppState>,
    session: UiSession,
    Path((slug, id)): Path<(String, String)>,
    CsrfForm(_): CsrfForm<CsrfOnly>,
) -> PageResult {
    let tenant = session.tenant(&app, &slug).await?;
    let client = clients::find(&app, &tenant.slug, &id).await?;
    let secret = clients::rotate_secret(&app, &tenant.slug, client.clone()).await?;
    render_client(&app, &tenant, session.chrome("tenants"), &client, None, Some(secret)).await
}

async fn client_delete(
    State(app): State<AppState>,
    session: UiSession,
    Path((slug, id)): Path<(String, String)>,
    CsrfForm(_): CsrfForm<CsrfOnly>,
) -> PageResult {
    let tenant = session.tenant(&app, &slug).await?;
    app.control.apply(crate::control::Mutation::DeleteOAuthClient { slug: tenant.slug.clone(), client_id: id }).await?;
    Ok(Redirect::to(&format!("/admin/tenants/{slug}/clients?done=deleted")).into_response())
}
