//! The tenant audit log page and its CSV export over plain HTTP: emails and names instead of ids, readable
//! summaries, the browser and OS instead of the raw user agent, filters by type, user, actor and date (with field
//! errors that keep the input), id paging, a CSV with proper quoting and defused formulas, tenant scoping; and the
//! admin API's `email`, `actor` and `until` filters.

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use crate::admin_ui::{EMAIL, PASSWORD, app_with_operator, jar, signed_in};
use crate::support::{TestApp, create_user};

const CHROME_MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) \
                          Chrome/131.0.0.0 Safari/537.36";
/// A user agent a spreadsheet would run as a formula.
const FORMULA_UA: &str = "=cmd|' /C calc'!A0";

async fn page(ui: &Client, app: &TestApp, path: &str) -> (StatusCode, String) {
    let r = ui.get(app.url(path)).send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

/// Signs in to the tenant's end-user API with `user_agent`; the status.
async fn login(app: &TestApp, slug: &str, email: &str, password: &str, user_agent: &str) -> StatusCode {
    jar()
        .post(app.url(&format!("/t/{slug}/api/v1/login")))
        .header("user-agent", user_agent)
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .unwrap()
        .status()
}

fn rows(html: &str) -> usize {
    html.matches("<tr id=\"entry-").count()
}

/// Six entries: two users created by the bootstrap token, a wrong and a right password for Ann from Chrome on a
/// Mac, a wrong password for Bob from a formula, and an unknown address.
async fn audited_tenant(app: &TestApp) -> (String, String) {
    app.create_tenant("auditco").await;
    let ann = create_user(app, "auditco", "ann.audit@example.com").await["id"].as_str().unwrap().to_owned();
    let bob = create_user(app, "auditco", "bob.audit@example.com").await["id"].as_str().unwrap().to_owned();
    assert_eq!(login(app, "auditco", "ann.audit@example.com", "not the password", CHROME_MAC).await, 401);
    assert_eq!(login(app, "auditco", "ann.audit@example.com", PASSWORD, CHROME_MAC).await, 200);
    assert_eq!(login(app, "auditco", "bob.audit@example.com", "nope nope nope", FORMULA_UA).await, 401);
    assert_eq!(login(app, "auditco", "eve.nobody@example.com", "whatever it is", "curl/8.5.0").await, 401);
    (ann, bob)
}

#[tokio::test]
async fn the_audit_log_names_people_and_summarises_events() {
    let app = app_with_operator().await;
    let (ann, _) = audited_tenant(&app).await;
    let (status, all) = app.json(Method::GET, "/admin/api/v1/tenants/auditco/audit?limit=200", None).await;
    assert_eq!(status, 200);
    let items = all["items"].as_array().unwrap();
    assert_eq!(items.len(), 6, "{all}");
    let ui = signed_in(&app, EMAIL).await;

    let (status, html) = page(&ui, &app, "/admin/tenants/auditco/audit").await;
    assert_eq!(status, 200, "{html}");
    assert_eq!(rows(&html), 6, "{html}");
    assert!(html.contains("id=\"audit-total\">6 events<"), "{html}");
    // Users by email, linked to their page; never the id as the text.
    assert!(html.contains(&format!("<a href=\"/admin/tenants/auditco/users/{ann}\">ann.audit@example.com</a>")));
    assert!(!html.contains(&format!(">{ann}</a>")), "{html}");
    assert!(html.contains("eve.nobody@example.com") && html.contains("no account"), "{html}");
    // Actors by name: the token that created the users, the users themselves, the anonymous visitor.
    assert!(html.contains("API token GATEHOUSE_BOOTSTRAP_TOKEN"), "{html}");
    assert!(html.contains(&format!("href=\"/admin/tenants/auditco/audit?actor=user%3A{ann}\"")), "{html}");
    assert!(html.contains("Anonymous visitor"), "{html}");
    // Summaries and labels.
    assert!(html.contains("Sign-in failed: wrong password"), "{html}");
    assert!(html.contains("Sign-in failed: no account for eve.nobody@example.com"), "{html}");
    assert!(html.contains("Created by an admin"), "{html}");
    assert!(html.contains("<option value=\"login_failed\">Sign-in failed</option>"), "{html}");
    // The browser and OS in the table; the full user agent only inside the details.
    assert!(html.contains("Chrome 131 on macOS · "), "{html}");
    assert!(html.contains("curl/8.5.0 · "), "{html}");
    let full = html.matches(CHROME_MAC).count();
    assert_eq!(full, 2, "{html}");
    assert_eq!(html.matches(&format!("<dd class=\"audit-ua\">{CHROME_MAC}</dd>")).count(), full);
    assert!(html.contains("<time datetime=\""), "{html}");
    assert!(html.contains("<details class=\"more\"><summary>Details</summary>"), "{html}");
    assert!(html.contains("href=\"/admin/tenants/auditco/audit.csv\""), "{html}");

    // By type: the select keeps it.
    let (status, html) = page(&ui, &app, "/admin/tenants/auditco/audit?type=login_failed").await;
    assert_eq!(status, 200);
    assert_eq!(rows(&html), 3, "{html}");
    assert!(!html.contains("<code>login_succeeded</code>") && !html.contains("<code>user_created</code>"));
    assert!(html.contains("<option value=\"login_failed\" selected>"), "{html}");
    assert!(html.contains("href=\"/admin/tenants/auditco/audit.csv?type=login_failed\""), "{html}");

    // By part of an email: Ann's entries only; the box keeps the text.
    let (status, html) = page(&ui, &app, "/admin/tenants/auditco/audit?user=ann.AUDIT").await;
    assert_eq!(status, 200);
    assert_eq!(rows(&html), 3, "{html}");
    assert!(!html.contains("bob.audit@example.com"), "{html}");
    assert!(html.contains("value=\"ann.AUDIT\""), "{html}");

    // By kind of actor, and by one actor from its link.
    let (_, html) = page(&ui, &app, "/admin/tenants/auditco/audit?actor=user").await;
    assert_eq!(rows(&html), 3, "{html}");
    assert!(!html.contains("<code>user_created</code>"), "{html}");
    assert!(html.contains("<option value=\"user\" selected>"), "{html}");
    let (_, html) = page(&ui, &app, &format!("/admin/tenants/auditco/audit?actor=user%3A{ann}")).await;
    assert_eq!(rows(&html), 2, "{html}");
    assert!(html.contains("selected>Only ann.audit@example.com</option>"), "{html}");

    // By date (UTC days, `to` inclusive).
    let (_, html) = page(&ui, &app, "/admin/tenants/auditco/audit?from=2000-01-01").await;
    assert_eq!(rows(&html), 6, "{html}");
    let (status, html) = page(&ui, &app, "/admin/tenants/auditco/audit?from=2000-01-01&to=2000-01-02").await;
    assert_eq!(status, 200);
    assert_eq!(rows(&html), 0);
    assert!(html.contains("No events match these filters.") && html.contains(">0 events<"), "{html}");

    // Paging by id: older than the newest entry, with the way back.
    let newest = items[0]["id"].as_i64().unwrap();
    let (_, html) = page(&ui, &app, &format!("/admin/tenants/auditco/audit?before={newest}")).await;
    assert_eq!(rows(&html), 5, "{html}");
    assert!(html.contains(&format!("?after={}\" rel=\"prev\"", items[1]["id"].as_i64().unwrap())), "{html}");
    assert!(html.contains(">Newest</a>") && !html.contains("rel=\"next\""), "{html}");
    app.stop().await;
}

#[tokio::test]
async fn bad_dates_are_field_errors_that_keep_the_input() {
    let app = app_with_operator().await;
    audited_tenant(&app).await;
    let ui = signed_in(&app, EMAIL).await;

    let (status, html) = page(&ui, &app, "/admin/tenants/auditco/audit?from=2026-03-02&to=2026-03-01&user=ann").await;
    assert_eq!(status, 400, "{html}");
    assert!(html.contains("<p class=\"field-error\" id=\"to-error\">The end date is before the start date.</p>"));
    assert!(html.contains("aria-invalid=\"true\" aria-describedby=\"to-error\""), "{html}");
    assert!(html.contains("value=\"2026-03-02\"") && html.contains("value=\"2026-03-01\""), "{html}");
    assert!(html.contains("value=\"ann\""), "the other fields stay too: {html}");
    assert_eq!(rows(&html), 0);

    let (status, html) = page(&ui, &app, "/admin/tenants/auditco/audit?from=yesterday").await;
    assert_eq!(status, 400);
    assert!(html.contains("id=\"from-error\"") && html.contains("value=\"yesterday\""), "{html}");
    assert!(html.contains("aria-describedby=\"from-error\""), "{html}");
    let r = ui.get(app.url("/admin/tenants/auditco/audit.csv?to=2026-02-30")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    app.stop().await;
}

#[tokio::test]
async fn the_csv_has_every_matching_row_quoted_and_defused() {
    let app = app_with_operator().await;
    let (ann, bob) = audited_tenant(&app).await;
    let ui = signed_in(&app, EMAIL).await;

    let r = ui.get(app.url("/admin/tenants/auditco/audit.csv")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    let disposition = r.headers()["content-disposition"].to_str().unwrap().to_owned();
    assert!(disposition.starts_with("attachment; filename=\"audit-auditco-") && disposition.ends_with(".csv\""));
    let body = r.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(
        header,
        [
            "id",
            "time",
            "type",
            "summary",
            "user_id",
            "user_email",
            "actor",
            "actor_name",
            "ip",
            "user_agent",
            "request_id",
            "detail"
        ]
    );
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 6, "{body}");
    // A value with a comma is quoted; the JSON detail survives the round trip.
    assert!(body.contains(&format!(",\"{CHROME_MAC}\",")), "{body}");
    let failed = records
        .iter()
        .find(|r| &r[2] == "login_failed" && &r[4] == ann.as_str())
        .unwrap_or_else(|| panic!("Ann's failed sign-in: {body}"));
    assert_eq!(&failed[3], "Sign-in failed: wrong password");
    assert_eq!(&failed[5], "ann.audit@example.com");
    assert_eq!(&failed[6], format!("user:{ann}"));
    assert_eq!(&failed[7], "ann.audit@example.com");
    assert_eq!(&failed[9], CHROME_MAC);
    assert!(failed[1].ends_with('Z') && failed[1].contains('T'), "RFC 3339: {}", &failed[1]);
    let detail: Value = serde_json::from_str(&failed[11]).unwrap();
    assert_eq!(detail["reason"], "wrong_password");
    // A formula is text with a leading apostrophe.
    let formula = records.iter().find(|r| &r[4] == bob.as_str() && &r[2] == "login_failed").unwrap();
    assert_eq!(&formula[9], format!("'{FORMULA_UA}"));
    assert!(!body.contains(",=cmd"), "{body}");
    let created = records.iter().find(|r| &r[2] == "user_created").unwrap();
    assert_eq!(&created[7], "API token GATEHOUSE_BOOTSTRAP_TOKEN");

    // The same filters as the page.
    let r = ui.get(app.url("/admin/tenants/auditco/audit.csv?type=login_failed&user=audit")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert_eq!(csv::Reader::from_reader(body.as_bytes()).records().count(), 2, "{body}");
    app.stop().await;
}

#[tokio::test]
async fn other_tenants_admins_and_strangers_are_refused() {
    let app = app_with_operator().await;
    audited_tenant(&app).await;
    app.create_tenant("otherco").await;
    let r = app
        .admin(Method::POST, "/admin/api/v1/tenants/otherco/admins")
        .json(&json!({ "email": "admin-otherco@example.com", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let other = signed_in(&app, "admin-otherco@example.com").await;
    for path in ["/admin/tenants/auditco/audit", "/admin/tenants/auditco/audit.csv"] {
        let (status, body) = page(&other, &app, path).await;
        assert_eq!(status, 403, "{path}");
        assert!(!body.contains("ann.audit@example.com"), "{path}: {body}");
    }
    let (status, _) = page(&other, &app, "/admin/tenants/otherco/audit").await;
    assert_eq!(status, 200, "their own tenant's log");
    let (status, _) = page(&other, &app, "/admin/tenants/otherco/audit.csv").await;
    assert_eq!(status, 200);

    // Without a session: the sign-in page.
    let r = jar().get(app.url("/admin/tenants/auditco/audit.csv")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/admin/login");
    app.stop().await;
}

#[tokio::test]
async fn the_api_filters_by_email_actor_and_until() {
    let app = app_with_operator().await;
    let (ann, _) = audited_tenant(&app).await;
    let list = |query: String| {
        let app = &app;
        async move { app.json(Method::GET, &format!("/admin/api/v1/tenants/auditco/audit?{query}"), None).await }
    };
    let types = |body: &Value| -> Vec<String> {
        body["items"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap().to_owned()).collect()
    };

    let (status, body) = list("email=ANN.audit".into()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(types(&body), ["login_succeeded", "login_failed", "user_created"], "{body}");
    assert!(body["items"].as_array().unwrap().iter().all(|e| e["user_id"] == ann.as_str()));
    // An address without an account: its failed sign-in.
    let (_, body) = list("email=eve.nobody".into()).await;
    assert_eq!(types(&body), ["login_failed"], "{body}");
    let (_, body) = list("email=nobody-like-this".into()).await;
    assert_eq!(types(&body), Vec::<String>::new());
    // `_` is no wildcard.
    let (_, body) = list("email=ann_audit".into()).await;
    assert_eq!(types(&body), Vec::<String>::new());

    let (_, body) = list(format!("actor=user:{ann}")).await;
    assert_eq!(types(&body), ["login_succeeded", "login_failed"], "{body}");
    let (_, body) = list("actor=token:bootstrap&type=user_created".into()).await;
    assert_eq!(body["items"].as_array().unwrap().len(), 2, "{body}");

    let (_, body) = list("until=2000-01-01T00:00:00Z".into()).await;
    assert_eq!(types(&body), Vec::<String>::new());
    let (_, body) = list("since=2000-01-01T00:00:00Z&until=4102444800".into()).await;
    assert_eq!(body["items"].as_array().unwrap().len(), 6, "{body}");

    for bad in ["until=banana", "since=2030-01-01T00:00:00Z&until=2029-01-01T00:00:00Z", "actor=nobody"] {
        let (status, body) = list(bad.into()).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "validation_failed", "{bad}");
    }
    app.stop().await;
}
