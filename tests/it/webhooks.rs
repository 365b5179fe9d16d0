//! Webhooks end to end: a receiver in the test verifies signatures and payloads; retries after a 500, dead
//! after a silent receiver, redelivery and retry, fan-out by subscription, and the SSRF guard.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;

use gatehouse::email::outbox;
use gatehouse::http::extract::TenantCtx;
use gatehouse::webhooks::events::Event;

use crate::support::{TestApp, eventually, metric_value, spawn_with};

const WAIT: Duration = Duration::from_secs(30);

/// How the receiver answers: each request takes the next planned answer; the last one repeats.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Status(u16),
    Silent,
}

#[derive(Default)]
struct Received {
    requests: Vec<(HeaderMap, String)>,
    plan: Vec<Answer>,
}

struct Receiver {
    url: String,
    state: Arc<Mutex<Received>>,
}

impl Receiver {
    async fn start(plan: Vec<Answer>) -> Receiver {
        let state = Arc::new(Mutex::new(Received { requests: Vec::new(), plan }));
        let app = Router::new().route("/hook", post(receive)).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, state }
    }

    fn requests(&self) -> Vec<(HeaderMap, String)> {
        self.state.lock().unwrap().requests.clone()
    }

    fn set_plan(&self, plan: Vec<Answer>) {
        self.state.lock().unwrap().plan = plan;
    }
}

async fn receive(State(state): State<Arc<Mutex<Received>>>, headers: HeaderMap, body: String) -> StatusCode {
    let answer = {
        let mut s = state.lock().unwrap();
        s.requests.push((headers, body));
        if s.plan.len() > 1 { s.plan.remove(0) } else { s.plan.first().copied().unwrap_or(Answer::Status(200)) }
    };
    match answer {
        Answer::Status(code) => StatusCode::from_u16(code).unwrap(),
        Answer::Silent => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            StatusCode::OK
        }
    }
}

/// Checks `Gatehouse-Signature` the way a receiver would (see the README).
fn verify(secret: &str, headers: &HeaderMap, body: &str) -> bool {
    let Some(sig) = headers.get("gatehouse-signature").and_then(|v| v.to_str().ok()) else { return false };
    let Some((t, v1)) = sig.split_once(',') else { return false };
    let (Some(t), Some(v1)) = (t.strip_prefix("t="), v1.strip_prefix("v1=")) else { return false };
    let Ok(expected) =
        (0..v1.len()).step_by(2).map(|i| u8::from_str_radix(&v1[i..i + 2], 16)).collect::<Result<Vec<u8>, _>>()
    else {
        return false;
    };
    let fresh = t.parse::<i64>().is_ok_and(|t| (gatehouse::now_unix() - t).abs() < 300);
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    fresh && mac.verify_slice(&expected).is_ok()
}

async fn create_webhook(app: &TestApp, slug: &str, url: &str, events: &[&str]) -> (String, String) {
    let r = app
        .admin(Method::POST, &format!("/admin/api/v1/tenants/{slug}/webhooks"))
        .json(&json!({ "url": url, "events": events, "description": "test receiver" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    (body["id"].as_str().unwrap().to_owned(), body["secret"].as_str().unwrap().to_owned())
}

async fn deliveries(app: &TestApp, slug: &str, webhook: &str) -> Vec<Value> {
    let r = app
        .admin(Method::GET, &format!("/admin/api/v1/tenants/{slug}/webhooks/{webhook}/deliveries"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["items"].as_array().unwrap().clone()
}

/// A test-only route that emits `user.created` inside a tenant transaction, the way identity will.
fn emit_route() -> Router<gatehouse::AppState> {
    async fn emit(ctx: TenantCtx) -> Result<StatusCode, gatehouse::Error> {
        ctx.db
            .write(|tx| {
                outbox::enqueue_event(tx, Event::UserCreated { user_id: "u-1".into(), email: "ann@example.com".into() })
            })
            .await?;
        Ok(StatusCode::ACCEPTED)
    }
    Router::new().route("/t/{slug}/test/emit", post(emit))
}

#[tokio::test]
async fn deliveries_are_signed_and_fan_out_by_subscription() {
    let receiver = Receiver::start(vec![Answer::Status(204)]).await;
    let other = Receiver::start(vec![Answer::Status(200)]).await;
    let app = spawn_with(|_| {}, emit_route()).await;
    app.create_tenant("acme").await;
    let (hook, secret) = create_webhook(&app, "acme", &receiver.url, &["user.created"]).await;
    let (other_hook, _) = create_webhook(&app, "acme", &other.url, &["user.deleted"]).await;
    assert!(secret.starts_with("whsec_"));
    let listed: Value =
        app.admin(Method::GET, "/admin/api/v1/tenants/acme/webhooks").send().await.unwrap().json().await.unwrap();
    assert!(!listed.to_string().contains(&secret), "the secret is shown once only");
    assert!(listed["event_types"].as_array().unwrap().iter().any(|e| e["type"] == "user.created"));

    assert_eq!(app.client.post(app.url("/t/acme/test/emit")).send().await.unwrap().status(), 202);
    let r = app.admin(Method::POST, &format!("/admin/api/v1/tenants/acme/webhooks/{hook}/ping")).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let requests = eventually(WAIT, "two deliveries", || async {
        let requests = receiver.requests();
        (requests.len() >= 2).then_some(requests)
    })
    .await;
    let mut types = Vec::new();
    for (headers, body) in &requests {
        assert!(verify(&secret, headers, body), "signature verifies: {headers:?}");
        assert!(!verify("whsec_wrong", headers, body));
        let event: Value = serde_json::from_str(body).unwrap();
        assert_eq!(event["tenant"], "acme");
        assert_eq!(headers["gatehouse-event"], event["type"].as_str().unwrap());
        assert!(event["id"].as_str().is_some() && event["created_at"].as_str().is_some());
        assert_eq!(headers["content-type"], "application/json");
        types.push(event["type"].as_str().unwrap().to_owned());
        if event["type"] == "user.created" {
            assert_eq!(event["data"], json!({ "user_id": "u-1", "email": "ann@example.com" }));
        } else {
            assert_eq!(event["data"], json!({ "webhook_id": hook }));
        }
    }
    types.sort();
    assert_eq!(types, ["user.created", "webhook.ping"]);
    let ids: Vec<String> = requests.iter().map(|(h, _)| h["gatehouse-delivery"].to_str().unwrap().to_owned()).collect();
    let listed = eventually(WAIT, "both deliveries sent", || async {
        let items = deliveries(&app, "acme", &hook).await;
        items.iter().all(|d| d["status"] == "sent").then_some(items)
    })
    .await;
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|d| ids.contains(&d["id"].as_str().unwrap().to_owned()) && d["last_status_code"] == 204));
    assert!(other.requests().is_empty(), "a webhook not subscribed to user.created gets nothing");
    assert!(deliveries(&app, "acme", &other_hook).await.is_empty());

    // Disabled webhooks get no new events; deleting one answers 204 and then 404.
    let r = app
        .admin(Method::PATCH, &format!("/admin/api/v1/tenants/acme/webhooks/{hook}"))
        .json(&json!({ "enabled": false, "events": ["*"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let patched: Value = r.json().await.unwrap();
    assert_eq!((patched["enabled"].as_bool(), patched["events"].clone()), (Some(false), json!(["*"])));
    assert_eq!(app.client.post(app.url("/t/acme/test/emit")).send().await.unwrap().status(), 202);
    assert_eq!(deliveries(&app, "acme", &hook).await.len(), 2);
    let path = format!("/admin/api/v1/tenants/acme/webhooks/{other_hook}");
    assert_eq!(app.admin(Method::DELETE, &path).send().await.unwrap().status(), 204);
    assert_eq!(app.admin(Method::GET, &path).send().await.unwrap().status(), 404);
    app.stop().await;
}

#[tokio::test]
async fn a_failing_receiver_gets_the_delivery_on_retry() {
    let receiver = Receiver::start(vec![Answer::Status(500), Answer::Status(200)]).await;
    let app = spawn_with(|_| {}, Router::new()).await;
    app.create_tenant("acme").await;
    let (hook, secret) = create_webhook(&app, "acme", &receiver.url, &["*"]).await;
    app.admin(Method::POST, &format!("/admin/api/v1/tenants/acme/webhooks/{hook}/ping")).send().await.unwrap();
    let items = eventually(WAIT, "the delivery sent on its second attempt", || async {
        let items = deliveries(&app, "acme", &hook).await;
        (items.first().is_some_and(|d| d["status"] == "sent")).then_some(items)
    })
    .await;
    assert_eq!(items[0]["attempts"], 2);
    assert_eq!(items[0]["last_status_code"], 200);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].1, requests[1].1, "a retry sends the same body");
    assert_eq!(requests[0].0["gatehouse-delivery"], requests[1].0["gatehouse-delivery"]);
    assert!(requests.iter().all(|(h, b)| verify(&secret, h, b)));
    let metrics = app.metrics().await;
    assert_eq!(metric_value(&metrics, "gatehouse_outbox_failed_attempts_total{kind=\"webhook\"}"), Some(1.0));
    assert_eq!(metric_value(&metrics, "gatehouse_outbox_sent_total{kind=\"webhook\"}"), Some(1.0));
    app.stop().await;
}

#[tokio::test]
async fn a_silent_receiver_ends_dead_and_can_be_redelivered() {
    let receiver = Receiver::start(vec![Answer::Silent]).await;
    let app = spawn_with(
        |c| {
            c.outbox.max_attempts = 2;
            c.webhook_timeout = Duration::from_secs(1);
        },
        Router::new(),
    )
    .await;
    app.create_tenant("acme").await;
    let (hook, _) = create_webhook(&app, "acme", &receiver.url, &["webhook.ping"]).await;
    app.admin(Method::POST, &format!("/admin/api/v1/tenants/acme/webhooks/{hook}/ping")).send().await.unwrap();
    let dead = eventually(WAIT, "the delivery dead after 2 attempts", || async {
        let items = deliveries(&app, "acme", &hook).await;
        items.first().filter(|d| d["status"] == "dead").cloned()
    })
    .await;
    assert_eq!(dead["attempts"], 2);
    assert!(dead["last_error"].as_str().unwrap().contains("did not answer in time"), "{dead}");
    let metrics = app.metrics().await;
    assert_eq!(metric_value(&metrics, "gatehouse_outbox_dead_total{kind=\"webhook\"}"), Some(1.0));
    // The dead-letter view lists it.
    let r = app.admin(Method::GET, "/admin/api/v1/tenants/acme/outbox?status=dead&kind=webhook").send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["items"][0]["id"], dead["id"]);

    receiver.set_plan(vec![Answer::Status(200)]);
    let dead_id = dead["id"].as_str().unwrap();
    let r = app
        .admin(Method::POST, &format!("/admin/api/v1/tenants/acme/webhooks/{hook}/deliveries/{dead_id}/redeliver"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let new_id = r.json::<Value>().await.unwrap()["delivery_id"].as_str().unwrap().to_owned();
    assert_ne!(new_id, dead_id);
    eventually(WAIT, "the redelivery sent", || async {
        let items = deliveries(&app, "acme", &hook).await;
        items.iter().any(|d| d["id"] == new_id.as_str() && d["status"] == "sent").then_some(())
    })
    .await;
    let bodies: Vec<Value> = receiver.requests().iter().map(|(_, b)| serde_json::from_str(b).unwrap()).collect();
    assert!(bodies.iter().all(|b| b["id"] == bodies[0]["id"]), "a redelivery carries the same event id");

    // The outbox retry moves the dead row itself back to pending; only dead rows can be retried.
    let r =
        app.admin(Method::POST, &format!("/admin/api/v1/tenants/acme/outbox/{dead_id}/retry")).send().await.unwrap();
    assert_eq!(r.status(), 202);
    eventually(WAIT, "the retried row sent", || async {
        let r = app.admin(Method::GET, &format!("/admin/api/v1/tenants/acme/outbox/{dead_id}")).send().await.unwrap();
        (r.json::<Value>().await.unwrap()["status"] == "sent").then_some(())
    })
    .await;
    let r =
        app.admin(Method::POST, &format!("/admin/api/v1/tenants/acme/outbox/{dead_id}/retry")).send().await.unwrap();
    assert_eq!(r.status(), 409);
    app.stop().await;
}

#[tokio::test]
async fn private_destinations_are_refused_without_the_allow_flag() {
    let app = spawn_with(|c| c.webhook_allow_private = false, Router::new()).await;
    app.create_tenant("acme").await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:8080/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://10.0.0.5/hook",
        "ftp://example.com/hook",
    ] {
        let r = app
            .admin(Method::POST, "/admin/api/v1/tenants/acme/webhooks")
            .json(&json!({ "url": url, "events": ["*"] }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{url}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "validation_failed");
    }
    let r = app
        .admin(Method::POST, "/admin/api/v1/tenants/acme/webhooks")
        .json(&json!({ "url": "https://hooks.example.com/x", "events": ["user.nope"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "unknown event types are refused");
    let listed: Value =
        app.admin(Method::GET, "/admin/api/v1/tenants/acme/webhooks").send().await.unwrap().json().await.unwrap();
    assert!(listed["items"].as_array().unwrap().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_dead_email_raises_email_dead_for_subscribers() {
    let receiver = Receiver::start(vec![Answer::Status(200)]).await;
    let app = spawn_with(|c| c.outbox.max_attempts = 2, Router::new()).await;
    app.create_tenant("acme").await;
    let (_, secret) = create_webhook(&app, "acme", &receiver.url, &["email.dead"]).await;
    let down = crate::support::HangUp::start().await;
    let closed = down.port;
    let r = app
        .admin(Method::PUT, "/admin/api/v1/tenants/acme/smtp")
        .json(&json!({ "host": "127.0.0.1", "port": closed, "tls": "none", "from_email": "a@acme.test" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .admin(Method::POST, "/admin/api/v1/tenants/acme/emails/test")
        .json(&json!({ "to": "ann@example.com" }))
        .send()
        .await
        .unwrap();
    let mail_id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let (headers, body) =
        eventually(WAIT, "the email.dead event", || async { receiver.requests().into_iter().next() }).await;
    assert!(verify(&secret, &headers, &body));
    let event: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(event["type"], "email.dead");
    assert_eq!(event["data"]["message_id"], mail_id.as_str());
    assert_eq!(event["data"]["to"], "ann@example.com");
    assert_eq!(event["data"]["attempts"], 2);
    app.stop().await;
}
