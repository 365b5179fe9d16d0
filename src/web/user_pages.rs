//! Admin UI pages of a tenant's users: the list (search by email or name, status filter, sort, totals, paging;
//! badges for disabled, unverified and MFA users) with the new-user form, and a user's page: the profile form
//! (email, name, verification, one input per custom field the tenant defines), roles, sessions, disable / enable,
//! reset or invitation mail, MFA removal and delete.
//!
//! Forms check every field before calling the service and show each error next to its field, keeping what was
//! typed. Saving goes through `identity::admin` like the JSON admin API, so its rules (one account per email,
//! custom-field types) hold here too. Consequential actions (disable, delete, MFA removal, ending sessions) need
//! `confirm=yes`, which only the page's confirmation step sends: a bare POST changes nothing.

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, RawForm, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Map, Number, Value};

use super::lists::{Sort, SortHeader, offset_of, with_query};
use super::ui::{FieldErrors, Paging, When, query_pairs};
use super::{Chrome, CsrfForm, UiSession};
use crate::app::AppState;
use crate::control::tables::Tenant;
use crate::db::{self, registry::TenantDb};
use crate::error::Error;
use crate::http::extract::RequestOrigin;
use crate::http::page::{PageError, PageResult, render};
use crate::identity::admin::{self, CreateUser, UpdateUser};
use crate::identity::audit::Origin;
use crate::identity::settings::{CustomField, FieldType};
use crate::identity::users::{self, UserFilter, UserOrder};
use crate::identity::{mfa, roles, sessions};

/// Users per page of the list.
const PAGE_SIZE: u64 = 50;
/// The list's sort keys, each with whether it sorts descending by default; the first is the default sort.
const SORTS: [(&str, bool); 3] = [("created", true), ("email", false), ("last_login", true)];
/// The status filter's choices: (value, label).
const STATUSES: [(&str, &str); 3] =
    [("active", "active"), ("disabled", "disabled"), ("unverified", "email not verified")];

pub fn router() -> Router<AppState> {
    let base = "/admin/tenants/{slug}/users";
    Router::new()
        .route(base, get(users_page).post(user_create))
        .route(&format!("{base}/{{id}}"), get(user_page))
        .route(&format!("{base}/{{id}}/profile"), post(user_profile))
        .route(&format!("{base}/{{id}}/roles"), post(user_roles))
        .route(&format!("{base}/{{id}}/sessions/{{sid}}/revoke"), post(user_session_revoke))
        .route(&format!("{base}/{{id}}/{{action}}"), post(user_action))
}

fn origin_of(session: &UiSession, from: RequestOrigin) -> Origin {
    admin::origin(&session.actor, from)
}

async fn open(app: &AppState, session: &UiSession, slug: &str) -> Result<(Arc<Tenant>, TenantDb), PageError> {
    Ok(session.actor.open_tenant(app, slug).await?)
}

fn done_notice(done: Option<&str>) -> Option<String> {
    let text = match done? {
        "created" => "User created.",
        "saved" => "Profile saved.",
        "deleted" => "User deleted.",
        "disabled" => "User disabled; their sessions ended.",
        "enabled" => "User enabled.",
        "reset" => "Email queued; see the outbox for its delivery.",
        "mfa" => "Two-factor authentication removed.",
        "roles" => "Roles saved.",
        "revoked" => "Session ended.",
        "signed_out" => "Every session and app grant of the user ended.",
        "unconfirmed" => "Nothing was changed: confirm the action in the box that opens under its button.",
        _ => return None,
    };
    Some(text.to_owned())
}

fn redirect(slug: &str, path: &str) -> Response {
    Redirect::to(&format!("/admin/tenants/{slug}/{path}")).into_response()
}

/// The form of the actions that ask for confirmation first.
#[derive(Deserialize)]
struct ConfirmForm {
    #[serde(default)]
    confirm: String,
}

#[derive(Deserialize)]
struct DoneQuery {
    done: Option<String>,
}

// ---- custom fields ----

/// The input of one custom field, with the value as typed or as saved. `id` is the input's id and the key of its
/// error; `input` its form name (`fields.{name}`).
struct FieldInput {
    name: String,
    id: String,
    input: String,
    kind: &'static str,
    required: bool,
    value: String,
}

impl FieldInput {
    fn new(def: &CustomField, value: String) -> FieldInput {
        FieldInput {
            name: def.name.clone(),
            id: format!("field-{}", def.name),
            input: format!("fields.{}", def.name),
            kind: match def.kind {
                FieldType::String => "string",
                FieldType::Number => "number",
                FieldType::Bool => "bool",
            },
            required: def.required,
            value,
        }
    }
}

/// The inputs of the tenant's custom fields showing a user's saved values.
fn saved_inputs(defined: &[CustomField], fields: &Value) -> Vec<FieldInput> {
    let shown = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    defined
        .iter()
        .map(|def| FieldInput::new(def, fields.get(def.name.as_str()).map(shown).unwrap_or_default()))
        .collect()
}

/// A user's fields the tenant no longer defines (saving the profile drops them).
fn undefined_fields(defined: &[CustomField], fields: &Value) -> Vec<String> {
    let Some(object) = fields.as_object() else { return Vec::new() };
    object.keys().filter(|key| !defined.iter().any(|d| d.name == **key)).cloned().collect()
}

/// One typed value checked against its definition: `None` for an empty optional field.
fn field_value(def: &CustomField, raw: &str) -> Result<Option<Value>, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return if def.required { Err(format!("{} is required", def.name)) } else { Ok(None) };
    }
    match def.kind {
        FieldType::String if raw.chars().count() > 1000 => Err(format!("{} must be at most 1000 characters", def.name)),
        FieldType::String => Ok(Some(Value::String(raw.to_owned()))),
        FieldType::Number => {
            let number = match raw.parse::<i64>() {
                Ok(whole) => Some(Number::from(whole)),
                Err(_) => raw.parse::<f64>().ok().and_then(Number::from_f64),
            };
            number.map(|n| Some(Value::Number(n))).ok_or_else(|| format!("{} must be a number", def.name))
        }
        FieldType::Bool => match raw {
            "true" => Ok(Some(Value::Bool(true))),
            "false" => Ok(Some(Value::Bool(false))),
            _ => Err(format!("{} must be yes or no", def.name)),
        },
    }
}

/// Reads the custom-field inputs of a submitted form, adding an error per bad value; returns the inputs as typed
/// and the `fields` object (whole only when no error was added).
fn read_fields(
    defined: &[CustomField],
    pairs: &[(String, String)],
    errors: &mut FieldErrors,
) -> (Vec<FieldInput>, Map<String, Value>) {
    let mut inputs = Vec::with_capacity(defined.len());
    let mut fields = Map::new();
    for def in defined {
        let key = format!("fields.{}", def.name);
        let raw = pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str()).unwrap_or_default();
        let input = FieldInput::new(def, raw.to_owned());
        match field_value(def, raw) {
            Ok(Some(value)) => {
                fields.insert(def.name.clone(), value);
            }
            Ok(None) => {}
            Err(message) => errors.add(&input.id, message),
        }
        inputs.push(input);
    }
    (inputs, fields)
}

/// Where a service's error about a user form goes: the email, the password, a custom field, else the form.
fn routes(defined: &[CustomField]) -> Vec<(String, String)> {
    let mut routes: Vec<(String, String)> = vec![
        ("a user with this email".into(), "email".into()),
        ("the password".into(), "password".into()),
        ("this password".into(), "password".into()),
        ("send_invite".into(), "password".into()),
        ("name".into(), "name".into()),
    ];
    routes.extend(defined.iter().map(|d| (format!("fields.{} ", d.name), format!("field-{}", d.name))));
    routes
}

/// Files a service's error under its field (`routes`); an error that is not the form's fault is the page.
fn absorb(errors: &mut FieldErrors, err: Error, routes: &[(String, String)]) -> Result<(), PageError> {
    let routes: Vec<(&str, &str)> = routes.iter().map(|(prefix, field)| (prefix.as_str(), field.as_str())).collect();
    errors.absorb(err, &routes)
}

/// Checks the email and the name of a form, adding their errors.
fn check_email_and_name(email: &str, name: &str, errors: &mut FieldErrors) {
    if email.trim().is_empty() {
        errors.add("email", "enter the user's email address");
    } else if let Err(err) = users::normalize_email(email) {
        errors.add("email", err.to_string());
    }
    let name = name.trim();
    if !name.is_empty()
        && let Err(err) = users::check_name(name)
    {
        errors.add("name", err.to_string());
    }
}

/// The value of a form's `key`, or empty.
fn value_of(pairs: &[(String, String)], key: &str) -> String {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap_or_default()
}

fn ticked(pairs: &[(String, String)], key: &str) -> bool {
    pairs.iter().any(|(k, _)| k == key)
}

// ---- the list ----

#[derive(Deserialize, Default)]
struct UsersQuery {
    q: Option<String>,
    status: Option<String>,
    sort: Option<String>,
    dir: Option<String>,
    offset: Option<String>,
    done: Option<String>,
}

struct UserRow {
    id: String,
    email: String,
    name: String,
    disabled: bool,
    verified: bool,
    mfa: bool,
    created: When,
    last_login: Option<When>,
}

/// The new-user form as typed (the password is never shown again).
#[derive(Default)]
struct NewUserForm {
    email: String,
    name: String,
    send_invite: bool,
    verified: bool,
}

#[derive(Template)]
#[template(path = "admin/users.html")]
struct UsersPage {
    chrome: Chrome,
    slug: String,
    tenant_name: String,
    tab: &'static str,
    q: String,
    status: String,
    statuses: Vec<(&'static str, &'static str, bool)>,
    sort: &'static str,
    dir: &'static str,
    sort_email: SortHeader,
    sort_created: SortHeader,
    sort_last_login: SortHeader,
    rows: Vec<UserRow>,
    paging: Paging,
    form: NewUserForm,
    custom: Vec<FieldInput>,
    errors: FieldErrors,
}

async fn render_users(
    tenant: &Tenant,
    db: &TenantDb,
    chrome: Chrome,
    q: &UsersQuery,
    form: NewUserForm,
    custom: Vec<FieldInput>,
    errors: FieldErrors,
) -> PageResult {
    let text = super::lists::search_text(q.q.as_deref());
    let status = q.status.clone().filter(|s| STATUSES.iter().any(|(value, _)| value == s)).unwrap_or_default();
    let sort = Sort::parse(q.sort.as_deref(), q.dir.as_deref(), &SORTS);
    let order = match sort.key {
        "email" => UserOrder::Email,
        "last_login" => UserOrder::LastLogin,
        _ => UserOrder::Created,
    };
    let path = format!("/admin/tenants/{}/users", tenant.slug);
    let others = [("q", text.as_str()), ("status", status.as_str())];
    let base = with_query(
        &path,
        &query_pairs(&[("q", text.as_str()), ("status", status.as_str()), ("sort", sort.key), ("dir", sort.dir())]),
    );
    let filter = UserFilter {
        text: (!text.is_empty()).then(|| text.clone()),
        status: (!status.is_empty()).then(|| status.clone()),
    };
    let (offset, descending) = (offset_of(q.offset.as_deref()), sort.descending);
    let (paging, found) = db::with_conn(&db.pool, move |conn| {
        let total = users::count(conn, &filter)?;
        let paging = Paging::new(total, offset, PAGE_SIZE, &base);
        let found = users::page(conn, &filter, order, descending, paging.offset, paging.limit)?;
        Ok((paging, found))
    })
    .await?;
    let rows = found
        .into_iter()
        .map(|(u, mfa)| UserRow {
            disabled: u.status == "disabled",
            verified: u.email_verified,
            mfa,
            created: When::at(u.created_at),
            last_login: u.last_login_at.map(When::at),
            id: u.id,
            email: u.email,
            name: u.name.unwrap_or_default(),
        })
        .collect();
    let code = if errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let page = UsersPage {
        chrome,
        slug: tenant.slug.to_string(),
        tenant_name: tenant.name.clone(),
        tab: "users",
        statuses: STATUSES.iter().map(|(value, label)| (*value, *label, *value == status)).collect(),
        sort_email: sort.header("email", false, &path, &others),
        sort_created: sort.header("created", true, &path, &others),
        sort_last_login: sort.header("last_login", true, &path, &others),
        q: text,
        status,
        sort: sort.key,
        dir: sort.dir(),
        rows,
        paging,
        form,
        custom,
        errors,
    };
    Ok((code, render(page)?).into_response())
}

async fn users_page(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    Query(q): Query<UsersQuery>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    let chrome = session.chrome_with("tenants", done_notice(q.done.as_deref()));
    let custom = saved_inputs(&tenant.settings.custom_fields, &Value::Null);
    render_users(&tenant, &db, chrome, &q, NewUserForm::default(), custom, FieldErrors::new()).await
}

/// The new-user form: `email`, `name`, `password`, `send_invite`, `email_verified` and `fields.{name}`.
async fn user_create(
    State(app): State<AppState>,
    session: UiSession,
    from: RequestOrigin,
    Path(slug): Path<String>,
    CsrfForm(pairs): CsrfForm<Vec<(String, String)>>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    let form = NewUserForm {
        email: value_of(&pairs, "email"),
        name: value_of(&pairs, "name"),
        send_invite: ticked(&pairs, "send_invite"),
        verified: ticked(&pairs, "email_verified"),
    };
    let defined = &tenant.settings.custom_fields;
    let mut errors = FieldErrors::new();
    check_email_and_name(&form.email, &form.name, &mut errors);
    let (custom, fields) = read_fields(defined, &pairs, &mut errors);
    if errors.is_empty() {
        let input = CreateUser {
            email: form.email.clone(),
            password: Some(value_of(&pairs, "password")),
            email_verified: form.verified,
            name: Some(form.name.clone()),
            fields: Some(Value::Object(fields)),
            send_invite: form.send_invite,
            ..CreateUser::default()
        };
        match admin::create_user(&app, &tenant, &db, input, origin_of(&session, from)).await {
            Ok(id) => return Ok(redirect(&slug, &format!("users/{id}?done=created"))),
            Err(err) => absorb(&mut errors, err, &routes(defined))?,
        }
    }
    render_users(&tenant, &db, session.chrome("tenants"), &UsersQuery::default(), form, custom, errors).await
}

// ---- one user ----

struct SessionRow {
    id: String,
    created: When,
    last_seen: When,
    from: String,
}

/// The profile form as typed or as saved.
struct ProfileForm {
    email: String,
    name: String,
    verified: bool,
}

#[derive(Template)]
#[template(path = "admin/user.html")]
struct UserPage {
    chrome: Chrome,
    slug: String,
    tenant_name: String,
    tab: &'static str,
    id: String,
    email: String,
    disabled: bool,
    verified: bool,
    has_password: bool,
    mfa_enabled: bool,
    created: When,
    last_login: Option<When>,
    roles: Vec<(String, bool)>,
    sessions: Vec<SessionRow>,
    form: ProfileForm,
    custom: Vec<FieldInput>,
    dropped: Vec<String>,
    errors: FieldErrors,
}

/// The user's page; `typed` is the profile form as submitted when saving failed (else the saved values show).
async fn render_user(
    tenant: &Tenant,
    db: &TenantDb,
    chrome: Chrome,
    id: String,
    typed: Option<(ProfileForm, Vec<FieldInput>)>,
    errors: FieldErrors,
) -> PageResult {
    let (user, assigned, all, list, enrolled) = db::with_conn(&db.pool, move |conn| {
        Ok((
            users::get(conn, &id)?,
            roles::of_user(conn, &id)?,
            roles::list(conn)?,
            sessions::list(conn, &id)?,
            mfa::is_enrolled(conn, &id)?,
        ))
    })
    .await?;
    let defined = &tenant.settings.custom_fields;
    let (form, custom) = typed.unwrap_or_else(|| {
        let form = ProfileForm {
            email: user.email.clone(),
            name: user.name.clone().unwrap_or_default(),
            verified: user.email_verified,
        };
        (form, saved_inputs(defined, &user.fields))
    });
    let code = if errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let page = UserPage {
        chrome,
        slug: tenant.slug.to_string(),
        tenant_name: tenant.name.clone(),
        tab: "users",
        roles: all
            .into_iter()
            .map(|r| {
                let on = assigned.contains(&r.name);
                (r.name, on)
            })
            .collect(),
        sessions: list
            .into_iter()
            .map(|s| SessionRow {
                created: When::at(s.created_at),
                last_seen: When::at(s.last_seen_at),
                from: crate::client_label(s.ip.as_deref(), s.user_agent.as_deref()),
                id: s.id,
            })
            .collect(),
        dropped: undefined_fields(defined, &user.fields),
        disabled: user.status == "disabled",
        verified: user.email_verified,
        has_password: user.has_password,
        mfa_enabled: enrolled,
        created: When::at(user.created_at),
        last_login: user.last_login_at.map(When::at),
        id: user.id,
        email: user.email,
        form,
        custom,
        errors,
    };
    Ok((code, render(page)?).into_response())
}

async fn user_page(
    State(app): State<AppState>,
    session: UiSession,
    Path((slug, id)): Path<(String, String)>,
    Query(q): Query<DoneQuery>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    let chrome = session.chrome_with("tenants", done_notice(q.done.as_deref()));
    render_user(&tenant, &db, chrome, id, None, FieldErrors::new()).await
}

/// The profile form: `email`, `name`, `email_verified` and `fields.{name}` (the custom fields, replaced as a
/// whole: a field left empty is removed).
async fn user_profile(
    State(app): State<AppState>,
    session: UiSession,
    from: RequestOrigin,
    Path((slug, id)): Path<(String, String)>,
    CsrfForm(pairs): CsrfForm<Vec<(String, String)>>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    let form = ProfileForm {
        email: value_of(&pairs, "email"),
        name: value_of(&pairs, "name"),
        verified: ticked(&pairs, "email_verified"),
    };
    let defined = &tenant.settings.custom_fields;
    let mut errors = FieldErrors::new();
    check_email_and_name(&form.email, &form.name, &mut errors);
    let (custom, fields) = read_fields(defined, &pairs, &mut errors);
    if errors.is_empty() {
        let changes = UpdateUser {
            email: Some(form.email.clone()),
            email_verified: Some(form.verified),
            name: Some(form.name.clone()),
            fields: Some(Value::Object(fields)),
        };
        match admin::update_user(&tenant, &db, id.clone(), changes, origin_of(&session, from)).await {
            Ok(_) => return Ok(redirect(&slug, &format!("users/{id}?done=saved"))),
            Err(err) => absorb(&mut errors, err, &routes(defined))?,
        }
    }
    render_user(&tenant, &db, session.chrome("tenants"), id, Some((form, custom)), errors).await
}

/// `enable` and `reset`, and with `confirm=yes` `disable`, `mfa`, `sign-out` (every session) and `delete`.
async fn user_action(
    State(app): State<AppState>,
    session: UiSession,
    from: RequestOrigin,
    Path((slug, id, action)): Path<(String, String, String)>,
    CsrfForm(form): CsrfForm<ConfirmForm>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    let origin = origin_of(&session, from);
    let needs_confirm = match action.as_str() {
        "enable" | "reset" => false,
        "disable" | "mfa" | "sign-out" | "delete" => true,
        _ => return Err(Error::NotFound("action").into()),
    };
    if needs_confirm && form.confirm != "yes" {
        return Ok(redirect(&slug, &format!("users/{id}?done=unconfirmed")));
    }
    let done = match action.as_str() {
        "disable" => admin::change_status(&db, id.clone(), "disabled", origin).await.map(|_| "disabled")?,
        "enable" => admin::change_status(&db, id.clone(), "active", origin).await.map(|_| "enabled")?,
        "reset" => admin::send_reset(&app, &tenant, &db, id.clone(), origin).await.map(|_| "reset")?,
        "mfa" => admin::clear_mfa(&db, id.clone(), origin).await.map(|_| "mfa")?,
        "sign-out" => admin::end_all_sessions(&db, id.clone(), origin).await.map(|_| "signed_out")?,
        _ => {
            admin::delete_user(&db, id, origin).await?;
            return Ok(redirect(&slug, "users?done=deleted"));
        }
    };
    Ok(redirect(&slug, &format!("users/{id}?done={done}")))
}

/// The values of every `key` field of a urlencoded form (checkbox groups), and the CSRF token.
fn form_values(raw: &[u8], key: &str) -> (Vec<String>, String) {
    let mut values = Vec::new();
    let mut csrf = String::new();
    for (k, v) in url::form_urlencoded::parse(raw) {
        if k == key {
            values.push(v.into_owned());
        } else if k == "csrf_token" {
            csrf = v.into_owned();
        }
    }
    (values, csrf)
}

async fn user_roles(
    State(app): State<AppState>,
    session: UiSession,
    from: RequestOrigin,
    Path((slug, id)): Path<(String, String)>,
    RawForm(raw): RawForm,
) -> PageResult {
    let (names, csrf) = form_values(&raw, "roles");
    session.check_csrf(&csrf)?;
    let (_, db) = open(&app, &session, &slug).await?;
    admin::assign_roles(&db, id.clone(), names, origin_of(&session, from)).await?;
    Ok(redirect(&slug, &format!("users/{id}?done=roles")))
}

/// Ends one session, with `confirm=yes`.
async fn user_session_revoke(
    State(app): State<AppState>,
    session: UiSession,
    from: RequestOrigin,
    Path((slug, id, sid)): Path<(String, String, String)>,
    CsrfForm(form): CsrfForm<ConfirmForm>,
) -> PageResult {
    let (_, db) = open(&app, &session, &slug).await?;
    if form.confirm != "yes" {
        return Ok(redirect(&slug, &format!("users/{id}?done=unconfirmed")));
    }
    admin::end_session(&db, id.clone(), sid, origin_of(&session, from)).await?;
    Ok(redirect(&slug, &format!("users/{id}?done=revoked")))
}
