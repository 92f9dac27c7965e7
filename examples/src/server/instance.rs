//! A server that can be killed like a crashed process, for demos and tests.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use super::{ServerConfig, connection};

/// A server that can be killed like a crashed process: aborting it closes
/// the listener and every open connection mid-request. It serves as
/// [`serve`](super::serve) does (the same timeouts), without the
/// shutdown sequence.
pub struct Instance {
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Instance {
    /// Serves `app` on `127.0.0.1:0` with the default [`ServerConfig`].
    pub async fn start(app: axum::Router) -> Instance {
        Instance::start_with(app, ServerConfig::default()).await
    }

    /// Serves `app` on `127.0.0.1:0` with `config`'s timeouts.
    pub async fn start_with(app: axum::Router, config: ServerConfig) -> Instance {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let addr = listener.local_addr().expect("bound");
        let app = connection::with_request_timeout(app, &config);
        let builder = Arc::new(connection::builder(&config));
        let task = tokio::spawn(async move {
            // Never triggered: held so the connections' watchers stay open.
            let graceful = GracefulShutdown::new();
            // Connections live in this task's set, so aborting the task
            // drops them all.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                connections.spawn(connection::serve(
                    stream,
                    app.clone(),
                    builder.clone(),
                    graceful.watcher(),
                    config,
                ));
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
