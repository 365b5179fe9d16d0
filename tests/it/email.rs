//! Email end to end: per-tenant SMTP to real aiosmtpd servers, the dev mailbox, retries while SMTP is down, a
//! SIGKILL with mail in flight, secrets at rest, and idle tenants staying closed.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use axum::Router;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{
    BinServer, HangUp, SinkOptions, SmtpSink, TOKEN, TestApp, eventually, free_port, metric_value,
    require_python_module, spawn_in, spawn_with,
};

const WAIT: Duration = Duration::from_secs(30);

async fn put_smtp(app: &TestApp, slug: &str, body: &Value) -> Value {
    let r = app.admin(Method::PUT, &format!("/admin/api/v1/tenants/{slug}/smtp")).json(body).send().await.unwrap();
    assert_eq!(r.status(), 200, "PUT smtp");
    r.json().await.unwrap()
}

async fn send_test(app: &TestApp, slug: &str, to: &str) -> String {
    let r = app
        .admin(Method::POST, &format!("/admin/api/v1/tenants/{slug}/emails/test"))
        .json(&json!({ "to": to }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
}

async fn outbox(app: &TestApp, slug: &str, query: &str) -> Vec<Value> {
    let r =
        app.admin(Method::GET, &format!("/admin/api/v1/tenants/{slug}/outbox?limit=200{query}")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn each_tenant_mails_through_its_own_smtp_server() {
    if !require_python_module("aiosmtpd") {
        return;
    }
    let (sink_a, sink_b) =
        (SmtpSink::start(SinkOptions::default()).await, SmtpSink::start(SinkOptions::default()).await);
    let app = spawn_with(|_| {}, Router::new()).await;
    app.create_tenant("acme").await;
    app.create_tenant("globex").await;
    let view = put_smtp(&app, "acme", &sink_a.settings("hello@acme.test")).await;
    assert_eq!((view["route"].as_str(), view["password_set"].as_bool()), (Some("tenant"), Some(false)));
    put_smtp(&app, "globex", &sink_b.settings("hello@globex.test")).await;

    let id_a = send_test(&app, "acme", "ann@example.com").await;
    let id_b = send_test(&app, "globex", "bob@example.com").await;
    let got_a = sink_a.wait_for(1, WAIT).await;
    let got_b = sink_b.wait_for(1, WAIT).await;
    assert_eq!(app.run_outbox().await, 0, "nothing else is queued");
    assert_eq!((sink_a.messages().len(), sink_b.messages().len()), (1, 1), "each server gets only its tenant's mail");

    let host = app.base.trim_start_matches("http://").split(':').next().unwrap().to_owned();
    for (got, id, from, to) in [
        (&got_a[0], &id_a, "hello@acme.test", "ann@example.com"),
        (&got_b[0], &id_b, "hello@globex.test", "bob@example.com"),
    ] {
        assert_eq!(got["mail_from"], from);
        assert!(got["from"].as_str().unwrap().contains(from), "{got}");
        assert_eq!(got["rcpt_tos"], json!([to]));
        assert_eq!(got["message_id"], format!("<{id}@{host}>"));
        assert_eq!(got["parts"], json!(["text/html", "text/plain"]), "both parts");
        assert!(got["html"].as_str().unwrap().contains("<html"), "{got}");
        assert!(got["text"].as_str().unwrap().contains("test email"), "{got}");
    }
    assert!(got_a[0]["subject"].as_str().unwrap().contains("Tenant acme"));

    let sent = eventually(WAIT, "acme's outbox row is sent", || async {
        let items = outbox(&app, "acme", "").await;
        (items.len() == 1 && items[0]["status"] == "sent").then_some(items)
    })
    .await;
    assert_eq!(sent[0]["id"], id_a.as_str());
    assert_eq!(sent[0]["kind"], "email");
    assert_eq!(sent[0]["attempts"], 1);
    assert_eq!(sent[0]["last_status_code"], 250);
    let metrics = app.metrics().await;
    assert_eq!(metric_value(&metrics, "gatehouse_outbox_sent_total{kind=\"email\"}"), Some(2.0), "{metrics}");
    assert!(metrics.contains("gatehouse_outbox_delivery_seconds_bucket"));
    app.stop().await;
}

#[tokio::test]
async fn smtp_outage_keeps_mail_pending_then_delivers_each_once() {
    if !require_python_module("aiosmtpd") {
        return;
    }
    let outage = HangUp::start().await;
    let port = outage.port;
    let app = spawn_with(|_| {}, Router::new()).await;
    app.create_tenant("acme").await;
    put_smtp(&app, "acme", &json!({ "host": "127.0.0.1", "port": port, "tls": "none", "from_email": "a@acme.test" }))
        .await;
    let mut ids = HashSet::new();
    for i in 0..5 {
        ids.insert(send_test(&app, "acme", &format!("user{i}@example.com")).await);
    }
    // Every attempt fails: every row stays pending with a growing attempt count and the error.
    eventually(WAIT, "two failed attempts on every row", || async {
        let items = outbox(&app, "acme", "").await;
        items.iter().all(|i| i["status"] == "pending" && i["attempts"].as_u64() >= Some(2)).then_some(())
    })
    .await;
    let item = &outbox(&app, "acme", "").await[0];
    assert!(item["last_error"].as_str().is_some_and(|e| !e.is_empty()), "{item}");
    let metrics = app.metrics().await;
    assert!(metric_value(&metrics, "gatehouse_outbox_failed_attempts_total{kind=\"email\"}").unwrap() >= 10.0);
    assert_eq!(metric_value(&metrics, "gatehouse_outbox_pending{kind=\"email\"}"), Some(5.0), "{metrics}");

    outage.stop().await;
    let sink = SmtpSink::start(SinkOptions { port: Some(port), ..SinkOptions::default() }).await;
    let got = sink.wait_for(5, Duration::from_secs(60)).await;
    eventually(WAIT, "all rows sent", || async {
        outbox(&app, "acme", "").await.iter().all(|i| i["status"] == "sent").then_some(())
    })
    .await;
    assert_eq!(app.run_outbox().await, 0, "nothing is left to send");
    let got_ids: Vec<String> = sink.messages().iter().map(|m| m["message_id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(got_ids.len(), 5, "none twice: {got_ids:?}");
    for id in &ids {
        assert!(got_ids.iter().any(|m| m.starts_with(&format!("<{id}@"))), "{id} delivered");
    }
    assert_eq!(got.len(), 5);
    app.stop().await;
}

/// 200 mails, the server SIGKILLed mid-stream, restarted: every mail arrives, and only rows caught in `sending`
/// at the kill may arrive twice.
#[tokio::test]
async fn sigkill_with_mail_in_flight_loses_nothing_and_duplicates_only_in_flight_rows() {
    if !require_python_module("aiosmtpd") {
        return;
    }
    let sink = SmtpSink::start(SinkOptions { delay_ms: 25, ..SinkOptions::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = BinServer::start(dir.path(), &[]).await;
    let client = reqwest::Client::new();
    let admin =
        |base: &str, method: Method, path: &str| client.request(method, format!("{base}{path}")).bearer_auth(TOKEN);
    let r = admin(&server.base, Method::POST, "/admin/api/v1/tenants")
        .json(&json!({ "slug": "acme", "name": "Acme" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = admin(&server.base, Method::PUT, "/admin/api/v1/tenants/acme/smtp")
        .json(&sink.settings("a@acme.test"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut ids = Vec::new();
    for i in 0..200 {
        let r = admin(&server.base, Method::POST, "/admin/api/v1/tenants/acme/emails/test")
            .json(&json!({ "to": format!("u{i}@example.com") }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        ids.push(r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    }
    sink.wait_for(60, WAIT).await;
    server.child.kill().unwrap();
    server.child.wait().unwrap();

    let db = rusqlite::Connection::open(dir.path().join("data/tenants/acme.db")).unwrap();
    let counts: HashMap<String, i64> = db
        .prepare("SELECT status, COUNT(*) FROM outbox GROUP BY status")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    drop(db);
    let in_flight = counts.get("sending").copied().unwrap_or(0);
    assert!(counts.get("pending").copied().unwrap_or(0) > 0, "the kill left work to do: {counts:?}");
    assert!(in_flight <= 16, "in-flight rows are bounded by tenants x per-tenant workers: {counts:?}");

    let server = BinServer::start(dir.path(), &[]).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let unique = loop {
        let unique: HashSet<String> =
            sink.messages().iter().map(|m| m["message_id"].as_str().unwrap().to_owned()).collect();
        if unique.len() >= 200 {
            break unique;
        }
        assert!(std::time::Instant::now() < deadline, "only {} of 200 arrived", unique.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // No row pending or mid-send: every delivery, a resend included, is over before its row is marked sent.
    let rows = |status: &'static str| {
        let path = format!("/admin/api/v1/tenants/acme/outbox?limit=1&status={status}");
        let request = admin(&server.base, Method::GET, &path);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap()["items"].as_array().unwrap().len() }
    };
    eventually(WAIT, "every row sent", || async { (rows("pending").await + rows("sending").await == 0).then_some(()) })
        .await;
    let total = sink.messages().len() as i64;
    for id in &ids {
        assert!(unique.iter().any(|m| m.starts_with(&format!("<{id}@"))), "{id} was delivered");
    }
    let duplicates = total - 200;
    assert!(duplicates <= in_flight, "{duplicates} duplicates but only {in_flight} rows were mid-send at the kill");
    eprintln!("sigkill test: {in_flight} rows in flight at the kill, {duplicates} delivered twice");
}

#[tokio::test]
async fn smtp_password_is_never_shown_logged_or_stored_in_clear() {
    if !require_python_module("aiosmtpd") {
        return;
    }
    const PASSWORD: &str = "Pw-9f8e7d6c5b4a-never-in-clear";
    let sink =
        SmtpSink::start(SinkOptions { auth: Some(("mailer".into(), PASSWORD.into())), ..SinkOptions::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let server = BinServer::start(dir.path(), &[("LOG_LEVEL", "debug")]).await;
    let client = reqwest::Client::new();
    let admin =
        |method: Method, path: &str| client.request(method, format!("{}{path}", server.base)).bearer_auth(TOKEN);
    assert_eq!(
        admin(Method::POST, "/admin/api/v1/tenants")
            .json(&json!({"slug": "acme", "name": "Acme"}))
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
    let mut body = sink.settings("a@acme.test");
    body["username"] = json!("mailer");
    body["password"] = json!(PASSWORD);
    let mut texts = Vec::new();
    let r = admin(Method::PUT, "/admin/api/v1/tenants/acme/smtp").json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    texts.push(r.text().await.unwrap());
    let r = admin(Method::GET, "/admin/api/v1/tenants/acme/smtp").send().await.unwrap();
    let view: Value = r.json().await.unwrap();
    assert_eq!(view["password_set"], true);
    assert_eq!(view["username"], "mailer");
    texts.push(view.to_string());
    // Saving again without a password keeps the stored one.
    body.as_object_mut().unwrap().remove("password");
    body["from_name"] = json!("Acme Mail");
    let r = admin(Method::PUT, "/admin/api/v1/tenants/acme/smtp").json(&body).send().await.unwrap();
    texts.push(r.text().await.unwrap());

    let r = admin(Method::POST, "/admin/api/v1/tenants/acme/emails/test")
        .json(&json!({"to": "x@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let got = sink.wait_for(1, WAIT).await;
    assert_eq!(got[0]["auth_user"], "mailer", "the server authenticated with the decrypted password");
    assert!(got[0]["from"].as_str().unwrap().contains("Acme Mail"));
    texts.push(admin(Method::GET, "/admin/api/v1/tenants/acme/outbox").send().await.unwrap().text().await.unwrap());
    texts.push(admin(Method::GET, "/admin/api/v1/tenants/acme").send().await.unwrap().text().await.unwrap());
    for text in &texts {
        assert!(!text.contains(PASSWORD), "an API response shows the password: {text}");
    }
    drop(server);
    let mut files = Vec::new();
    let mut stack = vec![dir.path().to_path_buf()];
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path).unwrap() {
            let entry = entry.unwrap().path();
            if entry.is_dir() { stack.push(entry) } else { files.push(entry) }
        }
    }
    assert!(files.iter().any(|f| f.ends_with("control.db")) && files.iter().any(|f| f.ends_with("gatehouse.log")));
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !bytes.windows(PASSWORD.len()).any(|w| w == PASSWORD.as_bytes()),
            "{} holds the SMTP password in clear",
            file.display()
        );
    }
}

#[tokio::test]
async fn without_a_transport_mail_lands_in_the_dev_mailbox() {
    let app = spawn_with(|_| {}, Router::new()).await;
    app.create_tenant("acme").await;
    let view: Value =
        app.admin(Method::GET, "/admin/api/v1/tenants/acme/smtp").send().await.unwrap().json().await.unwrap();
    assert_eq!((view["configured"].as_bool(), view["route"].as_str()), (Some(false), Some("dev_mailbox")));
    let id = send_test(&app, "acme", "ann@example.com").await;
    let items = eventually(WAIT, "the mail in the dev mailbox", || async {
        let r = app.admin(Method::GET, "/admin/api/v1/tenants/acme/mailbox").send().await.unwrap();
        let body: Value = r.json().await.unwrap();
        let items = body["items"].as_array().unwrap().clone();
        (!items.is_empty()).then_some(items)
    })
    .await;
    assert_eq!(items[0]["id"], id.as_str());
    assert_eq!(items[0]["to"], "ann@example.com");
    assert!(items[0]["html"].as_str().unwrap().contains("Tenant acme"));
    assert!(items[0]["text"].as_str().unwrap().contains("Tenant acme"));
    assert!(items[0]["message_id"].as_str().unwrap().starts_with(&format!("<{id}@")));

    // Bad input is refused with a clear error and queues nothing.
    let r = app
        .admin(Method::POST, "/admin/api/v1/tenants/acme/emails/test")
        .json(&json!({ "to": "not an address" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "validation_failed");
    let r = app
        .admin(Method::PUT, "/admin/api/v1/tenants/acme/smtp")
        .json(&json!({ "host": "bad host", "port": 25, "tls": "none", "from_email": "a@b.c" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(outbox(&app, "acme", "").await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn dev_mode_keeps_mail_even_with_smtp_settings() {
    let app = spawn_with(|c| c.mail.mode = gatehouse::config::MailMode::Dev, Router::new()).await;
    app.create_tenant("acme").await;
    let view = put_smtp(
        &app,
        "acme",
        &json!({ "host": "127.0.0.1", "port": free_port(), "tls": "none", "from_email": "a@acme.test" }),
    )
    .await;
    assert_eq!(view["route"], "dev_mailbox");
    send_test(&app, "acme", "ann@example.com").await;
    eventually(WAIT, "the mail in the dev mailbox", || async {
        let body: Value =
            app.admin(Method::GET, "/admin/api/v1/tenants/acme/mailbox").send().await.unwrap().json().await.unwrap();
        (body["items"].as_array().unwrap().len() == 1).then_some(())
    })
    .await;
    // The row is marked sent just after the mail lands in the mailbox.
    eventually(WAIT, "the outbox row marked sent", || async {
        (outbox(&app, "acme", "&status=sent").await.len() == 1).then_some(())
    })
    .await;
    app.stop().await;
}

/// With thousands of idle tenants, the dispatcher opens only the file of the one tenant with queued mail. (2,000:
/// an empty tenant file is ~570 KiB, one page per table and index, so 10,000 took 5.7 GB of the CI disk.)
#[tokio::test]
async fn idle_tenants_are_not_opened_by_the_dispatcher() {
    const TENANTS: usize = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_in(dir.path(), |_| {}, Router::new()).await.unwrap();
    let app = std::sync::Arc::new(app);
    let mut creators = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let app = app.clone();
        creators.spawn(async move {
            for i in (worker..TENANTS).step_by(8) {
                app.create_tenant(&format!("idle-{i:05}")).await;
            }
        });
    }
    while let Some(done) = creators.join_next().await {
        done.unwrap();
    }
    let app = std::sync::Arc::into_inner(app).unwrap();
    app.create_tenant("busy").await;
    let outage = HangUp::start().await;
    put_smtp(
        &app,
        "busy",
        &json!({ "host": "127.0.0.1", "port": outage.port, "tls": "none", "from_email": "a@busy.test" }),
    )
    .await;
    send_test(&app, "busy", "ann@example.com").await;
    app.stop().await;

    let app = spawn_in(dir.path(), |_| {}, Router::new()).await.unwrap();
    // The start-up scan finds the busy tenant's pending mail and the dispatcher tries it (the server hangs up).
    let pools = eventually(WAIT, "a new delivery attempt after the restart", || async {
        let metrics = app.metrics().await;
        let failed = metric_value(&metrics, "gatehouse_outbox_failed_attempts_total{kind=\"email\"}").unwrap_or(0.0);
        (failed >= 1.0).then(|| metric_value(&metrics, "gatehouse_tenant_pools_open").unwrap())
    })
    .await;
    assert_eq!(pools, 1.0, "only the busy tenant's file is open");
    // A dispatcher pass (the retry may or may not be due yet) opens no other tenant.
    app.run_outbox().await;
    let metrics = app.metrics().await;
    assert_eq!(metric_value(&metrics, "gatehouse_tenant_pools_open"), Some(1.0));
    assert_eq!(metric_value(&metrics, "gatehouse_outbox_pending{kind=\"email\"}"), Some(1.0));
    app.stop().await;
}

#[tokio::test]
async fn shutdown_finishes_a_send_in_flight() {
    if !require_python_module("aiosmtpd") {
        return;
    }
    let sink = SmtpSink::start(SinkOptions { delay_ms: 1500, ..SinkOptions::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_in(dir.path(), |_| {}, Router::new()).await.unwrap();
    app.create_tenant("acme").await;
    put_smtp(&app, "acme", &sink.settings("a@acme.test")).await;
    send_test(&app, "acme", "ann@example.com").await;
    eventually(WAIT, "the row mid-send", || async {
        (outbox(&app, "acme", "&status=sending").await.len() == 1).then_some(())
    })
    .await;
    app.stop().await;
    assert_eq!(sink.messages().len(), 1, "the send in flight completed before the server stopped");
    let db = rusqlite::Connection::open(dir.path().join("tenants/acme.db")).unwrap();
    let status: String = db.query_row("SELECT status FROM outbox", [], |r| r.get(0)).unwrap();
    assert_eq!(status, "sent");
}
