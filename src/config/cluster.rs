//! `GATEHOUSE_NODE_ID` and `GATEHOUSE_CLUSTER_*`: whether this node has a cluster listener, how its peers reach
//! it, the shared join token, and the mutual-TLS material (read and checked at start, so a bad file fails fast).

use std::net::SocketAddr;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::{Env, Secret};

/// The cluster side of the configuration. Without `listen` the node is a one-node cluster of itself, as before.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `GATEHOUSE_NODE_ID`: when set, the data dir's id must be this one (or the data dir is new).
    pub node_id: Option<u64>,
    /// The internal listener (`GATEHOUSE_CLUSTER_ADDR`).
    pub listen: Option<SocketAddr>,
    /// `host:port` the peers use (`GATEHOUSE_CLUSTER_ADVERTISE`, else `listen`).
    pub advertise: Option<String>,
    /// The shared secret every internal call and every join carries.
    pub join_token: Option<Secret>,
    /// Mutual TLS between nodes; `None`: plain HTTP.
    pub tls: Option<ClusterTls>,
    /// Log entries between snapshots (`GATEHOUSE_RAFT_SNAPSHOT_ENTRIES`).
    pub snapshot_entries: u64,
}

/// PEM material for mutual TLS, read from the files the variables name.
#[derive(Clone)]
pub struct ClusterTls {
    pub cert: Vec<CertificateDer<'static>>,
    pub key: std::sync::Arc<PrivateKeyDer<'static>>,
    pub ca: Vec<CertificateDer<'static>>,
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClusterTls({} certificate(s), {} CA certificate(s), key ***)", self.cert.len(), self.ca.len())
    }
}

impl ClusterConfig {
    /// The scheme peers are called with.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }
}

pub(super) fn cluster_config<F: Fn(&str) -> Option<String>>(env: &mut Env<F>) -> ClusterConfig {
    let node_id =
        env.get("GATEHOUSE_NODE_ID").map(|_| env.number_or("GATEHOUSE_NODE_ID", || 0u64)).filter(|&id| id > 0);
    let listen = env.get("GATEHOUSE_CLUSTER_ADDR").and_then(|raw| match raw.trim().parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            env.refuse("GATEHOUSE_CLUSTER_ADDR", "a socket address like 0.0.0.0:7080", raw.trim());
            None
        }
    });
    let advertise = match env.get("GATEHOUSE_CLUSTER_ADVERTISE") {
        Some(raw) => {
            let raw = raw.trim().to_owned();
            let valid = raw.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && !host.contains('/') && port.parse::<u16>().is_ok_and(|p| p > 0)
            });
            if !valid {
                env.refuse("GATEHOUSE_CLUSTER_ADVERTISE", "host:port", &raw);
            }
            Some(raw)
        }
        None => match listen {
            Some(addr) if addr.ip().is_unspecified() => {
                env.problem(
                    "GATEHOUSE_CLUSTER_ADVERTISE",
                    format!("needed: GATEHOUSE_CLUSTER_ADDR {addr} listens on every address; say which one peers use"),
                );
                None
            }
            Some(addr) => Some(addr.to_string()),
            None => None,
        },
    };
    let join_token = env.get("GATEHOUSE_CLUSTER_JOIN_TOKEN").map(|t| Secret::new(t.trim()));
    if let Some(token) = &join_token
        && token.expose().len() < 32
    {
        env.refuse("GATEHOUSE_CLUSTER_JOIN_TOKEN", "at least 32 characters", "");
    }
    if listen.is_some() && join_token.is_none() {
        env.problem(
            "GATEHOUSE_CLUSTER_JOIN_TOKEN",
            "needed with GATEHOUSE_CLUSTER_ADDR: the cluster listener answers only calls that carry it".into(),
        );
    }
    let tls = tls(env);
    if tls.is_some() && listen.is_none() {
        env.problem(
            "GATEHOUSE_CLUSTER_ADDR",
            "needed with GATEHOUSE_CLUSTER_TLS_*: TLS is for the cluster listener".into(),
        );
    }
    let snapshot_entries = env.number("GATEHOUSE_RAFT_SNAPSHOT_ENTRIES");
    ClusterConfig { node_id, listen, advertise, join_token, tls, snapshot_entries }
}

/// The three TLS files, all or none, each read and parsed.
fn tls<F: Fn(&str) -> Option<String>>(env: &mut Env<F>) -> Option<ClusterTls> {
    const NAMES: [&str; 3] = ["GATEHOUSE_CLUSTER_TLS_CERT", "GATEHOUSE_CLUSTER_TLS_KEY", "GATEHOUSE_CLUSTER_TLS_CA"];
    let paths = NAMES.map(|name| env.get(name).map(|p| p.trim().to_owned()));
    if paths.iter().all(Option::is_none) {
        return None;
    }
    let mut read = |index: usize| -> Option<Vec<u8>> {
        let name = NAMES[index];
        let Some(path) = &paths[index] else {
            env.problem(name, "needed: the cluster's TLS takes a certificate, its key and the CA, all three".into());
            return None;
        };
        std::fs::read(path).map_err(|e| env.problem(name, format!("cannot read {path}: {e}"))).ok()
    };
    let (cert, key, ca) = (read(0), read(1), read(2));
    let certs = |pem: &[u8]| CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>();
    let cert = match cert.map(|pem| certs(&pem)) {
        Some(Ok(chain)) if !chain.is_empty() => Some(chain),
        Some(_) => {
            env.problem(NAMES[0], "expected PEM certificates (-----BEGIN CERTIFICATE-----)".into());
            None
        }
        None => None,
    };
    let key = match key.map(|pem| PrivateKeyDer::from_pem_slice(&pem)) {
        Some(Ok(key)) => Some(key),
        Some(Err(_)) => {
            env.problem(NAMES[1], "expected a PEM private key (PKCS#8, PKCS#1 or SEC1)".into());
            None
        }
        None => None,
    };
    let ca = match ca.map(|pem| certs(&pem)) {
        Some(Ok(roots)) if !roots.is_empty() => Some(roots),
        Some(_) => {
            env.problem(NAMES[2], "expected PEM CA certificates (-----BEGIN CERTIFICATE-----)".into());
            None
        }
        None => None,
    };
    Some(ClusterTls { cert: cert?, key: std::sync::Arc::new(key?), ca: ca? })
}
