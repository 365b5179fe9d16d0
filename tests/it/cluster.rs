//! Cluster II: three real `gatehouse serve` processes on loopback form a cluster with `gatehouse cluster join`,
//! replicate the control plane, forward writes and tenant requests, survive a kill -9 of the leader, and refuse
//! peers without the join token or the cluster CA's certificate.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{BinServer, PASSWORD, TOKEN, binary, eventually, free_port, require_python_module, require_tool};

const JOIN_TOKEN: &str = "a-join-token-of-at-least-32-characters";
const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// A free port never handed out before in this test binary: a port chosen but not bound yet (a node's public port
/// named in its environment first) must not be given to another node meanwhile.
fn fresh_port() -> u16 {
    static GIVEN: std::sync::Mutex<BTreeSet<u16>> = std::sync::Mutex::new(BTreeSet::new());
    loop {
        let port = free_port();
        if GIVEN.lock().unwrap().insert(port) {
            return port;
        }
    }
}

/// One node: its server, data dir and cluster settings.
struct Node {
    server: Option<BinServer>,
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    id: u64,
    port: u16,
}

impl Node {
    async fn start(extra: &[(&str, String)]) -> Node {
        Self::start_at(fresh_port(), extra).await
    }

    /// A node whose HTTP port is `port` (kept across restarts).
    async fn start_at(port: u16, extra: &[(&str, String)]) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let cluster_port = fresh_port();
        let mut env: Vec<(String, String)> = vec![
            ("GATEHOUSE_CLUSTER_ADDR".into(), format!("127.0.0.1:{cluster_port}")),
            ("GATEHOUSE_CLUSTER_JOIN_TOKEN".into(), JOIN_TOKEN.into()),
            ("GATEHOUSE_MASTER_KEY".into(), MASTER_KEY.into()),
            ("GATEHOUSE_PUBLIC_URL".into(), "http://gatehouse.test".into()),
        ];
        for (k, v) in extra {
            env.retain(|(key, _)| key != k);
            env.push(((*k).into(), v.clone()));
        }
        let mut node = Node { server: None, dir, env, id: 0, port };
        node.restart().await;
        node.id = std::fs::read_to_string(node.dir.path().join("data/node_id")).unwrap().trim().parse().unwrap();
        node
    }

    async fn restart(&mut self) {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.server = Some(BinServer::start_at(self.dir.path(), &env, self.port).await);
    }

    fn base(&self) -> String {
        self.server.as_ref().unwrap().base.clone()
    }

    fn kill(&mut self) {
        let mut server = self.server.take().unwrap();
        server.signal("KILL");
        let _ = server.child.wait();
    }

    /// `gatehouse cluster …` with this node's environment.
    fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(binary())
            .args(["cluster"])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .current_dir(self.dir.path())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
    }

    fn status(&self) -> Value {
        let (ok, out, err) = self.cli(&["status", "--json"]);
        assert!(ok, "cluster status failed: {err}");
        serde_json::from_str(&out).unwrap()
    }

    fn cluster_addr(&self) -> String {
        self.env.iter().find(|(k, _)| k == "GATEHOUSE_CLUSTER_ADDR").unwrap().1.clone()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gatehouse.log")).unwrap_or_default()
    }
}

/// A GET with `path` sent as it is (no client-side normalisation), and the whole answer as text.
async fn raw_get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

async fn admin(client: &reqwest::Client, method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    let mut request = client.request(method, url).bearer_auth(TOKEN).timeout(Duration::from_secs(40));
    if let Some(body) = body {
        request = request.json(&body);
    }
    match request.send().await {
        Ok(r) => (r.status().as_u16(), r.json().await.unwrap_or(Value::Null)),
        Err(_) => (0, Value::Null),
    }
}

/// Waits until `node` reports a leader that is one of `among`, and returns it.
async fn leader_of(node: &Node, among: &[u64]) -> u64 {
    let among: BTreeSet<u64> = among.iter().copied().collect();
    eventually(Duration::from_secs(15), "a leader", || async {
        let (ok, out, _) = node.cli(&["status", "--json"]);
        let status: Value = if ok { serde_json::from_str(&out).ok()? } else { return None };
        status["leader_id"].as_u64().filter(|id| among.contains(id))
    })
    .await
}

async fn form(nodes: &[Node]) {
    for node in &nodes[1..] {
        let (ok, out, err) = node.cli(&["join", "--leader", &nodes[0].base()]);
        assert!(ok, "join failed: {err}\n{}", node.log());
        assert!(out.contains("voter"), "{out}");
    }
    // Every member a voter, and answering its peers (a busy machine may miss one 1 s ping: asked again).
    eventually(Duration::from_secs(15), "every member a reachable voter", || async {
        let status = nodes[0].status();
        let members = status["members"].as_array()?.clone();
        let formed =
            members.len() == nodes.len() && members.iter().all(|m| m["role"] == "voter" && m["reachable"] == true);
        formed.then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_forward_and_survive_a_leader_kill() {
    let client = reqwest::Client::new();
    // Snapshots every 20 entries, so the killed node's log falls behind the others' purge.
    let small = [("GATEHOUSE_RAFT_SNAPSHOT_ENTRIES", "20".to_owned())];
    let mut nodes = vec![Node::start(&small).await, Node::start(&small).await, Node::start(&small).await];
    form(&nodes).await;
    let ids: Vec<u64> = nodes.iter().map(|n| n.id).collect();

    // A write on each node (two of them forwarded to the leader), each readable at once on the node that wrote it,
    // and every node serves the same configuration.
    for (i, node) in nodes.iter().enumerate() {
        let slug = format!("t{i}");
        let (status, body) = admin(
            &client,
            reqwest::Method::POST,
            format!("{}/admin/api/v1/tenants", node.base()),
            Some(json!({ "slug": slug, "name": slug })),
        )
        .await;
        assert_eq!(status, 201, "{body}\n{}", node.log());
        // The discovery document is read from this node's own control.db (no read index): the write is there.
        let r = client.get(format!("{}/t/{slug}/.well-known/openid-configuration", node.base())).send().await.unwrap();
        assert_eq!(r.status(), 200, "read your write on the node that wrote it");
    }
    for node in &nodes {
        let (status, list) =
            admin(&client, reqwest::Method::GET, format!("{}/admin/api/v1/tenants?limit=100", node.base()), None).await;
        assert_eq!(status, 200, "{list}");
        let slugs: BTreeSet<&str> =
            list["items"].as_array().unwrap().iter().filter_map(|t| t["slug"].as_str()).collect();
        assert_eq!(slugs, BTreeSet::from(["t0", "t1", "t2"]), "every node serves the same tenants");
    }
    // The tenants are spread over the nodes (fewest tenants first), and each one answers on every node: on its home
    // directly, elsewhere through the home.
    let homes: BTreeSet<String> = nodes
        .iter()
        .map(|n| std::fs::read_dir(n.dir.path().join("data/tenants")).map_or(0, |d| d.count()).to_string())
        .collect();
    assert_eq!(homes, BTreeSet::from(["1".to_owned()]), "one tenant file per node");
    for node in &nodes {
        for slug in ["t0", "t1", "t2"] {
            let r = client.get(format!("{}/t/{slug}/api/v1/tenant", node.base())).send().await.unwrap();
            assert_eq!(r.status(), 200, "{slug} through {}", node.base());
        }
    }

    // Kill -9 the leader while two clients keep writing through the other nodes for 8 s.
    let leader = leader_of(&nodes[0], &ids).await;
    let dead = ids.iter().position(|id| *id == leader).unwrap();
    let survivors: Vec<String> = nodes.iter().enumerate().filter(|(i, _)| *i != dead).map(|(_, n)| n.base()).collect();
    let started = std::time::Instant::now();
    let writers: Vec<_> = survivors
        .iter()
        .enumerate()
        .map(|(w, base)| {
            let (client, base) = (client.clone(), base.clone());
            tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut i = 0;
                while started.elapsed() < Duration::from_secs(8) {
                    i += 1;
                    let slug = format!("w{w}-{i}");
                    let url = format!("{base}/admin/api/v1/tenants");
                    let body = json!({ "slug": slug, "name": slug });
                    let (status, _) = admin(&client, reqwest::Method::POST, url, Some(body)).await;
                    if status == 201 {
                        acked.push((slug, started.elapsed()));
                    } else {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                acked
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed_at = started.elapsed();
    nodes[dead].kill();
    let mut acked = Vec::new();
    for writer in writers {
        acked.extend(writer.await.unwrap());
    }
    let alive: Vec<u64> = ids.iter().copied().filter(|id| *id != leader).collect();
    let new_leader = leader_of(&nodes[(dead + 1) % 3], &alive).await;
    assert_ne!(new_leader, leader);
    let after = acked.iter().filter(|(_, at)| *at > killed_at + Duration::from_secs(3)).count();
    assert!(after >= 5, "writes went on after the failover: {after} of {} acknowledged after it", acked.len());
    for base in &survivors {
        for (slug, _) in &acked {
            let (status, _) =
                admin(&client, reqwest::Method::GET, format!("{base}/admin/api/v1/tenants/{slug}"), None).await;
            assert_eq!(status, 200, "acknowledged {slug} is on {base}");
        }
    }
    let acked: Vec<String> = acked.into_iter().map(|(slug, _)| slug).collect();

    // The old leader comes back on its data dir, rejoins as a follower and catches up.
    nodes[dead].restart().await;
    let back = &nodes[dead];
    eventually(Duration::from_secs(20), "the old leader caught up", || async {
        let (status, _) = admin(
            &client,
            reqwest::Method::GET,
            format!("{}/admin/api/v1/tenants/{}", back.base(), acked.last().unwrap()),
            None,
        )
        .await;
        (status == 200).then_some(())
    })
    .await;
    let status = back.status();
    assert_eq!(status["members"].as_array().unwrap().len(), 3, "{status}");
    assert!(
        back.log().contains("installing a control-plane snapshot"),
        "its log fell behind the others' purge, so it caught up from a snapshot"
    );
    assert!(["follower", "leader"].contains(&status["state"].as_str().unwrap()), "{status}");
}

/// A follower cut off from the others (both stopped) refuses control writes with `no_leader` and keeps serving its
/// own tenants' data plane; a node of another cluster cannot be joined without the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_follower_refuses_writes_and_keeps_serving_its_tenants() {
    let client = reqwest::Client::new();
    let mut nodes = vec![Node::start(&[]).await, Node::start(&[]).await, Node::start(&[]).await];
    form(&nodes).await;
    // Three tenants, one per node; find the one homed on the last node.
    for i in 0..3 {
        let slug = format!("c{i}");
        let url = format!("{}/admin/api/v1/tenants", nodes[0].base());
        let (status, body) =
            admin(&client, reqwest::Method::POST, url, Some(json!({ "slug": slug, "name": slug }))).await;
        assert_eq!(status, 201, "{body}");
    }
    // The cluster listener: no token, a wrong token, another node's id, a proxied request aimed past the proxy.
    let internal = format!("http://{}", nodes[2].cluster_addr());
    let r = client.get(format!("{internal}/cluster/v1/status")).send().await.unwrap();
    assert_eq!(r.status(), 401, "no token");
    let r = client
        .get(format!("{internal}/cluster/v1/status"))
        .header("x-gatehouse-token", "a".repeat(38))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "a wrong token");
    let r = client
        .post(format!("{internal}/cluster/v1/raft/vote"))
        .header("x-gatehouse-token", JOIN_TOKEN)
        .header("x-gatehouse-node", "12345")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 421, "a call meant for another node");
    // A client cannot climb out of a tenant's path to the cluster routes through the proxy (raw requests: an HTTP
    // client would resolve the dots itself).
    let dots = |n: usize, dot: &str| format!("{dot}/").repeat(n);
    for slug in ["c0", "c1", "c2"] {
        for n in [2, 5, 6] {
            for dot in ["..", "%2e%2e", "%2E%2e"] {
                let path = format!("/t/{slug}/{}cluster/v1/status", dots(n, dot));
                let answer = raw_get(nodes[0].port, &path).await;
                assert!(!answer.contains("\"members\""), "{path} reached the cluster status: {answer}");
            }
        }
    }
    let r = client
        .get(format!("{internal}/cluster/v1/status"))
        .header("x-gatehouse-token", JOIN_TOKEN)
        .header("x-gatehouse-proxy", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "a proxied request only reaches the proxy");
    // Cut off a follower: stop the two others.
    let ids: Vec<u64> = nodes.iter().map(|n| n.id).collect();
    let leader = leader_of(&nodes[0], &ids).await;
    let cut = if nodes[2].id != leader { 2 } else { 1 };
    let files = std::fs::read_dir(nodes[cut].dir.path().join("data/tenants")).unwrap();
    let own = files.filter_map(|f| f.ok()?.file_name().into_string().ok()).find(|f| f.ends_with(".db")).unwrap();
    let own = own.trim_end_matches(".db").to_owned();
    for other in (0..3).filter(|i| *i != cut) {
        nodes[other].kill();
    }
    let base = nodes[cut].base();
    let (status, body) = admin(
        &client,
        reqwest::Method::POST,
        format!("{base}/admin/api/v1/tenants"),
        Some(json!({ "slug": "xx", "name": "xx" })),
    )
    .await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("no_leader")), "{body}");
    let r = client.get(format!("{base}/t/{own}/api/v1/tenant")).send().await.unwrap();
    assert_eq!(r.status(), 200, "the home keeps serving its tenant");
    let other = ["c0", "c1", "c2"].into_iter().find(|s| *s != own).unwrap();
    let r = client.get(format!("{base}/t/{other}/api/v1/tenant")).send().await.unwrap();
    assert_eq!(r.status(), 503, "a tenant whose home is down");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "tenant_unavailable", "{body}");
    // Once its election timeout passes without a leader, the node is not ready.
    eventually(Duration::from_secs(15), "readyz without a leader", || async {
        let ready = client.get(format!("{base}/readyz")).send().await.ok()?;
        (ready.status() == 503).then_some(())
    })
    .await;

    // A node with the wrong join token is refused, and stays a one-node cluster of itself.
    let stranger =
        Node::start(&[("GATEHOUSE_CLUSTER_JOIN_TOKEN", "another-token-of-at-least-32-characters".into())]).await;
    let (ok, _, err) = stranger.cli(&["join", "--leader", &base]);
    assert!(!ok && err.contains("401"), "{err}");
    assert_eq!(stranger.status()["members"].as_array().unwrap().len(), 1);
}

/// Makes a CA and a certificate for 127.0.0.1 signed by it, with openssl, under `dir`.
fn make_pki(dir: &Path, name: &str, ca: Option<&str>) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    match ca {
        None => run(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ]),
        Some(ca) => {
            run(&[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ]);
            std::fs::write(
                dir.join(format!("{name}.ext")),
                "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n",
            )
            .unwrap();
            run(&[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                &format!("{ca}.pem"),
                "-CAkey",
                &format!("{ca}.key"),
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &format!("{name}.pem"),
                "-extfile",
                &format!("{name}.ext"),
            ]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_keeps_out_peers_without_the_cluster_ca() {
    if !require_tool("openssl") {
        return;
    }
    let pki = tempfile::tempdir().unwrap();
    make_pki(pki.path(), "ca", None);
    make_pki(pki.path(), "rogue-ca", None);
    for (name, ca) in [("a", "ca"), ("b", "ca"), ("c", "rogue-ca")] {
        make_pki(pki.path(), name, Some(ca));
    }
    let tls = |name: &str, ca: &str| {
        let path = |f: String| pki.path().join(f).display().to_string();
        vec![
            ("GATEHOUSE_CLUSTER_TLS_CERT", path(format!("{name}.pem"))),
            ("GATEHOUSE_CLUSTER_TLS_KEY", path(format!("{name}.key"))),
            ("GATEHOUSE_CLUSTER_TLS_CA", path(format!("{ca}.pem"))),
        ]
    };
    let nodes = [Node::start(&tls("a", "ca")).await, Node::start(&tls("b", "ca")).await];
    let (ok, _, err) = nodes[1].cli(&["join", "--leader", &nodes[0].base()]);
    assert!(!ok && err.contains("plain HTTP"), "with TLS the token does not go over plain HTTP: {err}");
    let (ok, _, err) = nodes[1].cli(&["join", "--leader", &nodes[0].cluster_addr()]);
    assert!(ok, "join over the cluster channel: {err}");
    assert_eq!(nodes[0].status()["members"].as_array().unwrap().len(), 2);
    let client = reqwest::Client::new();
    let (status, body) = admin(
        &client,
        reqwest::Method::POST,
        format!("{}/admin/api/v1/tenants", nodes[1].base()),
        Some(json!({ "slug": "tls", "name": "tls" })),
    )
    .await;
    assert_eq!(status, 201, "a write forwarded over mutual TLS: {body}");

    // A node whose certificate another CA signed: the leader cannot reach it, so the join is refused.
    let rogue = Node::start(&tls("c", "rogue-ca")).await;
    let (ok, _, err) = rogue.cli(&["join", "--leader", &nodes[0].cluster_addr()]);
    assert!(!ok, "a node with another CA's certificate gets no session with the leader: {err}");

    // The cluster port speaks only TLS with a client certificate: plaintext and certificate-less clients get
    // nothing, even with the right token.
    let addr = nodes[0].cluster_addr();
    let plain = client
        .get(format!("http://{addr}/cluster/v1/ping"))
        .header("x-gatehouse-token", JOIN_TOKEN)
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success(), "plaintext is refused");
    let ca = reqwest::Certificate::from_pem(&std::fs::read(pki.path().join("ca.pem")).unwrap()).unwrap();
    let anonymous = reqwest::Client::builder().tls_certs_only([ca]).build().unwrap();
    let answer = anonymous
        .post(format!("https://{addr}/cluster/v1/raft/vote"))
        .header("x-gatehouse-token", JOIN_TOKEN)
        .json(&json!({}))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(answer.is_err(), "a client without a certificate gets no TLS session: {answer:?}");
}

/// Concurrent clients write and read tenant names through the admin API of every live node while the leader is
/// killed twice (and restarted); the recorded history must be linearizable per tenant (`linearizable::check`, a
/// Wing-Gong-Lowe search like Knossos's). Writes without an answer count as maybe-applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_reads_and_writes_stay_linearizable_through_leader_kills() {
    use crate::linearizable::{Kind, Op, check};
    use std::sync::{Arc, Mutex};

    let client = reqwest::Client::new();
    let mut nodes = vec![Node::start(&[]).await, Node::start(&[]).await, Node::start(&[]).await];
    form(&nodes).await;
    let keys: Vec<String> = (0..6).map(|i| format!("k{i}")).collect();
    for key in &keys {
        let url = format!("{}/admin/api/v1/tenants", nodes[0].base());
        let (status, body) =
            admin(&client, reqwest::Method::POST, url, Some(json!({ "slug": key, "name": key }))).await;
        assert_eq!(status, 201, "{body}");
    }
    let bases: Arc<Mutex<Vec<Option<String>>>> = Arc::new(Mutex::new(nodes.iter().map(|n| Some(n.base())).collect()));
    let history: Arc<Mutex<Vec<(usize, Op)>>> = Arc::default();
    let started = std::time::Instant::now();
    let run_for = Duration::from_secs(14);
    let clients: Vec<_> = (0..4u64)
        .map(|c| {
            let (client, bases, history, keys) = (client.clone(), bases.clone(), history.clone(), keys.clone());
            tokio::spawn(async move {
                let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ (c + 1);
                let mut next = move || {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed
                };
                let mut n = 0;
                while started.elapsed() < run_for {
                    let alive: Vec<String> = bases.lock().unwrap().iter().flatten().cloned().collect();
                    let base = alive[next() as usize % alive.len()].clone();
                    let key = next() as usize % keys.len();
                    if history.lock().unwrap().iter().filter(|(k, _)| *k == key).count() >= 110 {
                        tokio::time::sleep(Duration::from_millis(40)).await;
                        continue;
                    }
                    let url = format!("{base}/admin/api/v1/tenants/{}", keys[key]);
                    let call = started.elapsed().as_secs_f64();
                    let op = if next() % 10 < 4 {
                        n += 1;
                        let value = format!("c{c}-{n}");
                        let (status, _) =
                            admin(&client, reqwest::Method::PATCH, url, Some(json!({ "name": value }))).await;
                        let ret = (status == 200).then(|| started.elapsed().as_secs_f64());
                        Some(Op { call, ret, kind: Kind::Write(value) })
                    } else {
                        let (status, body) = admin(&client, reqwest::Method::GET, url, None).await;
                        let ret = started.elapsed().as_secs_f64();
                        (status == 200).then(|| Op {
                            call,
                            ret: Some(ret),
                            kind: Kind::Read(body["name"].as_str().unwrap_or_default().to_owned()),
                        })
                    };
                    if let Some(op) = op {
                        history.lock().unwrap().push((key, op));
                    }
                    tokio::time::sleep(Duration::from_millis(40)).await;
                }
            })
        })
        .collect();
    let ids: Vec<u64> = nodes.iter().map(|n| n.id).collect();
    for (kill_at, restart_at) in [(3, 6), (8, 11)] {
        tokio::time::sleep(Duration::from_secs(kill_at).saturating_sub(started.elapsed())).await;
        let live = nodes.iter().position(|n| n.server.is_some()).unwrap();
        let leader = leader_of(&nodes[live], &ids).await;
        let index = ids.iter().position(|id| *id == leader).unwrap();
        bases.lock().unwrap()[index] = None;
        nodes[index].kill();
        tokio::time::sleep(Duration::from_secs(restart_at).saturating_sub(started.elapsed())).await;
        nodes[index].restart().await;
        bases.lock().unwrap()[index] = Some(nodes[index].base());
    }
    for c in clients {
        c.await.unwrap();
    }
    let history = history.lock().unwrap().clone();
    let writes = history.iter().filter(|(_, op)| matches!(op.kind, Kind::Write(_)) && op.ret.is_some()).count();
    let reads = history.iter().filter(|(_, op)| matches!(op.kind, Kind::Read(_))).count();
    assert!(writes >= 50 && reads >= 50, "enough history: {writes} acknowledged writes, {reads} reads");
    for (k, key) in keys.iter().enumerate() {
        let ops: Vec<Op> = history.iter().filter(|(i, _)| *i == k).map(|(_, op)| op.clone()).collect();
        if let Err(why) = check(key, &ops) {
            panic!("{key}: {why}\n{ops:#?}");
        }
    }
}

/// Every tenant-scoped request works through a node that is not the tenant's home: the admin API (users, clients,
/// a product, a plugin upload), the hosted login page, a full OpenID Connect code flow by a third-party client
/// (authlib) whose issuer is the non-home node, and a server-sent event stream; tokens verify with either node's
/// JWKS, and the home sees the client's address and the request id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_requests_work_through_a_node_that_is_not_home() {
    let client = reqwest::Client::new();
    let front_port = fresh_port();
    let public = [("GATEHOUSE_PUBLIC_URL", format!("http://127.0.0.1:{front_port}"))];
    let nodes = vec![Node::start(&public).await, Node::start_at(front_port, &public).await];
    form(&nodes).await;
    let (home, front) = (&nodes[0], &nodes[1]);
    let f = front.base();
    let post = |url: String, body: Value| {
        let client = client.clone();
        async move { admin(&client, reqwest::Method::POST, url, Some(body)).await }
    };
    // Both nodes hold no tenant: a tie goes to the node that creates it.
    let (status, body) =
        post(format!("{}/admin/api/v1/tenants", home.base()), json!({"slug": "acme", "name": "Acme"})).await;
    assert_eq!(status, 201, "{body}");
    assert!(home.dir.path().join("data/tenants/acme.db").exists());
    assert!(!front.dir.path().join("data/tenants/acme.db").exists(), "the tenant's file lives on its home only");
    assert_eq!(body["home_node"].as_u64(), Some(home.id), "{body}");
    // A home given explicitly, and one that is no member.
    let wanted = json!({"slug": "beta", "name": "Beta", "home_node": front.id});
    let (status, body) = post(format!("{}/admin/api/v1/tenants", home.base()), wanted).await;
    assert_eq!((status, body["home_node"].as_u64()), (201, Some(front.id)), "{body}");
    eventually(Duration::from_secs(10), "the file on the chosen home", || async {
        front.dir.path().join("data/tenants/beta.db").exists().then_some(())
    })
    .await;
    let stranger = json!({"slug": "gamma", "name": "Gamma", "home_node": 42});
    let (status, body) = post(format!("{}/admin/api/v1/tenants", home.base()), stranger).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("validation_failed")), "{body}");

    let user = json!({"email": "ada@example.com", "password": PASSWORD, "email_verified": true, "name": "Ada"});
    let (status, body) = post(format!("{f}/admin/api/v1/tenants/acme/users"), user).await;
    assert_eq!(status, 201, "a user created through the other node: {body}\n{}\n{}", front.log(), home.log());
    let redirect = crate::oidc::REDIRECT;
    let app_client = json!({
        "name": "Python app", "type": "confidential", "first_party": true, "redirect_uris": [redirect],
        "grant_types": ["authorization_code", "client_credentials"], "token_endpoint_auth_method": "client_secret_post",
        "scopes": ["openid", "profile", "email"]
    });
    let (status, registered) = post(format!("{f}/admin/api/v1/tenants/acme/clients"), app_client).await;
    assert_eq!(status, 201, "{registered}");
    let (id, secret) = (registered["client_id"].as_str().unwrap(), registered["client_secret"].as_str().unwrap());

    // The hosted login page, and the request id and client address, through the other node.
    let r = client.get(format!("{f}/t/acme/login")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("<form"), "the home's login page");
    let r = client
        .get(format!("{f}/t/acme/api/v1/tenant"))
        .header("x-request-id", "proxied-request-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "proxied-request-1");
    let logged = home.log();
    let line = logged.lines().find(|l| l.contains("proxied-request-1")).expect("the home logged the request id");
    assert!(line.contains("/t/acme/api/v1/tenant"), "{line}");

    // A token minted through the other node verifies with the key set of either node.
    let r = client
        .post(format!("{f}/t/acme/oauth2/token"))
        .form(&[("grant_type", "client_credentials"), ("client_id", id), ("client_secret", secret)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let token: Value = r.json().await.unwrap();
    let jwt = token["access_token"].as_str().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, jwt.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    for node in &nodes {
        let jwks: Value = client
            .get(format!("{}/t/acme/.well-known/jwks.json", node.base()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(jwks["keys"].as_array().unwrap().iter().any(|k| k["kid"] == header["kid"]), "{jwks}");
    }

    // A third-party client runs the whole code flow against the non-home node (its public URL is the issuer).
    if require_python_module("authlib") {
        let script = crate::oidc::clients_dir().join("authlib_check.py");
        let (id, secret, issuer) = (id.to_owned(), secret.to_owned(), format!("{f}/t/acme"));
        let out = tokio::task::spawn_blocking(move || {
            Command::new("python3")
                .arg(script)
                .env("ISSUER", issuer)
                .env("CLIENT_ID", id)
                .env("CLIENT_SECRET", secret)
                .env("REDIRECT_URI", redirect)
                .env("EMAIL", "ada@example.com")
                .env("PASSWORD", PASSWORD)
                .env("CC_SCOPE", "")
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "authlib through the other node:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("all checks passed"), "{stdout}");
    }

    // A plugin upload streams through to the home.
    if let Some(bytes) = crate::plugins::component("c-noop-login") {
        let plugin = json!({"name": "guard", "world": "login", "timeout_ms": 1000});
        let (status, body) = post(format!("{f}/admin/api/v1/tenants/acme/plugins"), plugin).await;
        assert_eq!(status, 201, "{body}");
        let r = client
            .post(format!("{f}/admin/api/v1/tenants/acme/plugins/guard/versions"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/wasm")
            .body(bytes)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }

    // A server-sent event stream through the other node hears a change made through it.
    if require_python_module("httpx_sse") {
        let product = json!({"title": "Bell", "handle": "bell", "status": "active",
            "variants": [{"sku": "BELL", "price": 1000, "stock": 5}]});
        let (status, body) = post(format!("{f}/admin/api/v1/tenants/acme/products"), product).await;
        assert_eq!(status, 201, "{body}");
        let stream = crate::orders::SseClient::start(&format!("{f}/t/acme/api/v1/stock/events?sku=BELL"), None);
        let first = stream.take(1).remove(0);
        assert_eq!(first["event"], "stock", "{first}");
        let adjust = json!({"delta": -5, "reason": "count"});
        let (status, body) = post(format!("{f}/admin/api/v1/tenants/acme/inventory/BELL/adjust"), adjust).await;
        assert_eq!(status, 200, "{body}");
        let moved = stream.take(1).remove(0);
        let data: Value = serde_json::from_str(moved["data"].as_str().unwrap()).unwrap();
        assert_eq!((moved["event"].as_str(), data["in_stock"].as_bool()), (Some("stock"), Some(false)), "{moved}");
    }
}
