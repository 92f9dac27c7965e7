//! The retry budget: retries limited to a share of recent requests plus a
//! floor per second, as Finagle's `RetryBudget` and Envoy's `retry_budget`.
//!
//! Why not `tower::retry::budget::TpsBudget`: it locks a mutex and reads
//! `std::time::Instant` on every deposit, i.e. on every request's success
//! path, and its std clock does not follow tokio's paused time, so tests
//! could not drive it. Here a deposit is one increment of a counter stripe
//! owned by the calling thread (a load and a store), with no clock; the clock and
//! a mutex are used only when a retry asks for a token, which is the
//! failure path.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_utils::CachePadded;
use tokio::time::Instant;

use super::budget_config::RetryBudgetConfig;
use crate::recycle::{self, Lease, Pool};
use crate::sync::{AtomicU64, Ordering::Relaxed, place, stripe_count};

/// How many buckets the window is kept in.
const BUCKETS: usize = 10;

/// A thread's deposits between two looks at the clock (a power of two).
const LOOK_EVERY: u64 = 256;

/// A retry budget shared by every service of a [`RetryLayer`](super::RetryLayer)
/// (and, if you pass it around, by several layers and hedges). Cheap to clone.
///
/// Each request deposits `ratio` of a token; each retry or hedge withdraws
/// one; `min_per_second × ttl` tokens are always available. Tokens expire
/// after `ttl`. When the budget is empty, the retry layer returns the last
/// response or error as it is.
///
/// ```
/// use meshguard::retry::{RetryBudget, RetryBudgetConfig};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// // 10% of requests, no floor.
/// let config = RetryBudgetConfig::builder()
///     .ratio(0.1)
///     .min_per_second(0)
///     .build()
///     .unwrap();
/// let budget = RetryBudget::new(config);
/// for _ in 0..20 {
///     budget.deposit();
/// }
/// assert!(budget.withdraw());
/// assert!(budget.withdraw());
/// assert!(!budget.withdraw());
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RetryBudget {
    lease: Arc<Lease<State>>,
    config: RetryBudgetConfig,
}

/// A budget's counters and window. A request's policy reaches them through
/// a [`Handle`] of the crate's recycler, not an `Arc` (see
/// `crate::recycle` for the cost measured): a request in flight keeps its
/// own budget for as long as it lives, its layer dropped or not, and the
/// memory serves a new budget only once no request can reach it.
pub(crate) struct State {
    stripes: Box<[CachePadded<AtomicU64>]>,
    // Padded: a look writes the lock, and every deposit reads `stripes`.
    window: CachePadded<Mutex<Window>>,
}

static STATES: Pool<State> = Pool::new();

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Window {
    config: RetryBudgetConfig,
    epoch: Instant,
    width: Duration,
    /// Index of the newest bucket, counted from `epoch`.
    head: u64,
    /// Per bucket: deposits made before it began, and withdrawals in it.
    start: [u64; BUCKETS],
    withdrawn: [u64; BUCKETS],
}

/// What a request's policy holds.
#[derive(Debug, Clone)]
pub(crate) struct Handle(recycle::Handle<State>);

impl RetryBudget {
    /// A new, empty budget (only the floor is available).
    pub fn new(config: RetryBudgetConfig) -> Self {
        let lease = STATES.take(|| State {
            stripes: (0..stripe_count())
                .map(|_| CachePadded::new(AtomicU64::new(0)))
                .collect(),
            window: CachePadded::new(Mutex::new(Window::new(config, Instant::now()))),
        });
        // A reused state keeps its counters, which only grow: the window
        // starts from their sum.
        let state = lease.get();
        let mut w = state.window.lock().unwrap_or_else(|e| e.into_inner());
        *w = Window::new(config, Instant::now());
        w.start = [state.sum(); BUCKETS];
        drop(w);
        RetryBudget {
            lease: Arc::new(lease),
            config,
        }
    }

    /// The settings.
    pub fn config(&self) -> &RetryBudgetConfig {
        &self.config
    }

    pub(crate) fn handle(&self) -> Handle {
        Handle(self.lease.handle())
    }

    /// Records a request: it earns `ratio` of a retry.
    #[inline]
    pub fn deposit(&self) {
        self.lease.get().deposit();
    }

    /// Takes a token for a retry or a hedge; `false` when the budget is empty.
    pub fn withdraw(&self) -> bool {
        self.lease.get().withdraw()
    }

    /// Tokens available now, rounded down.
    pub fn balance(&self) -> u64 {
        let state = self.lease.get();
        let mut w = state.window.lock().unwrap_or_else(|e| e.into_inner());
        w.balance(state.sum(), Instant::now()).max(0.0) as u64
    }
}

impl State {
    fn sum(&self) -> u64 {
        self.stripes.iter().map(|s| s.load(Relaxed)).sum()
    }

    /// Dates the deposits so far, unless another thread holds the window.
    #[cold]
    fn look(&self) {
        if let Ok(mut w) = self.window.try_lock() {
            let sum = self.sum();
            w.advance(sum, Instant::now());
        }
    }
}

impl Handle {
    #[inline(always)]
    pub(crate) fn deposit(&self) {
        self.0.get().deposit();
    }

    pub(crate) fn withdraw(&self) -> bool {
        self.0.get().withdraw()
    }
}

impl State {
    #[inline(always)]
    fn deposit(&self) {
        let stripes = &self.stripes;
        let place = place(stripes.len());
        let n = place.bump(&stripes[place.index]);
        if n % LOOK_EVERY == 0 {
            self.look();
        }
    }

    fn withdraw(&self) -> bool {
        let state = self;
        let mut w = state.window.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if w.balance(state.sum(), now) >= 1.0 {
            let i = (w.head % BUCKETS as u64) as usize;
            w.withdrawn[i] += 1;
            true
        } else {
            false
        }
    }
}

impl Window {
    fn new(config: RetryBudgetConfig, now: Instant) -> Window {
        Window {
            config,
            epoch: now,
            width: config.ttl() / BUCKETS as u32,
            head: 0,
            start: [0; BUCKETS],
            withdrawn: [0; BUCKETS],
        }
    }

    /// Moves the window to `now`, given the deposits so far.
    ///
    /// Deposits are counted without a clock, so each is dated at the last
    /// look before it: the buckets that begin between two looks all start
    /// after every deposit made up to the second look. A deposit thus
    /// expires early by at most the time between looks, never late, so the
    /// budget errs towards fewer retries. Looks happen on every withdrawal and every
    /// [`LOOK_EVERY`]th deposit of a thread.
    fn advance(&mut self, sum: u64, now: Instant) {
        let current = (now.saturating_duration_since(self.epoch).as_nanos()
            / self.width.as_nanos().max(1)) as u64;
        if current > self.head {
            let first = (self.head + 1).max(current.saturating_sub(BUCKETS as u64 - 1));
            for b in first..=current {
                let i = (b % BUCKETS as u64) as usize;
                self.start[i] = sum;
                self.withdrawn[i] = 0;
            }
            self.head = current;
        }
    }

    /// Moves the window to `now` and returns the tokens available.
    fn balance(&mut self, sum: u64, now: Instant) -> f64 {
        self.advance(sum, now);
        let oldest = self.head.saturating_sub(BUCKETS as u64 - 1);
        let deposits = sum.saturating_sub(self.start[(oldest % BUCKETS as u64) as usize]);
        let withdrawn: u64 = self.withdrawn.iter().sum();
        let floor = self.config.min_per_second() as f64 * self.config.ttl().as_secs_f64();
        floor + self.config.ratio() * deposits as f64 - withdrawn as f64
    }
}

#[cfg(all(test, not(meshguard_loom)))]
mod tests {
    use super::*;

    // The only lib test that makes budgets, so the pool is this test's.
    #[test]
    fn a_dropped_budgets_memory_serves_a_new_budget_empty() {
        let config = RetryBudgetConfig::builder()
            .ratio(1.0)
            .min_per_second(0)
            .build()
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let old = RetryBudget::new(config);
        for _ in 0..50 {
            old.deposit();
        }
        let state: *const State = old.lease.get();
        drop(old);
        let new = RetryBudget::new(config);
        assert!(std::ptr::eq(state, new.lease.get()), "the state was reused");
        assert_eq!(new.balance(), 0);
    }
}
