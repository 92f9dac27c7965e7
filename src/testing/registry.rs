//! The in-process Consul-compatible registry; documented in `crate::testing`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

const NODE: &str = "meshguard-test-node";
const NODE_ID: &str = "8f246b77-f3e1-ff88-5b48-8ec93abf3e05";
const DATACENTER: &str = "dc1";
const MAX_WAIT: Duration = Duration::from_secs(600);
const DEFAULT_WAIT: Duration = Duration::from_secs(300);

/// Health of a check, as Consul spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckStatus {
    /// `passing`
    Passing,
    /// `warning`
    Warning,
    /// `critical`
    Critical,
}

impl CheckStatus {
    fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Passing => "passing",
            CheckStatus::Warning => "warning",
            CheckStatus::Critical => "critical",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "passing" => Some(CheckStatus::Passing),
            "warning" => Some(CheckStatus::Warning),
            "critical" => Some(CheckStatus::Critical),
            _ => None,
        }
    }
}

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
}

#[derive(Debug, Default)]
struct Registry {
    index: u64,
    instances: BTreeMap<String, Instance>,
    fail_with_500: bool,
    malformed: bool,
}

#[derive(Debug, Clone)]
struct Instance {
    id: String,
    name: String,
    address: String,
    port: u16,
    tags: Vec<String>,
    meta: BTreeMap<String, String>,
    weights: (u32, u32),
    checks: Vec<Check>,
    create_index: u64,
    modify_index: u64,
}

#[derive(Debug, Clone)]
struct Check {
    id: String,
    name: String,
    status: CheckStatus,
    notes: String,
    output: String,
    kind: CheckKind,
    critical_since: Option<Instant>,
    deregister_after: Option<Duration>,
    /// Bumped by every TTL update; an expiry timer of an older epoch is stale.
    ttl_epoch: u64,
    create_index: u64,
    modify_index: u64,
}

#[derive(Debug, Clone)]
enum CheckKind {
    Http {
        url: String,
        method: String,
        interval: Duration,
        timeout: Duration,
    },
    Ttl {
        ttl: Duration,
    },
    Maintenance,
}

impl ConsulRegistry {
    /// Starts serving on `127.0.0.1:0`.
    pub async fn start() -> ConsulRegistry {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
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
            }),
        };
        registry.serve(listener);
        registry
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let (stop, stopped) = oneshot::channel::<()>();
        *self.shared.server.lock().expect("lock") = Some(stop);
        let app = Router::new()
            .route("/v1/health/service/{name}", get(health_service))
            .route("/v1/health/service/", get(missing_name))
            .route("/v1/agent/service/register", put(register))
            // An id is the rest of the path, percent-decoded, as Consul's
            // agent takes it (the suffix of Go's decoded `URL.Path`): an
            // escaped `/`, `?` or `%` is part of the id.
            .route("/v1/agent/service/deregister/{*id}", put(deregister))
            .route("/v1/agent/service/maintenance/{*id}", put(maintenance))
            .route("/v1/agent/check/update/{*id}", put(check_update))
            .route("/v1/agent/check/{action}/{*id}", put(check_set))
            .with_state(self.clone());
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
        self.lock().index
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
        self.lock().instances.contains_key(id)
    }

    /// The status of check `check_id`, if it exists.
    pub fn check_status(&self, check_id: &str) -> Option<CheckStatus> {
        let r = self.lock();
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self, r: &mut Registry) {
        r.index += 1;
        self.shared.changed.send_replace(r.index);
    }

    /// Wakes blocked queries without a change (they re-check faults).
    fn wake(&self) {
        self.shared.changed.send_modify(|_| {});
    }
}

fn set_status(c: &mut Check, status: CheckStatus, index: u64) {
    if c.status != status {
        c.modify_index = index;
        c.critical_since = (status == CheckStatus::Critical).then(Instant::now);
    }
    c.status = status;
}

// ---- query parameters -------------------------------------------------------

fn param<'a>(ps: &'a [(String, String)], key: &str) -> Option<&'a str> {
    ps.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Go's `strconv.ParseBool`.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// A Go duration: `10s`, `1m30s`, `500ms`.
fn parse_go_duration(v: &str) -> Option<Duration> {
    if v.is_empty() {
        return None;
    }
    if v == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = v;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += Duration::try_from_secs_f64(number * seconds).ok()?;
    }
    Some(total)
}

fn bad_request(text: impl Into<String>) -> Response {
    (StatusCode::BAD_REQUEST, text.into()).into_response()
}

fn not_found(text: impl Into<String>) -> Response {
    (StatusCode::NOT_FOUND, text.into()).into_response()
}

// ---- the bexpr subset ------------------------------------------------------------

#[derive(Debug)]
enum Term {
    HasTag(String),
    Meta(String, String),
    Id(String),
    Name(String),
    CheckStatus(String),
}

fn parse_filter(expr: &str) -> Result<Vec<Term>, String> {
    fn quoted(s: &str) -> Option<String> {
        let s = s.trim();
        s.strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .map(str::to_string)
    }
    let mut terms = Vec::new();
    for part in expr.split(" and ") {
        let part = part.trim();
        let term = if let Some((v, field)) = part.split_once(" in ") {
            match (quoted(v), field.trim()) {
                (Some(v), "Service.Tags") => Some(Term::HasTag(v)),
                _ => None,
            }
        } else if let Some((field, v)) = part.split_once(" contains ") {
            match (field.trim(), quoted(v)) {
                ("Service.Tags", Some(v)) => Some(Term::HasTag(v)),
                _ => None,
            }
        } else if let Some((field, v)) = part.split_once("==") {
            let (field, v) = (field.trim(), quoted(v));
            match (field, v) {
                ("Service.ID", Some(v)) => Some(Term::Id(v)),
                ("Service.Service", Some(v)) => Some(Term::Name(v)),
                ("Checks.Status", Some(v)) => Some(Term::CheckStatus(v)),
                (f, Some(v)) if f.starts_with("Service.Meta.") => {
                    Some(Term::Meta(f["Service.Meta.".len()..].to_string(), v))
                }
                _ => None,
            }
        } else {
            None
        };
        match term {
            Some(t) => terms.push(t),
            None => {
                return Err(format!(
                    "Failed to create boolean expression evaluator: unsupported expression {part:?} \
                     (the in-process registry supports a subset of bexpr)"
                ));
            }
        }
    }
    Ok(terms)
}

fn matches(i: &Instance, terms: &[Term]) -> bool {
    terms.iter().all(|t| match t {
        Term::HasTag(v) => i.tags.iter().any(|x| x == v),
        Term::Meta(k, v) => i.meta.get(k) == Some(v),
        Term::Id(v) => &i.id == v,
        Term::Name(v) => &i.name == v,
        Term::CheckStatus(v) => i.checks.iter().any(|c| c.status.as_str() == v),
    })
}

// ---- handlers --------------------------------------------------------------------

async fn missing_name() -> Response {
    bad_request("Missing service name")
}

async fn health_service(
    State(reg): State<ConsulRegistry>,
    Path(name): Path<String>,
    Query(ps): Query<Vec<(String, String)>>,
) -> Response {
    let passing = match param(&ps, "passing") {
        None => false,
        Some("") => true,
        Some(v) => match parse_bool(v) {
            Some(b) => b,
            None => return bad_request("Invalid value for ?passing"),
        },
    };
    let index = match param(&ps, "index") {
        None => 0,
        Some(v) => match v.parse::<u64>() {
            Ok(i) => i,
            Err(_) => return bad_request("Invalid index"),
        },
    };
    let wait = match param(&ps, "wait") {
        None => None,
        Some(v) => match parse_go_duration(v) {
            Some(d) => Some(d),
            None => return bad_request("Invalid wait time"),
        },
    };
    if param(&ps, "stale").is_some() && param(&ps, "consistent").is_some() {
        return bad_request("Cannot specify ?stale with ?consistent, conflicting semantics.");
    }
    if let Some(dc) = param(&ps, "dc") {
        if !dc.is_empty() && dc != DATACENTER {
            return (StatusCode::INTERNAL_SERVER_ERROR, "No path to datacenter").into_response();
        }
    }
    let mut terms = match param(&ps, "filter").filter(|f| !f.trim().is_empty()) {
        None => Vec::new(),
        Some(f) => match parse_filter(f) {
            Ok(t) => t,
            Err(e) => return bad_request(e),
        },
    };
    // `tag` may repeat; an instance needs all of them.
    terms.extend(
        ps.iter()
            .filter(|(k, _)| k == "tag")
            .map(|(_, v)| Term::HasTag(v.clone())),
    );

    if index > 0 {
        let timeout = match wait {
            Some(w) if w > MAX_WAIT => MAX_WAIT,
            Some(w) if !w.is_zero() => w,
            _ => DEFAULT_WAIT,
        };
        let jitter = Duration::from_nanos(fastrand::u64(0..=(timeout.as_nanos() / 16) as u64));
        let deadline = Instant::now() + timeout + jitter;
        let mut changes = reg.shared.changed.subscribe();
        loop {
            {
                let r = reg.lock();
                if r.index != index || r.fail_with_500 || r.malformed {
                    break;
                }
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { break },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
    }

    let r = reg.lock();
    if r.fail_with_500 {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "rpc error: injected failure",
        )
            .into_response();
    }
    let mut headers = HeaderMap::new();
    headers.insert("Content-Type", HeaderValue::from_static("application/json"));
    headers.insert("X-Consul-Index", HeaderValue::from(r.index.max(1)));
    headers.insert("X-Consul-Knownleader", HeaderValue::from_static("true"));
    headers.insert("X-Consul-Lastcontact", HeaderValue::from_static("0"));
    headers.insert(
        "X-Consul-Effective-Consistency",
        HeaderValue::from_static(if param(&ps, "stale").is_some() {
            "stale"
        } else {
            "leader"
        }),
    );
    headers.insert(
        "X-Consul-Query-Backend",
        HeaderValue::from_static("blocking-query"),
    );
    if r.malformed {
        return (StatusCode::OK, headers, "[{\"Node\": {\"ID\": ").into_response();
    }
    let body: Vec<Value> = r
        .instances
        .values()
        .filter(|i| i.name == name)
        .filter(|i| !passing || i.checks.iter().all(|c| c.status == CheckStatus::Passing))
        .filter(|i| matches(i, &terms))
        .map(entry)
        .collect();
    (StatusCode::OK, headers, Value::Array(body).to_string()).into_response()
}

/// One `/health/service` entry in the real wire shape (API-FACTS.md §9).
fn entry(i: &Instance) -> Value {
    let node_check = json!({
        "Node": NODE, "CheckID": "serfHealth", "Name": "Serf Health Status",
        "Status": "passing", "Notes": "", "Output": "Agent alive and reachable",
        "ServiceID": "", "ServiceName": "", "ServiceTags": [], "Type": "",
        "Interval": "", "Timeout": "", "ExposedPort": 0, "Definition": {},
        "CreateIndex": 1, "ModifyIndex": 1
    });
    let mut checks = vec![node_check];
    for c in &i.checks {
        let (kind, interval, timeout) = match &c.kind {
            CheckKind::Http {
                interval, timeout, ..
            } => ("http", go(*interval), go(*timeout)),
            CheckKind::Ttl { .. } => ("ttl", String::new(), String::new()),
            CheckKind::Maintenance => ("", String::new(), String::new()),
        };
        checks.push(json!({
            "Node": NODE, "CheckID": c.id, "Name": c.name, "Status": c.status.as_str(),
            "Notes": c.notes, "Output": c.output, "ServiceID": i.id, "ServiceName": i.name,
            "ServiceTags": i.tags, "Type": kind, "Interval": interval, "Timeout": timeout,
            "ExposedPort": 0, "Definition": {}, "CreateIndex": c.create_index,
            "ModifyIndex": c.modify_index
        }));
    }
    json!({
        "Node": {
            "ID": NODE_ID, "Node": NODE, "Address": "127.0.0.1", "Datacenter": DATACENTER,
            "TaggedAddresses": {"lan": "127.0.0.1", "lan_ipv4": "127.0.0.1", "wan": "127.0.0.1", "wan_ipv4": "127.0.0.1"},
            "Meta": {"consul-network-segment": "", "consul-version": "1.21.3"},
            "CreateIndex": 1, "ModifyIndex": 1
        },
        "Service": {
            "ID": i.id, "Service": i.name, "Tags": i.tags, "Address": i.address,
            "TaggedAddresses": if i.address.is_empty() { json!({}) } else { json!({
                "lan_ipv4": {"Address": i.address, "Port": i.port},
                "wan_ipv4": {"Address": i.address, "Port": i.port}
            }) },
            "Meta": if i.meta.is_empty() { Value::Null } else { json!(i.meta) },
            "Port": i.port, "Weights": {"Passing": i.weights.0, "Warning": i.weights.1},
            "EnableTagOverride": false,
            "Proxy": {"Mode": "", "MeshGateway": {}, "Expose": {}},
            "Connect": {}, "PeerName": "",
            "CreateIndex": i.create_index, "ModifyIndex": i.modify_index
        },
        "Checks": checks
    })
}

fn go(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[derive(Debug, Deserialize)]
struct RegisterBody {
    #[serde(rename = "Name", alias = "name")]
    name: Option<String>,
    #[serde(rename = "ID", alias = "id", default)]
    id: Option<String>,
    #[serde(rename = "Tags", alias = "tags", default)]
    tags: Option<Vec<String>>,
    #[serde(rename = "Address", alias = "address", default)]
    address: Option<String>,
    #[serde(rename = "Port", alias = "port", default)]
    port: Option<u16>,
    #[serde(rename = "Meta", alias = "meta", default)]
    meta: Option<BTreeMap<String, String>>,
    #[serde(rename = "Weights", alias = "weights", default)]
    weights: Option<WeightsBody>,
    #[serde(rename = "Check", alias = "check", default)]
    check: Option<CheckBody>,
    #[serde(rename = "Checks", alias = "checks", default)]
    checks: Option<Vec<CheckBody>>,
}

#[derive(Debug, Deserialize)]
struct WeightsBody {
    #[serde(rename = "Passing", alias = "passing", default)]
    passing: Option<u32>,
    #[serde(rename = "Warning", alias = "warning", default)]
    warning: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct CheckBody {
    #[serde(rename = "CheckID", alias = "check_id", default)]
    check_id: Option<String>,
    #[serde(rename = "Name", alias = "name", default)]
    name: Option<String>,
    #[serde(rename = "HTTP", alias = "http", default)]
    http: Option<String>,
    #[serde(rename = "Method", alias = "method", default)]
    method: Option<String>,
    #[serde(rename = "Interval", alias = "interval", default)]
    interval: Option<String>,
    #[serde(rename = "Timeout", alias = "timeout", default)]
    timeout: Option<String>,
    #[serde(rename = "TTL", alias = "ttl", default)]
    ttl: Option<String>,
    #[serde(rename = "Status", alias = "status", default)]
    status: Option<String>,
    #[serde(
        rename = "DeregisterCriticalServiceAfter",
        alias = "deregister_critical_service_after",
        default
    )]
    deregister_after: Option<String>,
}

async fn register(State(reg): State<ConsulRegistry>, body: Bytes) -> Response {
    let body: RegisterBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return bad_request(format!("Request decode failed: {e}")),
    };
    let Some(name) = body.name.filter(|n| !n.is_empty()) else {
        return bad_request("Missing service name");
    };
    let address = body.address.unwrap_or_default();
    if address == "0.0.0.0" || address == "::" {
        return bad_request("Invalid service address");
    }
    let id = body.id.filter(|i| !i.is_empty()).unwrap_or(name.clone());
    let mut bodies: Vec<CheckBody> = body.check.into_iter().collect();
    bodies.extend(body.checks.unwrap_or_default());
    let numbered = bodies.len() > 1;
    let mut r = reg.lock();
    let index = r.index + 1;
    let mut checks = Vec::new();
    for (n, c) in bodies.into_iter().enumerate() {
        let status = match c.status.as_deref() {
            None | Some("") => CheckStatus::Critical,
            Some(s) => match CheckStatus::parse(s) {
                Some(s) => s,
                None => {
                    return bad_request("Status for checks must 'passing', 'warning', 'critical'");
                }
            },
        };
        let duration = |v: &Option<String>| v.as_deref().and_then(parse_go_duration);
        let kind = match (&c.http, duration(&c.interval), duration(&c.ttl)) {
            (Some(url), Some(interval), _) if !interval.is_zero() => CheckKind::Http {
                url: url.clone(),
                method: c.method.clone().unwrap_or_else(|| "GET".into()),
                interval,
                timeout: duration(&c.timeout).unwrap_or(Duration::from_secs(10)),
            },
            (None, _, Some(ttl)) if !ttl.is_zero() => CheckKind::Ttl { ttl },
            _ => {
                return bad_request(
                    "Must provide TTL or Script/DockerContainerID/HTTP/TCP and Interval",
                );
            }
        };
        let deregister_after =
            duration(&c.deregister_after).map(|d| d.max(Duration::from_secs(60)));
        checks.push(Check {
            id: c.check_id.unwrap_or_else(|| {
                if numbered {
                    format!("service:{id}:{}", n + 1)
                } else {
                    format!("service:{id}")
                }
            }),
            name: c.name.unwrap_or_else(|| format!("Service '{name}' check")),
            status,
            notes: String::new(),
            output: String::new(),
            kind,
            critical_since: (status == CheckStatus::Critical).then(Instant::now),
            deregister_after,
            ttl_epoch: 0,
            create_index: index,
            modify_index: index,
        });
    }
    let weights = body
        .weights
        .map(|w| (w.passing.unwrap_or(1), w.warning.unwrap_or(1)))
        .unwrap_or((1, 1));
    let runners: Vec<Check> = checks.clone();
    r.instances.insert(
        id.clone(),
        Instance {
            id: id.clone(),
            name,
            address,
            port: body.port.unwrap_or(0),
            tags: body.tags.unwrap_or_default(),
            meta: body.meta.unwrap_or_default(),
            weights,
            checks,
            create_index: index,
            modify_index: index,
        },
    );
    reg.bump(&mut r);
    drop(r);
    for check in runners {
        match check.kind {
            CheckKind::Http {
                url,
                method,
                interval,
                timeout,
            } => {
                tokio::spawn(run_http_check(
                    reg.clone(),
                    id.clone(),
                    check.id,
                    index,
                    url,
                    method,
                    interval,
                    timeout,
                ));
            }
            CheckKind::Ttl { ttl } => {
                tokio::spawn(expire_ttl(reg.clone(), check.id, 0, ttl));
            }
            CheckKind::Maintenance => {}
        }
    }
    StatusCode::OK.into_response()
}

/// Runs an HTTP check on its interval, as the agent does: 2xx passing, 429
/// warning, anything else (or no answer) critical. Stops when the instance
/// is deregistered or registered again.
#[allow(clippy::too_many_arguments)]
async fn run_http_check(
    reg: ConsulRegistry,
    service_id: String,
    check_id: String,
    registered_at: u64,
    url: String,
    method: String,
    interval: Duration,
    timeout: Duration,
) {
    loop {
        let outcome = tokio::time::timeout(timeout, probe(&url, &method)).await;
        let (status, output) = match outcome {
            Ok(Ok(code)) if (200..300).contains(&code) => {
                (CheckStatus::Passing, format!("HTTP {method} {url}: {code}"))
            }
            Ok(Ok(429)) => (CheckStatus::Warning, format!("HTTP {method} {url}: 429")),
            Ok(Ok(code)) => (
                CheckStatus::Critical,
                format!("HTTP {method} {url}: {code}"),
            ),
            Ok(Err(e)) => (CheckStatus::Critical, format!("Get {url}: {e}")),
            Err(_) => (CheckStatus::Critical, format!("Get {url}: timeout")),
        };
        {
            let mut r = reg.lock();
            let index = r.index + 1;
            let Some(instance) = r
                .instances
                .get_mut(&service_id)
                .filter(|i| i.create_index == registered_at)
            else {
                // Deregistered, or registered again with checks of its own.
                return;
            };
            let Some(check) = instance.checks.iter_mut().find(|c| c.id == check_id) else {
                return;
            };
            let changed = check.status != status;
            set_status(check, status, index);
            check.output = output;
            let reap = match (check.critical_since, check.deregister_after) {
                (Some(since), Some(after)) => since.elapsed() >= after,
                _ => false,
            };
            if reap {
                r.instances.remove(&service_id);
                reg.bump(&mut r);
                return;
            }
            if changed {
                reg.bump(&mut r);
            }
        }
        tokio::time::sleep(interval).await;
    }
}

/// One HTTP/1.1 request over a fresh connection; the status code.
async fn probe(url: &str, method: &str) -> std::io::Result<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| std::io::Error::other("only http:// checks are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut stream = tokio::net::TcpStream::connect(authority).await?;
    stream
        .write_all(
            format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut head = [0u8; 16];
    let mut read = 0;
    while read < 12 {
        let n = stream.read(&mut head[read..]).await?;
        if n == 0 {
            break;
        }
        read += n;
    }
    std::str::from_utf8(&head[..read])
        .ok()
        .and_then(|s| s.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other("malformed HTTP response"))
}

/// Turns a TTL check critical when it is not updated within `ttl` of the
/// update that started this timer (epoch `epoch`).
async fn expire_ttl(reg: ConsulRegistry, check_id: String, epoch: u64, ttl: Duration) {
    tokio::time::sleep(ttl).await;
    let mut r = reg.lock();
    let index = r.index + 1;
    let Some(check) = r
        .instances
        .values_mut()
        .flat_map(|i| i.checks.iter_mut())
        .find(|c| c.id == check_id)
    else {
        return;
    };
    if check.ttl_epoch != epoch || check.status == CheckStatus::Critical {
        return;
    }
    set_status(check, CheckStatus::Critical, index);
    check.output = "TTL expired".into();
    reg.bump(&mut r);
}

async fn deregister(State(reg): State<ConsulRegistry>, Path(id): Path<String>) -> Response {
    if reg.deregister(&id) {
        StatusCode::OK.into_response()
    } else {
        not_found(format!(
            "Unknown service ID {id:?}. Ensure that the service ID is passed, not the service name."
        ))
    }
}

async fn maintenance(
    State(reg): State<ConsulRegistry>,
    Path(id): Path<String>,
    Query(ps): Query<Vec<(String, String)>>,
) -> Response {
    let enable = match param(&ps, "enable") {
        None => return bad_request("Missing value for enable"),
        Some(v) => match parse_bool(v) {
            Some(b) => b,
            None => return bad_request(format!("Invalid value for enable: {v:?}")),
        },
    };
    let reason = param(&ps, "reason").filter(|r| !r.is_empty()).map_or_else(
        || "Maintenance mode is enabled for this service, but no reason was provided. This is a default message.".to_string(),
        str::to_string,
    );
    let mut r = reg.lock();
    let index = r.index + 1;
    let Some(instance) = r.instances.get_mut(&id) else {
        return not_found(format!(
            "Unknown service ID {id:?}. Ensure that the service ID is passed, not the service name."
        ));
    };
    let check_id = format!("_service_maintenance:{id}");
    let present = instance.checks.iter().any(|c| c.id == check_id);
    if enable && !present {
        instance.checks.push(Check {
            id: check_id,
            name: "Service Maintenance Mode".into(),
            status: CheckStatus::Critical,
            notes: reason,
            output: String::new(),
            kind: CheckKind::Maintenance,
            critical_since: None,
            deregister_after: None,
            ttl_epoch: 0,
            create_index: index,
            modify_index: index,
        });
        reg.bump(&mut r);
    } else if !enable && present {
        instance.checks.retain(|c| c.id != check_id);
        reg.bump(&mut r);
    }
    StatusCode::OK.into_response()
}

/// `PUT /v1/agent/check/{pass,warn,fail}/:check_id` (optional `?note=`).
async fn check_set(
    State(reg): State<ConsulRegistry>,
    Path((action, id)): Path<(String, String)>,
    Query(ps): Query<Vec<(String, String)>>,
) -> Response {
    let status = match action.as_str() {
        "pass" => CheckStatus::Passing,
        "warn" => CheckStatus::Warning,
        "fail" => CheckStatus::Critical,
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    ttl_update(&reg, &id, status, param(&ps, "note"))
}

#[derive(Debug, Deserialize)]
struct UpdateBody {
    #[serde(rename = "Status", alias = "status", default)]
    status: String,
    #[serde(rename = "Output", alias = "output", default)]
    output: Option<String>,
}

async fn check_update(
    State(reg): State<ConsulRegistry>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let body: UpdateBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return bad_request(format!("Request decode failed: {e}")),
    };
    match CheckStatus::parse(&body.status) {
        Some(status) => ttl_update(&reg, &id, status, body.output.as_deref()),
        None => bad_request(format!("Invalid check status: '{}'", body.status)),
    }
}

/// Sets a TTL check's status and restarts its TTL clock.
fn ttl_update(reg: &ConsulRegistry, id: &str, status: CheckStatus, note: Option<&str>) -> Response {
    let mut r = reg.lock();
    let index = r.index + 1;
    let found = r
        .instances
        .values_mut()
        .flat_map(|i| i.checks.iter_mut())
        .find(|c| c.id == id);
    let Some(check) = found else {
        return not_found(format!(
            "Unknown check ID {id:?}. Ensure that the check ID is passed, not the check name."
        ));
    };
    let CheckKind::Ttl { ttl } = check.kind else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("CheckID {id:?} does not have associated TTL"),
        )
            .into_response();
    };
    let changed = check.status != status;
    set_status(check, status, index);
    check.output = note.unwrap_or_default().chars().take(4096).collect();
    check.ttl_epoch += 1;
    let epoch = check.ttl_epoch;
    if changed {
        reg.bump(&mut r);
    }
    drop(r);
    tokio::spawn(expire_ttl(reg.clone(), id.to_string(), epoch, ttl));
    StatusCode::OK.into_response()
}
