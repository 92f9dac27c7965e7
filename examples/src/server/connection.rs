//! One connection: HTTP/1.1 or h2c, with the header-read timeout, under a
//! graceful-shutdown watcher.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::Watcher;
use tokio::net::TcpStream;
use tower::Service;
use tower_http::timeout::TimeoutLayer;

use super::ServerConfig;

/// The connection builder: HTTP/1.1 with the header-read timeout (hyper
/// arms it for each request head, so an idle keep-alive connection is
/// closed after it too) and at most 64 KiB of headers; h2c with at most
/// 100 concurrent streams, 16 KiB of headers and keep-alive pings.
pub(super) fn builder(config: &ServerConfig) -> Builder<TokioExecutor> {
    let mut b = Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(64 * 1024);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(100)
        .max_header_list_size(16 * 1024)
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(10));
    b
}

/// `app` with the request timeout: an answer not ready (body read
/// included) within it is 503.
pub(super) fn with_request_timeout(app: Router, config: &ServerConfig) -> Router {
    app.layer(TimeoutLayer::with_status_code(
        StatusCode::SERVICE_UNAVAILABLE,
        config.request_timeout,
    ))
}

/// Serves one connection until it ends, the watcher's shutdown finishes
/// it, or it has sent no complete request head within the header-read
/// timeout.
///
/// hyper's own header timeout starts once the protocol is known; telling
/// HTTP/1.1 from h2c reads the first bytes with no timeout of its own, so
/// a client that sends nothing (or a few bytes of the HTTP/2 preface)
/// would stay forever. This function bounds that: a connection whose
/// first request has not reached the app by the header-read timeout is
/// closed.
pub(super) async fn serve(
    stream: TcpStream,
    app: Router,
    builder: Arc<Builder<TokioExecutor>>,
    watcher: Watcher,
    config: ServerConfig,
) {
    let started = Arc::new(AtomicBool::new(false));
    let seen = started.clone();
    let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
        seen.store(true, Ordering::Relaxed);
        let mut app = app.clone();
        async move { app.call(req).await }
    });
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    let conn = watcher.watch(conn.into_owned());
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = &mut conn => return,
        () = tokio::time::sleep(config.header_read_timeout) => {}
    }
    if started.load(Ordering::Relaxed) {
        let _ = conn.await;
    } else {
        tracing::debug!("no request head within the header-read timeout: connection closed");
    }
}
