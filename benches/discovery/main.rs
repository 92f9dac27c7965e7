//! Consul discovery at fleet scale: a `ConsulDiscovery` watch with its
//! defaults against the in-process registry holding 10, 1,000 and 5,000
//! instances of one service, in a child process; one instance's health
//! flips per change. Prints, per size, the table of docs/performance.md
//! ("Consul watch at fleet scale"): client CPU per change (getrusage of
//! this process, which runs the client alone), bytes received per change
//! (the watch's `received_bytes`, counted as they come off the
//! connection), the longest a tokio worker was held (the CPU time the
//! watch's current-thread runtime spent between two ticks of a 1 ms probe
//! timer, and the probe's wall-clock lateness, which also counts time the
//! OS gave to other processes; in a second pass, so the probe's own cost
//! stays out of the CPU figure), propagation (from asking
//! the registry for the change to the stream yielding it, the registry's
//! serialisation and compression included), connections opened, the
//! registry's own share (the first gzip query after a change, which
//! serialises and compresses, less a second one served from its cache);
//! and the same query through rs-consul 0.15, as the watch made it before.
//!
//! Run: `cargo bench -p meshguard --features consul,test-util --bench
//! discovery` (`MESHGUARD_DISCOVERY_SIZES=10,1000`,
//! `MESHGUARD_DISCOVERY_CHANGES=10` to change the runs).

mod before;
mod child;
mod measure;

use std::future::poll_fn;
use std::pin::Pin;
use std::time::Duration;

use meshguard::discovery::Change;
use meshguard::discovery::consul::ConsulDiscovery;
use tokio::time::Instant;

use child::{Registry, id};
use measure::{StallProbe, cpu, median_max, ms, size};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--registry") {
        child::serve(args[i + 1].parse().expect("a size"));
        return;
    }
    // `cargo bench --no-run` builds it; `cargo test --benches` runs nothing.
    if args.iter().any(|a| a == "--test") {
        return;
    }
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let sizes: Vec<usize> = env("MESHGUARD_DISCOVERY_SIZES", "10,1000,5000")
        .split(',')
        .map(|s| s.trim().parse().expect("sizes"))
        .collect();
    let changes: usize = env("MESHGUARD_DISCOVERY_CHANGES", "10")
        .parse()
        .expect("changes");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    println!(
        "| instances | answer (plain) | bytes per change | client CPU per change, median (max) \
         | longest worker stall: busy (late) | propagation, median (max) | connections \
         | registry's render + gzip | rs-consul 0.15: bytes, CPU, stall busy (late) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for n in sizes {
        let row = runtime.block_on(run(n, changes));
        println!("{row}");
    }
}

/// The next change of `d`.
async fn next(d: &mut ConsulDiscovery) -> Change {
    let item = poll_fn(|cx| futures_core::Stream::poll_next(Pin::new(&mut *d), cx)).await;
    item.expect("the stream lives").expect("infallible")
}

async fn run(n: usize, changes: usize) -> String {
    let mut registry = Registry::start(n).await;
    let mut d = ConsulDiscovery::builder(&registry.url, "users")
        .build()
        .expect("valid");
    for _ in 0..n {
        next(&mut d).await;
    }
    let status = d.status_watch();
    let mut round = 0usize;
    // One change: flip an instance, wait for the stream to yield it and
    // for the watch to settle (its status says the new index); CPU,
    // bytes and time of the round.
    let mut change = async |round: usize, d: &mut ConsulDiscovery| {
        let i = (round / 2 * 7919) % n;
        let command = if round % 2 == 0 {
            "critical"
        } else {
            "passing"
        };
        let (bytes, cpu0, start) = (d.status().received_bytes, cpu(), Instant::now());
        let index = registry.ask(&format!("{command} {i}")).await;
        let c = next(d).await;
        let took = start.elapsed();
        let key = match &c {
            Change::Insert(k, _) | Change::Remove(k) => k.clone(),
        };
        assert_eq!(key, id(i));
        status.clone().wait_for(|s| s.index >= index).await.unwrap();
        let used = cpu() - cpu0;
        let bytes = d.status().received_bytes - bytes;
        tokio::time::sleep_until(start + Duration::from_millis(1100)).await;
        (used, bytes, took)
    };
    // Warm up: the first changes fault in buffers.
    for _ in 0..2 {
        change(round, &mut d).await;
        round += 1;
    }
    let (mut cpus, mut times, mut bytes) = (Vec::new(), Vec::new(), 0);
    for _ in 0..changes {
        let (c, b, t) = change(round, &mut d).await;
        round += 1;
        cpus.push(c);
        times.push(t);
        bytes = bytes.max(b);
    }
    // The second pass, with the probe on.
    let probe = StallProbe::start();
    tokio::time::sleep(Duration::from_millis(20)).await;
    probe.take();
    for _ in 0..changes {
        change(round, &mut d).await;
        round += 1;
    }
    let stall = probe.take();
    drop(probe);
    let connections = registry.ask("connections").await;
    drop(d);
    let plain = before::measure(&registry.url, n, changes.min(5)).await;
    // The registry's share of propagation: a change, then a gzip query
    // that renders and compresses, then one served from the cache.
    let mut shares = Vec::new();
    for _ in 0..changes.min(5) {
        let command = if round % 2 == 0 {
            "critical"
        } else {
            "passing"
        };
        registry.ask(&format!("{command} 1")).await;
        round += 1;
        let start = Instant::now();
        before::get(&registry.url, true).await;
        let cold = start.elapsed();
        let start = Instant::now();
        before::get(&registry.url, true).await;
        shares.push(cold.saturating_sub(start.elapsed()));
    }
    let share = median_max(&mut shares).0;
    let (cpu_median, cpu_max) = median_max(&mut cpus);
    let (time_median, time_max) = median_max(&mut times);
    format!(
        "| {n} | {} | {} | {} ({}) | {} ({}) | {} ({}) | {connections} | {} | {}, {}, {} ({}) |",
        size(plain.bytes),
        size(bytes),
        ms(cpu_median),
        ms(cpu_max),
        ms(stall.0),
        ms(stall.1),
        ms(time_median),
        ms(time_max),
        ms(share),
        size(plain.bytes),
        ms(plain.cpu),
        ms(plain.stall.0),
        ms(plain.stall.1),
    )
}
