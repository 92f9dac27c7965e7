//! A flaky in-process service behind a circuit breaker.
//!
//! Run: `cargo run -p meshguard-examples --bin breaker_demo`
//!
//! The service fails 80% of calls for a while, then recovers. The demo drives
//! calls at a steady pace (on tokio's paused clock, so the two simulated
//! minutes take well under a second), prints every state change as it
//! happens, and ends with a summary table. It exits non-zero if the breaker
//! did not open during the outage and close again after it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use meshguard::BoxError;
use meshguard::backoff::{Backoff, Jitter};
use meshguard::circuit_breaker::{
    BreakerError, CircuitBreaker, CircuitBreakerConfig, Event, State,
};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

#[derive(Default)]
struct Flaky {
    outage: AtomicBool,
    seq: AtomicU64,
    reached: AtomicU64,
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> Result<(), BoxError> {
    let flaky = Arc::new(Flaky::default());
    let upstream = {
        let flaky = flaky.clone();
        tower::service_fn(move |_: ()| {
            let flaky = flaky.clone();
            async move {
                flaky.reached.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
                let n = flaky.seq.fetch_add(1, Ordering::Relaxed);
                if flaky.outage.load(Ordering::Relaxed) && n % 5 != 0 {
                    Err::<&str, BoxError>("upstream failed".into())
                } else {
                    Ok("ok")
                }
            }
        })
    };

    let breaker = CircuitBreaker::new(
        "flaky-upstream",
        CircuitBreakerConfig::builder()
            .count_window(20, 4)
            .minimum_calls(10)
            .failure_rate_threshold(50.0)
            .open_duration(
                Backoff::exponential(Duration::from_secs(5), Duration::from_secs(30))?
                    .with_jitter(Jitter::Equal),
            )
            .half_open_calls(3)
            .seed(1)
            .build()?,
    );
    let mut svc = breaker.layer().layer(upstream);

    let start = Instant::now();
    let mut events = breaker.subscribe();
    let printer = tokio::spawn(async move {
        let mut changes = Vec::new();
        while let Ok(event) = events.recv().await {
            if let Event::StateChanged { from, to } = event {
                let at = start.elapsed().as_secs_f64();
                println!("{at:7.2}s  {:>9} -> {to}", from.to_string());
                changes.push(to);
            }
        }
        changes
    });

    println!("   time   state change");
    let (mut ok, mut failed, mut rejected) = (0u64, 0u64, 0u64);
    for tick in 0..1_200u64 {
        // 0-20 s healthy, 20-60 s an outage, then healthy again until 120 s.
        let secs = tick / 10;
        flaky
            .outage
            .store((20..60).contains(&secs), Ordering::Relaxed);
        match svc.ready().await?.call(()).await {
            Ok(_) => ok += 1,
            Err(BreakerError::Open(_)) => rejected += 1,
            Err(BreakerError::Inner(_)) => failed += 1,
        }
        tokio::time::sleep_until(start + Duration::from_millis(100 * (tick + 1))).await;
    }
    let final_state = breaker.state();
    drop(svc);
    drop(breaker);
    let changes = printer.await?;

    let reached = flaky.reached.load(Ordering::Relaxed);
    println!();
    println!(
        "| calls | succeeded | failed | rejected (upstream spared) | reached upstream | final state |"
    );
    println!(
        "|------:|----------:|-------:|---------------------------:|-----------------:|------------:|"
    );
    println!(
        "| {:>5} | {ok:>9} | {failed:>6} | {rejected:>26} | {reached:>16} | {final_state:>11} |",
        ok + failed + rejected
    );
    let opened = changes.contains(&State::Open);
    if !opened || final_state != State::Closed || rejected == 0 {
        return Err("the breaker did not open during the outage and recover after it".into());
    }
    Ok(())
}
