//! Serving an axum app: with a header-read timeout and a request timeout on
//! every connection, until Ctrl-C or SIGTERM; then deregistering from
//! Consul, then draining in-flight requests, all within a bound
//! ([`ServerConfig`]). Also a killable in-process instance for demos and
//! tests ([`Instance`]) and the container health check ([`healthcheck`]).
//!
//! Shutdown, in order:
//!
//! 1. `GET /ready` answers 503 (Kubernetes stops routing to the pod);
//! 2. the instance deregisters from Consul, the listener still accepting,
//!    so a caller that picked this instance just before is still served;
//! 3. the listener closes and every connection is asked to finish (idle
//!    keep-alive connections close at once, in-flight requests complete);
//! 4. at the drain bound, counted from step 1, what is left is closed.

mod connection;
mod healthcheck;
mod instance;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use hyper_util::server::graceful::GracefulShutdown;
use meshguard::discovery::registration::{
    RegistrationConfig, RegistrationError, RegistrationGuard,
};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

pub use super::config::ServerConfig;
pub use healthcheck::{healthcheck, healthcheck_requested};
pub use instance::Instance;

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
}

/// Registers `service` instance `id` at `address:port` with the Consul
/// agent at `agent`, with an HTTP check of `/health` every 5 s, and the
/// ACL token in `CONSUL_HTTP_TOKEN`, if any. Hand the
/// guard to [`serve`], which deregisters before draining.
pub async fn register(
    agent: &str,
    service: &str,
    id: &str,
    address: &str,
    port: u16,
) -> Result<RegistrationGuard, RegistrationError> {
    let mut builder = RegistrationConfig::builder();
    if let Some(token) = super::config::consul_token() {
        builder = builder.token(token);
    }
    let guard = builder
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

/// Whether the instance takes new work: `GET /ready` is 200 until
/// shutdown starts, then 503. (`GET /health`, the liveness check, stays
/// 200 while the process works.)
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    draining: Arc<AtomicBool>,
}

impl Readiness {
    /// From now on `GET /ready` answers 503.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Whether `GET /ready` answers 200.
    pub fn is_ready(&self) -> bool {
        !self.draining.load(Ordering::Acquire)
    }
}

/// `app` with `GET /ready` answering as `readiness` says.
pub fn with_readiness(app: Router, readiness: &Readiness) -> Router {
    let readiness = readiness.clone();
    app.route(
        "/ready",
        get(move || {
            let ready = readiness.is_ready();
            async move {
                if ready {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "draining")
                }
            }
        }),
    )
}

/// Serves `app` (with `GET /ready`) on `listener` under `config`'s
/// timeouts until `shutdown` resolves; then shuts down in the order the
/// module documents: readiness off, `registration` deregistered while the
/// listener still accepts, listener closed, connections drained. Returns
/// by `config.drain` after `shutdown` resolved, whatever the clients do.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: ServerConfig,
    registration: Option<RegistrationGuard>,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let readiness = Readiness::default();
    let app = connection::with_request_timeout(with_readiness(app, &readiness), &config);
    let builder = Arc::new(connection::builder(&config));
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut accept = |stream: tokio::net::TcpStream, connections: &mut JoinSet<()>| {
        connections.spawn(connection::serve(
            stream,
            app.clone(),
            builder.clone(),
            graceful.watcher(),
            config,
        ));
    };

    let shutdown = std::pin::pin!(shutdown);
    accept_until(&listener, &mut connections, &mut accept, shutdown).await;
    let deadline = tokio::time::Instant::now() + config.drain;
    tracing::info!(drain = ?config.drain, "shutting down: deregistering, then draining");
    readiness.set_draining();

    if let Some(guard) = registration {
        let deregister = std::pin::pin!(async {
            match tokio::time::timeout_at(deadline, guard.deregister()).await {
                Ok(Ok(())) => tracing::info!("deregistered from consul"),
                Ok(Err(e)) => tracing::warn!(error = %e, "deregistering failed"),
                Err(_) => tracing::warn!("deregistering took the whole drain time"),
            }
        });
        accept_until(&listener, &mut connections, &mut accept, deregister).await;
    }
    drop(listener);

    let open = graceful.count();
    match tokio::time::timeout_at(deadline, graceful.shutdown()).await {
        Ok(()) => tracing::info!(connections = open, "drained"),
        Err(_) => tracing::warn!(
            left = connections.len(),
            "drain time over: closing the connections left"
        ),
    }
    // Whatever is left is closed before this returns.
    connections.abort_all();
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Accepts connections until `until` resolves. An accept error (out of
/// file descriptors, a connection reset before it was accepted) is logged
/// and followed by a short pause, not a busy loop.
async fn accept_until(
    listener: &TcpListener,
    connections: &mut JoinSet<()>,
    accept: &mut impl FnMut(tokio::net::TcpStream, &mut JoinSet<()>),
    mut until: std::pin::Pin<&mut impl Future<Output = ()>>,
) {
    loop {
        tokio::select! {
            biased;
            () = &mut until => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // Answers go out at once, not held back by Nagle's
                    // algorithm until the last small write is acknowledged:
                    // with HTTP/2 (several answers in flight on one
                    // connection) that waits on the caller's delayed ACK,
                    // about 40 ms.
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!(error = %e, "TCP_NODELAY not set");
                    }
                    accept(stream, connections)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}
