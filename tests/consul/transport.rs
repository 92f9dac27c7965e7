//! The watch's transport: what a query asks (gzip, its parameters, the
//! token), connection reuse, the body bound, the default wait. Against the
//! in-process registry (which compresses when asked, as Consul does) and
//! a scripted HTTP/1.1 server on 127.0.0.1:0 that records each request.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meshguard::backoff::Backoff;
use meshguard::discovery::consul::{ConsulDiscovery, ConsulDiscoveryBuilder, ConsulToken};
use meshguard::testing::ConsulRegistry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

fn watch(consul: &ConsulRegistry, service: &str) -> ConsulDiscoveryBuilder {
    ConsulDiscovery::builder(consul.url(), service)
        .wait(Duration::from_secs(2))
        .min_interval(Duration::from_millis(10))
        .error_backoff(Backoff::constant(Duration::from_millis(50)))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// An HTTP/1.1 server that records every request head and answers the
/// n-th request (from 0) with `answer(n)`: its extra headers and body, or
/// `None` to hold the request unanswered.
struct Scripted {
    url: String,
    heads: Arc<Mutex<Vec<String>>>,
}

type Script = fn(usize) -> Option<(&'static str, Vec<u8>)>;

impl Scripted {
    async fn start(answer: Script) -> Scripted {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let heads = Arc::new(Mutex::new(Vec::new()));
        let recorded = heads.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    loop {
                        let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
                            let mut chunk = [0u8; 4096];
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
                        buffer.drain(..end + 4);
                        let n = {
                            let mut heads = recorded.lock().unwrap();
                            heads.push(head);
                            heads.len() - 1
                        };
                        let Some((headers, body)) = answer(n) else {
                            std::future::pending::<()>().await;
                            return;
                        };
                        let head = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{headers}\
                             content-length: {}\r\n\r\n",
                            body.len()
                        );
                        if stream.write_all(head.as_bytes()).await.is_err()
                            || stream.write_all(&body).await.is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        Scripted { url, heads }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

const ONE_INSTANCE: &str = r#"[{"Node": {"ID": "n", "Node": "n", "Address": "10.0.0.9",
    "Datacenter": "dc1"}, "Service": {"ID": "users-1", "Service": "users", "Address": "",
    "Port": 8081, "Tags": []}, "Checks": []}]"#;

#[tokio::test]
async fn the_query_asks_for_gzip_and_a_compressing_registrys_answer_is_decoded() {
    let consul = ConsulRegistry::start().await;
    for i in 0..200 {
        consul.register_passing("users", &format!("users-{i}"), "10.0.0.1", 8000 + i);
    }
    // The plain answer, for comparison (reqwest here does not ask for gzip).
    let plain = reqwest::get(format!("{}/v1/health/service/users?passing", consul.url()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .len() as u64;
    let d = watch(&consul, "users").build().unwrap();
    let mut status = d.status_watch();
    status.wait_for(|s| s.index > 0).await.unwrap();
    let s = d.status();
    assert_eq!(s.endpoints, 200);
    assert!(
        s.received_bytes * 10 < plain,
        "{} bytes received for a {plain}-byte answer",
        s.received_bytes
    );
}

#[tokio::test]
async fn the_query_carries_its_parameters_form_encoded_and_the_token_in_a_header() {
    let server = Scripted::start(|n| {
        (n == 0).then(|| ("x-consul-index: 7\r\n", ONE_INSTANCE.as_bytes().to_vec()))
    })
    .await;
    let d = ConsulDiscovery::builder(&server.url, "users api")
        .tag("v2")
        .filter(r#"Service.Meta.zone == "eu&1""#)
        .datacenter("dc1")
        .stale(true)
        .token(ConsulToken::new("s3cr3t"))
        .wait(Duration::from_secs(90))
        .build()
        .unwrap();
    let mut status = d.status_watch();
    status.wait_for(|s| s.index == 7).await.unwrap();
    // The blocking query that follows has been sent.
    tokio::time::timeout(Duration::from_secs(2), async {
        while server.heads().len() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("a second query within 2 s");
    let heads = server.heads();
    let target = |head: &str| head.lines().next().unwrap().to_string();
    let query = "/v1/health/service/users%20api?passing\
                 &filter=%22v2%22+in+Service.Tags+and+%28Service.Meta.zone+%3D%3D+%22eu%261%22%29\
                 &dc=dc1&stale";
    assert_eq!(target(&heads[0]), format!("GET {query} HTTP/1.1"));
    assert_eq!(
        target(&heads[1]),
        format!("GET {query}&index=7&wait=90s HTTP/1.1")
    );
    let lower = heads[1].to_lowercase();
    assert!(lower.contains("\r\naccept-encoding: gzip"), "{}", heads[1]);
    assert!(lower.contains("\r\nx-consul-token: s3cr3t"), "{}", heads[1]);
}

#[tokio::test]
async fn a_gzip_answer_is_decoded() {
    let server = Scripted::start(|n| {
        (n == 0).then(|| {
            (
                "x-consul-index: 3\r\ncontent-encoding: gzip\r\n",
                gzip(ONE_INSTANCE.as_bytes()),
            )
        })
    })
    .await;
    let d = ConsulDiscovery::builder(&server.url, "users")
        .build()
        .unwrap();
    let mut status = d.status_watch();
    let s = status.wait_for(|s| s.index == 3).await.unwrap().clone();
    assert_eq!(s.endpoints, 1);
    assert_eq!(s.received_bytes, gzip(ONE_INSTANCE.as_bytes()).len() as u64);
}

#[tokio::test]
async fn one_connection_serves_every_blocking_query() {
    let consul = ConsulRegistry::start().await;
    consul.register_passing("users", "users-0", "10.0.0.1", 8080);
    let d = watch(&consul, "users").build().unwrap();
    let mut status = d.status_watch();
    status.wait_for(|s| s.endpoints == 1).await.unwrap();
    for i in 1..=5 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        consul.register_passing("users", &format!("users-{i}"), "10.0.0.1", 8080);
        status.wait_for(|s| s.endpoints == i + 1).await.unwrap();
    }
    assert_eq!(consul.connections(), 1);
}

#[tokio::test]
async fn an_answer_over_max_body_size_fails_naming_it_and_keeps_the_last_good_endpoints() {
    let consul = ConsulRegistry::start().await;
    consul.register_passing("users", "users-0", "10.0.0.1", 8080);
    let d = watch(&consul, "users")
        .max_body_size(8 * 1024)
        .build()
        .unwrap();
    let mut status = d.status_watch();
    status.wait_for(|s| s.endpoints == 1).await.unwrap();
    // Some 1.3 KB each: the answer outgrows 8 KiB (decompressed).
    for i in 1..10 {
        consul.register_passing("users", &format!("users-{i}"), "10.0.0.1", 8080);
    }
    let s = status.wait_for(|s| s.failures >= 2).await.unwrap().clone();
    let error = s.last_error.unwrap();
    assert!(error.contains("max_body_size"), "{error}");
    assert_eq!(s.endpoints, 1);
}

#[tokio::test(start_paused = true)]
async fn a_blocking_query_waits_5_minutes_by_default_and_fails_after_wait_jitter_and_margin() {
    // The first query is answered; the blocking one that follows never is.
    let server = Scripted::start(|n| {
        (n == 0).then(|| ("x-consul-index: 7\r\n", ONE_INSTANCE.as_bytes().to_vec()))
    })
    .await;
    let d = ConsulDiscovery::builder(&server.url, "users")
        .build()
        .unwrap();
    let mut status = d.status_watch();
    status.wait_for(|s| s.index == 7).await.unwrap();
    let start = Instant::now();
    let s = status.wait_for(|s| s.failures == 1).await.unwrap().clone();
    let took = start.elapsed();
    // 300 s, Consul's jitter of up to 300/16 s, and 5 s of margin.
    assert!(
        took >= Duration::from_millis(323_750) && took <= Duration::from_millis(323_752),
        "{took:?}"
    );
    assert_eq!(
        s.last_error.as_deref(),
        Some("no complete answer within 323.75s")
    );
    assert!(
        server.heads()[1].contains("&wait=300s "),
        "{}",
        server.heads()[1]
    );
    assert_eq!(s.endpoints, 1);
}
