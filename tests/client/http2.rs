//! HTTP/2: with prior knowledge on plain endpoints, negotiated by ALPN over
//! TLS, one multiplexed connection per endpoint, and a dropped connection
//! handled like any transport failure.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use meshguard::client::{HttpProtocol, ServiceClient, TlsConfig};

use crate::support::tls::{Ca, serve, serve_closing, server_config, version_app};

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
    every_call_answered_beside(dropping).await;
}

/// An HTTP/2 server (h2 itself, no hyper) that answers every stream with
/// `RST_STREAM(REFUSED_STREAM)`, or every connection with a GOAWAY that
/// processed no stream; how many streams or connections it saw.
async fn refusing(goaway: bool) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let counted = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(tcp).await else {
                    return;
                };
                if goaway {
                    counted.fetch_add(1, Ordering::SeqCst);
                    conn.abrupt_shutdown(h2::Reason::NO_ERROR);
                    while let Some(Ok(_)) = conn.accept().await {}
                } else {
                    while let Some(Ok((_, mut respond))) = conn.accept().await {
                        counted.fetch_add(1, Ordering::SeqCst);
                        respond.send_reset(h2::Reason::REFUSED_STREAM);
                    }
                }
            });
        }
    });
    (url, seen)
}

#[tokio::test]
async fn an_instance_refusing_its_streams_is_retried_on_another() {
    let (refusing, seen) = refusing(false).await;
    every_call_answered_beside(refusing).await;
    assert!(seen.load(Ordering::SeqCst) >= 1);
}

#[tokio::test]
async fn an_instance_answering_with_goaway_is_retried_on_another() {
    let (closing, seen) = refusing(true).await;
    every_call_answered_beside(closing).await;
    assert!(seen.load(Ordering::SeqCst) >= 1);
}

#[tokio::test]
async fn an_instance_closing_each_connection_at_once_is_retried_on_another() {
    let closing = serve_closing(version_app()).await;
    every_call_answered_beside(closing.url("http")).await;
    assert!(closing.connections() >= 1);
}

/// Thirty HTTP/2 calls over `bad` and two good instances: every one is
/// answered, by the good ones.
async fn every_call_answered_beside(bad: impl Into<String>) {
    let a = serve(version_app(), None).await;
    let b = serve(version_app(), None).await;
    let users = ServiceClient::builder("users")
        .urls([bad.into(), a.url("http"), b.url("http")])
        .protocol(HttpProtocol::Http2)
        .build()
        .unwrap();
    for _ in 0..30 {
        let r = users.get("/version").send_raw().await.unwrap();
        assert_eq!(&r.body()[..], b"HTTP/2.0");
    }
}
