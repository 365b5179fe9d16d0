//! Forms that keep what was typed and show every error by its field (sign-in settings, plugin settings, hosted
//! sign-up), actions that ask first (plugin activation, an app's access on the account page), a failing dry run
//! shown as a failure, and what end users read (field labels, a browser summary, "7 days" in the invitation).

use std::collections::HashMap;

use reqwest::{Client, Method};
use serde_json::{Value, json};

use crate::admin_ui::{EMAIL, app_with_operator, jar, signed_in};
use crate::identity::csrf_of;
use crate::support::{PASSWORD, TestApp, create_user};

async fn page(ui: &Client, app: &TestApp, path: &str) -> (u16, String) {
    let r = ui.get(app.url(path)).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn post(ui: &Client, app: &TestApp, path: &str, fields: &[(&str, &str)]) -> (u16, String, Option<String>) {
    let r = ui.post(app.url(path)).form(fields).send().await.unwrap();
    let location = r.headers().get("location").map(|l| l.to_str().unwrap().to_owned());
    (r.status().as_u16(), r.text().await.unwrap(), location)
}

/// The field `id` is marked invalid and described by its error message, which says `says`.
fn assert_field_error(html: &str, id: &str, says: &str) {
    let error = format!("<p class=\"field-error\" id=\"{id}-error\">");
    let at = html.find(&error).unwrap_or_else(|| panic!("no error by {id}: {html}"));
    let message = &html[at + error.len()..];
    let message = &message[..message.find("</p>").unwrap()];
    assert!(message.contains(says), "{id}: {message}");
    let input = html.find(&format!("id=\"{id}\"")).unwrap();
    let tag = &html[input..input + html[input..].find('>').unwrap()];
    assert!(tag.contains("aria-invalid=\"true\""), "{id} is marked invalid: {tag}");
    assert!(tag.contains(&format!("{id}-error")), "{id} points at its message: {tag}");
}

async fn admin_ok(app: &TestApp, method: Method, path: &str, body: Value) -> Value {
    let (status, answer) = app.json(method.clone(), path, Some(body)).await;
    assert!(status.is_success(), "{method} {path}: {status} {answer}");
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_settings_keep_what_was_typed() {
    let app = app_with_operator().await;
    app.create_tenant("formco").await;
    let ui = signed_in(&app, EMAIL).await;
    let (_, html) = page(&ui, &app, "/admin/tenants/formco/sign-in").await;
    let csrf = csrf_of(&html);
    let typed = [
        ("csrf_token", csrf.as_str()),
        ("signup_enabled", "true"),
        ("mfa", "optional"),
        ("password_min_length", "eight"),
        ("session_idle_minutes", "60"),
        ("session_max_hours", "24"),
        ("lockout_max_failures", "5"),
        ("lockout_backoff_seconds", "30"),
        ("lockout_max_backoff_seconds", "3600"),
        ("custom_fields", "[{\"name\": \"company\", "),
    ];
    let (status, html, _) = post(&ui, &app, "/admin/tenants/formco/sign-in", &typed).await;
    assert_eq!(status, 400);
    // Both problems at once, each by its field, and the typed text back in the boxes.
    assert_field_error(&html, "password_min_length", "whole number");
    assert_field_error(&html, "custom_fields", "not JSON");
    assert!(html.contains("value=\"eight\""), "{html}");
    assert!(html.contains("[{&#34;name&#34;: &#34;company&#34;, </textarea>"), "{html}");
    assert!(html.contains("There are 2 problems"), "{html}");
    assert!(html.contains("<option value=\"optional\" selected>"), "the select keeps its choice");

    // A rule of the settings (idle timeout at least 5 minutes) lands by its field too; nothing was saved.
    let mut valid: Vec<(&str, &str)> = typed.to_vec();
    valid[3] = ("password_min_length", "10");
    valid[4] = ("session_idle_minutes", "3");
    valid[9] = ("custom_fields", "[{\"name\": \"company_size\", \"type\": \"number\", \"label\": \"Company size\"}]");
    let (status, html, _) = post(&ui, &app, "/admin/tenants/formco/sign-in", &valid).await;
    assert_eq!(status, 400);
    assert_field_error(&html, "session_idle_minutes", "5-129600");
    let (_, tenant) = app.json(Method::GET, "/admin/api/v1/tenants/formco", None).await;
    assert_eq!(tenant["settings"]["session_idle_minutes"], 1440, "nothing saved: {tenant}");

    valid[4] = ("session_idle_minutes", "60");
    let (status, _, location) = post(&ui, &app, "/admin/tenants/formco/sign-in", &valid).await;
    assert_eq!((status, location.as_deref()), (303, Some("/admin/tenants/formco/sign-in?done=saved")));
    // The field's label is what the hosted sign-up form shows, not its key.
    let (_, register) = page(&jar(), &app, "/t/formco/register").await;
    assert!(register.contains(">Company size <span class=\"optional\">"), "{register}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosted_sign_up_shows_every_error_at_once() {
    let app = app_with_operator().await;
    app.create_tenant("signco").await;
    admin_ok(
        &app,
        Method::PATCH,
        "/admin/api/v1/tenants/signco",
        json!({"settings": {"custom_fields": [
            {"name": "seats", "type": "number", "required": true},
            {"name": "team", "type": "string", "required": true, "label": "Team name"}
        ]}}),
    )
    .await;
    let visitor = jar();
    let (_, html) = page(&visitor, &app, "/t/signco/register").await;
    let csrf = csrf_of(&html);
    let form = [
        ("csrf_token", csrf.as_str()),
        ("email", "not-an-address"),
        ("name", "Ada"),
        ("password", "short"),
        ("field_seats", "a dozen"),
        ("field_team", ""),
    ];
    let (status, html, _) = post(&visitor, &app, "/t/signco/register", &form).await;
    assert_eq!(status, 400);
    assert_field_error(&html, "email", "email address");
    assert_field_error(&html, "password", "at least 10 characters");
    assert_field_error(&html, "field_seats", "Seats must be a number");
    assert_field_error(&html, "field_team", "Team name is required");
    assert!(html.contains("Please fix these 4 things"), "{html}");
    assert!(html.contains("value=\"not-an-address\"") && html.contains("value=\"a dozen\""), "typed input kept");
    assert!(!html.contains("short"), "the password is never echoed");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_settings_activation_and_a_failing_dry_run() {
    let Some(bytes) = crate::plugins::component("unreachable") else { return };
    let app = app_with_operator().await;
    app.create_tenant("plugco").await;
    admin_ok(&app, Method::POST, "/admin/api/v1/tenants/plugco/plugins", json!({"name": "guard", "world": "login"}))
        .await;
    let r = app
        .admin(Method::POST, "/admin/api/v1/tenants/plugco/plugins/guard/versions")
        .header("content-type", "application/wasm")
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let ui = signed_in(&app, EMAIL).await;
    let base = "/admin/tenants/plugco/plugins/guard";
    let (_, html) = page(&ui, &app, base).await;
    let csrf = csrf_of(&html);

    // Settings: every error by its field, what was typed kept.
    let typed = [
        ("csrf_token", csrf.as_str()),
        ("failure_policy", "fail_open"),
        ("timeout_ms", "5000"),
        ("memory_mb", "lots"),
        ("priority", "0"),
        ("config", "{\"tier\": "),
    ];
    let (status, html, _) = post(&ui, &app, base, &typed).await;
    assert_eq!(status, 400);
    assert_field_error(&html, "timeout_ms", "1 to 1000");
    assert_field_error(&html, "memory_mb", "whole number");
    assert_field_error(&html, "config", "not JSON");
    assert!(html.contains("value=\"5000\"") && html.contains("{&#34;tier&#34;: </textarea>"), "{html}");
    assert!(html.contains("<option value=\"fail_open\" selected>"), "the policy typed is kept");

    // Activating asks first: a bare POST changes nothing.
    let activate = format!("{base}/versions/1/activate");
    let (status, _, location) = post(&ui, &app, &activate, &[("csrf_token", csrf.as_str())]).await;
    assert_eq!((status, location.as_deref()), (303, Some(&*format!("{base}?done=unconfirmed"))));
    let (_, plugin) = app.json(Method::GET, "/admin/api/v1/tenants/plugco/plugins/guard", None).await;
    assert!(plugin["active_version"].is_null(), "{plugin}");
    let (_, html) = page(&ui, &app, &format!("{base}?done=unconfirmed")).await;
    assert!(html.contains("Nothing was changed"), "{html}");
    post(&ui, &app, &activate, &[("csrf_token", csrf.as_str()), ("confirm", "yes")]).await;
    let (_, plugin) = app.json(Method::GET, "/admin/api/v1/tenants/plugco/plugins/guard", None).await;
    assert_eq!(plugin["active_version"], 1, "{plugin}");

    // A dry run that traps is shown as a failure, with what a real call would do.
    let dry = [("csrf_token", csrf.as_str()), ("function", "post-login"), ("version", "1"), ("input", "")];
    let (status, html, _) = post(&ui, &app, &format!("{base}/dry-run"), &dry).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("id=\"dry-failed\"") && html.contains("role=\"alert\""), "{html}");
    assert!(html.contains("The plugin failed: <span id=\"dry-outcome\">trap</span>"), "{html}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_users_read_labels_browsers_and_days() {
    let app = app_with_operator().await;
    app.create_tenant("readco").await;
    // An invitation says how long its link lives in days, not minutes.
    admin_ok(
        &app,
        Method::POST,
        "/admin/api/v1/tenants/readco/users",
        json!({"email": "new@example.com", "send_invite": true}),
    )
    .await;
    let text = crate::support::eventually(std::time::Duration::from_secs(10), "the invitation", || async {
        app.run_outbox().await;
        let (_, mailbox) = app.json(Method::GET, "/admin/api/v1/tenants/readco/mailbox", None).await;
        mailbox["items"][0]["text"].as_str().map(str::to_owned)
    })
    .await;
    assert!(text.contains("expires in 7 days"), "{text}");

    // The account page names the browser and system of each session, not the raw user agent.
    create_user(&app, "readco", "ada@example.com").await;
    let browser = jar();
    let (_, html) = page(&browser, &app, "/t/readco/login").await;
    let csrf = csrf_of(&html);
    let ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0";
    let r = browser
        .post(app.url("/t/readco/login"))
        .header("user-agent", ua)
        .form(&HashMap::from([("csrf_token", csrf.as_str()), ("email", "ada@example.com"), ("password", PASSWORD)]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let html =
        browser.get(app.url("/t/readco/account")).header("user-agent", ua).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("Firefox 133 on Windows"), "{html}");
    assert!(!html.contains("Gecko/20100101"), "the raw user agent is not shown: {html}");
    app.stop().await;
}
