//! Registration with the agent, against the in-process registry and
//! against agents that misbehave (hang, answer without end).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use meshguard::discovery::consul::ConsulToken;
use meshguard::discovery::registration::{Registration, RegistrationError, RegistrationStep};
use meshguard::testing::{CheckStatus, ConsulRegistry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;

async fn health_server() -> std::net::SocketAddr {
    let app = axum::Router::new().route("/health", axum::routing::get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Waits (on tokio's clock) until `cond` holds, failing after `limit`.
async fn until(limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met in {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn an_http_checked_service_registers_turns_passing_and_deregisters_on_shutdown() {
    let consul = ConsulRegistry::start().await;
    let addr = health_server().await;
    let guard = Registration::builder(consul.url(), "web", "web-1", "127.0.0.1", addr.port())
        .http_check(
            format!("http://{addr}/health"),
            Duration::from_secs(1),
            Duration::from_secs(1),
        )
        .register()
        .await
        .unwrap();
    assert!(consul.is_registered("web-1"));
    until(Duration::from_secs(5), || {
        consul.check_status("service:web-1") == Some(CheckStatus::Passing)
    })
    .await;
    guard.deregister().await.unwrap();
    assert!(!consul.is_registered("web-1"));
}

#[tokio::test(start_paused = true)]
async fn a_dropped_guard_deregisters() {
    let consul = ConsulRegistry::start().await;
    let guard = Registration::builder(consul.url(), "web", "web-1", "127.0.0.1", 8080)
        .register()
        .await
        .unwrap();
    drop(guard);
    until(Duration::from_secs(5), || !consul.is_registered("web-1")).await;
}

#[tokio::test(start_paused = true)]
async fn the_ttl_heartbeat_keeps_the_check_passing_and_stops_with_the_guard() {
    let consul = ConsulRegistry::start().await;
    let guard = Registration::builder(consul.url(), "job", "job-1", "127.0.0.1", 9000)
        .ttl_check(Duration::from_secs(10))
        .register()
        .await
        .unwrap();
    // Ten TTLs later, still passing: beaten every 10 s / 3.
    tokio::time::sleep(Duration::from_secs(100)).await;
    assert_eq!(
        consul.check_status("service:job-1"),
        Some(CheckStatus::Passing)
    );
    guard.deregister().await.unwrap();
    assert!(!consul.is_registered("job-1"));
}

#[tokio::test(start_paused = true)]
async fn the_agents_refusal_is_returned() {
    let consul = ConsulRegistry::start().await;
    let err = Registration::builder(consul.url(), "web", "web-1", "0.0.0.0", 8080)
        .register()
        .await
        .unwrap_err();
    match err {
        RegistrationError::Rejected {
            agent,
            step,
            status,
            body,
        } => {
            assert_eq!(
                (agent, step, status, body.as_str()),
                (
                    consul.url(),
                    RegistrationStep::Register,
                    400,
                    "Invalid service address"
                )
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_unreachable_agent_is_an_error_not_a_panic() {
    let consul = ConsulRegistry::start().await;
    consul.go_down().await;
    let err = Registration::builder(consul.url(), "web", "web-1", "127.0.0.1", 8080)
        .register()
        .await
        .unwrap_err();
    match &err {
        RegistrationError::Unreachable { agent, step, .. } => {
            assert_eq!((agent, *step), (&consul.url(), RegistrationStep::Register));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string().starts_with(&format!(
            "consul agent {} unreachable during register: ",
            consul.url()
        )),
        "{err}"
    );
}

#[test]
fn invalid_registrations_name_their_field() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = rt
        .block_on(Registration::builder("consul:8500", "web", "web-1", "", 80).register())
        .unwrap_err();
    match err {
        RegistrationError::Invalid(e) => assert_eq!(e.field(), "agent"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_body_has_the_shape_of_consuls_register_sample() {
    let sample: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string("tests/fixtures/consul/agent-service-register.json").unwrap(),
    )
    .unwrap();
    let ours: serde_json::Value = serde_json::from_str(
        &Registration::builder(
            "http://127.0.0.1:8500",
            "redis",
            "redis1",
            "127.0.0.1",
            8000,
        )
        .tags(["primary", "v1"])
        .meta("redis_version", "4.0")
        .http_check(
            "http://127.0.0.1:8000/health",
            Duration::from_secs(10),
            Duration::from_secs(5),
        )
        .deregister_critical_after(Duration::from_secs(90 * 60))
        .body(),
    )
    .unwrap();
    for key in ["ID", "Name", "Tags", "Address", "Port", "Meta"] {
        assert_eq!(ours[key], sample[key], "{key}");
    }
    for key in ["HTTP", "Method", "Interval", "Timeout"] {
        assert_eq!(ours["Check"][key], sample["Check"][key], "Check.{key}");
    }
    assert_eq!(ours["Check"]["DeregisterCriticalServiceAfter"], "5400s");
}

#[test]
fn the_token_is_not_in_debug_output() {
    let r = Registration::builder("http://127.0.0.1:8500", "web", "web-1", "", 80)
        .token(ConsulToken::new("s3cr3t"));
    assert!(!format!("{r:?}").contains("s3cr3t"));
}

// ---- agents that misbehave --------------------------------------------

/// An agent that accepts connections and never reads or answers.
async fn silent_agent() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    format!("http://{addr}")
}

/// An agent that accepts registrations and, while `hang` is set, never
/// answers any other request; it counts the TTL beats that reach it.
struct StubAgent {
    url: String,
    hang: Arc<AtomicBool>,
    beats: Arc<AtomicUsize>,
}

async fn stub_agent() -> StubAgent {
    let (hang, beats) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let (h, b) = (hang.clone(), beats.clone());
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let (hang, beats) = (h.clone(), b.clone());
        async move {
            if uri.path().starts_with("/v1/agent/check/pass/") {
                beats.fetch_add(1, Ordering::SeqCst);
            }
            if uri.path() != "/v1/agent/service/register" && hang.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            ""
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    StubAgent { url, hang, beats }
}

/// Fails the test instead of hanging when `f` does not finish in a minute
/// (of tokio's clock, which paused time advances when all is idle).
async fn within_a_minute<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("finished within a minute: the call hangs")
}

#[tokio::test(start_paused = true)]
async fn registering_with_an_agent_that_never_answers_times_out_naming_agent_and_step() {
    let agent = silent_agent().await;
    let start = Instant::now();
    let err = within_a_minute(
        Registration::builder(&agent, "web", "web-1", "127.0.0.1", 8080)
            .request_timeout(Duration::from_secs(3))
            .register(),
    )
    .await
    .unwrap_err();
    let took = start.elapsed();
    assert_timeout(
        &err,
        &agent,
        RegistrationStep::Register,
        Duration::from_secs(3),
    );
    assert_eq!(
        err.to_string(),
        format!("consul agent {agent}: register timed out after 3s")
    );
    assert!(
        took >= Duration::from_secs(3) && took <= Duration::from_millis(3002),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn deregistering_from_an_agent_that_never_answers_times_out_naming_agent_and_step() {
    let agent = stub_agent().await;
    let guard = Registration::builder(&agent.url, "web", "web-1", "127.0.0.1", 8080)
        .register()
        .await
        .unwrap();
    agent.hang.store(true, Ordering::SeqCst);
    let start = Instant::now();
    let err = within_a_minute(guard.deregister()).await.unwrap_err();
    let took = start.elapsed();
    assert_timeout(
        &err,
        &agent.url,
        RegistrationStep::Deregister,
        Duration::from_secs(5),
    );
    assert_eq!(
        err.to_string(),
        format!("consul agent {}: deregister timed out after 5s", agent.url)
    );
    assert!(
        took >= Duration::from_secs(5) && took <= Duration::from_millis(5002),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_ttl_heartbeat_keeps_its_schedule_while_beats_time_out() {
    let agent = stub_agent().await;
    agent.hang.store(true, Ordering::SeqCst);
    // A beat every 10 s; each hangs and is given up after 5 s.
    let guard = Registration::builder(&agent.url, "job", "job-1", "127.0.0.1", 9000)
        .ttl_check(Duration::from_secs(30))
        .register()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(95)).await;
    assert_eq!(agent.beats.load(Ordering::SeqCst), 10);
    // The agent recovers: the beats go on, and deregistration works.
    agent.hang.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(agent.beats.load(Ordering::SeqCst), 12);
    guard.deregister().await.unwrap();
}

/// An agent that answers every request with a 500 of `body`.
async fn erroring_agent(body: String) -> String {
    let app = axum::Router::new().fallback(move || {
        let body = body.clone();
        async move { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, body) }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test(start_paused = true)]
async fn a_ten_megabyte_error_answer_is_quoted_in_at_most_a_kilobyte_cut_at_a_character() {
    // "€" is three bytes: 1 KiB ends inside the 342nd.
    let agent = erroring_agent("€".repeat(10 * 1024 * 1024 / 3)).await;
    let err = within_a_minute(
        Registration::builder(&agent, "web", "web-1", "127.0.0.1", 8080).register(),
    )
    .await
    .unwrap_err();
    match err {
        RegistrationError::Rejected { status, body, .. } => {
            assert_eq!(status, 500);
            assert_eq!(body, format!("{}…", "€".repeat(341)));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn reading_an_error_answer_stops_at_the_limit() {
    // Announces 10 MB, sends 128 KiB and then nothing: a client that reads
    // to the end waits forever.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let agent = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut request = vec![0; 64 * 1024];
        let _ = stream.read(&mut request).await.unwrap();
        let head = "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 10485760\r\n\r\n";
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&vec![b'x'; 128 * 1024]).await.unwrap();
        std::future::pending::<()>().await;
        drop(stream);
    });
    let start = Instant::now();
    let err = within_a_minute(
        Registration::builder(&agent, "web", "web-1", "127.0.0.1", 8080).register(),
    )
    .await
    .unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    match err {
        RegistrationError::Rejected { status, body, .. } => {
            assert_eq!(status, 500);
            assert_eq!(body, format!("{}…", "x".repeat(1024)));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn an_id_with_reserved_characters_reaches_the_agent_as_one_path_segment() {
    let consul = ConsulRegistry::start().await;
    let id = "web/1?x=y z%2F#";
    let guard = Registration::builder(consul.url(), "web", id, "127.0.0.1", 8080)
        .ttl_check(Duration::from_secs(10))
        .register()
        .await
        .unwrap();
    assert!(consul.is_registered(id));
    // Ten TTLs later still passing: the beats reached `service:<id>`.
    tokio::time::sleep(Duration::from_secs(100)).await;
    assert_eq!(
        consul.check_status(&format!("service:{id}")),
        Some(CheckStatus::Passing)
    );
    guard.deregister().await.unwrap();
    assert!(!consul.is_registered(id));
}

#[test]
fn zero_timeouts_are_rejected_naming_the_field() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let base = || Registration::builder("http://127.0.0.1:8500", "web", "web-1", "", 80);
    for (registration, field) in [
        (base().connect_timeout(Duration::ZERO), "connect_timeout"),
        (base().request_timeout(Duration::ZERO), "request_timeout"),
    ] {
        match rt.block_on(registration.register()).unwrap_err() {
            RegistrationError::Invalid(e) => {
                assert_eq!(e.field(), field);
                assert_eq!(
                    e.to_string(),
                    format!("invalid `{field}`: must be greater than zero, got 0ns")
                );
            }
            other => panic!("{other:?}"),
        }
    }
}

/// An agent whose accept queue is full: the kernel drops further SYNs, so
/// a connect neither succeeds nor fails.
fn unconnectable_agent() -> (String, Vec<std::net::TcpStream>, tokio::net::TcpListener) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    let listener = socket.listen(0).unwrap();
    let mut queued = Vec::new();
    loop {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => queued.push(s),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break,
            Err(e) => panic!("{e}"),
        }
        assert!(queued.len() < 64, "the accept queue never filled");
    }
    (format!("http://{addr}"), queued, listener)
}

#[tokio::test(start_paused = true)]
async fn a_connect_that_never_completes_times_out_after_the_connect_timeout() {
    let (agent, _queued, _listener) = unconnectable_agent();
    let start = Instant::now();
    let err = within_a_minute(
        Registration::builder(&agent, "web", "web-1", "127.0.0.1", 8080)
            .connect_timeout(Duration::from_secs(1))
            .register(),
    )
    .await
    .unwrap_err();
    let took = start.elapsed();
    assert_timeout(
        &err,
        &agent,
        RegistrationStep::Register,
        Duration::from_secs(1),
    );
    assert!(
        took >= Duration::from_secs(1) && took <= Duration::from_millis(1002),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn errors_name_the_agent_without_its_credentials() {
    let agent = erroring_agent("no".into()).await;
    let with_credentials = agent.replacen("http://", "http://ops:s3cr3t@", 1);
    let err = Registration::builder(&with_credentials, "web", "web-1", "127.0.0.1", 8080)
        .token(ConsulToken::new("t0k3n"))
        .register()
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("consul agent {agent} rejected register with 500: no")
    );
    assert!(!format!("{err:?}").contains("s3cr3t") && !format!("{err:?}").contains("t0k3n"));
}

/// `err` is a timeout of `step` at `agent` after exactly `after`.
fn assert_timeout(err: &RegistrationError, agent: &str, step: RegistrationStep, after: Duration) {
    match err {
        RegistrationError::Timeout {
            agent: a,
            step: s,
            after: t,
        } => assert_eq!((a.as_str(), *s, *t), (agent, step, after)),
        other => panic!("{other:?}"),
    }
}
