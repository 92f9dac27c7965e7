//! Real HTTP servers on 127.0.0.1:0 for the client tests.

use std::net::SocketAddr;

/// Serves `app` on a free local port until the test's runtime ends.
pub async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// The URL of a server.
pub fn url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// A local port nothing listens on: connections to it are refused.
pub async fn closed_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}
