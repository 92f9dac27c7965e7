//! TLS and HTTP/2 servers for the client tests: a certificate authority
//! made in the test (rcgen), servers speaking TLS with ALPN, and plain
//! servers that count their connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate authority made for one test.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate and its key, in PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    pub fn new() -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "meshguard test CA");
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A certificate for these names (DNS names, or IP addresses).
    pub fn issue(&self, names: &[&str]) -> Issued {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "meshguard test");
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server configuration presenting `issued`, offering h2 and http/1.1,
/// and requiring a client certificate from `client_ca` if given.
pub fn server_config(issued: &Issued, client_ca: Option<&Ca>) -> rustls::ServerConfig {
    let chain = CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap();
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_slice(ca.pem().as_bytes()).unwrap())
                .unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}

/// A server: what it serves on, and how many connections it accepted
/// (TCP, before any TLS handshake).
pub struct Server {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
}

impl Server {
    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.addr)
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Serves `app` over TLS (or plain TCP when `tls` is `None`), HTTP/1.1 or
/// HTTP/2 as the client chooses (ALPN, or the h2c preface), until the
/// test's runtime ends.
pub async fn serve(app: axum::Router, tls: Option<rustls::ServerConfig>) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    let acceptor = tls.map(|c| tokio_rustls::TlsAcceptor::from(Arc::new(c)));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            counted.fetch_add(1, Ordering::SeqCst);
            let (app, acceptor) = (app.clone(), acceptor.clone());
            tokio::spawn(async move {
                let service = TowerToHyperService::new(app);
                let server = auto::Builder::new(TokioExecutor::new());
                match acceptor {
                    Some(acceptor) => {
                        // A refused handshake (no client certificate, an
                        // untrusted client) ends the connection.
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            let _ = server.serve_connection(TokioIo::new(tls), service).await;
                        }
                    }
                    None => {
                        let _ = server.serve_connection(TokioIo::new(tcp), service).await;
                    }
                }
            });
        }
    });
    Server { addr, connections }
}

/// Serves `app` over plain TCP, HTTP/1.1 or h2c, closing every connection
/// as soon as it is accepted, before reading anything (no GOAWAY: the
/// tests that need one use h2's own server).
pub async fn serve_closing(app: axum::Router) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let app = app.clone();
            tokio::spawn(async move {
                let server = auto::Builder::new(TokioExecutor::new());
                let conn =
                    server.serve_connection(TokioIo::new(tcp), TowerToHyperService::new(app));
                let mut conn = std::pin::pin!(conn);
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            });
        }
    });
    Server { addr, connections }
}

/// An app answering `/version` with the HTTP version the request came in.
pub fn version_app() -> axum::Router {
    axum::Router::new().route(
        "/version",
        axum::routing::get(
            |req: axum::extract::Request| async move { format!("{:?}", req.version()) },
        ),
    )
}
