//! [`BalanceView`]: the endpoints a balancer holds, for dashboards and
//! tests.
//!
//! The view is a published snapshot: reading it is an `Arc` clone. The
//! balancer records discovery's changes in a [`ViewBatch`] as it takes
//! them in, and publishes a new snapshot once discovery has nothing more
//! ready (the end of a batch): the list is rebuilt once per batch, in
//! O(N + changes), not once per change (5,000 instances at a cold start
//! are one rebuild, or one per coop budget's worth of changes, not 5,000).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::circuit_breaker::CircuitBreaker;
use crate::discovery::Endpoint;

/// The endpoints a balancer holds, with their breakers: for dashboards and
/// tests. A snapshot, published by the balancer each time it has taken in
/// a batch of discovery changes (every change discovery had ready); never
/// touched per request.
#[derive(Clone, Default)]
pub struct BalanceView {
    published: Arc<ArcSwap<Vec<EndpointStatus>>>,
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

impl fmt::Debug for BalanceView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BalanceView")
            .field("endpoints", &**self.published.load())
            .finish()
    }
}

impl BalanceView {
    /// The endpoints now, in the order they were inserted (an instance
    /// inserted again moves to the end): the snapshot the balancer last
    /// published, once it had taken in every discovery change that was
    /// ready.
    ///
    /// O(1): an `Arc` clone of the snapshot, whatever the number of
    /// endpoints; the snapshot is never modified (a later change publishes
    /// a new one).
    pub fn endpoints(&self) -> Arc<Vec<EndpointStatus>> {
        self.published.load_full()
    }
}

/// A change to the view, recorded until the batch is published.
enum ViewChange {
    Insert(EndpointStatus),
    Remove(String),
}

/// Discovery changes the balancer took in since it last published its
/// view: the balancer records them one by one and publishes them together
/// ([`publish`](Self::publish)), when discovery has nothing more ready.
#[derive(Default)]
pub(super) struct ViewBatch {
    changes: Vec<ViewChange>,
}

impl ViewBatch {
    /// `id` is at `endpoint`, behind `breaker` (replacing any earlier entry
    /// of `id`, which moves to the end).
    pub(super) fn insert(&mut self, id: String, endpoint: Endpoint, breaker: CircuitBreaker) {
        self.changes.push(ViewChange::Insert(EndpointStatus {
            id,
            endpoint,
            breaker,
        }));
    }

    /// `id` is gone.
    pub(super) fn remove(&mut self, id: String) {
        self.changes.push(ViewChange::Remove(id));
    }

    /// Publishes the changes recorded to `view`, if any, in one rebuild of
    /// its list: O(N + changes). The batch's memory is given back.
    pub(super) fn publish(&mut self, view: &BalanceView) {
        if self.changes.is_empty() {
            return;
        }
        let changes = std::mem::take(&mut self.changes);
        // Which changes survive the batch (a later one of the same id
        // undoes an earlier insert), and which ids leave the published list
        // (removed or inserted again: an insert moves to the end).
        let mut kept = vec![false; changes.len()];
        let mut gone = HashSet::with_capacity(changes.len());
        let mut inserted: HashMap<&str, usize> = HashMap::new();
        for (i, change) in changes.iter().enumerate() {
            let id = match change {
                ViewChange::Insert(e) => e.id.as_str(),
                ViewChange::Remove(id) => id.as_str(),
            };
            gone.insert(id);
            let earlier = match change {
                ViewChange::Insert(_) => {
                    kept[i] = true;
                    inserted.insert(id, i)
                }
                ViewChange::Remove(_) => inserted.remove(id),
            };
            if let Some(earlier) = earlier {
                kept[earlier] = false;
            }
        }
        drop(inserted);
        let old = view.published.load();
        let added = kept.iter().filter(|k| **k).count();
        let mut list = Vec::with_capacity(old.len() + added);
        list.extend(
            old.iter()
                .filter(|e| !gone.contains(e.id.as_str()))
                .cloned(),
        );
        drop(gone);
        drop(old);
        list.extend(
            changes
                .into_iter()
                .zip(kept)
                .filter_map(|(change, kept)| match change {
                    ViewChange::Insert(e) if kept => Some(e),
                    _ => None,
                }),
        );
        // Removals left room: the snapshot holds exactly its endpoints.
        list.shrink_to_fit();
        view.published.store(Arc::new(list));
    }
}
