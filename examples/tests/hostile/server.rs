//! Slow and silent clients against `server::serve`, and shutdown with
//! clients connected: on tokio's paused clock with real sockets, so every
//! bound is checked to the millisecond.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use meshguard_examples::config::ServerConfig;
use meshguard_examples::server::serve;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

const CONFIG: ServerConfig = ServerConfig {
    header_read_timeout: Duration::from_secs(5),
    request_timeout: Duration::from_secs(30),
    drain: Duration::from_secs(10),
};

/// `/health`, and `/slow`, which answers after an hour.
fn app() -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                "late"
            }),
        )
        .route(
            "/two-seconds",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                "done"
            }),
        )
}

/// A server under `config`: its address, its shutdown trigger, and the
/// task that ends when `serve` returns.
async fn start(config: ServerConfig) -> (SocketAddr, oneshot::Sender<()>, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        serve(listener, app(), config, None, shutdown)
            .await
            .unwrap();
    });
    (addr, stop, task)
}

/// Reads until the server closes the connection (a reset counts).
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out).await;
    out
}

/// Sends `GET path` on a keep-alive connection and reads one answer's
/// head and (short) body.
async fn ask(stream: &mut TcpStream, path: &str) -> String {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Lets the server take in what was sent: on the paused clock, a
/// millisecond passes only once every task waits.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

#[tokio::test(start_paused = true)]
async fn a_client_that_sends_nothing_is_disconnected_at_the_header_timeout() {
    let (addr, _stop, _task) = start(CONFIG).await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    assert!(read_to_close(&mut client).await.is_empty());
    assert_eq!(started.elapsed(), CONFIG.header_read_timeout);
}

#[tokio::test(start_paused = true)]
async fn a_client_that_never_finishes_its_headers_is_disconnected_at_the_header_timeout() {
    let (addr, _stop, _task) = start(CONFIG).await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    client
        .write_all(b"GET /health HTTP/1.1\r\nHost: test\r\nX-Slow: a")
        .await
        .unwrap();
    read_to_close(&mut client).await;
    assert_eq!(started.elapsed(), CONFIG.header_read_timeout);
}

#[tokio::test(start_paused = true)]
async fn a_client_stuck_in_the_http2_preface_is_disconnected_at_the_header_timeout() {
    let (addr, _stop, _task) = start(CONFIG).await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    client.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    read_to_close(&mut client).await;
    assert_eq!(started.elapsed(), CONFIG.header_read_timeout);
}

#[tokio::test(start_paused = true)]
async fn three_hundred_half_open_connections_are_closed_at_the_header_timeout() {
    let (addr, _stop, _task) = start(CONFIG).await;
    let started = Instant::now();
    let mut clients = Vec::new();
    // A third send nothing, a third part of a request head, a third part
    // of the HTTP/2 preface.
    let starts: [&[u8]; 3] = [b"", b"GET /health HTTP/1.1\r\n", b"PRI * HTTP/2.0\r\n"];
    for n in 0..300 {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(starts[n % 3]).await.unwrap();
        clients.push(c);
    }
    for c in &mut clients {
        read_to_close(c).await;
    }
    assert_eq!(started.elapsed(), CONFIG.header_read_timeout);
}

#[tokio::test(start_paused = true)]
async fn an_idle_keep_alive_connection_is_closed_at_the_header_timeout() {
    let (addr, _stop, _task) = start(CONFIG).await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    assert!(
        ask(&mut client, "/health")
            .await
            .starts_with("HTTP/1.1 200")
    );
    let idle = Instant::now();
    read_to_close(&mut client).await;
    assert_eq!(idle.elapsed(), CONFIG.header_read_timeout);
}

#[tokio::test(start_paused = true)]
async fn a_handler_slower_than_the_request_timeout_is_cut_with_503() {
    let (addr, _stop, _task) = start(CONFIG).await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let answer = ask(&mut client, "/slow").await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert_eq!(started.elapsed(), CONFIG.request_timeout);
}

#[tokio::test(start_paused = true)]
async fn shutdown_with_an_idle_keep_alive_client_ends_at_once() {
    let (addr, stop, task) = start(CONFIG).await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    assert!(
        ask(&mut client, "/health")
            .await
            .starts_with("HTTP/1.1 200")
    );
    let started = Instant::now();
    stop.send(()).unwrap();
    task.await.unwrap();
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert!(read_to_close(&mut client).await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_request_in_flight_at_shutdown_completes_within_the_drain() {
    let (addr, stop, task) = start(CONFIG).await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET /two-seconds HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let sent = Instant::now();
    settle().await;
    stop.send(()).unwrap();
    let answer = String::from_utf8(read_to_close(&mut client).await).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("done"), "{answer}");
    task.await.unwrap();
    assert_eq!(sent.elapsed(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn shutdown_ends_at_the_drain_bound_when_a_request_never_finishes() {
    let (addr, stop, task) = start(CONFIG).await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    settle().await;
    let started = Instant::now();
    stop.send(()).unwrap();
    task.await.unwrap();
    assert_eq!(started.elapsed(), CONFIG.drain);
    assert!(read_to_close(&mut client).await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_listener_refuses_connections_once_shutdown_has_drained() {
    let (addr, stop, task) = start(CONFIG).await;
    stop.send(()).unwrap();
    task.await.unwrap();
    assert!(TcpStream::connect(addr).await.is_err());
}
