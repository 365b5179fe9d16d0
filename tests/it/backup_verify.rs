//! `gatehouse backup status|snapshot|list|verify` against real replicas in moto: the status of every database, a
//! forced snapshot that becomes a restore point, and verification that passes on a sound replica (compared with
//! the live file once the server is stopped) and names the object when one is corrupted or missing.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::backup_restore::start;
use crate::backup_s3::{BUCKET, Moto, PREFIX, caught_up, stop, tools, users};
use crate::support::TOKEN;

/// `gatehouse backup ARGS` in `cwd` (data dir `cwd/data`) with the bucket settings and the server's URL.
fn backup(cwd: &Path, moto: &Moto, base: &str, args: &[&str]) -> Output {
    moto.cli(cwd, &[&["backup"], args].concat())
        .env("GATEHOUSE_URL", base)
        .env("GATEHOUSE_TOKEN", TOKEN)
        .output()
        .expect("gatehouse backup runs")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A signed S3 client of moto (it answers object reads and writes only to signed requests).
fn s3(moto: &Moto) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(moto.endpoint())
        .force_path_style(true)
        .credentials_provider(aws_sdk_s3::config::Credentials::new("test", "test", None, None, "test"))
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

async fn object(moto: &Moto, key: &str) -> Vec<u8> {
    let got = s3(moto).get_object().bucket(BUCKET).key(key).send().await.unwrap();
    got.body.collect().await.unwrap().into_bytes().to_vec()
}

async fn put_object(moto: &Moto, key: &str, body: Vec<u8>) {
    s3(moto).put_object().bucket(BUCKET).key(key).body(body.into()).send().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_snapshot_list_and_verify_name_a_corrupted_or_missing_object() {
    if !tools() {
        return;
    }
    let (moto, dir, server) = start(&["acme"]).await;
    let cwd = dir.path();
    for round in 0..3 {
        users(&server, "acme", &format!("r{round}"), 3).await;
        caught_up(&server).await;
    }
    let base = server.base.clone();

    // Status through the running server: both databases, caught up.
    let out = backup(cwd, &moto, &base, &["status", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["health"], "ok", "{status}");
    let dbs = status["databases"].as_array().unwrap();
    let names: Vec<&str> = dbs.iter().map(|d| d["db"].as_str().unwrap()).collect();
    assert_eq!(names, ["control", "tenants/acme"]);
    let acme = &dbs[1];
    assert_eq!(acme["lag_seconds"], 0.0, "{acme}");
    assert_eq!(acme["txid"], acme["uploaded_txid"], "{acme}");
    assert!(acme["objects"].as_u64().unwrap() >= 2 && acme["window_from_ms"].is_i64(), "{acme}");
    let table = text(&backup(cwd, &moto, &base, &["status"]));
    assert!(table.contains("tenants/acme") && table.contains("ok"), "{table}");

    // A forced snapshot is a new restore point at level 9.
    let out = backup(cwd, &moto, &base, &["snapshot", "acme"]);
    assert!(out.status.success(), "{}", text(&out));
    // Writes after it: level 0 goes on after the snapshot's TXID (a hole in level 0 that is no damage).
    users(&server, "acme", "after", 2).await;
    caught_up(&server).await;
    let out = backup(cwd, &moto, &base, &["list", "acme", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let points: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let snapshots: Vec<&Value> = points.iter().filter(|p| p["level"] == 9).collect();
    assert!(snapshots.len() >= 2, "the first snapshot and the forced one: {points:?}");
    assert!(snapshots.iter().all(|p| p["committed_at"].as_str().unwrap().contains('T')));
    let refused = backup(cwd, &moto, &base, &["list", "nobody"]);
    assert!(!refused.status.success() && text(&refused).contains("no replica"), "{}", text(&refused));

    // Verify while the server runs: sound, not compared (the live file moves on).
    let out = backup(cwd, &moto, &base, &["verify", "--all"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("tenants/acme: ok") && text(&out).contains("server is running"), "{}", text(&out));
    stop(server);
    let out = backup(cwd, &moto, &base, &["verify", "acme", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let reports: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reports[0]["report"]["compared"], "same", "{reports}");

    // A flipped byte in an uploaded object: named, exit 1; put back, sound again.
    let keys = moto.keys(&format!("{PREFIX}/tenants/acme/")).await;
    let snapshot = keys.iter().find(|k| k.contains("/0009/")).unwrap().clone();
    let good = object(&moto, &snapshot).await;
    let mut bad = good.clone();
    let at = bad.len() / 2;
    bad[at] ^= 0x20;
    put_object(&moto, &snapshot, bad).await;
    let out = backup(cwd, &moto, &base, &["verify", "acme"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&format!("object {snapshot} is unreadable")), "{}", text(&out));
    put_object(&moto, &snapshot, good).await;
    assert!(backup(cwd, &moto, &base, &["verify", "acme"]).status.success());

    // A missing object (deleted from the bucket): named as missing, and as the gap it leaves in its level.
    let mut level0: Vec<&String> = keys.iter().filter(|k| k.contains("/0000/")).collect();
    level0.sort();
    let gone = if level0.len() >= 2 {
        level0[0].clone()
    } else {
        keys.iter().find(|k| !k.contains("/0009/")).unwrap().clone()
    };
    s3(&moto).delete_object().bucket(BUCKET).key(&gone).send().await.unwrap();
    let out = backup(cwd, &moto, &base, &["verify", "--all"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&format!("missing object {gone}")), "{}", text(&out));
    assert!(text(&out).contains("1 of 2 replicas have problems"), "{}", text(&out));
}

/// SIGTERM while writers are busy: every write the server acknowledged is in the bucket after the final sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_under_writes_loses_nothing_acknowledged() {
    if !tools() {
        return;
    }
    let (moto, dir, server) = start(&["acme"]).await;
    let base = server.base.clone();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let base = base.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut acknowledged = Vec::new();
                for i in 0.. {
                    let email = format!("w{w}-{i}@example.com");
                    let sent = client
                        .post(format!("{base}/admin/api/v1/tenants/acme/users"))
                        .bearer_auth(TOKEN)
                        .json(&serde_json::json!({"email": email, "password": "correct horse battery"}))
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status() == 201 => acknowledged.push(email),
                        _ => break,
                    }
                }
                acknowledged
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    tokio::task::spawn_blocking(move || stop(server)).await.unwrap();
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.unwrap());
    }
    assert!(acknowledged.len() >= 4, "writes were in flight: {}", acknowledged.len());

    let data = dir.path().join("data");
    let root = crate::backup_s3::roots(&data).into_iter().find(|(db, _)| db == "tenants/acme").unwrap().1;
    let out = dir.path().join("after-stop.db");
    let from = format!("s3://{BUCKET}/{PREFIX}/{root}");
    let done = moto.cli(dir.path(), &["restore", "db", "--from", &from, "-o"]).arg(&out).output().unwrap();
    assert!(done.status.success(), "{}", text(&done));
    crate::backup_s3::assert_same(&data.join("tenants/acme.db"), &out);
    let conn = rusqlite::Connection::open_with_flags(&out, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    for email in &acknowledged {
        let found: bool =
            conn.query_row("SELECT EXISTS(SELECT 1 FROM users WHERE email = ?1)", [email], |r| r.get(0)).unwrap();
        assert!(found, "{email} was acknowledged before the stop and is in the bucket");
    }
}

/// The self-check finds a damaged replica on its own: `/readyz` and the dashboard say so, and the metric counts
/// it; once the object is whole again the next check clears it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_self_check_reports_a_damaged_replica_until_it_is_whole() {
    if !tools() {
        return;
    }
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = crate::backup_s3::serve(dir.path(), &moto, &[("GATEHOUSE_BACKUP_VERIFY_INTERVAL", "1s")]).await;
    let (status, body) = crate::backup_s3::admin(
        &server,
        reqwest::Method::POST,
        "/admin/api/v1/tenants",
        serde_json::json!({"slug": "acme", "name": "Acme"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    users(&server, "acme", "a", 2).await;
    caught_up(&server).await;
    let readyz = |base: String| async move {
        let body: Value = reqwest::get(format!("{base}/readyz")).await.unwrap().json().await.unwrap();
        body["checks"]["backup"].as_str().unwrap_or_default().to_owned()
    };
    let keys = moto.keys(&format!("{PREFIX}/tenants/acme/")).await;
    let snapshot = keys.iter().find(|k| k.contains("/0009/")).unwrap().clone();
    let good = object(&moto, &snapshot).await;
    let mut bad = good.clone();
    let at = bad.len() - 20;
    bad[at] ^= 0x01;
    put_object(&moto, &snapshot, bad).await;
    let said = crate::support::eventually(std::time::Duration::from_secs(30), "the self-check finds it", || {
        let base = server.base.clone();
        async move { Some(readyz(base).await).filter(|s| s.contains("self-check")) }
    })
    .await;
    assert!(said.starts_with("degraded"), "{said}");
    let metrics = reqwest::get(format!("{}/metrics", server.base)).await.unwrap().text().await.unwrap();
    let problems = crate::support::metric_value(&metrics, "gatehouse_backup_self_check_problems").unwrap();
    assert!(problems >= 1.0, "{metrics}");
    put_object(&moto, &snapshot, good).await;
    crate::support::eventually(std::time::Duration::from_secs(30), "the next self-check clears it", || {
        let base = server.base.clone();
        async move { Some(readyz(base).await).filter(|s| s == "ok") }
    })
    .await;
    stop(server);
}
