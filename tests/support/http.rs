//! Real HTTP servers on 127.0.0.1:0 for the client tests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

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

/// A server whose `/stall` answers 200 with the first chunk of its body and
/// then never sends the rest.
pub async fn stalling() -> String {
    let app = axum::Router::new().route(
        "/stall",
        axum::routing::get(|| async {
            let first = once_then_pending(bytes::Bytes::from_static(b"{\"id\":"));
            axum::body::Body::from_stream(first)
        }),
    );
    url(serve(app).await)
}

/// One chunk, then a stream that never ends.
fn once_then_pending(
    chunk: bytes::Bytes,
) -> impl futures_core::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send {
    struct Once(Option<bytes::Bytes>);
    impl futures_core::Stream for Once {
        type Item = Result<bytes::Bytes, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            match self.0.take() {
                Some(c) => std::task::Poll::Ready(Some(Ok(c))),
                None => std::task::Poll::Pending,
            }
        }
    }
    Once(Some(chunk))
}

/// A raw HTTP/1.1 server that promises 100 bytes, sends 10 and closes the
/// connection, counting the requests it reads.
pub async fn truncating() -> (String, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = url(listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut read = 0;
                while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf[read..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read += n,
                    }
                }
                counted.fetch_add(1, Ordering::SeqCst);
                let head = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789";
                let _ = socket.write_all(head).await;
                // Dropped: the connection closes 90 bytes short.
            });
        }
    });
    (base, requests)
}
