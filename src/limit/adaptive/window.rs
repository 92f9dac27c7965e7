//! What the calls of the adaptive limit's current window measured.
//!
//! Latencies and their count are summed per thread, in stripes
//! (`crate::sync::place`): the calling thread's stripe takes a load and a
//! store where one shared counter took a read-modify-write on a line every
//! caller writes; two of them were 8 ns of a call's 29 ns on one thread
//! (`benches/limit.rs`), and far more with threads contending. The sums
//! only grow; a window's are their difference from the sums at the last
//! window's end. Drops (rare: overload) and the highest concurrency seen
//! stay single atomics.

use crossbeam_utils::CachePadded;

use super::controller::Totals;
use crate::classify::Outcome;
use crate::sync::Ordering::{Acquire, Relaxed};
use crate::sync::{AtomicU64, place, stripe_count};

/// What one finished call tells the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sample {
    /// A latency to learn from: the call was served.
    Latency,
    /// An overload signal (see [`Outcome::is_overload`]).
    Drop,
    /// Nothing: a failure that says nothing of load (a refused
    /// connection's speed is no latency), or a local rejection.
    Nothing,
}

impl Sample {
    #[inline]
    pub(super) fn of(outcome: &Outcome) -> Sample {
        match outcome {
            Outcome::Success | Outcome::Ignored => Sample::Latency,
            o if o.is_overload() => Sample::Drop,
            _ => Sample::Nothing,
        }
    }
}

/// The current window's counts.
#[derive(Debug)]
pub(super) struct Window {
    start: AtomicU64,
    sums: Box<[CachePadded<Sums>]>,
    drops: AtomicU64,
    max_in_flight: AtomicU64,
}

/// One thread's (or the shared stripe's) sums since the window began
/// counting.
#[derive(Debug)]
struct Sums {
    samples: AtomicU64,
    latency: AtomicU64,
}

/// The sums of every stripe at the last window's end: where the current
/// window's begin.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Taken {
    samples: u64,
    latency: u64,
}

impl Window {
    pub(super) fn new(now: u64) -> Self {
        Window {
            start: AtomicU64::new(now),
            sums: (0..stripe_count())
                .map(|_| {
                    CachePadded::new(Sums {
                        samples: AtomicU64::new(0),
                        latency: AtomicU64::new(0),
                    })
                })
                .collect(),
            drops: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
        }
    }

    /// Starts a window at `now` with nothing counted, for a new owner of
    /// a reused window (none of the last owner's calls can still count):
    /// the sums where it begins.
    pub(super) fn restart(&self, now: u64) -> Taken {
        self.start.store(now, Relaxed);
        self.drops.store(0, Relaxed);
        self.max_in_flight.store(0, Relaxed);
        self.sums()
    }

    /// When the window began.
    #[inline]
    pub(super) fn start(&self) -> u64 {
        self.start.load(Relaxed)
    }

    /// Counts one finished call that took `latency` with `in_flight` calls
    /// in flight (itself included).
    #[inline]
    pub(super) fn record(&self, latency: u64, in_flight: usize, sample: Sample) {
        match sample {
            Sample::Latency => {
                let p = place(self.sums.len());
                let sums = &self.sums[p.index];
                // The latency first: a window's end reads the count first,
                // so it never counts a call without its latency.
                p.add(&sums.latency, latency);
                p.add(&sums.samples, 1);
            }
            Sample::Drop => {
                self.drops.fetch_add(1, Relaxed);
            }
            Sample::Nothing => {}
        }
        let in_flight = in_flight as u64;
        if in_flight > self.max_in_flight.load(Relaxed) {
            self.max_in_flight.fetch_max(in_flight, Relaxed);
        }
    }

    /// Ends the window at `now`, which starts the next: its totals, the
    /// sums since `taken` (moved on to now). Calls ending meanwhile count
    /// in one window or the next, none in both.
    pub(super) fn end(&self, now: u64, taken: &mut Taken) -> Totals {
        self.start.store(now, Relaxed);
        let sums = self.sums();
        let totals = Totals {
            samples: sums.samples.wrapping_sub(taken.samples),
            latency_sum: sums.latency.wrapping_sub(taken.latency),
            drops: self.drops.swap(0, Relaxed),
            max_in_flight: self.max_in_flight.swap(0, Relaxed),
        };
        *taken = sums;
        totals
    }

    /// Every stripe's sums added up.
    fn sums(&self) -> Taken {
        self.sums.iter().fold(Taken::default(), |t, s| {
            let samples = s.samples.load(Acquire);
            Taken {
                samples: t.samples.wrapping_add(samples),
                latency: t.latency.wrapping_add(s.latency.load(Acquire)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(t: Totals) -> (u64, u64, u64, u64) {
        (t.samples, t.latency_sum, t.drops, t.max_in_flight)
    }

    #[test]
    fn a_window_ends_with_the_calls_counted_since_the_last_end() {
        let w = Window::new(0);
        let mut taken = Taken::default();
        w.record(10, 1, Sample::Latency);
        w.record(30, 2, Sample::Latency);
        w.record(0, 1, Sample::Drop);
        assert_eq!(totals(w.end(100, &mut taken)), (2, 40, 1, 2));
        w.record(5, 1, Sample::Latency);
        assert_eq!(totals(w.end(200, &mut taken)), (1, 5, 0, 1));
        assert_eq!(w.start(), 200);
    }

    #[test]
    fn a_restarted_window_counts_nothing_from_before() {
        let w = Window::new(0);
        w.record(10, 4, Sample::Latency);
        w.record(0, 1, Sample::Drop);
        let mut taken = w.restart(50);
        assert_eq!(w.start(), 50);
        w.record(7, 1, Sample::Latency);
        assert_eq!(totals(w.end(100, &mut taken)), (1, 7, 0, 1));
    }

    #[test]
    fn latencies_from_more_threads_than_stripes_are_all_counted() {
        let w = Window::new(0);
        let threads = stripe_count() * 2;
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    for _ in 0..1000 {
                        w.record(3, 1, Sample::Latency);
                    }
                });
            }
        });
        let n = threads as u64 * 1000;
        let t = w.end(1, &mut Taken::default());
        assert_eq!((t.samples, t.latency_sum), (n, 3 * n));
    }

    #[test]
    fn overload_outcomes_are_drops_and_fast_failures_teach_nothing() {
        assert_eq!(Sample::of(&Outcome::Success), Sample::Latency);
        assert_eq!(Sample::of(&Outcome::Timeout), Sample::Drop);
        let busy = Outcome::Status {
            status: http::StatusCode::SERVICE_UNAVAILABLE,
            retry_after: None,
        };
        assert_eq!(Sample::of(&busy), Sample::Drop);
        assert_eq!(Sample::of(&Outcome::Connect), Sample::Nothing);
        let error = Outcome::Status {
            status: http::StatusCode::INTERNAL_SERVER_ERROR,
            retry_after: None,
        };
        assert_eq!(Sample::of(&error), Sample::Nothing);
    }
}
