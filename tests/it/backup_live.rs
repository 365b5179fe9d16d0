//! Restoring one tenant on a running server (`gatehouse restore tenant`, `POST /admin/api/v1/tenants/{slug}/restore`)
//! against real replicas in moto: to a point in time while another tenant keeps working, the old file archived,
//! the tenant replicating into a new incarnation whose replica restores as the live file; and the refusals (no
//! backups, no operator, no CSRF, bad points, unknown tenants), each leaving the tenant as it was.

use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::backup_restore::start;
use crate::backup_s3::{BUCKET, Moto, PREFIX, admin, assert_same, caught_up, roots, stop, tools, users};
use crate::support::{BinServer, TOKEN, binary};

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap()
}

async fn emails(server: &BinServer, slug: &str) -> Vec<String> {
    let (status, body) =
        admin(server, Method::GET, &format!("/admin/api/v1/tenants/{slug}/users?limit=200"), Value::Null).await;
    assert_eq!(status, 200, "{body}");
    let mut emails: Vec<String> =
        body["items"].as_array().unwrap().iter().map(|u| u["email"].as_str().unwrap().to_owned()).collect();
    emails.sort();
    emails
}

fn expected(tags: &[&str], n: usize) -> Vec<String> {
    let mut all: Vec<String> = tags.iter().flat_map(|t| (0..n).map(move |i| format!("{t}-{i}@example.com"))).collect();
    all.sort();
    all
}

/// `gatehouse restore ARGS` against the server (the CLI's admin API route), off the async runtime.
async fn restore_cli(server: &BinServer, args: &[&str]) -> (bool, String, String) {
    let (base, args): (String, Vec<String>) = (server.base.clone(), args.iter().map(|a| a.to_string()).collect());
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(binary())
            .arg("restore")
            .args(&args)
            .env("GATEHOUSE_URL", &base)
            .env("GATEHOUSE_TOKEN", TOKEN)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
    })
    .await
    .unwrap()
}

fn gatehouse_restore_db(cwd: &Path, moto: &Moto, root: &str, out: &Path) {
    let from = format!("s3://{BUCKET}/{PREFIX}/{root}");
    let done = moto.cli(cwd, &["restore", "db", "--from", &from, "-o"]).arg(out).output().unwrap();
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
}

fn user_count(db: &Path) -> i64 {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    conn.query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0)).unwrap()
}

fn tenant_root(data: &Path, slug: &str) -> String {
    roots(data).into_iter().find(|(db, _)| db == &format!("tenants/{slug}")).map(|(_, root)| root).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_tenant_restores_to_a_point_in_time_while_others_keep_working() {
    if !tools() {
        return;
    }
    let (moto, dir, server) = start(&["acme", "other"]).await;
    users(&server, "acme", "t1", 4).await;
    caught_up(&server).await;
    tokio::time::sleep(Duration::from_millis(2_600)).await;
    let between = now_rfc3339();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    users(&server, "acme", "t2", 4).await;
    caught_up(&server).await;
    let data = dir.path().join("data");
    let old_root = tenant_root(&data, "acme");

    // While acme is restored, the other tenant takes writes, and acme answers 200 or tenant_suspended only.
    let busy = {
        let base = server.base.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut seen = Vec::new();
            for i in 0..40 {
                let r = client
                    .post(format!("{base}/admin/api/v1/tenants/other/users"))
                    .bearer_auth(TOKEN)
                    .json(&json!({"email": format!("o-{i}@example.com"), "password": "correct horse battery"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201, "the other tenant keeps working");
                let r = client
                    .get(format!("{base}/admin/api/v1/tenants/acme/users"))
                    .bearer_auth(TOKEN)
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let body: Value = r.json().await.unwrap_or(Value::Null);
                assert!(
                    status == 200 || (status == 403 && body["error"]["code"] == "tenant_suspended"),
                    "{status} {body}"
                );
                seen.push(status);
            }
            seen
        })
    };
    let (ok, out, err) = restore_cli(&server, &["tenant", "acme", "--timestamp", &between, "--yes"]).await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("restored tenant acme") && out.contains("archive/acme-"), "{out}");
    busy.await.unwrap();
    assert_eq!(emails(&server, "acme").await, expected(&["t1"], 4), "exactly the users at that time");
    assert_eq!(emails(&server, "other").await.len(), 40);

    // The progress record says what happened; the replaced file is in the archive with every user it had.
    let (status, view) = admin(&server, Method::GET, "/admin/api/v1/tenants/acme/restore", Value::Null).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["phase"], "done", "{view}");
    assert_eq!(view["root"], old_root.as_str());
    let outcome = &view["outcome"];
    let archived = data.join(outcome["archived_to"].as_str().unwrap());
    assert_eq!(user_count(&archived), 8, "the archive holds the file as it was");

    // Writes go on, into the new incarnation's root (a fresh snapshot, never TXID 1 over the old chain).
    users(&server, "acme", "t3", 2).await;
    caught_up(&server).await;
    let new_root = tenant_root(&data, "acme");
    assert_eq!(new_root, format!("tenants/acme/{}", outcome["incarnation"].as_str().unwrap()));
    assert_ne!(new_root, old_root);
    // A second restore to the latest state of the new root changes nothing that matters.
    let (status, again) = admin(&server, Method::POST, "/admin/api/v1/tenants/acme/restore", json!({})).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["outcome"]["previous_incarnation"], outcome["incarnation"]);
    let mut now = expected(&["t1"], 4);
    now.extend(expected(&["t3"], 2));
    now.sort();
    assert_eq!(emails(&server, "acme").await, now, "the latest state: nothing lost");
    caught_up(&server).await;
    let latest_root = tenant_root(&data, "acme");
    stop(server);

    let live = data.join("tenants/acme.db");
    let restored = dir.path().join("new-root.db");
    gatehouse_restore_db(dir.path(), &moto, &latest_root, &restored);
    assert_same(&live, &restored);
    // The old root stays restorable, with the history it had.
    let old = dir.path().join("old-root.db");
    gatehouse_restore_db(dir.path(), &moto, &old_root, &old);
    assert_eq!(user_count(&old), 8);
}

#[tokio::test]
async fn a_live_restore_refuses_what_it_cannot_do_and_changes_nothing() {
    if !tools() {
        return;
    }
    let (_moto, dir, server) = start(&["acme", "beta"]).await;
    users(&server, "acme", "a", 3).await;
    caught_up(&server).await;
    let post = |body: Value| {
        let base = server.base.clone();
        async move {
            let r = reqwest::Client::new()
                .post(format!("{base}/admin/api/v1/tenants/acme/restore"))
                .bearer_auth(TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    for (body, status, code) in [
        (json!({"timestamp": "2001-01-01T00:00:00Z"}), 422, "no_restore_point"),
        (json!({"txid": 999_999}), 422, "no_restore_point"),
        (json!({"timestamp": "yesterday"}), 400, "validation_failed"),
        (json!({"timestamp": "2001-01-01T00:00:00Z", "txid": 3}), 400, "validation_failed"),
        (json!({"incarnation": "../../control"}), 400, "validation_failed"),
        (json!({"incarnation": "0190a0a0-0000-7000-8000-000000000000"}), 422, "no_restore_point"),
        (json!({"at": "now"}), 400, "bad_request"),
    ] {
        let (got, answer) = post(body.clone()).await;
        assert_eq!((got, answer["error"]["code"].as_str().unwrap_or("")), (status, code), "{body}: {answer}");
    }
    let (status, window) = post(json!({"timestamp": "2001-01-01T00:00:00Z"})).await;
    assert_eq!(status, 422);
    assert!(window["error"]["message"].as_str().unwrap().contains("outside the restore window"), "{window}");
    // Unknown tenant; a tenant-scoped token, even for its own tenant, and one of another tenant.
    let (status, body) = admin(&server, Method::POST, "/admin/api/v1/tenants/nobody/restore", json!({})).await;
    assert_eq!((status, body["error"]["code"].as_str().unwrap()), (404, "tenant_not_found"), "{body}");
    for scope in ["tenant:acme", "tenant:beta"] {
        let (_, made) =
            admin(&server, Method::POST, "/admin/api/v1/tokens", json!({"name": scope, "scope": scope})).await;
        let token = made["token"].as_str().unwrap();
        for method in [Method::POST, Method::GET] {
            let r = reqwest::Client::new()
                .request(method.clone(), format!("{}/admin/api/v1/tenants/acme/restore", server.base))
                .bearer_auth(token)
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 403, "{scope} {method}");
        }
    }
    // Nothing changed: same users, the same replica root, and the tenant answers.
    let data = dir.path().join("data");
    let root = tenant_root(&data, "acme");
    assert_eq!(emails(&server, "acme").await, expected(&["a"], 3));
    assert!(std::fs::read_dir(data.join("archive")).unwrap().next().is_none(), "nothing archived");
    let staged = std::fs::read_dir(data.join("restore")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(staged, 0, "nothing left staged");
    let (status, view) = admin(&server, Method::GET, "/admin/api/v1/tenants/acme/restore", Value::Null).await;
    assert_eq!(status, 200);
    assert_eq!(view["phase"], "failed", "{view}");
    assert_eq!(view["error"]["code"], "no_restore_point", "{view}");
    let (status, _) = admin(&server, Method::GET, "/admin/api/v1/tenants/beta/restore", Value::Null).await;
    assert_eq!(status, 404, "beta was never restored");
    users(&server, "acme", "b", 1).await;
    caught_up(&server).await;
    assert_eq!(tenant_root(&data, "acme"), root, "the same incarnation");
    stop(server);
}

#[tokio::test]
async fn without_backups_restores_status_and_snapshots_are_refused_and_a_session_needs_csrf() {
    let app = crate::admin_ui::app_with_operator().await;
    app.create_tenant("acme").await;
    let (status, body) = app.json(Method::POST, "/admin/api/v1/tenants/acme/restore", Some(json!({}))).await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str().unwrap()), (409, "backups_off"), "{body}");
    let ui = crate::admin_ui::signed_in(&app, crate::admin_ui::EMAIL).await;
    let r = ui.post(app.url("/admin/api/v1/tenants/acme/restore")).json(&json!({})).send().await.unwrap();
    assert_eq!(r.status(), 403, "a session without the CSRF header");
    let page = ui.get(app.url("/admin/tenants/acme")).send().await.unwrap().text().await.unwrap();
    let csrf = crate::identity::csrf_of(&page);
    let r = ui
        .post(app.url("/admin/api/v1/tenants/acme/restore"))
        .header("x-csrf-token", csrf)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409, "with it, the session reaches the check for backups");
    // The status and forced snapshots: operators only; without backups, backups_off.
    let (status, body) = app.json(Method::GET, "/admin/api/v1/backups", None).await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str().unwrap()), (409, "backups_off"), "{body}");
    let token = app.create_token("acme admin", "tenant:acme").await;
    for (method, path) in [
        (Method::GET, "/admin/api/v1/backups"),
        (Method::POST, "/admin/api/v1/backups/snapshot"),
        (Method::GET, "/admin/api/v1/tenants/acme/restore"),
    ] {
        let r = app
            .client
            .request(method.clone(), app.url(path))
            .bearer_auth(&token)
            .json(&json!({"db": "tenants/acme"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{method} {path} with a tenant-scoped token");
    }
    let (status, body) =
        app.json(Method::POST, "/admin/api/v1/backups/snapshot", Some(json!({"db": "../control"}))).await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str().unwrap()), (400, "validation_failed"), "{body}");
    app.stop().await;
}
