//! [`BalanceView`]: the endpoints a balancer holds, for dashboards and
//! tests.

use std::sync::Arc;

use crate::circuit_breaker::CircuitBreaker;
use crate::discovery::Endpoint;

/// The endpoints a balancer holds, with their breakers: for dashboards and
/// tests. Updated when discovery inserts or removes one (a lock taken
/// there and by [`endpoints`](Self::endpoints), never per request).
#[derive(Debug, Clone, Default)]
pub struct BalanceView {
    inner: Arc<std::sync::Mutex<Vec<EndpointStatus>>>,
}

/// One endpoint of a [`BalanceView`].
#[derive(Debug, Clone)]
pub struct EndpointStatus {
    /// The instance id.
    pub id: String,
    /// Where it is.
    pub endpoint: Endpoint,
    /// Its breaker (in [`Rejection::Wait`](crate::circuit_breaker::Rejection::Wait)
    /// mode): `state()` is `Open` while it is ejected.
    pub breaker: CircuitBreaker,
}

impl BalanceView {
    /// The endpoints now, in the order they were inserted.
    pub fn endpoints(&self) -> Vec<EndpointStatus> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(super) fn insert(&self, id: String, endpoint: Endpoint, breaker: CircuitBreaker) {
        let mut list = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        list.retain(|e| e.id != id);
        list.push(EndpointStatus {
            id,
            endpoint,
            breaker,
        });
    }

    pub(super) fn remove(&self, id: &str) {
        let mut list = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        list.retain(|e| e.id != id);
    }
}
