// A binary of its own: real-time timelines under load, which tests running beside it would skew.
//! Recovery through `ServiceClient`. With the default settings: every
//! instance of a service refuses connections for 3 s while 16 tasks call it
//! in a closed loop, then comes back. During the outage the client must not
//! multiply the load (at most 1.2 attempts reach an instance per call), and
//! once the instances are back the calls must succeed again within 2 s.
//! And an instance ejected for hanging, whose probes time out, must be back
//! within one open period and one probe of its recovery.
//!
//! Real sockets on real time: the outage is the kernel refusing
//! connections to a closed port, and what is measured is how the defaults'
//! timers (open periods of 1 s, growing) meet real traffic. On paused time
//! the clock jumps whenever the runtime waits for a socket, which would
//! make the timeline meaningless.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meshguard::client::ServiceClient;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tokio::sync::watch;
use tokio::time::Instant;

/// An instance that can be shut down (its port then refuses connections,
/// and its open connections are closed) and started again on the same port.
struct Instance {
    addr: SocketAddr,
    stop: Option<(watch::Sender<()>, tokio::task::JoinHandle<()>)>,
}

impl Instance {
    async fn start(addr: SocketAddr) -> Instance {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "up" }));
        let (tx, mut rx) = watch::channel(());
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.changed().await;
                })
                .await
                .unwrap()
        });
        Instance {
            addr,
            stop: Some((tx, task)),
        }
    }

    async fn kill(&mut self) {
        let (tx, task) = self.stop.take().expect("running");
        tx.send(()).unwrap();
        task.await.unwrap();
    }
}

/// Attempts since the last look (a snapshot resets the debugging
/// recorder's counters).
fn attempts(snapshotter: &Snapshotter) -> u64 {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .find(|(key, ..)| key.key().name() == "meshguard_client_attempts_total")
        .map(|(.., value)| match value {
            DebugValue::Counter(n) => n,
            other => panic!("{other:?}"),
        })
        .unwrap_or(0)
}

/// One call: when it started, when it ended, and whether it succeeded.
type Call = (Instant, Instant, bool);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defaults_keep_an_outage_of_every_instance_cheap_and_recover_within_two_seconds() {
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(Instance::start("127.0.0.1:0".parse().unwrap()).await);
    }
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let urls: Vec<String> = instances
        .iter()
        .map(|i| format!("http://{}", i.addr))
        .collect();
    // The client's metric handles are made at build, on this recorder.
    let client = metrics::with_local_recorder(&recorder, || {
        ServiceClient::builder("users").urls(urls).build().unwrap()
    });

    let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    let callers: Vec<_> = (0..16)
        .map(|_| {
            let (client, calls, stop) = (client.clone(), calls.clone(), stop_rx.clone());
            tokio::spawn(async move {
                while !*stop.borrow() {
                    let started = Instant::now();
                    let ok = client.get("/").send_raw().await.is_ok();
                    calls.lock().unwrap().push((started, Instant::now(), ok));
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(1)).await;
    let outage = Instant::now();
    attempts(&snapshotter);
    for i in &mut instances {
        i.kill().await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let attempts_during = attempts(&snapshotter);
    let recovery = Instant::now();
    for i in &mut instances {
        *i = Instance::start(i.addr).await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop_tx.send(true).unwrap();
    for c in callers {
        // Every call ends by its deadline (10 s by default).
        tokio::time::timeout(Duration::from_secs(15), c)
            .await
            .expect("a call outlived its deadline")
            .unwrap();
    }

    let calls = calls.lock().unwrap();
    let before: Vec<_> = calls.iter().filter(|(_, end, _)| *end < outage).collect();
    assert!(!before.is_empty());
    assert!(
        before.iter().all(|(.., ok)| *ok),
        "calls failed before the outage"
    );
    let during = calls
        .iter()
        .filter(|(t, ..)| *t >= outage && *t < recovery)
        .count();
    let per_call = attempts_during as f64 / during as f64;
    let settled: Vec<_> = calls
        .iter()
        .filter(|(t, ..)| *t >= recovery + Duration::from_secs(2))
        .collect();
    let succeeded = settled.iter().filter(|(.., ok)| *ok).count();
    let first_success = calls
        .iter()
        .filter(|(t, _, ok)| *t >= recovery && *ok)
        .map(|(t, ..)| *t - recovery)
        .min();
    eprintln!("first call to succeed after recovery started {first_success:?} after it");
    eprintln!(
        "outage: {during} calls, {attempts_during} attempts ({per_call:.3} a call); \
         from 2 s after recovery: {succeeded} of {} calls succeeded",
        settled.len()
    );
    assert!(
        per_call <= 1.2,
        "{attempts_during} attempts reached the instances for {during} calls during the outage ({per_call:.2} a call)"
    );
    assert!(!settled.is_empty());
    assert!(
        succeeded * 100 >= settled.len() * 95,
        "{succeeded} of {} calls succeeded from 2 s after the instances came back",
        settled.len()
    );
}

/// An instance whose requests hang until it is healed, recording when it
/// served each request.
async fn hanging_instance() -> (
    String,
    meshguard::testing::FaultHandle,
    Arc<Mutex<Vec<Instant>>>,
) {
    let served: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let faults = meshguard::testing::FaultHandle::new();
    let log = served.clone();
    let app = axum::Router::new()
        .route(
            "/",
            axum::routing::get(move || {
                let log = log.clone();
                async move {
                    log.lock().unwrap().push(Instant::now());
                    "up"
                }
            }),
        )
        .layer(faults.layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, faults, served)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_whose_probes_timed_out_is_back_within_an_open_period_and_a_probe() {
    use meshguard::backoff::Backoff;
    use meshguard::balance::BalanceConfig;
    use meshguard::circuit_breaker::{CircuitBreakerConfig, Rejection};

    let (a, a_faults, a_served) = hanging_instance().await;
    let a_port = a.rsplit(':').next().unwrap().to_string();
    let (b, _, _) = hanging_instance().await;
    let timeout = Duration::from_millis(200);
    let open = Duration::from_millis(300);
    let client = ServiceClient::builder("users")
        .urls([a, b])
        .timeout(Some(timeout))
        .circuit_breaker(None)
        .balance(
            BalanceConfig::builder()
                .ejection(Some(
                    CircuitBreakerConfig::builder()
                        .consecutive_failures(1)
                        .open_duration(Backoff::constant(open))
                        .half_open_calls(1)
                        .rejection(Rejection::Wait)
                        .build()
                        .unwrap(),
                ))
                .max_ejection_percent(50.0)
                .panic_threshold(0.0)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    a_faults.set(meshguard::testing::Fault::Delay(Duration::from_secs(3600)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let (client, stop) = (client.clone(), stop_rx.clone());
            tokio::spawn(async move {
                while !*stop.borrow() {
                    let _ = client.get("/").send_raw().await;
                }
            })
        })
        .collect();
    // Long enough for several probes of A to time out.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let healed = Instant::now();
    a_faults.clear();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop_tx.send(true).unwrap();
    for c in callers {
        tokio::time::timeout(Duration::from_secs(10), c)
            .await
            .expect("a call outlived its deadline")
            .unwrap();
    }
    let served = a_served.lock().unwrap();
    let back = served
        .iter()
        .find(|t| **t >= healed)
        .map(|t| *t - healed)
        .expect("the healed instance never served again");
    // At worst the heal lands just after a probe was sent: that probe times
    // out, the next open period passes, and the next probe is served. With
    // room for scheduling.
    assert!(
        back <= timeout + open + Duration::from_millis(200),
        "first request served {back:?} after the heal"
    );
    let a_breaker = client
        .endpoints()
        .iter()
        .find(|e| e.endpoint.base_url().contains(&a_port))
        .unwrap()
        .breaker
        .clone();
    assert_eq!(a_breaker.state(), meshguard::circuit_breaker::State::Closed);
}
