//! Mutual TLS between nodes (rustls on aws-lc-rs): the server side asks every peer for a certificate the cluster
//! CA signed and refuses a connection without one (plaintext included); the client side trusts only that CA and
//! presents this node's certificate.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::config::ClusterTls;
use crate::error::{Error, Result};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn roots(tls: &ClusterTls) -> Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    for ca in &tls.ca {
        roots.add(ca.clone()).map_err(|e| Error::internal(format!("GATEHOUSE_CLUSTER_TLS_CA: {e}")))?;
    }
    Ok(Arc::new(roots))
}

/// The client configuration: the cluster CA as the only root, this node's certificate as the client's.
pub fn client_config(tls: &ClusterTls) -> Result<ClientConfig> {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(Error::internal)?
        .with_root_certificates(roots(tls)?)
        .with_client_auth_cert(tls.cert.clone(), tls.key.clone_key())
        .map_err(|e| Error::internal(format!("GATEHOUSE_CLUSTER_TLS_CERT/KEY: {e}")))
}

/// The server configuration: a client certificate signed by the cluster CA is required.
pub fn server_config(tls: &ClusterTls) -> Result<ServerConfig> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(tls)?, provider())
        .build()
        .map_err(|e| Error::internal(format!("GATEHOUSE_CLUSTER_TLS_CA: {e}")))?;
    ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(Error::internal)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(tls.cert.clone(), tls.key.clone_key())
        .map_err(|e| Error::internal(format!("GATEHOUSE_CLUSTER_TLS_CERT/KEY: {e}")))
}

/// A TLS listener for `axum::serve`: handshakes run on their own tasks (at most 64 at once, 3 s each; a connection
/// beyond that is dropped), so a slow or hostile peer never holds up the next connection; a failed handshake is
/// logged and dropped.
pub struct TlsListener {
    ready: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, config: ServerConfig) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        let handshakes = Arc::new(tokio::sync::Semaphore::new(64));
        let accepting = tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        tracing::warn!(error = %err, "cluster listener: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Over 64 handshakes at once, a new connection is dropped rather than queued behind them.
                let Ok(permit) = handshakes.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, "cluster listener: too many TLS handshakes at once; connection dropped");
                    continue;
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    let _ = stream.set_nodelay(true);
                    match tokio::time::timeout(Duration::from_secs(3), acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(err)) => tracing::warn!(%peer, error = %err, "cluster listener: TLS handshake refused"),
                        Err(_) => tracing::warn!(%peer, "cluster listener: TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { ready, local, accepting })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accepting task ended (never, short of a panic): no connection will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}
