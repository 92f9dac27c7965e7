//! HTTP/2: with prior knowledge on plain endpoints, negotiated by ALPN over
//! TLS, one multiplexed connection per endpoint, and a dropped connection
//! handled like any transport failure.

use std::time::Duration;

use meshguard::client::{HttpProtocol, ServiceClient, TlsConfig};

use crate::support::tls::{Ca, serve, serve_goaway, server_config, version_app};

#[tokio::test]
async fn http2_speaks_h2c_with_prior_knowledge_to_a_plain_endpoint() {
    let server = serve(version_app(), None).await;
    let users = ServiceClient::builder("users")
        .urls([server.url("http")])
        .protocol(HttpProtocol::Http2)
        .build()
        .unwrap();
    let r = users.get("/version").send_raw().await.unwrap();
    assert_eq!(&r.body()[..], b"HTTP/2.0");
}

#[tokio::test]
async fn negotiate_speaks_h2_over_tls_and_http1_stays_http1() {
    let ca = Ca::new();
    let server = serve(
        version_app(),
        Some(server_config(&ca.issue(&["127.0.0.1"]), None)),
    )
    .await;
    let tls = TlsConfig::builder().ca_pem(ca.pem()).build().unwrap();
    for (protocol, expected) in [
        (HttpProtocol::Negotiate, &b"HTTP/2.0"[..]),
        (HttpProtocol::Http2, b"HTTP/2.0"),
        (HttpProtocol::Http1, b"HTTP/1.1"),
    ] {
        let users = ServiceClient::builder("users")
            .urls([server.url("https")])
            .tls(tls.clone())
            .protocol(protocol)
            .build()
            .unwrap();
        let r = users.get("/version").send_raw().await.unwrap();
        assert_eq!(&r.body()[..], expected, "{protocol:?}");
    }
}

#[tokio::test]
async fn negotiate_speaks_http1_to_a_plain_endpoint() {
    let server = serve(version_app(), None).await;
    let users = ServiceClient::builder("users")
        .urls([server.url("http")])
        .protocol(HttpProtocol::Negotiate)
        .build()
        .unwrap();
    let r = users.get("/version").send_raw().await.unwrap();
    assert_eq!(&r.body()[..], b"HTTP/1.1");
}

#[tokio::test]
async fn concurrent_calls_share_one_http2_connection_per_endpoint() {
    let slow = axum::Router::new().route(
        "/slow",
        axum::routing::get(|| async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            "done"
        }),
    );
    let server = serve(slow, None).await;
    let users = ServiceClient::builder("users")
        .urls([server.url("http")])
        .protocol(HttpProtocol::Http2)
        .build()
        .unwrap();
    // One call first, so the connection exists before the burst.
    users.get("/slow").send_raw().await.unwrap();
    let calls = (0..20).map(|_| users.get("/slow").send_raw());
    for r in futures_util::future::join_all(calls).await {
        assert_eq!(&r.unwrap().body()[..], b"done");
    }
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn an_instance_dropping_its_http2_connections_is_retried_on_another() {
    // One instance accepts connections and drops them at once.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dropping = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            drop(tcp);
        }
    });
    let a = serve(version_app(), None).await;
    let b = serve(version_app(), None).await;
    let users = ServiceClient::builder("users")
        .urls([dropping, a.url("http"), b.url("http")])
        .protocol(HttpProtocol::Http2)
        .build()
        .unwrap();
    for _ in 0..30 {
        let r = users.get("/version").send_raw().await.unwrap();
        assert_eq!(&r.body()[..], b"HTTP/2.0");
    }
}

#[tokio::test]
async fn an_instance_closing_its_connections_with_goaway_is_retried_on_another() {
    let closing = serve_goaway(version_app()).await;
    let a = serve(version_app(), None).await;
    let b = serve(version_app(), None).await;
    let users = ServiceClient::builder("users")
        .urls([closing.url("http"), a.url("http"), b.url("http")])
        .protocol(HttpProtocol::Http2)
        .build()
        .unwrap();
    for _ in 0..30 {
        let r = users.get("/version").send_raw().await.unwrap();
        assert_eq!(&r.body()[..], b"HTTP/2.0");
    }
    assert!(closing.connections() >= 1);
}
