//! Tenant users through the admin API: create with the password policy and custom fields, search, update,
//! disable/enable, delete; each change audited (append-only) and raised as a webhook event; tenant scoping.

use std::time::Duration;

use axum::Router;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{PASSWORD, eventually, spawn_with};

const USERS: &str = "/admin/api/v1/tenants/acme/users";

#[tokio::test]
async fn admins_manage_users_with_audit_and_events() {
    let app = spawn_with(|_| {}, Router::new()).await;
    app.create_tenant("acme").await;
    app.create_tenant("other").await;
    let r = app
        .admin(Method::PATCH, "/admin/api/v1/tenants/acme")
        .json(&json!({"settings": {"custom_fields": [{"name": "plan", "type": "string", "required": true}]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Events go to a webhook; its deliveries list what was raised.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, Router::new().route("/hook", axum::routing::post(|| async { "ok" }))).await
    });
    let hook: Value = app
        .admin(Method::POST, "/admin/api/v1/tenants/acme/webhooks")
        .json(&json!({"url": hook_url, "events": ["user.created", "user.disabled", "user.deleted"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    // Bad input: a common password, a short one, a missing required field, an unknown field, a bad email.
    for (body, why) in [
        (json!({"email": "ann@example.com", "password": "qwertyuiop", "fields": {"plan": "pro"}}), "common"),
        (json!({"email": "ann@example.com", "password": "short", "fields": {"plan": "pro"}}), "length"),
        (json!({"email": "ann@example.com", "fields": {}}), "plan is required"),
        (json!({"email": "ann@example.com", "fields": {"plan": "pro", "x": 1}}), "unknown field"),
        (json!({"email": "not-an-email", "fields": {"plan": "pro"}}), "email"),
    ] {
        let (status, err) = app.json(Method::POST, USERS, Some(body)).await;
        assert_eq!(status, 400, "{why}");
        assert_eq!(err["error"]["code"], "validation_failed", "{why}");
        assert!(!err.to_string().contains("qwertyuiop"), "the password is not echoed");
    }
    let body = json!({"email": " Ann@Example.com ", "password": PASSWORD, "name": "Ann", "fields": {"plan": "pro"}});
    let (status, ann) = app.json(Method::POST, USERS, Some(body)).await;
    assert_eq!(status, 201, "{ann}");
    assert_eq!((ann["email"].as_str(), ann["has_password"].as_bool()), (Some("ann@example.com"), Some(true)));
    assert_eq!(ann["status"], "active");
    assert!(!ann.to_string().contains("argon2"), "no hash in the API");
    let (status, _) =
        app.json(Method::POST, USERS, Some(json!({"email": "ANN@example.com", "fields": {"plan": "x"}}))).await;
    assert_eq!(status, 409, "emails are unique case-insensitively");
    let (status, bob) =
        app.json(Method::POST, USERS, Some(json!({"email": "bob@example.com", "fields": {"plan": "free"}}))).await;
    assert_eq!(status, 201, "{bob}");
    assert_eq!(bob["has_password"], false);

    let list = |query: &'static str| {
        let app = &app;
        async move {
            let r = app.admin(Method::GET, &format!("/admin/api/v1/tenants/acme/users{query}")).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()["items"].as_array().unwrap().clone()
        }
    };
    assert_eq!(list("").await.len(), 2);
    let found = list("?q=ANN").await;
    assert_eq!((found.len(), found[0]["id"].clone()), (1, ann["id"].clone()));
    assert_eq!(list("?q=%25").await.len(), 0, "LIKE wildcards are matched literally");
    let page = list("?limit=1").await;
    assert_eq!(page.len(), 1);

    let id = ann["id"].as_str().unwrap();
    let user_path = format!("/admin/api/v1/tenants/acme/users/{id}");
    let r =
        app.admin(Method::PATCH, &user_path).json(&json!({"name": "", "email_verified": true})).send().await.unwrap();
    let patched: Value = r.json().await.unwrap();
    assert_eq!((patched["name"].clone(), patched["email_verified"].clone()), (Value::Null, json!(true)));
    let r = app.admin(Method::POST, &format!("{user_path}/disable")).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "disabled");
    assert_eq!(list("?status=disabled").await.len(), 1);
    let r = app.admin(Method::POST, &format!("{user_path}/enable")).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "active");
    assert_eq!(app.admin(Method::DELETE, &user_path).send().await.unwrap().status(), 204);
    assert_eq!(app.admin(Method::GET, &user_path).send().await.unwrap().status(), 404);

    // Tenant scoping: acme's user does not exist at other, and a token for other cannot reach acme.
    let r = app
        .admin(Method::GET, &format!("/admin/api/v1/tenants/other/users/{}", bob["id"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let token = app.create_token("other ops", "tenant:other").await;
    let r = app.client.get(app.url("/admin/api/v1/tenants/acme/users")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 403);

    // Events, in order of the changes: two creations, the disable, the delete.
    let hook_id = hook["id"].as_str().unwrap();
    let topics = eventually(Duration::from_secs(20), "four user events delivered", || async {
        let r = app
            .admin(Method::GET, &format!("/admin/api/v1/tenants/acme/webhooks/{hook_id}/deliveries"))
            .send()
            .await
            .unwrap();
        let items = r.json::<Value>().await.unwrap()["items"].as_array().unwrap().clone();
        (items.len() == 4 && items.iter().all(|d| d["status"] == "sent"))
            .then(|| items.iter().rev().map(|d| d["topic"].as_str().unwrap().to_owned()).collect::<Vec<_>>())
    })
    .await;
    assert_eq!(topics, ["user.created", "user.created", "user.disabled", "user.deleted"]);

    // The audit log has every change with its actor, and refuses edits.
    let db = rusqlite::Connection::open(app.data_dir.join("tenants/acme.db")).unwrap();
    let rows: Vec<(String, String, Option<String>)> = db
        .prepare("SELECT type, actor, ip FROM audit_log ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let kinds: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        kinds,
        ["user_created", "user_created", "user_updated", "user_disabled", "user_updated", "user_deleted"]
    );
    assert!(rows.iter().all(|r| r.1 == "token:bootstrap" && r.2.as_deref() == Some("127.0.0.1")), "{rows:?}");
    assert!(db.execute("UPDATE audit_log SET actor = 'x'", []).is_err());
    assert!(db.execute("DELETE FROM audit_log", []).is_err());
    drop(db);
    app.stop().await;
}
