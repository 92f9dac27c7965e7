//! Serving an axum app: until Ctrl-C or SIGTERM (draining in-flight
//! requests), or as a killable in-process instance for demos and tests.

use std::net::SocketAddr;

use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use meshguard::discovery::registration::{
    RegistrationConfig, RegistrationError, RegistrationGuard,
};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tower::Service;

/// Resolves on Ctrl-C or SIGTERM (what Kubernetes and Docker send).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: draining in-flight requests");
}

/// Registers `service` instance `id` at `address:port` with the Consul
/// agent at `agent`, with an HTTP check of `/health` every 5 s. Deregister
/// with the guard's `deregister()` at shutdown (dropping it does too).
pub async fn register(
    agent: &str,
    service: &str,
    id: &str,
    address: &str,
    port: u16,
) -> Result<RegistrationGuard, RegistrationError> {
    let guard = RegistrationConfig::builder()
        .agent(super::config::with_scheme(agent))
        .service(service)
        .id(id)
        .address(address)
        .port(port)
        .http_check(
            format!("http://{address}:{port}/health"),
            Duration::from_secs(5),
            Duration::from_secs(2),
        )
        .build()?
        .register()
        .await?;
    tracing::info!(service, id, "registered in consul");
    Ok(guard)
}

/// Serves `app` until `shutdown` resolves, then lets in-flight requests
/// finish.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// A server that can be killed like a crashed process: aborting it closes
/// the listener and every open connection mid-request.
pub struct Instance {
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Instance {
    /// Serves `app` on `127.0.0.1:0`.
    pub async fn start(app: axum::Router) -> Instance {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let addr = listener.local_addr().expect("bound");
        let task = tokio::spawn(async move {
            // Connections live in this task's set, so aborting the task
            // drops them all (axum::serve spawns them detached).
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let app = app.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let mut app = app.clone();
                        async move { app.call(req).await }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Instance { addr, task }
    }

    /// Kills it: the port refuses connections and open ones are cut.
    pub fn kill(&self) {
        self.task.abort();
    }

    /// Its base URL: `http://{addr}`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.task.abort();
    }
}
