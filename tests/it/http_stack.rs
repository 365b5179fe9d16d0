//! The middleware stack and ops endpoints: request ids, error shapes, limits, panic recovery, headers, metrics.

use axum::Router;
use axum::routing::get;
use reqwest::Method;
use serde_json::Value;

use crate::support::{metric_value, spawn_app, spawn_with};

async fn error_code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("JSON error body");
    (status, body["error"]["code"].as_str().expect("error.code").to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness() {
    let app = spawn_app().await;
    assert_eq!(app.client.get(app.url("/healthz")).send().await.unwrap().status(), 200);
    let ready: Value = app.client.get(app.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["status"], "ready");

    // An unwritable data dir makes the node unready, with the failed check named.
    use std::os::unix::fs::PermissionsExt;
    let original = std::fs::metadata(&app.data_dir).unwrap().permissions();
    std::fs::set_permissions(&app.data_dir, std::fs::Permissions::from_mode(0o500)).unwrap();
    let probe = app.data_dir.join("probe-write-test");
    let writable_anyway = std::fs::write(&probe, b"x").is_ok(); // root ignores permissions
    let _ = std::fs::remove_file(&probe);
    if !writable_anyway {
        let r = app.client.get(app.url("/readyz")).send().await.unwrap();
        assert_eq!(r.status(), 503);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_ready");
        assert!(body["error"]["message"].as_str().unwrap().contains("data dir"));
    }
    std::fs::set_permissions(&app.data_dir, original).unwrap();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_echoed_or_generated() {
    let app = spawn_app().await;
    let r = app.client.get(app.url("/healthz")).header("x-request-id", "abc-123").send().await.unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    let r = app.client.get(app.url("/healthz")).header("x-request-id", "bad id <script>").send().await.unwrap();
    let generated = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(generated.len(), 32);
    assert_ne!(generated, "bad id <script>");
    let other = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_ne!(other.headers()["x-request-id"].to_str().unwrap(), generated);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_one_shape() {
    let app = spawn_with(|c| c.max_body_bytes = 4096, Router::new()).await;
    assert_eq!(
        error_code(app.admin(Method::GET, "/admin/api/v1/nope").send().await.unwrap()).await,
        (404, "not_found".into())
    );
    assert_eq!(
        error_code(app.client.get(app.url("/t/acme/api/v1/nope")).send().await.unwrap()).await,
        (404, "not_found".into())
    );
    assert_eq!(
        error_code(app.client.get(app.url("/t/nobody/api/v1/tenant")).send().await.unwrap()).await,
        (404, "tenant_not_found".into())
    );
    let malformed = app
        .admin(Method::POST, "/admin/api/v1/tenants")
        .header("content-type", "application/json")
        .body("{\"slug\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(malformed).await, (400, "bad_request".into()));
    let wrong_type = app
        .admin(Method::POST, "/admin/api/v1/tenants")
        .header("content-type", "application/json")
        .body("{\"slug\": 5, \"name\": \"x\"}")
        .send()
        .await
        .unwrap();
    let (status, code) = error_code(wrong_type).await;
    assert_eq!((status, code.as_str()), (400, "bad_request"));
    let big = format!("{{\"slug\":\"big\",\"name\":\"{}\"}}", "x".repeat(10_000));
    let too_large = app
        .admin(Method::POST, "/admin/api/v1/tenants")
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(too_large).await, (413, "payload_too_large".into()));
    // Without a Content-Length (chunked), the limit still holds while reading.
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut request = format!(
        "POST /admin/api/v1/tenants HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        crate::support::TOKEN
    );
    for chunk in big.as_bytes().chunks(1000) {
        request.push_str(&format!("{:x}\r\n{}\r\n", chunk.len(), std::str::from_utf8(chunk).unwrap()));
    }
    request.push_str("0\r\n\r\n");
    let answer = raw_http(&addr, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");
    let wrong_method = app.admin(Method::PUT, "/admin/api/v1/tenants").send().await.unwrap();
    assert_eq!(error_code(wrong_method).await, (405, "method_not_allowed".into()));
    app.stop().await;
}

/// Sends raw bytes over one connection and reads the whole answer.
async fn raw_http(addr: &str, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panics_become_500_and_the_server_lives() {
    let extra = Router::new().route(
        "/admin/api/v1/test-panic",
        get(|| async {
            if std::hint::black_box(true) {
                panic!("boom for the test");
            }
            "unreachable"
        }),
    );
    let app = spawn_with(|_| {}, extra).await;
    let r = app.client.get(app.url("/admin/api/v1/test-panic")).header("x-request-id", "panic-1").send().await.unwrap();
    assert_eq!(r.headers()["x-request-id"], "panic-1");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff", "a panic's answer gets the security headers");
    let (status, code) = error_code(r).await;
    assert_eq!((status, code.as_str()), (500, "internal"));
    // The panicked request left the in-flight gauge (only the scrape itself is in flight) and was counted.
    let text = app.metrics().await;
    assert_eq!(metric_value(&text, "http_requests_in_flight "), Some(1.0), "{text}");
    let counted = r#"http_requests_total{method="GET",route="/admin/api/v1/test-panic",status="500"}"#;
    assert_eq!(metric_value(&text, counted), Some(1.0), "{text}");
    assert_eq!(app.client.get(app.url("/healthz")).send().await.unwrap().status(), 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_requests_time_out() {
    let extra = Router::new().route(
        "/admin/api/v1/test-slow",
        get(|| async {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            "late"
        }),
    );
    let app = spawn_with(|c| c.request_timeout = std::time::Duration::from_millis(200), extra).await;
    let (status, code) = error_code(app.client.get(app.url("/admin/api/v1/test-slow")).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (503, "timeout"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_headers() {
    let app = spawn_with(|c| c.public_url = "https://id.example.com".into(), Router::new()).await;
    let api = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(api.headers()["x-content-type-options"], "nosniff");
    assert!(api.headers()["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    assert!(api.headers()["strict-transport-security"].to_str().unwrap().contains("max-age="));
    let page = app.client.get(app.url("/admin/login")).send().await.unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(page.headers()["set-cookie"].to_str().unwrap().contains("Secure"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_use_route_templates() {
    let app = spawn_app().await;
    app.create_tenant("metered").await;
    for _ in 0..3 {
        app.client.get(app.url("/t/metered/api/v1/tenant")).send().await.unwrap();
    }
    app.client.get(app.url("/t/metered/api/v1/missing")).send().await.unwrap();
    let text = app.metrics().await;
    for series in [
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "http_requests_in_flight",
        "gatehouse_tenant_pools_open",
        "gatehouse_tenant_pool_connections_in_use",
        "gatehouse_tenant_pool_connections ",
        "gatehouse_sqlite_heap_bytes",
        "process_resident_memory_bytes",
        "gatehouse_cache_hits_total",
        "gatehouse_cache_misses_total",
        "gatehouse_tenants_total",
        "gatehouse_build_info",
        "gatehouse_raft_state 3",
        "gatehouse_raft_term",
        "gatehouse_raft_last_applied",
        "gatehouse_raft_commit_latency_seconds",
    ] {
        assert!(text.lines().any(|l| l.starts_with(series)), "missing {series}");
    }
    let templated = r#"http_requests_total{method="GET",route="/t/{slug}/api/v1/tenant",status="200"}"#;
    assert_eq!(metric_value(&text, templated), Some(3.0), "{text}");
    assert!(!text.contains("route=\"/t/metered"), "raw paths never become labels");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_token_guards_metrics_when_set() {
    const METRICS_TOKEN: &str = "metrics-token-0123456789abcdefghij";
    let app =
        spawn_with(|c| c.metrics_token = Some(gatehouse::config::Secret::new(METRICS_TOKEN)), Router::new()).await;
    let url = app.url("/metrics");
    let r = app.client.get(&url).send().await.unwrap();
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert_eq!(error_code(r).await, (401, "unauthorized".into()));
    let wrong = app.client.get(&url).bearer_auth("metrics-token-0123456789abcdefghiX").send().await.unwrap();
    assert_eq!(error_code(wrong).await, (401, "unauthorized".into()));
    let admin_token = app.client.get(&url).bearer_auth(crate::support::TOKEN).send().await.unwrap();
    assert_eq!(admin_token.status(), 401, "an operator API token is not the metrics token");
    let right = app.client.get(&url).bearer_auth(METRICS_TOKEN).send().await.unwrap();
    assert_eq!(right.status(), 200);
    assert!(right.text().await.unwrap().contains("gatehouse_build_info"));
    app.stop().await;

    // Without the setting, /metrics stays open.
    let app = spawn_app().await;
    let open = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(open.status(), 200);
    assert!(open.text().await.unwrap().contains("gatehouse_build_info"));
    app.stop().await;
}
