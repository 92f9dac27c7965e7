//! The public handle: starting, stopping and faults, and helpers that
//! change the catalog without HTTP.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, put};
use axum::serve::ListenerExt;
use tokio::sync::{oneshot, watch};

use super::acl::AclToken;
use super::state::{Check, CheckKind, CheckStatus, Instance, Registry, set_status};
use super::{acl, agent, agent_read, catalog, check_register, checks, health, status};

/// A Consul-compatible agent and catalog for tests; see the
/// [`testing`](crate::testing) module docs for what it imitates.
///
/// `filter` accepts expressions joined by `and`, each one of
/// `"<v>" in Service.Tags`, `Service.Tags contains "<v>"`,
/// `Service.Meta.<key> == "<v>"`, `Service.ID == "<v>"`,
/// `Service.Service == "<v>"`, `Checks.Status == "<v>"` (any check).
///
/// ```
/// use meshguard::testing::ConsulRegistry;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let consul = ConsulRegistry::start().await;
/// consul.register_passing("users", "users-1", "127.0.0.1", 8081);
/// let body = reqwest_free_get(&consul.url(), "/v1/health/service/users?passing").await;
/// assert!(body.contains("\"users-1\""));
/// # }
/// # async fn reqwest_free_get(base: &str, path: &str) -> String {
/// #     use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// #     let addr = base.trim_start_matches("http://");
/// #     let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
/// #     s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
/// #     let mut out = String::new();
/// #     s.read_to_string(&mut out).await.unwrap();
/// #     out
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ConsulRegistry {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    addr: SocketAddr,
    state: Mutex<Registry>,
    changed: watch::Sender<u64>,
    server: Mutex<Option<oneshot::Sender<()>>>,
    accepted: Arc<AtomicU64>,
    acl: Option<AclToken>,
}

impl ConsulRegistry {
    /// Starts serving on `127.0.0.1:0`.
    pub async fn start() -> ConsulRegistry {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        ConsulRegistry::start_on(listener, None)
    }

    /// Serves on `listener`, requiring `acl` when given.
    pub(super) fn start_on(
        listener: tokio::net::TcpListener,
        acl: Option<AclToken>,
    ) -> ConsulRegistry {
        let addr = listener.local_addr().expect("local address");
        let registry = ConsulRegistry {
            shared: Arc::new(Shared {
                addr,
                state: Mutex::new(Registry {
                    index: 1,
                    ..Registry::default()
                }),
                changed: watch::channel(1).0,
                server: Mutex::new(None),
                accepted: Arc::new(AtomicU64::new(0)),
                acl,
            }),
        };
        registry.serve(listener);
        registry
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let (stop, stopped) = oneshot::channel::<()>();
        *self.shared.server.lock().expect("lock") = Some(stop);
        let app = Router::new()
            .route("/v1/health/service/{name}", get(health::health_service))
            .route("/v1/health/service/", get(health::missing_name))
            .route("/v1/agent/service/register", put(agent::register))
            // An id is the rest of the path, percent-decoded, as Consul's
            // agent takes it (the suffix of Go's decoded `URL.Path`): an
            // escaped `/`, `?` or `%` is part of the id.
            .route("/v1/agent/service/deregister/{*id}", put(agent::deregister))
            .route(
                "/v1/agent/service/maintenance/{*id}",
                put(agent::maintenance),
            )
            .route("/v1/agent/check/update/{*id}", put(checks::check_update))
            .route("/v1/agent/check/{action}/{*id}", put(checks::check_set))
            .route("/v1/agent/check/register", put(check_register::register))
            .route(
                "/v1/agent/check/deregister/{*id}",
                put(check_register::deregister),
            )
            .route("/v1/agent/services", get(agent_read::services))
            .route("/v1/agent/checks", get(agent_read::checks))
            .route("/v1/agent/self", get(agent_read::agent_self))
            .route("/v1/health/checks/{name}", get(agent_read::health_checks))
            .route("/v1/catalog/services", get(catalog::services))
            .route("/v1/catalog/service/{name}", get(catalog::service))
            .route("/v1/catalog/service/", get(catalog::missing_name))
            .route("/v1/status/leader", get(status::leader))
            .route("/v1/status/peers", get(status::peers))
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                acl::enforce,
            ))
            .with_state(self.clone());
        let accepted = self.shared.accepted.clone();
        let listener = listener.tap_io(move |_| {
            accepted.fetch_add(1, Ordering::Relaxed);
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
    }

    /// The address it serves on.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// `http://127.0.0.1:<port>`, as `CONSUL_HTTP_ADDR` would be.
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// The current `X-Consul-Index`.
    pub fn index(&self) -> u64 {
        self.read().index
    }

    /// TCP connections accepted since the start (across
    /// [`go_down`](Self::go_down) and [`come_back`](Self::come_back)): a
    /// client that reuses its connection opens one.
    pub fn connections(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// Registers an instance whose one check, `service:<id>`, is passing, as
    /// if its health check had succeeded. The check is a TTL check whose
    /// TTL this helper does not enforce, so paused-time tests that jump far
    /// ahead are not surprised; register through the HTTP API for real TTL
    /// and HTTP checks.
    pub fn register_passing(&self, name: &str, id: &str, address: &str, port: u16) {
        let mut r = self.lock();
        let index = r.index + 1;
        let instance = Instance {
            id: id.into(),
            name: name.into(),
            address: address.into(),
            port,
            tags: Vec::new(),
            meta: BTreeMap::new(),
            weights: (1, 1),
            checks: vec![Check {
                id: format!("service:{id}"),
                name: format!("Service '{name}' check"),
                status: CheckStatus::Passing,
                notes: String::new(),
                output: String::new(),
                kind: CheckKind::Ttl {
                    ttl: Duration::from_secs(3600),
                },
                critical_since: None,
                deregister_after: None,
                ttl_epoch: 0,
                create_index: index,
                modify_index: index,
            }],
            create_index: index,
            modify_index: index,
        };
        r.instances.insert(id.into(), instance);
        self.bump(&mut r);
    }

    /// Removes an instance, as `PUT /v1/agent/service/deregister/:id`;
    /// `false` when there was none.
    pub fn deregister(&self, id: &str) -> bool {
        let mut r = self.lock();
        let found = r.instances.remove(id).is_some();
        if found {
            self.bump(&mut r);
        }
        found
    }

    /// Sets the status of every check of instance `id`.
    pub fn set_health(&self, id: &str, status: CheckStatus) {
        let mut r = self.lock();
        let index = r.index + 1;
        if let Some(i) = r.instances.get_mut(id) {
            for c in &mut i.checks {
                set_status(c, status, index);
            }
            self.bump(&mut r);
        }
    }

    /// Whether instance `id` is registered.
    pub fn is_registered(&self, id: &str) -> bool {
        self.read().instances.contains_key(id)
    }

    /// The status of check `check_id`, if it exists.
    pub fn check_status(&self, check_id: &str) -> Option<CheckStatus> {
        let r = self.read();
        r.instances
            .values()
            .flat_map(|i| &i.checks)
            .find(|c| c.id == check_id)
            .map(|c| c.status)
    }

    /// Fault: stops listening, so connections are refused, until
    /// [`come_back`](Self::come_back). Registrations are kept.
    pub async fn go_down(&self) {
        if let Some(stop) = self.shared.server.lock().expect("lock").take() {
            let _ = stop.send(());
        }
        // Let the server task drop its listener.
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(self.shared.addr)
                .await
                .is_err()
            {
                return;
            }
            tokio::task::yield_now().await;
        }
    }

    /// Listens again on the same address.
    pub async fn come_back(&self) {
        let listener = tokio::net::TcpListener::bind(self.shared.addr)
            .await
            .expect("rebind the registry's address");
        self.serve(listener);
    }

    /// Fault: health queries answer 500 while `on`.
    pub fn fail_with_500(&self, on: bool) {
        self.lock().fail_with_500 = on;
        self.wake();
    }

    /// Fault: health queries answer 200 with a body that is not JSON while `on`.
    pub fn answer_malformed(&self, on: bool) {
        self.lock().malformed = on;
        self.wake();
    }

    /// Fault: the index drops below what clients have seen (as after a
    /// snapshot restore); blocked queries return with it.
    pub fn move_index_backwards(&self) {
        let mut r = self.lock();
        r.index = (r.index / 2).max(1);
        let index = r.index;
        drop(r);
        self.shared.changed.send_replace(index);
    }

    /// The ACL token every request must carry, when one is required.
    pub(super) fn acl_token(&self) -> Option<&AclToken> {
        self.shared.acl.as_ref()
    }

    /// The state, to change it: answers rendered before are stale from
    /// now on.
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        let mut r = self.read();
        r.version = r.version.wrapping_add(1);
        r
    }

    /// The state, to read it (the health answers' cache may be filled).
    pub(super) fn read(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn bump(&self, r: &mut Registry) {
        r.index += 1;
        self.shared.changed.send_replace(r.index);
    }

    /// A receiver of index changes, for blocked queries.
    pub(super) fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.changed.subscribe()
    }

    /// Wakes blocked queries without a change (they re-check faults).
    fn wake(&self) {
        self.shared.changed.send_modify(|_| {});
    }
}
