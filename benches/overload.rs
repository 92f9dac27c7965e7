//! The overload scenario, side by side: three naive upstream instances
//! (8 requests at a time, 10 ms each, queueing without limit: 2,400
//! requests a second together) offered twice their capacity, open loop,
//! for 10 s, each call with a 1 s deadline, through tower alone (p2c over
//! PeakEwma, retry, timeout), meshguard as configured by default, and
//! meshguard with its adaptive limit and throttling. Prints the table of
//! docs/performance.md.
//!
//! Run: `cargo bench --bench overload --features client,test-util`
//! (`MESHGUARD_OVERLOAD_SECS` shortens the runs). Not a criterion bench:
//! each configuration is one long run, and the figures are the run's
//! goodput and latency percentiles.

#[path = "../tests/overload/clients.rs"]
mod clients;
#[path = "../tests/overload/scenario.rs"]
mod scenario;

use std::time::Duration;

use scenario::{CAPACITY, HEADER, capacity, offer, upstreams};

fn main() {
    // `cargo bench --no-run` builds it; `cargo test --benches` would run
    // it for a second only.
    if std::env::args().any(|a| a == "--test") {
        return;
    }
    let secs = std::env::var("MESHGUARD_OVERLOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10u64);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let rows = runtime.block_on(async {
        let mut rows = Vec::new();
        for (name, make) in [
            (
                "tower alone (p2c PeakEwma + retry + timeout)",
                clients::tower_alone as fn(&scenario::Upstreams) -> clients::Caller,
            ),
            ("meshguard, defaults", clients::meshguard_plain),
            (
                "meshguard + adaptive limit + throttling",
                clients::meshguard_flow_control,
            ),
        ] {
            // Fresh instances for each client: nothing queued from the last.
            let up = upstreams(3, 8).await;
            let measured = capacity(&up, 8, Duration::from_secs(3)).await;
            let call = make(&up);
            let report = offer(
                (CAPACITY * 2.0) as u64,
                Duration::from_secs(secs),
                &up.requests,
                measured,
                call,
            )
            .await;
            eprintln!("{name}: measured capacity {measured:.0}/s");
            rows.push(report.row(name));
            // Let the last run's queues drain before the next starts.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        rows
    });
    println!("{HEADER}");
    for row in rows {
        println!("{row}");
    }
}
