//! What is measured: the process's CPU time (getrusage), how long the
//! client's runtime worker was held between two ticks of a 1 ms probe
//! timer, and order statistics.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// User and system CPU time of this process, all threads, so far.
pub fn cpu() -> Duration {
    rusage(libc::RUSAGE_SELF)
}

/// User and system CPU time of the calling thread so far.
fn thread_cpu() -> Duration {
    rusage(libc::RUSAGE_THREAD)
}

fn rusage(who: libc::c_int) -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage writes a whole `rusage` into the pointer it is
    // given, which points to one; `who` is RUSAGE_SELF or RUSAGE_THREAD.
    let usage = unsafe {
        assert_eq!(libc::getrusage(who, usage.as_mut_ptr()), 0);
        usage.assume_init()
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// A task on a current-thread runtime that sleeps 1 ms at a time and
/// records, at each wake, the CPU time its worker thread spent since the
/// probe last ran: the longest the worker was held without reaching the
/// probe (its own work, not time the OS gave to other processes, which
/// the wall-clock lateness of the wake would also count).
pub struct StallProbe {
    worst_busy_ns: Arc<AtomicU64>,
    worst_late_ns: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl StallProbe {
    pub fn start() -> StallProbe {
        let worst_busy_ns = Arc::new(AtomicU64::new(0));
        let worst_late_ns = Arc::new(AtomicU64::new(0));
        let (busy, late) = (worst_busy_ns.clone(), worst_late_ns.clone());
        let task = tokio::spawn(async move {
            loop {
                let deadline = Instant::now() + Duration::from_millis(1);
                let before = thread_cpu();
                tokio::time::sleep_until(deadline).await;
                let held = thread_cpu().saturating_sub(before);
                let lateness = Instant::now().saturating_duration_since(deadline);
                busy.fetch_max(held.as_nanos() as u64, Ordering::Relaxed);
                late.fetch_max(lateness.as_nanos() as u64, Ordering::Relaxed);
            }
        });
        StallProbe {
            worst_busy_ns,
            worst_late_ns,
            task,
        }
    }

    /// Since the last call: the longest the worker was busy between two
    /// runs of the probe, and the latest the probe woke (wall time).
    pub fn take(&self) -> (Duration, Duration) {
        (
            Duration::from_nanos(self.worst_busy_ns.swap(0, Ordering::Relaxed)),
            Duration::from_nanos(self.worst_late_ns.swap(0, Ordering::Relaxed)),
        )
    }
}

impl Drop for StallProbe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The median and the largest of `samples`.
pub fn median_max(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort();
    (samples[samples.len() / 2], samples[samples.len() - 1])
}

/// `d` in milliseconds, two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// `bytes` in KB (1,000) or MB.
pub fn size(bytes: u64) -> String {
    if bytes >= 1_000_000 {
        format!("{:.2} MB", bytes as f64 / 1e6)
    } else {
        format!("{:.1} KB", bytes as f64 / 1e3)
    }
}
