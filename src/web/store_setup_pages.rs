//! Admin UI pages of a tenant's store, part two: the category tree and CSV imports (the import form, the
//! self-refreshing job page with its progress bar, recent imports). Helpers are `store_pages`'.

use askama::Template;
use axum::Router;
use axum::extract::multipart::{Field, MultipartError, MultipartRejection};
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::Deserialize;

use super::store_pages::{
    CategoryOption, DoneQuery, export_href, form_error, indented, notice, open, redirect, status_code, with_depth,
};
use super::{Chrome, CsrfForm, CsrfOnly, UiSession};
use crate::app::AppState;
use crate::commerce::catalog::{self, NewCategory};
use crate::commerce::imports::{self, ImportMode};
use crate::commerce::{actor_name, admin_api};
use crate::control::tables::Tenant;
use crate::db::{self, registry::TenantDb};
use crate::error::Error;
use crate::http::page::{PageError, PageResult, message_page, render};

/// Imports listed on the import page.
const RECENT_IMPORTS: u32 = 20;
/// Pasted CSV longer than this is not put back into the box when the import is refused.
const KEEP_PASTED: usize = 256 * 1024;

pub fn router() -> Router<AppState> {
    let base = "/admin/tenants/{slug}/store";
    Router::new()
        .route(&format!("{base}/categories"), get(categories_page).post(category_create))
        .route(&format!("{base}/categories/{{id}}/delete"), post(category_delete))
        // The upload reads its own limit (GATEHOUSE_IMPORT_MAX_BYTES) while streaming the form; the middleware
        // gives this path (`admin_api::is_import`) the import limit and the long time limit.
        .route(&format!("{base}/import"), get(import_page).post(import_start).layer(DefaultBodyLimit::disable()))
        .route(&format!("{base}/imports/{{id}}"), get(import_status))
}

// ---- categories ----

struct CategoryRow {
    id: String,
    label: String,
    handle: String,
    position: i64,
}

/// The new-category form, as posted and as shown again after an error.
#[derive(Deserialize, Default)]
struct CategoryForm {
    #[serde(default)]
    handle: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    parent_id: String,
    #[serde(default)]
    position: String,
}

impl CategoryForm {
    fn to_new(&self) -> Result<NewCategory, Error> {
        let position = match self.position.trim() {
            "" => 0,
            raw => raw.parse().map_err(|_| Error::validation("position must be a whole number"))?,
        };
        Ok(NewCategory {
            handle: self.handle.trim().to_owned(),
            title: self.title.trim().to_owned(),
            parent_id: Some(self.parent_id.trim().to_owned()).filter(|p| !p.is_empty()),
            position: Some(position),
        })
    }
}

#[derive(Template)]
#[template(path = "admin/store_categories.html")]
struct CategoriesPage {
    chrome: Chrome,
    slug: String,
    tenant_name: String,
    tab: &'static str,
    rows: Vec<CategoryRow>,
    parents: Vec<CategoryOption>,
    form: CategoryForm,
}

async fn render_categories(tenant: &Tenant, db: &TenantDb, chrome: Chrome, form: CategoryForm) -> PageResult {
    let all = db::with_conn(&db.pool, |conn| catalog::list_categories(conn)).await?;
    let tree = with_depth(&all);
    let rows = tree
        .iter()
        .map(|(depth, c)| CategoryRow {
            id: c.id.clone(),
            label: indented(*depth, &c.title),
            handle: c.handle.clone(),
            position: c.position,
        })
        .collect();
    let parents = tree
        .iter()
        .map(|(depth, c)| CategoryOption {
            id: c.id.clone(),
            label: indented(*depth, &c.title),
            selected: form.parent_id == c.id,
        })
        .collect();
    let code = status_code(&chrome);
    let page = CategoriesPage {
        chrome,
        slug: tenant.slug.to_string(),
        tenant_name: tenant.name.clone(),
        tab: "categories",
        rows,
        parents,
        form,
    };
    Ok((code, render(page)?).into_response())
}

async fn categories_page(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    Query(q): Query<DoneQuery>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    let chrome = session.chrome_with("tenants", notice(q.done.as_deref()));
    let form = CategoryForm { position: "0".into(), ..Default::default() };
    render_categories(&tenant, &db, chrome, form).await
}

async fn category_create(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    CsrfForm(form): CsrfForm<CategoryForm>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    let result = match form.to_new() {
        Ok(input) => db.write(move |tx| catalog::create_category(tx, input, crate::now_unix())).await.map(|_| ()),
        Err(err) => Err(err),
    };
    match result {
        Ok(()) => Ok(redirect(&slug, "categories?done=category_created")),
        Err(err) => {
            let mut chrome = session.chrome("tenants");
            chrome.error = Some(form_error(err)?);
            render_categories(&tenant, &db, chrome, form).await
        }
    }
}

async fn category_delete(
    State(app): State<AppState>,
    session: UiSession,
    Path((slug, id)): Path<(String, String)>,
    CsrfForm(_): CsrfForm<CsrfOnly>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    match db.write(move |tx| catalog::delete_category(tx, &id)).await {
        Ok(()) => Ok(redirect(&slug, "categories?done=category_deleted")),
        Err(err) => {
            let mut chrome = session.chrome("tenants");
            chrome.error = Some(form_error(err)?);
            let form = CategoryForm { position: "0".into(), ..Default::default() };
            render_categories(&tenant, &db, chrome, form).await
        }
    }
}

// ---- imports ----

fn mode_label(mode: ImportMode) -> &'static str {
    match mode {
        ImportMode::AllOrNothing => "all or nothing",
        ImportMode::SkipBadRows => "skip bad rows",
    }
}

struct JobRow {
    id: String,
    started: String,
    status: String,
    mode: &'static str,
    done: u64,
    total: u64,
    error_count: u64,
}

#[derive(Template)]
#[template(path = "admin/store_import.html")]
struct ImportPage {
    chrome: Chrome,
    slug: String,
    tenant_name: String,
    tab: &'static str,
    mode: String,
    csv_text: String,
    limit: String,
    columns: String,
    currency: String,
    export_href: String,
    recent: Vec<JobRow>,
}

async fn render_import(
    app: &AppState,
    tenant: &Tenant,
    db: &TenantDb,
    chrome: Chrome,
    mode: String,
    csv_text: String,
) -> PageResult {
    let mut jobs = db::with_conn(&db.pool, |conn| imports::list(conn, RECENT_IMPORTS)).await?;
    for job in &mut jobs {
        admin_api::live(app, job);
    }
    let recent = jobs
        .into_iter()
        .map(|j| JobRow {
            started: crate::display_time(j.created_at),
            mode: mode_label(j.mode),
            done: j.done,
            total: j.total,
            error_count: j.error_count,
            status: j.status,
            id: j.id,
        })
        .collect();
    let code = status_code(&chrome);
    let page = ImportPage {
        chrome,
        slug: tenant.slug.to_string(),
        tenant_name: tenant.name.clone(),
        tab: "import",
        mode,
        csv_text,
        limit: format!("{:.1} MiB", app.config.import_max_bytes as f64 / 1_048_576.0),
        columns: imports::COLUMNS.join(", "),
        currency: tenant.settings.commerce.currency.clone(),
        export_href: export_href(tenant),
        recent,
    };
    Ok((code, render(page)?).into_response())
}

async fn import_page(State(app): State<AppState>, session: UiSession, Path(slug): Path<String>) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    render_import(&app, &tenant, &db, session.chrome("tenants"), "all_or_nothing".into(), String::new()).await
}

/// Reads one multipart field, counting its bytes against what is left of the import limit.
async fn read_field(field: &mut Field<'_>, left: &mut usize, limit: usize) -> Result<Vec<u8>, PageError> {
    let mut buf = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(bad_upload)? {
        if chunk.len() > *left {
            return Err(PageError(Error::PayloadTooLarge(limit)));
        }
        *left -= chunk.len();
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

fn bad_upload(err: MultipartError) -> PageError {
    PageError(Error::BadRequest(format!("upload: {err}")))
}

/// Starts an import from the uploaded file (`csv`) or, when no file was chosen, the pasted text (`csv_text`), then
/// sends the browser to the job's page.
async fn import_start(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    multipart: Result<Multipart, MultipartRejection>,
) -> PageResult {
    let mut multipart = match multipart {
        Ok(m) => m,
        Err(rejection) => {
            return Ok(message_page(StatusCode::BAD_REQUEST, "That form could not be read", &rejection.body_text()));
        }
    };
    let limit = app.config.import_max_bytes;
    let mut left = limit;
    let (mut csrf, mut mode, mut file, mut pasted) = (String::new(), String::new(), Vec::new(), Vec::new());
    while let Some(mut field) = multipart.next_field().await.map_err(bad_upload)? {
        let name = field.name().unwrap_or_default().to_owned();
        let bytes = read_field(&mut field, &mut left, limit).await?;
        match name.as_str() {
            "csrf_token" => csrf = String::from_utf8_lossy(&bytes).into_owned(),
            "mode" => mode = String::from_utf8_lossy(&bytes).trim().to_owned(),
            "csv" => file = bytes,
            "csv_text" => pasted = bytes,
            _ => {}
        }
    }
    session.check_csrf(&csrf)?;
    let (tenant, db) = open(&app, &session, &slug).await?;
    let parsed_mode = match mode.as_str() {
        "" | "all_or_nothing" => Ok(ImportMode::AllOrNothing),
        "skip_bad_rows" => Ok(ImportMode::SkipBadRows),
        _ => Err(Error::validation("mode must be all_or_nothing or skip_bad_rows")),
    };
    // Shown again in the box if the import is refused at once (a bad header, no rows).
    let kept = if file.is_empty() && pasted.len() <= KEEP_PASTED {
        String::from_utf8_lossy(&pasted).into_owned()
    } else {
        String::new()
    };
    let bytes = if file.is_empty() { pasted } else { file };
    let result = match parsed_mode {
        Err(err) => Err(err),
        Ok(_) if bytes.iter().all(u8::is_ascii_whitespace) => {
            Err(Error::validation("choose a CSV file, or paste the CSV into the box"))
        }
        Ok(m) => admin_api::start(&app, &tenant, db.clone(), actor_name(&session.actor), m, bytes).await,
    };
    match result {
        Ok(id) => Ok(redirect(&slug, &format!("imports/{id}"))),
        Err(err) => {
            let mut chrome = session.chrome("tenants");
            chrome.error = Some(form_error(err)?);
            render_import(&app, &tenant, &db, chrome, mode, kept).await
        }
    }
}

struct ErrorRow {
    line: u64,
    sku: String,
    message: String,
}

#[derive(Template)]
#[template(path = "admin/store_import_job.html")]
struct ImportJobPage {
    chrome: Chrome,
    slug: String,
    tenant_name: String,
    tab: &'static str,
    id: String,
    status: String,
    running: bool,
    mode: &'static str,
    done: u64,
    total: u64,
    /// `max` of the progress bar (never 0).
    progress_max: u64,
    percent: u64,
    created: u64,
    updated: u64,
    error_count: u64,
    errors: Vec<ErrorRow>,
    /// Bad rows counted but not kept in the report.
    more_errors: u64,
    message: String,
    started: String,
    finished: String,
}

/// One import: status, a progress bar and the bad rows. While the job runs the page reloads itself every second
/// (a `Refresh` header and the same `<meta>` in the page: no JavaScript).
async fn import_status(
    State(app): State<AppState>,
    session: UiSession,
    Path((slug, id)): Path<(String, String)>,
) -> PageResult {
    let tenant = session.tenant(&app, &slug).await?;
    let job = admin_api::import_job(&app, &session.actor, &slug, id).await?;
    let running = job.status == "running";
    let percent = (job.done.min(job.total) * 100).checked_div(job.total).unwrap_or(0);
    let page = ImportJobPage {
        chrome: session.chrome("tenants"),
        slug: tenant.slug.to_string(),
        tenant_name: tenant.name.clone(),
        tab: "import",
        running,
        mode: mode_label(job.mode),
        done: job.done,
        total: job.total,
        progress_max: job.total.max(1),
        percent,
        created: job.created,
        updated: job.updated,
        error_count: job.error_count,
        more_errors: job.error_count.saturating_sub(job.errors.len() as u64),
        errors: job
            .errors
            .into_iter()
            .map(|e| ErrorRow { line: e.line, sku: e.sku.unwrap_or_default(), message: e.message })
            .collect(),
        message: job.message.unwrap_or_default(),
        started: crate::display_time(job.created_at),
        finished: job.finished_at.map_or_else(|| "not yet".to_owned(), crate::display_time),
        status: job.status,
        id: job.id,
    };
    let mut response = render(page)?;
    if running {
        response.headers_mut().insert(header::REFRESH, HeaderValue::from_static("1"));
    }
    Ok(response)
}
