//! The real binary: start on defaults, fail fast on bad config, graceful shutdown, and the CLI.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{BinServer, TOKEN, binary};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_on_defaults_in_an_empty_dir() {
    let dir = tempfile::tempdir().unwrap();
    let server = BinServer::start(dir.path(), &[]).await;
    let data = dir.path().join("data");
    assert!(data.join("control.db").exists());
    let key_mode = std::fs::metadata(data.join("master.key")).unwrap().permissions().mode() & 0o777;
    assert_eq!(key_mode, 0o600);
    let client = reqwest::Client::new();
    assert_eq!(client.get(format!("{}/healthz", server.base)).send().await.unwrap().status(), 200);
    assert_eq!(client.get(format!("{}/readyz", server.base)).send().await.unwrap().status(), 200);
}

#[test]
fn bad_config_exits_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    for (var, value) in [("PORT", "abc"), ("GATEHOUSE_MASTER_KEY", "short"), ("GATEHOUSE_LOG_FORMAT", "xml")] {
        let out = Command::new(binary()).arg("serve").current_dir(dir.path()).env(var, value).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{var}: {stderr}");
        assert!(stderr.starts_with(&format!("invalid {var}: expected")), "{stderr}");
        if var == "GATEHOUSE_MASTER_KEY" {
            assert!(!stderr.contains("short"), "secrets are not echoed: {stderr}");
        }
    }
    let out = Command::new(binary()).args(["serve"]).current_dir(dir.path()).env("PORT", "abc").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        r#"invalid PORT: expected a port number 1-65535, got "abc""#
    );
    assert!(!dir.path().join("data").exists(), "nothing is created before the config is valid");
}

/// The binary sets mimalloc's options before mimalloc starts (its `.init_array` entry runs first): mimalloc's
/// verbose start-up lists them with the binary's values, or with the environment's when it sets one.
#[test]
fn the_allocator_is_configured_before_it_starts() {
    let options = |env: &[(&str, &str)]| {
        let out =
            Command::new(binary()).arg("--version").env("MIMALLOC_VERBOSE", "1").envs(env.iter().copied()).output();
        String::from_utf8_lossy(&out.unwrap().stderr).into_owned()
    };
    let ours = options(&[]);
    assert!(ours.contains("option 'arena_eager_commit': 0"), "{ours}");
    assert!(ours.contains("option 'purge_delay': 10 "), "{ours}");
    let theirs = options(&[("MIMALLOC_ARENA_EAGER_COMMIT", "2"), ("MIMALLOC_PURGE_DELAY", "1000")]);
    assert!(theirs.contains("option 'arena_eager_commit': 2"), "{theirs}");
    assert!(theirs.contains("option 'purge_delay': 1000"), "{theirs}");
}

#[test]
fn help_lists_every_variable() {
    let out = Command::new(binary()).args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for var in gatehouse::config::VARS {
        assert!(help.contains(var.name), "{} missing from serve --help", var.name);
    }
    for cmd in [
        &["migrate", "--help"][..],
        &["admin", "create", "--help"],
        &["tenant", "create", "--help"],
        &["token", "create", "--help"],
    ] {
        let out = Command::new(binary()).args(cmd).output().unwrap();
        assert!(out.status.success(), "{cmd:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_in_flight_request_finish() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = BinServer::start(dir.path(), &[]).await;
    // A request whose body arrives slowly is in flight when SIGTERM lands.
    let body = br#"{"slug":"late","name":"Arrived after SIGTERM"}"#;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", server.port)).await.unwrap();
    let head = format!(
        "POST /admin/api/v1/tenants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // New connections are no longer accepted…
    assert!(reqwest::get(format!("{}/healthz", server.base)).await.is_err());
    // …but the one in flight completes.
    stream.write_all(&body[10..]).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let status = tokio::task::spawn_blocking(move || server.child.wait().unwrap()).await.unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(dir.path().join("data/tenants/late.db").exists());
}

fn cli(args: &[&str], url: &str) -> (bool, String, String) {
    let out =
        Command::new(binary()).args(args).env("GATEHOUSE_URL", url).env("GATEHOUSE_TOKEN", TOKEN).output().unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_manages_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = BinServer::start(dir.path(), &[]).await;
    let url = server.base.clone();
    let run = move |args: Vec<&'static str>| {
        let url = url.clone();
        async move { tokio::task::spawn_blocking(move || cli(&args, &url)).await.unwrap() }
    };
    let (ok, out, err) = run(vec!["tenant", "create", "--slug", "cli-co", "--name", "CLI Co"]).await;
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["slug"], "cli-co");
    let (ok, _, err) = run(vec!["tenant", "create", "--slug", "Bad/Slug", "--name", "x"]).await;
    assert!(!ok);
    assert!(err.contains("validation_failed"), "{err}");
    let (ok, out, _) = run(vec!["tenant", "list"]).await;
    assert!(ok && out.lines().any(|l| l.starts_with("cli-co") && l.contains("active")), "{out}");
    let (ok, out, _) = run(vec!["tenant", "suspend", "cli-co"]).await;
    assert!(ok && out.contains("suspended"), "{out}");
    let r = reqwest::get(format!("{}/t/cli-co/api/v1/tenant", server.base)).await.unwrap();
    assert_eq!(r.status(), 403);
    let (ok, out, _) = run(vec!["tenant", "resume", "cli-co"]).await;
    assert!(ok && out.contains("active"), "{out}");
    // The binary counts SQLite's heap itself (SQLite's statistics are off): an open pool holds its schema.
    let r = reqwest::get(format!("{}/t/cli-co/api/v1/tenant", server.base)).await.unwrap();
    assert_eq!(r.status(), 200);
    let metrics = reqwest::get(format!("{}/metrics", server.base)).await.unwrap().text().await.unwrap();
    let gauge = |name: &str| -> f64 {
        let line = metrics.lines().find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '));
        line.and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{name}"))
    };
    let (heap, peak) = (gauge("gatehouse_sqlite_heap_bytes"), gauge("gatehouse_sqlite_heap_peak_bytes"));
    assert!(heap > 50_000.0 && peak >= heap, "SQLite heap {heap}, peak {peak}");

    let (ok, token, err) = run(vec!["token", "create", "--name", "ci", "--scope", "tenant:cli-co"]).await;
    assert!(ok, "{err}");
    let token = token.trim().to_owned();
    let r = reqwest::Client::new()
        .get(format!("{}/admin/api/v1/tenants/cli-co", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let (ok, out, _) = run(vec!["tenant", "delete", "cli-co"]).await;
    assert!(ok && out.contains("archive/cli-co-"), "{out}");

    let (ok, _, err) = tokio::task::spawn_blocking(|| cli(&["tenant", "list"], "http://127.0.0.1:1")).await.unwrap();
    assert!(!ok && err.contains("cannot reach"), "{err}");
    let health = Command::new(binary()).args(["healthcheck", "--url", &server.base]).status().unwrap();
    assert!(health.success());
}

#[test]
fn offline_commands_work_on_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = Command::new(binary()).arg("migrate").env("GATEHOUSE_DATA_DIR", &data).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let latest = gatehouse::db::migrate::latest(gatehouse::db::migrate::CONTROL);
    assert!(text.contains(&format!("control.db: schema version {latest} (migrated)")), "{text}");
    let out = Command::new(binary()).arg("migrate").env("GATEHOUSE_DATA_DIR", &data).output().unwrap();
    assert!(String::from_utf8(out.stdout).unwrap().contains("(up to date)"));

    let mut child = Command::new(binary())
        .args(["admin", "create", "--email", "Ops@Example.com", "--password-stdin"])
        .env("GATEHOUSE_DATA_DIR", &data)
        .env("GATEHOUSE_PASSWORD_MEMORY_KIB", "64")
        .env("GATEHOUSE_PASSWORD_ITERATIONS", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"a long enough password\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8(out.stdout).unwrap().contains("ops@example.com"));
    let conn = rusqlite::Connection::open(data.join("control.db")).unwrap();
    let hash: String =
        conn.query_row("SELECT password_hash FROM operators WHERE email='ops@example.com'", [], |r| r.get(0)).unwrap();
    assert!(hash.starts_with("$argon2id$"));

    let out = Command::new(binary()).arg("version").output().unwrap();
    assert!(String::from_utf8(out.stdout).unwrap().starts_with("gatehouse "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_link_from_the_log_creates_the_first_operator_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = BinServer::start(dir.path(), &[]).await;
    let log = std::fs::read_to_string(dir.path().join("gatehouse.log")).unwrap();
    let line = log.lines().find(|l| l.contains("no operator account yet")).expect("setup link logged");
    let entry: Value = serde_json::from_str(line).unwrap();
    let setup_url = entry["setup_url"]
        .as_str()
        .unwrap()
        .replace(&format!("localhost:{}", server.port), &format!("127.0.0.1:{}", server.port));
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();

    let form = client.get(&setup_url).send().await.unwrap();
    assert_eq!(form.status(), 200);
    let csrf_cookie = form.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let html = form.text().await.unwrap();
    let field = |name: &str| {
        html.split(&format!("name=\"{name}\" value=\"")).nth(1).unwrap().split('"').next().unwrap().to_owned()
    };
    let (csrf, token) = (field("csrf_token"), field("token"));
    let mismatch = client
        .post(format!("{}/admin/setup", server.base))
        .header("cookie", &csrf_cookie)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("token", token.as_str()),
            ("email", "first@example.com"),
            ("password", "first operator pw"),
            ("confirm", "something else"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(mismatch.status(), 400);
    assert!(mismatch.text().await.unwrap().contains("The two passwords differ"));
    let created = client
        .post(format!("{}/admin/setup", server.base))
        .header("cookie", &csrf_cookie)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("token", token.as_str()),
            ("email", "first@example.com"),
            ("password", "first operator pw"),
            ("confirm", "first operator pw"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 303);
    let session = created.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let dashboard = client.get(format!("{}/admin", server.base)).header("cookie", &session).send().await.unwrap();
    assert_eq!(dashboard.status(), 200);
    assert!(dashboard.text().await.unwrap().contains("first@example.com"));
    // The link works once.
    let again = client.get(&setup_url).send().await.unwrap();
    assert_eq!(again.status(), 404);
}

/// A node started without cluster settings is a one-node Raft cluster of itself: it leads, every control write goes
/// through its log in data/raft.db, and after a kill -9 it leads again at once with every acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_node_is_a_one_node_cluster_that_keeps_its_writes() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let node_id = || std::fs::read_to_string(dir.path().join("data/node_id")).unwrap().trim().to_owned();
    let ready = |base: String| {
        let client = client.clone();
        async move { client.get(format!("{base}/readyz")).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let mut created = Vec::new();
    for round in 0..2 {
        let server = BinServer::start(dir.path(), &[]).await;
        let body = ready(server.base.clone()).await;
        assert_eq!(body["checks"]["control_plane"], format!("leader {}", node_id()), "{body}");
        for slug in &created {
            let r = client
                .get(format!("{}/admin/api/v1/tenants/{slug}", server.base))
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{slug} was acknowledged before the kill");
        }
        for i in 0..5 {
            let slug = format!("r{round}-{i}");
            let r = client
                .post(format!("{}/admin/api/v1/tenants", server.base))
                .bearer_auth(TOKEN)
                .json(&serde_json::json!({ "slug": slug, "name": slug }))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
            created.push(slug);
        }
        let metrics = client.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
        assert!(metrics.lines().any(|l| l == "gatehouse_raft_state 3"), "{metrics}");
        let applied = metrics
            .lines()
            .find_map(|l| l.strip_prefix("gatehouse_raft_last_applied "))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap();
        assert!(applied >= 5.0, "the writes are log entries: last applied {applied}");
        server.signal("KILL");
    }
    assert!(dir.path().join("data/raft/raft.db").exists());
}
