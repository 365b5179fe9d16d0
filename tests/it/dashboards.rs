//! Dashboards with plots over plain HTTP: the node dashboard (operators only; from the node's in-memory pulse,
//! the current window as its last point) and the tenant overview's plots (counted from the tenant's own rows
//! per hour or day). Every plot is an SVG image with a title and the same figures as a table, which is what
//! these tests read.

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use crate::admin_ui::{EMAIL, PASSWORD, app_with_operator, jar, signed_in};
use crate::support::{TestApp, create_user};

/// The node dashboard's plots, by id.
const NODE_PLOTS: [&str; 6] = ["requests", "latency", "signins", "tokens", "outbox", "plugins"];
/// The tenant overview's plots, by id.
const TENANT_PLOTS: [&str; 4] = ["signins", "users", "orders", "outbox"];

async fn page(ui: &Client, app: &TestApp, path: &str) -> (StatusCode, String) {
    let r = ui.get(app.url(path)).send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

/// A sign-in through the tenant's JSON API; its status.
async fn api_login(app: &TestApp, slug: &str, email: &str, password: &str) -> StatusCode {
    jar()
        .post(app.url(&format!("/t/{slug}/api/v1/login")))
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .unwrap()
        .status()
}

/// The body rows of plot `id`'s data table, each as its cells' text (the time first).
fn table_rows(html: &str, id: &str) -> Vec<Vec<String>> {
    let marker = format!("<table id=\"plot-{id}-data\">");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no data table for {id}: {html}"));
    let table = &html[start..start + html[start..].find("</table>").unwrap()];
    let body = &table[table.find("<tbody>").expect("a tbody") + "<tbody>".len()..];
    body.split("<tr>").skip(1).map(cells).collect()
}

/// The text of each `<th>` or `<td>` of one row.
fn cells(row: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = row;
    while let Some(open) = rest.find("<t") {
        let cell = &rest[open..];
        let text_start = cell.find('>').unwrap() + 1;
        let text_end = cell.find("</t").unwrap();
        out.push(cell[text_start..text_end].to_owned());
        rest = &cell[text_end + 3..];
    }
    out
}

fn number(cell: &str) -> f64 {
    cell.parse().unwrap_or_else(|_| panic!("not a number: {cell:?}"))
}

/// The sum of column `col` over `rows` (a cell without a sample counts zero).
fn column_sum(rows: &[Vec<String>], col: usize) -> f64 {
    rows.iter().map(|r| if r[col] == "–" { 0.0 } else { number(&r[col]) }).sum()
}

/// Each plot is an `<svg role="img">` with a `<title>` and a data table.
fn assert_plots(html: &str, ids: &[&str]) {
    for id in ids {
        let figure = format!("<figure class=\"plot\" id=\"plot-{id}\">");
        let start = html.find(&figure).unwrap_or_else(|| panic!("no plot {id}: {html}"));
        let end = start + html[start..].find("</figure>").unwrap();
        let plot = &html[start..end];
        assert!(plot.contains("<svg class=\"plot-svg\" role=\"img\""), "{id}: {plot}");
        assert!(plot.contains(&format!("<title id=\"plot-{id}-title\">")), "{id}: {plot}");
        assert!(plot.contains(&format!("<desc id=\"plot-{id}-desc\">")), "{id}: {plot}");
        assert!(plot.contains("<details class=\"plot-data\"><summary>Data</summary>"), "{id}: {plot}");
    }
}

fn utc_hour() -> i64 {
    gatehouse::now_unix().div_euclid(3600)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_dashboard_plots_requests_and_sign_ins_at_once() {
    let app = app_with_operator().await;
    let state = app.state().await;
    let samples_before = state.metrics.pulse.samples_in_hour();
    app.create_tenant("pulseco").await;
    create_user(&app, "pulseco", "ann@example.com").await;
    assert_eq!(api_login(&app, "pulseco", "ann@example.com", "not the password").await, 401);
    assert_eq!(api_login(&app, "pulseco", "nobody@example.com", PASSWORD).await, 401);
    assert_eq!(api_login(&app, "pulseco", "ann@example.com", PASSWORD).await, 200);
    for _ in 0..3 {
        assert_eq!(app.client.get(app.url("/healthz")).send().await.unwrap().status(), 200);
    }
    let ui = signed_in(&app, EMAIL).await;

    let (status, html) = page(&ui, &app, "/admin").await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("id=\"tenant-count\""), "the stats cards stay: {html}");
    assert!(html.contains("href=\"/admin?range=hour#plots\" aria-current=\"true\""), "{html}");
    assert_plots(&html, &NODE_PLOTS);
    let requests = table_rows(&html, "requests");
    let sign_ins = table_rows(&html, "signins");
    let (latest_requests, latest_sign_ins) = (requests.last().unwrap(), sign_ins.last().unwrap());
    assert_eq!(latest_requests[0], "now", "{requests:?}");
    assert_eq!(latest_sign_ins[0], "now", "{sign_ins:?}");
    assert_eq!(column_sum(&requests, 2), 0.0, "no 5xx: {requests:?}");
    // Nothing is lost between the samples and the window so far.
    assert_eq!((column_sum(&sign_ins, 1), column_sum(&sign_ins, 2)), (1.0, 2.0), "{sign_ins:?}");
    if state.metrics.pulse.samples_in_hour() == samples_before {
        // No sample was taken meanwhile (the first comes 10 s after start): it is all in the current window.
        assert!(number(&latest_requests[1]) > 0.0, "{requests:?}");
        assert_eq!((latest_sign_ins[1].as_str(), latest_sign_ins[2].as_str()), ("1", "2"), "{sign_ins:?}");
    }
    let latency = table_rows(&html, "latency");
    assert!(number(&latency.last().unwrap()[2]) > 0.0, "a p99: {latency:?}");

    let (status, html) = page(&ui, &app, "/admin?range=day").await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("href=\"/admin?range=day#plots\" aria-current=\"true\""), "{html}");
    assert_plots(&html, &NODE_PLOTS);
    assert!(html.contains("Sign-ins (per 5 min), last day: succeeded: max 1"), "{html}");
    let sign_ins = table_rows(&html, "signins");
    assert_eq!((column_sum(&sign_ins, 1), column_sum(&sign_ins, 2)), (1.0, 2.0), "{sign_ins:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenant_overview_counts_sign_ins_and_new_users_per_hour() {
    let app = app_with_operator().await;
    app.create_tenant("trendco").await;
    let hour_before = utc_hour();
    create_user(&app, "trendco", "ann@example.com").await;
    create_user(&app, "trendco", "bob@example.com").await;
    assert_eq!(api_login(&app, "trendco", "ann@example.com", "wrong").await, 401);
    assert_eq!(api_login(&app, "trendco", "bob@example.com", "wrong again").await, 401);
    assert_eq!(api_login(&app, "trendco", "ann@example.com", PASSWORD).await, 200);
    // Two orders, one of them cancelled.
    let (status, _) = app
        .json(
            Method::POST,
            "/admin/api/v1/tenants/trendco/products",
            Some(json!({"title": "Cup", "handle": "cup", "status": "active",
                        "variants": [{"sku": "CUP", "price": 500, "stock": 10}]})),
        )
        .await;
    assert_eq!(status, 201);
    let buyer = Client::new();
    for key in ["trend-1", "trend-2"] {
        let cart = crate::pricing::cart(&app, &buyer, "trendco", &[("CUP", 1)]).await;
        let r = buyer.put(app.url(&format!("/t/trendco/api/v1/carts/{cart}/shipping"))).json(&json!({"country": "GB"}));
        assert_eq!(r.send().await.unwrap().status(), 200);
        let mut body = crate::checkout::request(500);
        body["email"] = json!("ann@example.com");
        let r = buyer.post(app.url(&format!("/t/trendco/api/v1/carts/{cart}/checkout"))).header("idempotency-key", key);
        let placed: Value = r.json(&body).send().await.unwrap().json().await.unwrap();
        if key == "trend-2" {
            let id = placed["order"]["id"].as_str().unwrap();
            let path = format!("/admin/api/v1/tenants/trendco/orders/{id}/cancel");
            assert_eq!(app.json(Method::POST, &path, Some(json!({}))).await.0, 200);
        }
    }
    let ui = signed_in(&app, EMAIL).await;

    let (status, html) = page(&ui, &app, "/admin/tenants/trendco").await;
    let same_hour = utc_hour() == hour_before;
    assert_eq!(status, 200, "{html}");
    assert_plots(&html, &TENANT_PLOTS);
    assert!(html.contains("href=\"/admin/tenants/trendco?range=day#plots\" aria-current=\"true\""), "{html}");
    let sign_ins = table_rows(&html, "signins");
    assert_eq!(sign_ins.len(), 24, "one row per hour: {sign_ins:?}");
    assert_eq!((column_sum(&sign_ins, 1), column_sum(&sign_ins, 2)), (1.0, 2.0), "{sign_ins:?}");
    let users = table_rows(&html, "users");
    assert_eq!(column_sum(&users, 1), 2.0, "{users:?}");
    let orders = table_rows(&html, "orders");
    assert_eq!((column_sum(&orders, 1), column_sum(&orders, 2)), (2.0, 1.0), "placed, cancelled: {orders:?}");
    if same_hour {
        // All of it in the current hour's bucket, the last row.
        let latest = sign_ins.last().unwrap();
        assert_eq!((latest[1].as_str(), latest[2].as_str()), ("1", "2"), "ok, failed: {sign_ins:?}");
        assert_eq!(users.last().unwrap()[1], "2", "{users:?}");
    }
    let outbox = table_rows(&html, "outbox");
    assert_eq!(outbox.len(), 24, "{outbox:?}");

    let (status, html) = page(&ui, &app, "/admin/tenants/trendco?range=month").await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("href=\"/admin/tenants/trendco?range=month#plots\" aria-current=\"true\""), "{html}");
    assert_plots(&html, &TENANT_PLOTS);
    let sign_ins = table_rows(&html, "signins");
    assert_eq!(sign_ins.len(), 30, "one row per day: {sign_ins:?}");
    assert_eq!((column_sum(&sign_ins, 1), column_sum(&sign_ins, 2)), (1.0, 2.0), "{sign_ins:?}");
    assert_eq!(column_sum(&table_rows(&html, "users"), 1), 2.0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_admins_see_their_tenants_plots_only() {
    let app = app_with_operator().await;
    for slug in ["plotmine", "plottheirs"] {
        app.create_tenant(slug).await;
        let (status, body) = app
            .json(
                Method::POST,
                &format!("/admin/api/v1/tenants/{slug}/admins"),
                Some(json!({ "email": format!("admin-{slug}@example.com"), "password": PASSWORD })),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let mine = signed_in(&app, "admin-plotmine@example.com").await;

    for path in ["/admin", "/admin?range=day"] {
        let r = mine.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 303, "{path}: the node's dashboard is the operators'");
        assert_eq!(r.headers()["location"], "/admin/tenants/plotmine");
    }
    let (status, html) = page(&mine, &app, "/admin/tenants/plotmine?range=month").await;
    assert_eq!(status, 200, "{html}");
    assert_plots(&html, &TENANT_PLOTS);
    assert!(!html.contains("id=\"plot-requests\""), "no node figures on a tenant's page");
    for path in ["/admin/tenants/plottheirs", "/admin/tenants/plottheirs?range=month"] {
        let (status, html) = page(&mine, &app, path).await;
        assert_eq!(status, 403, "{path}: {html}");
        assert!(!html.contains("plot-signins"), "{html}");
    }
    app.stop().await;
}
