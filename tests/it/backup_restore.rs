//! `gatehouse restore` against real replicas in a real S3-compatible server (moto): a tenant to a point in time
//! (checked against the real Litestream at the same time), a replica the real `litestream replicate` wrote,
//! control.db only while the server is stopped, and a whole node onto a new data dir.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::backup_s3::{
    BUCKET, Moto, PREFIX, admin, assert_same, assert_same_but, caught_up, live_path, roots, serve, stop, tables, tools,
    users,
};
use crate::support::{BinServer, eventually};

/// Runs `gatehouse restore ARGS` in `cwd` (its data dir is `cwd/data`) with the test bucket's settings.
fn restore(cwd: &Path, moto: &Moto, args: &[&str]) -> Output {
    moto.cli(cwd, &[&["restore"], args].concat()).output().expect("gatehouse restore runs")
}

fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "restore failed: {stderr}");
    format!("{}{stderr}", String::from_utf8_lossy(&out.stdout))
}

fn failed(out: &Output) -> String {
    assert!(!out.status.success(), "restore should fail: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn emails(db: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut stmt = conn.prepare("SELECT email FROM users ORDER BY email").unwrap();
    stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap()
}

/// moto, a temp dir and a server replicating into moto, with `slugs` created.
pub(crate) async fn start(slugs: &[&str]) -> (Moto, tempfile::TempDir, BinServer) {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &moto, &[]).await;
    for slug in slugs {
        tenant(&server, slug).await;
    }
    (moto, dir, server)
}

async fn tenant(server: &BinServer, slug: &str) {
    let (status, body) =
        admin(server, reqwest::Method::POST, "/admin/api/v1/tenants", json!({"slug": slug, "name": slug})).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn a_tenant_restores_to_a_point_in_time_as_litestream_restores_it() {
    if !tools() {
        return;
    }
    let (moto, dir, server) = start(&["acme"]).await;
    // Three rounds of users, each captured and checkpointed (a quiet spell) before the next.
    users(&server, "acme", "t1", 4).await;
    caught_up(&server).await;
    tokio::time::sleep(Duration::from_millis(2_600)).await;
    users(&server, "acme", "t2", 4).await;
    caught_up(&server).await;
    tokio::time::sleep(Duration::from_millis(2_600)).await;
    let between = now_rfc3339();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    users(&server, "acme", "t3", 4).await;
    caught_up(&server).await;
    stop(server);

    let data = dir.path().join("data");
    let (db, root) = roots(&data).into_iter().find(|(db, _)| db == "tenants/acme").unwrap();
    let from = format!("s3://{BUCKET}/{PREFIX}/{root}");
    let latest = dir.path().join("latest.db");
    let said = ok(&restore(dir.path(), &moto, &["db", "--from", &from, "-o", latest.to_str().unwrap()]));
    assert!(said.contains("restored") && said.contains("TXID"), "{said}");
    assert_same(&live_path(&data, &db), &latest);

    let then = dir.path().join("then.db");
    ok(&restore(dir.path(), &moto, &["db", "--from", &from, "-o", then.to_str().unwrap(), "--timestamp", &between]));
    let got = emails(&then);
    let expected: Vec<String> =
        ["t1", "t2"].iter().flat_map(|t| (0..4).map(move |i| format!("{t}-{i}@example.com"))).collect();
    assert_eq!(got, expected, "exactly the users of t1 and t2");

    // The real Litestream picks the same point from the same replica.
    let url = format!("s3://{BUCKET}/{PREFIX}/{root}?endpoint={}&region=us-east-1", moto.endpoint());
    let theirs = dir.path().join("litestream-then.db");
    let done = Command::new("litestream")
        .env_remove("AWS_CA_BUNDLE")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .args(["restore", "-timestamp", &between, "-o"])
        .arg(&theirs)
        .arg(&url)
        .output()
        .unwrap();
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    assert_same(&then, &theirs);

    // Before the window: a clear error naming it; an existing output is never overwritten.
    let early = dir.path().join("early.db");
    let err = failed(&restore(
        dir.path(),
        &moto,
        &["db", "--from", &from, "-o", early.to_str().unwrap(), "--timestamp", "2001-01-01T00:00:00Z"],
    ));
    assert!(err.contains("outside the restore window") && err.contains(" to "), "{err}");
    assert!(!early.exists());
    let err = failed(&restore(dir.path(), &moto, &["db", "--from", &from, "-o", then.to_str().unwrap()]));
    assert!(err.contains("exists"), "{err}");
    assert_eq!(emails(&then).len(), 8, "untouched");
}

#[tokio::test]
async fn a_replica_the_real_litestream_wrote_restores_with_gatehouse() {
    if !tools() {
        return;
    }
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL);").unwrap();
    let insert = |from: i64, to: i64| {
        for i in from..to {
            conn.execute(
                "INSERT INTO t(id, v) VALUES (?1, ?2)",
                rusqlite::params![i, format!("row {i} {}", "x".repeat(300))],
            )
            .unwrap();
        }
    };
    insert(0, 200);
    let url = format!("s3://{BUCKET}/litestream/app?endpoint={}&region=us-east-1", moto.endpoint());
    let mut litestream = Command::new("litestream")
        .env_remove("AWS_CA_BUNDLE")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .arg("replicate")
        .arg(&db)
        .arg(&url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("litestream replicate runs");
    eventually(Duration::from_secs(30), "litestream's snapshot", || async {
        moto.keys("litestream/app/0009/").await.into_iter().next()
    })
    .await;
    insert(200, 500);
    let from = format!("s3://{BUCKET}/litestream/app");
    let mut attempt = 0;
    let out = eventually(Duration::from_secs(30), "all 500 rows restore", || {
        attempt += 1;
        let out = dir.path().join(format!("out-{attempt}.db"));
        let moto = &moto;
        let dir = dir.path().to_path_buf();
        let from = from.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let done = restore(&dir, moto, &["db", "--from", &from, "-o", out.to_str().unwrap()]);
            if !done.status.success() {
                return None;
            }
            let rows = tables(&out).into_iter().find(|(name, _)| name == "t").map(|(_, rows)| rows.len());
            (rows == Some(500)).then_some(out)
        }
    })
    .await;
    let _ = litestream.kill();
    let _ = litestream.wait();
    drop(conn);
    assert_same(&db, &out);
}

#[tokio::test]
async fn control_restores_only_while_the_server_is_stopped_then_replicates_anew() {
    if !tools() {
        return;
    }
    let (moto, dir, server) = start(&["acme"]).await;
    caught_up(&server).await;
    let err = failed(&restore(dir.path(), &moto, &["control", "--yes"]));
    assert!(err.contains(".lock is held"), "{err}");
    stop(server);
    let data = dir.path().join("data");
    let before = roots(&data).into_iter().find(|(db, _)| db == "control").unwrap().1;
    let copy = dir.path().join("control-before.db");
    std::fs::copy(data.join("control.db"), &copy).unwrap();
    // Not on a terminal and no --yes: nothing changes.
    let err = failed(&restore(dir.path(), &moto, &["control"]));
    assert!(err.contains("--yes"), "{err}");
    ok(&restore(dir.path(), &moto, &["control", "--yes"]));
    // The restored file is the live one but for its Raft position, which it forgets along with the old log.
    rusqlite::Connection::open(&copy)
        .unwrap()
        .execute("DELETE FROM meta WHERE key IN ('raft_applied', 'raft_membership')", [])
        .unwrap();
    assert_same(&copy, &data.join("control.db"));
    let archived: Vec<String> = std::fs::read_dir(data.join("archive"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(archived.iter().any(|n| n.starts_with("control-") && n.ends_with(".db")), "{archived:?}");
    assert!(archived.iter().any(|n| n.starts_with("raft-")), "{archived:?}");
    assert!(!data.join("raft").exists());

    // The server starts on the restored file and replicates it into a new generation.
    let server = serve(dir.path(), &moto, &[]).await;
    let (status, body) = admin(&server, reqwest::Method::GET, "/admin/api/v1/tenants/acme", Value::Null).await;
    assert_eq!(status, 200, "{body}");
    tenant(&server, "beta").await;
    caught_up(&server).await;
    stop(server);
    let after = roots(&data).into_iter().find(|(db, _)| db == "control").unwrap().1;
    assert_ne!(before, after, "a new generation");
    assert!(after.starts_with(&before[..before.rfind('/').unwrap()]), "{before} {after}");
}

/// Restoring control.db to an earlier point undoes what came after, also across the restart: the Raft log that
/// still held the later entries goes to the archive instead of applying them again.
#[tokio::test]
async fn control_restored_to_a_point_in_time_stays_there_after_the_restart() {
    if !tools() {
        return;
    }
    let (moto, dir, server) = start(&["acme"]).await;
    caught_up(&server).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let point = now_rfc3339();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    tenant(&server, "late").await;
    caught_up(&server).await;
    stop(server);
    ok(&restore(dir.path(), &moto, &["control", "--timestamp", &point, "--yes"]));
    let server = serve(dir.path(), &moto, &[]).await;
    let (status, body) = admin(&server, reqwest::Method::GET, "/admin/api/v1/tenants/acme", Value::Null).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = admin(&server, reqwest::Method::GET, "/admin/api/v1/tenants/late", Value::Null).await;
    assert_eq!(status, 404, "created after the restore point: {body}");
    // The node leads a fresh one-node cluster over the restored file and takes writes.
    tenant(&server, "after").await;
    stop(server);
}

#[tokio::test]
async fn a_whole_node_restores_into_a_new_data_dir_and_serves_the_same_keys_users_and_plugins() {
    if !tools() {
        return;
    }
    let (moto, dir, server) = start(&["acme", "beta", "gamma"]).await;
    for slug in ["acme", "beta", "gamma"] {
        users(&server, slug, slug, 3).await;
    }
    // Settings, an OAuth client and a login plugin: all control-plane state that must come back.
    for slug in ["acme", "beta"] {
        let path = format!("/admin/api/v1/tenants/{slug}");
        let body = json!({"settings": {"require_email_verification": false}});
        let (status, answer) = admin(&server, reqwest::Method::PATCH, &path, body).await;
        assert_eq!(status, 200, "{answer}");
    }
    let (status, client) = admin(
        &server,
        reqwest::Method::POST,
        "/admin/api/v1/tenants/acme/clients",
        json!({"name": "M2M", "type": "confidential", "grant_types": ["client_credentials"]}),
    )
    .await;
    assert_eq!(status, 201, "{client}");
    let plugin = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("plugins/build/c-noop-login.wasm");
    let with_plugin = crate::plugins::component("c-noop-login").is_some();
    if with_plugin {
        let file = plugin.display().to_string();
        let args = ["plugin", "upload", "--tenant", "acme", "--name", "noop", "--world", "login", &file, "--activate"];
        let (ok, out, err) = crate::support::run_cli(&server.base, &args);
        assert!(ok, "{out}{err}");
    }
    caught_up(&server).await;
    let jwks = |base: String| async move {
        reqwest::get(format!("{base}/t/acme/.well-known/jwks.json")).await.unwrap().text().await.unwrap()
    };
    let keys_before = jwks(server.base.clone()).await;
    stop(server);

    let new = tempfile::tempdir().unwrap();
    let to = new.path().join("data");
    let said = ok(&restore(new.path(), &moto, &["all", "--to", to.to_str().unwrap()]));
    assert!(said.contains("tenants/gamma.db"), "{said}");
    let old = dir.path().join("data");
    // Every row came back; the tenants have new incarnations (recorded by RestoreTenant entries and stamped into
    // their files), so they replicate into roots of their own.
    assert_same_but(&live_path(&old, "control"), &live_path(&to, "control"), &["tenants", "control_log", "meta"]);
    for db in ["tenants/acme", "tenants/beta", "tenants/gamma"] {
        assert_same_but(&live_path(&old, db), &live_path(&to, db), &["tenant_meta"]);
    }
    let incarnations = |data: &Path| -> Vec<String> {
        let conn =
            rusqlite::Connection::open_with_flags(data.join("control.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .unwrap();
        let mut stmt = conn.prepare("SELECT incarnation FROM tenants ORDER BY slug").unwrap();
        stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    let (was, now) = (incarnations(&old), incarnations(&to));
    assert_eq!(now.len(), 3);
    assert!(was.iter().zip(&now).all(|(a, b)| a != b), "{was:?} {now:?}");
    assert_eq!(
        std::fs::read_to_string(old.join("node_id")).unwrap(),
        std::fs::read_to_string(to.join("node_id")).unwrap()
    );
    // A non-empty target is refused.
    let err = failed(&restore(new.path(), &moto, &["all", "--to", to.to_str().unwrap()]));
    assert!(err.contains("not empty"), "{err}");

    let server = serve(new.path(), &moto, &[]).await;
    assert_eq!(jwks(server.base.clone()).await, keys_before, "the signing keys came back");
    // The restored node issues tokens the old JWKS verifies.
    let r = reqwest::Client::new()
        .post(format!("{}/t/acme/oauth2/token", server.base))
        .basic_auth(client["client_id"].as_str().unwrap(), client["client_secret"].as_str())
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let token: Value = r.json().await.unwrap();
    let access = token["access_token"].as_str().unwrap();
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&keys_before).unwrap();
    let header = jsonwebtoken::decode_header(access).unwrap();
    let jwk = set.find(header.kid.as_deref().unwrap()).expect("the token's key is in the old JWKS");
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.validate_aud = false;
    jsonwebtoken::decode::<Value>(access, &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .expect("the old JWKS verifies a token of the restored node");
    // Users sign in (their password hashes came back), through the login plugin where there is one.
    for slug in ["acme", "beta"] {
        let r = reqwest::Client::new()
            .post(format!("{}/t/{slug}/api/v1/login", server.base))
            .json(&json!({"email": format!("{slug}-0@example.com"), "password": "correct horse battery"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{slug}: {}", r.text().await.unwrap());
    }
    if with_plugin {
        let metrics = reqwest::get(format!("{}/metrics", server.base)).await.unwrap().text().await.unwrap();
        let calls = metrics.lines().filter(|l| l.starts_with("gatehouse_plugin_calls_total{")).count();
        assert!(calls > 0, "the restored plugin ran: {metrics}");
    }
    let (status, body) = admin(&server, reqwest::Method::GET, "/admin/api/v1/tenants/beta/users", Value::Null).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"].as_array().map(Vec::len), Some(3), "{body}");
    users(&server, "beta", "after", 1).await;
    caught_up(&server).await;
    stop(server);
    let tenant_roots: Vec<String> =
        roots(&to).into_iter().filter(|(db, _)| db.starts_with("tenants/")).map(|(_, root)| root).collect();
    assert!(tenant_roots.iter().all(|r| now.iter().any(|n| r.ends_with(n.as_str()))), "{tenant_roots:?} {now:?}");
}
