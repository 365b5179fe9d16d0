//! Continuous backups to a real S3-compatible server (moto, started here) from the real binary; every replica is
//! restored with the real Litestream and compared row by row with the live file.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::support::{BinServer, TOKEN, eventually, free_port, metric_value, require_tool};

pub(crate) const BUCKET: &str = "gh-backups";
pub(crate) const PREFIX: &str = "site/one";

/// `moto_server` on a free port with the test bucket made.
pub(crate) struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    pub(crate) async fn start() -> Moto {
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server runs");
        let moto = Moto { child, port };
        let client = reqwest::Client::new();
        eventually(Duration::from_secs(20), "moto answers", || async {
            client.put(format!("{}/{BUCKET}", moto.endpoint())).send().await.ok().filter(|r| r.status().is_success())
        })
        .await;
        moto
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn signal(&self, name: &str) {
        assert!(
            Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status().unwrap().success()
        );
    }

    /// The object keys under `prefix`.
    pub(crate) async fn keys(&self, prefix: &str) -> Vec<String> {
        let url = format!("{}/{BUCKET}?list-type=2&max-keys=10000&prefix={prefix}", self.endpoint());
        let body = reqwest::get(url).await.unwrap().text().await.unwrap();
        body.split("<Key>")
            .skip(1)
            .filter_map(|part| part.split_once("</Key>"))
            .map(|(key, _)| key.to_owned())
            .collect()
    }

    /// `gatehouse ARGS` run in `cwd` (its data dir is `cwd/data`) with only the test bucket's settings in its
    /// environment (and the master key the test servers use).
    pub(crate) fn cli(&self, cwd: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(crate::support::binary());
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .current_dir(cwd)
            .env("GATEHOUSE_BACKUP_URL", format!("s3://{BUCKET}/{PREFIX}"))
            .env("GATEHOUSE_S3_ENDPOINT", self.endpoint())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("GATEHOUSE_MASTER_KEY", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
            .stdin(Stdio::null());
        command
    }

    /// Restores the replica root `root` (under the prefix) into `out` with the real Litestream.
    pub(crate) fn restore(&self, root: &str, out: &Path) {
        let url = format!("s3://{BUCKET}/{PREFIX}/{root}?endpoint={}&region=us-east-1", self.endpoint());
        let done = Command::new("litestream")
            .env_remove("AWS_CA_BUNDLE")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .args(["restore", "-o"])
            .arg(out)
            .arg(&url)
            .output()
            .expect("litestream runs");
        assert!(done.status.success(), "litestream restore {url}: {}", String::from_utf8_lossy(&done.stderr));
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-CONT").arg(self.child.id().to_string()).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn tools() -> bool {
    require_tool("litestream") && require_tool("moto_server")
}

pub(crate) async fn serve(cwd: &Path, moto: &Moto, extra: &[(&str, &str)]) -> BinServer {
    let endpoint = moto.endpoint();
    let url = format!("s3://{BUCKET}/{PREFIX}");
    let mut env = vec![
        ("GATEHOUSE_BACKUP_URL", url.as_str()),
        ("GATEHOUSE_S3_ENDPOINT", endpoint.as_str()),
        ("GATEHOUSE_BACKUP_INTERVAL", "200ms"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("GATEHOUSE_MASTER_KEY", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
    ];
    env.extend_from_slice(extra);
    BinServer::start(cwd, &env).await
}

pub(crate) async fn admin(server: &BinServer, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .request(method, format!("{}{path}", server.base))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Creates `n` users named `{tag}-{i}` in `slug`, eight at a time; each must succeed.
pub(crate) async fn users(server: &BinServer, slug: &str, tag: &str, n: usize) {
    futures_util::stream::iter(0..n)
        .map(|i| async move {
            let body = json!({"email": format!("{tag}-{i}@example.com"), "password": "correct horse battery", "name": format!("{tag} {i}")});
            let (status, answer) = admin(server, reqwest::Method::POST, &format!("/admin/api/v1/tenants/{slug}/users"), body).await;
            assert_eq!(status, 201, "{answer}");
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
}

async fn lag(server: &BinServer) -> f64 {
    let text = reqwest::get(format!("{}/metrics", server.base)).await.unwrap().text().await.unwrap();
    metric_value(&text, "gatehouse_backup_lag_seconds").unwrap_or(f64::MAX)
}

pub(crate) async fn caught_up(server: &BinServer) {
    eventually(Duration::from_secs(60), "backup lag 0", || async { (lag(server).await == 0.0).then_some(()) }).await;
}

/// Stops the server with SIGTERM (its last backup pass runs) and waits for it.
pub(crate) fn stop(mut server: BinServer) {
    server.signal("TERM");
    let status = server.child.wait().unwrap();
    assert!(status.success(), "graceful stop: {status:?}");
}

/// Every table's rows of a database, sorted (compared row by row).
pub(crate) fn tables(path: &Path) -> Vec<(String, Vec<String>)> {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let conn = rusqlite::Connection::open_with_flags(path, flags).unwrap();
    let ok: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok", "{}", path.display());
    let mut names: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND sql NOT LIKE 'CREATE VIRTUAL%' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    names.retain(|n: &String| !n.starts_with("sqlite_stat"));
    names
        .into_iter()
        .map(|name| {
            let mut stmt = conn.prepare(&format!("SELECT * FROM \"{name}\"")).unwrap();
            let width = stmt.column_count();
            let mut rows: Vec<String> = stmt
                .query_map([], |r| {
                    let values: Vec<rusqlite::types::Value> = (0..width).map(|i| r.get(i)).collect::<Result<_, _>>()?;
                    Ok(format!("{values:?}"))
                })
                .unwrap()
                .map(Result::unwrap)
                .collect();
            rows.sort();
            (name, rows)
        })
        .collect()
}

pub(crate) fn assert_same(live: &Path, restored: &Path) -> usize {
    assert_same_but(live, restored, &[])
}

/// `assert_same` for every table but `skip`.
pub(crate) fn assert_same_but(live: &Path, restored: &Path, skip: &[&str]) -> usize {
    let keep = |all: Vec<(String, Vec<String>)>| -> Vec<(String, Vec<String>)> {
        all.into_iter().filter(|(name, _)| !skip.contains(&name.as_str())).collect()
    };
    let (live, restored) = (keep(tables(live)), keep(tables(restored)));
    assert_eq!(live.len(), restored.len(), "the same tables");
    for ((name, a), (other, b)) in live.iter().zip(&restored) {
        assert_eq!(name, other);
        assert_eq!(a.len(), b.len(), "rows of {name}");
        assert!(a == b, "the rows of {name} differ");
    }
    live.iter().map(|(_, rows)| rows.len()).sum()
}

/// The replica roots in `backup.db`: (database, root).
pub(crate) fn roots(data: &Path) -> Vec<(String, String)> {
    let conn =
        rusqlite::Connection::open_with_flags(data.join("backup.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut stmt = conn.prepare("SELECT db, root FROM positions ORDER BY db").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
}

pub(crate) fn live_path(data: &Path, db: &str) -> PathBuf {
    if db == "control" { data.join("control.db") } else { data.join(format!("{db}.db")) }
}

#[tokio::test]
async fn control_and_tenants_restore_row_for_row_with_litestream_across_checkpoints() {
    if !tools() {
        return;
    }
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Fast levels: L1 every second, L2 every 2 s, L3 every 4 s; L0 files stay 10 s once covered.
    let server = serve(dir.path(), &moto, &[("GATEHOUSE_BACKUP_LEVELS", "1s,2s,4s")]).await;
    let ready: Value = reqwest::get(format!("{}/readyz", server.base)).await.unwrap().json().await.unwrap();
    assert_eq!(ready["checks"]["backup"], "ok", "{ready}");
    for slug in ["acme", "beta"] {
        let (status, body) =
            admin(&server, reqwest::Method::POST, "/admin/api/v1/tenants", json!({"slug": slug, "name": slug})).await;
        assert_eq!(status, 201, "{body}");
    }
    // Rounds of writes with quiet spells between: each spell checkpoints, and the WAL starts over.
    for round in 0..5 {
        users(&server, "acme", &format!("a{round}"), 80).await;
        users(&server, "beta", &format!("b{round}"), 30).await;
        caught_up(&server).await;
        tokio::time::sleep(Duration::from_millis(2_600)).await;
    }
    // Quiet long enough for L3 to take in L2 and for retention to drop the L0 files L1 covers.
    tokio::time::sleep(Duration::from_secs(11)).await;
    users(&server, "acme", "last", 5).await;
    caught_up(&server).await;
    let text = reqwest::get(format!("{}/metrics", server.base)).await.unwrap().text().await.unwrap();
    assert!(metric_value(&text, "gatehouse_backup_uploads_total").unwrap() > 6.0, "{text}");
    assert!(metric_value(&text, "gatehouse_backup_deletes_total").unwrap_or(0.0) > 0.0, "retention ran: {text}");
    assert!(metric_value(&text, "gatehouse_backup_checkpoints_total").unwrap_or(0.0) >= 5.0, "checkpoints: {text}");
    stop(server);

    let data = dir.path().join("data");
    let roots = roots(&data);
    assert_eq!(
        roots.iter().map(|(db, _)| db.as_str()).collect::<Vec<_>>(),
        ["control", "tenants/acme", "tenants/beta"]
    );
    let log = std::fs::read_to_string(dir.path().join("gatehouse.log")).unwrap();
    assert!(log.contains("backups on"), "the start names the replicas");
    let mut rows = 0;
    for (db, root) in &roots {
        let out = dir.path().join(format!("restored-{}.db", db.replace('/', "-")));
        moto.restore(root, &out);
        rows += assert_same(&live_path(&data, db), &out);
    }
    assert!(rows > 600, "{rows} rows compared");
    // Levels: snapshots at 0009, incrementals at 0000, compactions at 0001-0003.
    let keys = moto.keys(&format!("{PREFIX}/tenants/acme/")).await;
    for level in ["0009", "0000", "0001", "0002", "0003"] {
        assert!(keys.iter().any(|k| k.contains(&format!("/{level}/"))), "level {level}: {keys:?}");
    }
    assert!(keys.iter().any(|k| k.contains("/0009/0000000000000001-")), "{keys:?}");
}

#[tokio::test]
async fn an_outage_spools_then_catches_up_and_a_kill_resumes_without_a_gap() {
    if !tools() {
        return;
    }
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &moto, &[]).await;
    admin(&server, reqwest::Method::POST, "/admin/api/v1/tenants", json!({"slug": "acme", "name": "Acme"})).await;
    users(&server, "acme", "before", 30).await;
    caught_up(&server).await;

    // The bucket hangs: writes go on, the lag and the spool grow, /readyz stays 200 and says why.
    moto.signal("STOP");
    // About 20 s: longer than an upload attempt's time limit, so uploads fail as well as hang.
    let outage = std::time::Instant::now();
    let mut round = 0;
    while outage.elapsed() < Duration::from_secs(20) {
        users(&server, "acme", &format!("outage{round}"), 10).await;
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        round += 1;
    }
    let text = reqwest::get(format!("{}/metrics", server.base)).await.unwrap().text().await.unwrap();
    assert!(metric_value(&text, "gatehouse_backup_lag_seconds").unwrap() >= 5.0, "{text}");
    assert!(metric_value(&text, "gatehouse_backup_spool_bytes").unwrap() > 0.0, "{text}");
    let ready = reqwest::get(format!("{}/readyz", server.base)).await.unwrap();
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert!(ready["checks"]["backup"].as_str().unwrap().starts_with("degraded: "), "{ready}");
    moto.signal("CONT");
    caught_up(&server).await;
    eventually(Duration::from_secs(40), "backup ok again", || async {
        let ready: Value = reqwest::get(format!("{}/readyz", server.base)).await.ok()?.json().await.ok()?;
        (ready["checks"]["backup"] == "ok").then_some(())
    })
    .await;

    // kill -9 in the middle of writes; the next start resumes the chain.
    let base = server.base.clone();
    let writer = tokio::spawn(async move {
        let client = reqwest::Client::new();
        for i in 0..400 {
            let body = json!({"email": format!("killed-{i}@example.com"), "password": "correct horse battery"});
            let sent = client
                .post(format!("{base}/admin/api/v1/tenants/acme/users"))
                .bearer_auth(TOKEN)
                .json(&body)
                .send()
                .await;
            if sent.is_err() {
                break;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    server.signal("KILL");
    writer.await.unwrap();
    let mut server = server;
    let _ = server.child.wait();
    let server = serve(dir.path(), &moto, &[]).await;
    users(&server, "acme", "after", 10).await;
    caught_up(&server).await;
    stop(server);

    // A change made while the server is down by a program that checkpoints on close (the WAL is gone after it)
    // is noticed at the next start and sent as a full image.
    let data = dir.path().join("data");
    let offline = rusqlite::Connection::open(data.join("tenants/acme.db")).unwrap();
    offline.execute("INSERT INTO tenant_meta (key, value) VALUES ('offline-change', 'yes')", []).unwrap();
    drop(offline);
    let server = serve(dir.path(), &moto, &[]).await;
    caught_up(&server).await;
    stop(server);

    let (_, root) = roots(&data).into_iter().find(|(db, _)| db == "tenants/acme").unwrap();
    let out = dir.path().join("restored.db");
    moto.restore(&root, &out);
    assert_same(&data.join("tenants/acme.db"), &out);
    // One object per TXID: no TXID written twice at level 0.
    let keys = moto.keys(&format!("{PREFIX}/{root}/0000/")).await;
    let mut txids: Vec<&str> = keys.iter().filter_map(|k| k.rsplit('/').next()).collect();
    let count = txids.len();
    txids.dedup();
    assert_eq!(txids.len(), count);
}

#[tokio::test]
async fn a_tenant_deleted_and_made_again_has_two_replicas_each_restoring_its_own_rows() {
    deleted_and_made_again(&[]).await;
}

/// The same with no pass before the delete (the interval is longer than the test): the archive's final capture
/// starts the old incarnation's replica itself.
#[tokio::test]
async fn a_tenant_deleted_before_its_first_capture_still_has_its_replica() {
    deleted_and_made_again(&[("GATEHOUSE_BACKUP_INTERVAL", "10m")]).await;
}

async fn deleted_and_made_again(extra: &[(&str, &str)]) {
    if !tools() {
        return;
    }
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &moto, extra).await;
    admin(&server, reqwest::Method::POST, "/admin/api/v1/tenants", json!({"slug": "acme", "name": "Old"})).await;
    users(&server, "acme", "old", 20).await;
    let (status, body) = admin(&server, reqwest::Method::DELETE, "/admin/api/v1/tenants/acme", Value::Null).await;
    assert!(status < 300, "{status} {body}");
    admin(&server, reqwest::Method::POST, "/admin/api/v1/tenants", json!({"slug": "acme", "name": "New"})).await;
    users(&server, "acme", "new", 7).await;
    if extra.is_empty() {
        caught_up(&server).await;
    }
    // (Stopping runs the last pass: every dirty file captured and uploaded.)
    stop(server);

    let data = dir.path().join("data");
    let keys = moto.keys(&format!("{PREFIX}/tenants/acme/")).await;
    let mut incarnations: Vec<&str> = keys.iter().filter_map(|k| k.split('/').nth(4)).collect();
    incarnations.sort_unstable();
    incarnations.dedup();
    assert_eq!(incarnations.len(), 2, "{keys:?}");
    let archived: Vec<PathBuf> = std::fs::read_dir(data.join("archive"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "db"))
        .collect();
    assert_eq!(archived.len(), 1);
    let live_root = roots(&data).into_iter().find(|(db, _)| db == "tenants/acme").unwrap().1;
    for incarnation in incarnations {
        let root = format!("tenants/acme/{incarnation}");
        let out = dir.path().join(format!("{incarnation}.db"));
        moto.restore(&root, &out);
        let conn = rusqlite::Connection::open(&out).unwrap();
        let emails: Vec<String> = conn
            .prepare("SELECT email FROM users ORDER BY email")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        if root == live_root {
            assert_eq!(emails.len(), 7);
            assert!(emails.iter().all(|e| e.starts_with("new-")));
            assert_same(&data.join("tenants/acme.db"), &out);
        } else {
            assert_eq!(emails.len(), 20);
            assert!(emails.iter().all(|e| e.starts_with("old-")));
            assert_same(&archived[0], &out);
        }
    }
}

#[tokio::test]
async fn idle_tenants_cost_nothing_after_start_only_the_written_one_is_opened_and_uploaded() {
    if !tools() {
        return;
    }
    const TENANTS: usize = 1_000;
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &moto, &[]).await;
    futures_util::stream::iter(0..TENANTS)
        .map(|i| {
            let server = &server;
            async move {
                let body = json!({"slug": format!("idle-{i}"), "name": format!("Idle {i}")});
                let (status, answer) = admin(server, reqwest::Method::POST, "/admin/api/v1/tenants", body).await;
                assert_eq!(status, 201, "{answer}");
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
    caught_up(&server).await;
    stop(server);
    let before = moto.keys(&format!("{PREFIX}/tenants/")).await;
    assert!(before.len() >= TENANTS, "every tenant has its snapshot: {}", before.len());

    let server = serve(dir.path(), &moto, &[]).await;
    caught_up(&server).await;
    users(&server, "idle-7", "busy", 5).await;
    caught_up(&server).await;
    let text = reqwest::get(format!("{}/metrics", server.base)).await.unwrap().text().await.unwrap();
    assert_eq!(metric_value(&text, "gatehouse_tenant_pools_open"), Some(1.0), "only the written tenant is open");
    let after = moto.keys(&format!("{PREFIX}/tenants/")).await;
    let new: Vec<&String> = after.iter().filter(|k| !before.contains(k)).collect();
    assert!(!new.is_empty());
    assert!(new.iter().all(|k| k.starts_with(&format!("{PREFIX}/tenants/idle-7/"))), "{new:?}");
    stop(server);
}

#[tokio::test]
async fn a_full_spool_drops_the_oldest_records_the_gap_and_a_fresh_snapshot_follows() {
    if !tools() {
        return;
    }
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &moto, &[("GATEHOUSE_BACKUP_MAX_SPOOL_MB", "1")]).await;
    admin(&server, reqwest::Method::POST, "/admin/api/v1/tenants", json!({"slug": "acme", "name": "Acme"})).await;
    caught_up(&server).await;
    moto.signal("STOP");
    // About 2.2 MB of text that does not compress, in products written while the bucket hangs.
    for i in 0..40 {
        let words: Vec<String> = (0..3_500).map(|_| format!("{:x}", rand_word())).collect();
        let product = json!({"title": format!("Item {i}"), "handle": format!("item-{i}"), "status": "active",
            "description": words.join(" "), "variants": [{"sku": format!("SKU-{i}"), "price": 100, "stock": 1}]});
        let (status, body) =
            admin(&server, reqwest::Method::POST, "/admin/api/v1/tenants/acme/products", product).await;
        assert_eq!(status, 201, "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eventually(Duration::from_secs(30), "the spool trimmed", || async {
        let text = reqwest::get(format!("{}/metrics", server.base)).await.ok()?.text().await.ok()?;
        text.lines().any(|l| l.starts_with("gatehouse_backup_errors_total{stage=\"spool_full\"}")).then_some(())
    })
    .await;
    moto.signal("CONT");
    caught_up(&server).await;
    stop(server);
    let data = dir.path().join("data");
    let backup =
        rusqlite::Connection::open_with_flags(data.join("backup.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let gaps: i64 = backup.query_row("SELECT COUNT(*) FROM gaps WHERE db = 'tenants/acme'", [], |r| r.get(0)).unwrap();
    assert!(gaps >= 1, "the gap is recorded");
    // The snapshot written after the gap makes the newest state restorable.
    let (_, root) = roots(&data).into_iter().find(|(db, _)| db == "tenants/acme").unwrap();
    let out = dir.path().join("restored.db");
    moto.restore(&root, &out);
    assert_same(&data.join("tenants/acme.db"), &out);
    let snapshots = moto.keys(&format!("{PREFIX}/{root}/0009/")).await;
    assert!(snapshots.len() >= 2, "the first snapshot and the one after the gap: {snapshots:?}");
}

/// 64 random bits (std only: a hash of the time and a counter).
fn rand_word() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    hasher.finish()
}
