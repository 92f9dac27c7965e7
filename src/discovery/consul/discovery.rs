//! The watch as a stream of endpoint changes, and its health.

use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::sync::{mpsc, watch};

use super::watch::Watch;
use crate::discovery::Change;

/// The watch's health, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchStatus {
    /// The index of the last good answer (0 before the first).
    pub index: u64,
    /// Instances in the last good answer.
    pub endpoints: usize,
    /// Successive failed queries since the last good answer.
    pub failures: u32,
    /// The last error, if the last query failed.
    pub last_error: Option<String>,
    /// Answer bytes received from Consul since the watch started, as they
    /// came over the wire (compressed when Consul compressed them; HTTP
    /// headers not counted), failed answers included.
    pub received_bytes: u64,
}

/// A stream of endpoint changes from Consul; see the [module docs](super).
///
/// ```no_run
/// use meshguard::discovery::consul::{ConsulDiscovery, ConsulToken};
///
/// # async fn f() -> Result<(), meshguard::ConfigError> {
/// let users = ConsulDiscovery::builder("http://127.0.0.1:8500", "users")
///     .tag("v2")
///     .token(ConsulToken::new(std::env::var("CONSUL_HTTP_TOKEN").unwrap_or_default()))
///     .build()?;
/// // `users` is a `tower::discover::Discover` of endpoints: balance over
/// // them with `meshguard::balance::balance`, or give the builder to
/// // `ServiceClient::builder(..).consul(..)` (feature `client`).
/// # let _ = users; Ok(()) }
/// ```
pub struct ConsulDiscovery {
    // `None` marks the end of the first answer (or the first failure):
    // from then on an empty endpoint set means "none", not "not yet".
    changes: mpsc::Receiver<Option<Change>>,
    status: watch::Receiver<WatchStatus>,
    settled: Arc<AtomicBool>,
}

impl fmt::Debug for ConsulDiscovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsulDiscovery")
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
}

impl ConsulDiscovery {
    /// Starts `watch` on the current tokio runtime; it stops when the
    /// stream is dropped.
    pub(super) fn spawn(watch: Watch) -> ConsulDiscovery {
        let (tx, rx) = mpsc::channel(256);
        let (status_tx, status_rx) = watch::channel(WatchStatus {
            index: 0,
            endpoints: 0,
            failures: 0,
            last_error: None,
            received_bytes: 0,
        });
        tokio::spawn(watch.run(tx, status_tx));
        ConsulDiscovery {
            changes: rx,
            status: status_rx,
            settled: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The watch's state now.
    pub fn status(&self) -> WatchStatus {
        self.status.borrow().clone()
    }

    /// A receiver of the watch's state, to wait for changes.
    pub fn status_watch(&self) -> watch::Receiver<WatchStatus> {
        self.status.clone()
    }

    /// Set once the stream has yielded the changes of the first answer (or
    /// Consul failed once): a balancer that is still empty then has no
    /// endpoints, rather than none yet.
    #[cfg_attr(not(feature = "client"), allow(dead_code))]
    pub(crate) fn settled(&self) -> Arc<AtomicBool> {
        self.settled.clone()
    }
}

impl futures_core::Stream for ConsulDiscovery {
    type Item = Result<Change, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // The loop never ends while this stream lives, so `None` cannot
        // come; a balancer would treat it as an error.
        loop {
            match self.changes.poll_recv(cx) {
                Poll::Ready(Some(Some(change))) => return Poll::Ready(Some(Ok(change))),
                Poll::Ready(Some(None)) => self.settled.store(true, Ordering::Release),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
