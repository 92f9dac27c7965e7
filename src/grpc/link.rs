//! [`Link`]: one endpoint's HTTP/2 connection, made when a call first
//! needs it and made again after it closed.
//!
//! Written here rather than taken from hyper-util's pooled client: a
//! channel keeps one multiplexed connection per endpoint, so it needs no
//! pool, and the pool's checkout on every call (a boxed future, a keyed
//! lookup, a `select` between the checkout and a connect) cost as much as
//! the rest of the transport and twice its cache misses. tonic's own
//! channel does the same (one `SendRequest` per endpoint behind its
//! `Reconnect`); unlike it, the connection is made on the first call's
//! path, not in `poll_ready`, so a dead endpoint fails its calls as
//! [`Outcome::Connect`], which the retry layer sends elsewhere and the
//! endpoint's breaker counts, as with every other transport here.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures_util::FutureExt;
use futures_util::future::Shared;
use http::Uri;
use hyper::client::conn::http2::{Builder, SendRequest};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioTimer;
use tower::ServiceExt;

use super::body::RequestBody;
use crate::BoxError;
use crate::classify::{Classified, Outcome};
use crate::client::{CONNECT_TIMEOUT, KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT, tls_refused};

/// The connector: TCP (no delay), then TLS for `https` endpoints (ALPN
/// `h2`).
pub(crate) type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// What sends a request on an open connection.
pub(crate) type Sender = SendRequest<RequestBody>;

/// A connection being made, which every call that needs it meanwhile
/// awaits.
type Connecting = Shared<Pin<Box<dyn Future<Output = Result<Sender, ConnectError>> + Send>>>;

/// How a connection is pinged.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeepAlive {
    /// Every so often (`None`: never).
    pub(crate) interval: Option<std::time::Duration>,
    /// Idle or not.
    pub(crate) while_idle: bool,
}

impl Default for KeepAlive {
    fn default() -> Self {
        KeepAlive {
            interval: Some(KEEP_ALIVE_INTERVAL),
            while_idle: true,
        }
    }
}

/// One endpoint's connection, as its transport holds it.
pub(crate) struct Link {
    /// The connection this transport last sent on: a call's fast path,
    /// which takes no lock.
    open: Option<Sender>,
    shared: Arc<Endpoint>,
}

/// What the transport and the task making a connection share.
struct Endpoint {
    /// `scheme://authority`: what the connector connects to.
    target: Uri,
    connector: Connector,
    http2: Builder<Boxing>,
    state: Mutex<State>,
}

enum State {
    Closed,
    Connecting(Connecting),
    Open(Sender),
}

impl Endpoint {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it; a poisoned state is still whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How a call gets its connection.
pub(crate) enum Ready<'a> {
    /// Open now.
    Open(&'a mut Sender),
    /// Being made: await it, then send.
    Connecting(Connecting),
}

impl Link {
    /// A link to `target` (`scheme://authority`), unconnected.
    pub(crate) fn new(target: Uri, connector: Connector, keep_alive: KeepAlive) -> Self {
        let mut http2 = Builder::new(Boxing);
        http2
            .timer(TokioTimer::new())
            .keep_alive_interval(keep_alive.interval)
            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
            .keep_alive_while_idle(keep_alive.while_idle);
        Link {
            open: None,
            shared: Arc::new(Endpoint {
                target,
                connector,
                http2,
                state: Mutex::new(State::Closed),
            }),
        }
    }

    /// The open connection, or the one being made (started now if none
    /// is).
    pub(crate) fn ready(&mut self) -> Ready<'_> {
        if self.open.as_ref().is_some_and(|s| !s.is_closed()) {
            return Ready::Open(self.open.as_mut().expect("checked"));
        }
        match self.shared.ready() {
            Ok(sender) => Ready::Open(self.open.insert(sender)),
            Err(connecting) => {
                self.open = None;
                Ready::Connecting(connecting)
            }
        }
    }

    /// A handle on the endpoint's connection, for a call to send again
    /// on a new one a request the connection gave back unsent.
    pub(crate) fn handle(&self) -> Handle {
        Handle(self.shared.clone())
    }
}

/// A handle on an endpoint's connection (see [`Link::handle`]).
pub(crate) struct Handle(Arc<Endpoint>);

impl Handle {
    /// The open connection, once there is one (made now if none is open
    /// or being made).
    pub(crate) async fn sender(&self) -> Result<Sender, ConnectError> {
        match self.0.ready() {
            Ok(sender) => Ok(sender),
            Err(connecting) => connecting.await,
        }
    }
}

impl Endpoint {
    /// The open connection, or the one being made (started now if none
    /// is).
    fn ready(self: &Arc<Self>) -> Result<Sender, Connecting> {
        let (connecting, made) = {
            let mut state = self.lock();
            match &*state {
                State::Open(sender) if !sender.is_closed() => return Ok(sender.clone()),
                State::Connecting(connecting) => return Err(connecting.clone()),
                State::Open(_) | State::Closed => {}
            }
            let (made, result) = tokio::sync::oneshot::channel();
            let connecting: Pin<Box<dyn Future<Output = Result<Sender, ConnectError>> + Send>> =
                Box::pin(result.map(|result| {
                    // The task ended without an answer: cancelled with its
                    // runtime (maybe before it ever ran), or panicked.
                    result.unwrap_or_else(|_| {
                        Err(ConnectError::new(
                            Outcome::Connect,
                            std::io::Error::other("the connecting task ended without a connection"),
                        ))
                    })
                }));
            let connecting = connecting.shared();
            *state = State::Connecting(connecting.clone());
            (connecting, made)
        };
        // Spawned with the lock released: a runtime that is shutting down
        // drops the task at once, and its guard takes the lock.
        let pending = Pending {
            endpoint: Some(self.clone()),
            connecting: connecting.clone(),
        };
        tokio::spawn(connect(pending, made));
        Err(connecting)
    }
}

/// Makes the connection in a task of its own, so that it completes (and
/// is kept for the next call) even when every call that waited for it
/// gave up first; bounded by [`CONNECT_TIMEOUT`], TLS and HTTP/2
/// handshakes included. The state is set before the waiting calls hear.
async fn connect(
    pending: Pending,
    made: tokio::sync::oneshot::Sender<Result<Sender, ConnectError>>,
) {
    let endpoint = pending.endpoint.as_deref().expect("set");
    let result = tokio::time::timeout(CONNECT_TIMEOUT, handshake(endpoint))
        .await
        .unwrap_or_else(|_| {
            Err(ConnectError::new(
                Outcome::Connect,
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "no HTTP/2 connection to {} within {CONNECT_TIMEOUT:?}",
                        endpoint.target
                    ),
                ),
            ))
        });
    pending.finish(result.as_ref().ok());
    let _ = made.send(result);
}

/// A connecting task's hold on its endpoint: it leaves the state `Open`
/// or `Closed` when the task ends, even when it ends without a result
/// (dropped with its runtime, even before it first ran, or panicked), so
/// that the next call connects again rather than awaiting a connection
/// that never comes. Owned by the task's future from the start.
struct Pending {
    endpoint: Option<Arc<Endpoint>>,
    /// The connection it makes: the state is changed only while it still
    /// says this one is being made.
    connecting: Connecting,
}

impl Pending {
    fn finish(mut self, made: Option<&Sender>) {
        self.set(match made {
            Some(sender) => State::Open(sender.clone()),
            None => State::Closed,
        });
    }

    fn set(&mut self, to: State) {
        if let Some(endpoint) = self.endpoint.take() {
            let mut state = endpoint.lock();
            if matches!(&*state, State::Connecting(c) if Shared::ptr_eq(c, &self.connecting)) {
                *state = to;
            }
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.set(State::Closed);
    }
}

async fn handshake(endpoint: &Endpoint) -> Result<Sender, ConnectError> {
    let failed = |e: BoxError| {
        // Every instance would refuse it alike: not retried.
        let outcome = if tls_refused(&*e) {
            Outcome::Failure
        } else {
            Outcome::Connect
        };
        ConnectError::new(outcome, e)
    };
    let io = endpoint
        .connector
        .clone()
        .oneshot(endpoint.target.clone())
        .await
        .map_err(failed)?;
    let (sender, connection) = endpoint
        .http2
        .handshake(io)
        .await
        .map_err(|e| failed(e.into()))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "gRPC connection ended");
        }
    });
    Ok(sender)
}

/// Spawns the tasks hyper makes for a connection (one per request, which
/// sends its body) boxed: hyper's future for one is as big as the
/// connection's whole state, and tokio moves a task's future several
/// times before it runs and again when it ends, which cost more than the
/// rest of the call. Moved as a box, it is copied once.
#[derive(Clone, Copy)]
pub(crate) struct Boxing;

impl<F> hyper::rt::Executor<F> for Boxing
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, future: F) {
        let future: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(future);
        tokio::spawn(future);
    }
}

/// Why a connection could not be made, for every call that waited for it.
#[derive(Clone)]
pub(crate) struct ConnectError {
    outcome: Outcome,
    error: Arc<BoxError>,
}

impl ConnectError {
    fn new(outcome: Outcome, error: impl Into<BoxError>) -> Self {
        ConnectError {
            outcome,
            error: Arc::new(error.into()),
        }
    }

    /// The error a call fails with.
    pub(crate) fn into_error(self) -> BoxError {
        let outcome = self.outcome;
        Classified::new(outcome, self).into()
    }
}

impl fmt::Debug for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self.error, f)
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "connection failed: {}", self.error)
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&**self.error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{HttpProtocol, TlsConfig, connector};

    /// A listener that accepts connections and never answers (a TLS
    /// handshake with it never ends); each accept is reported.
    fn silent() -> (Uri, tokio::sync::mpsc::UnboundedReceiver<()>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = format!("https://{}/", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let (accepted, rx) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for tcp in listener.incoming() {
                held.push(tcp);
                if accepted.send(()).is_err() {
                    return;
                }
            }
        });
        (target, rx)
    }

    fn https(target: Uri) -> Link {
        let connector = connector(&TlsConfig::default(), HttpProtocol::Http2);
        Link::new(target, connector, KeepAlive::default())
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn connecting(link: &mut Link) -> Connecting {
        match link.ready() {
            Ready::Connecting(connecting) => connecting,
            Ready::Open(_) => panic!("open"),
        }
    }

    #[test]
    fn a_connect_cancelled_with_its_runtime_is_made_again_by_the_next_call() {
        let (target, mut accepted) = silent();
        let mut link = https(target);
        let first = runtime();
        let cancelled = {
            let _in = first.enter();
            connecting(&mut link)
        };
        // In its TLS handshake, which never ends.
        first.block_on(accepted.recv()).unwrap();
        drop(first);
        runtime().block_on(async {
            let again = connecting(&mut link);
            assert!(!Shared::ptr_eq(&cancelled, &again));
            accepted.recv().await.unwrap();
        });
    }

    #[test]
    fn a_connect_whose_task_never_ran_fails_its_waiters_and_is_made_again() {
        let (target, mut accepted) = silent();
        let mut link = https(target);
        let first = runtime();
        let never_ran = {
            let _in = first.enter();
            connecting(&mut link)
        };
        drop(first);
        runtime().block_on(async {
            let err = never_ran.clone().await.unwrap_err().into_error();
            assert_eq!(crate::classify::Outcome::of_error(&*err), Outcome::Connect);
            let again = connecting(&mut link);
            assert!(!Shared::ptr_eq(&never_ran, &again));
            accepted.recv().await.unwrap();
        });
    }

    #[test]
    fn calls_while_connecting_wait_for_the_same_connection() {
        let (target, mut accepted) = silent();
        let mut link = https(target);
        runtime().block_on(async {
            let first = connecting(&mut link);
            let second = connecting(&mut link);
            let third = link.handle();
            assert!(Shared::ptr_eq(&first, &second));
            accepted.recv().await.unwrap();
            match third.0.ready() {
                Err(connecting) => assert!(Shared::ptr_eq(&first, &connecting)),
                Ok(_) => panic!("open"),
            }
        });
    }
}
