//! The in-process registry compresses as Consul's agent does (§12 of
//! tests/fixtures/consul/README.md): gzip when `Accept-Encoding` asks for
//! it, `Vary: Accept-Encoding` always; and it counts the connections it
//! accepts.

use std::io::Read;

use meshguard::testing::ConsulRegistry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn registry() -> ConsulRegistry {
    let consul = ConsulRegistry::start().await;
    for i in 0..50 {
        consul.register_passing("users", &format!("users-{i}"), "10.0.0.1", 8080);
    }
    consul
}

/// Status, headers (lowercase names) and raw body of a health query.
async fn get(
    consul: &ConsulRegistry,
    accept_encoding: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut request =
        reqwest::Client::new().get(format!("{}/v1/health/service/users?passing", consul.url()));
    if let Some(value) = accept_encoding {
        request = request.header("Accept-Encoding", value);
    }
    let r = request.send().await.unwrap();
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    (status, headers, r.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn a_health_answer_is_gzipped_when_asked_and_says_so() {
    let consul = registry().await;
    let (_, _, plain) = get(&consul, None).await;
    let (status, headers, body) = get(&consul, Some("br, gzip;q=0.8")).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-encoding"], "gzip");
    assert_eq!(headers["vary"], "Accept-Encoding");
    assert!(headers.contains_key("x-consul-index"));
    let mut inflated = Vec::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_end(&mut inflated)
        .unwrap();
    assert_eq!(inflated, plain);
    assert!(
        body.len() * 10 < plain.len(),
        "{} of {}",
        body.len(),
        plain.len()
    );
}

#[tokio::test]
async fn a_health_answer_is_plain_unless_gzip_is_asked_with_a_positive_q() {
    let consul = registry().await;
    for asked in [None, Some("gzip;q=0"), Some("identity"), Some("*")] {
        let (status, headers, body) = get(&consul, asked).await;
        assert_eq!(status, 200);
        assert!(!headers.contains_key("content-encoding"), "{asked:?}");
        assert_eq!(headers["vary"], "Accept-Encoding");
        assert_eq!(body[0], b'[', "{asked:?}");
    }
}

#[tokio::test]
async fn connections_counts_the_connections_accepted() {
    let consul = registry().await;
    assert_eq!(consul.connections(), 0);
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(consul.addr()).await.unwrap();
        s.write_all(
            b"GET /v1/health/service/none HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await.unwrap();
        assert!(answer.starts_with(b"HTTP/1.1 200"));
    }
    assert_eq!(consul.connections(), 2);
}
