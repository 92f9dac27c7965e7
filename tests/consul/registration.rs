//! Registration with the agent, against the in-process registry and
//! against agents that misbehave (hang, answer without end).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use meshguard::discovery::consul::ConsulToken;
use meshguard::discovery::registration::{
    HealthCheck, RegistrationConfig, RegistrationError, RegistrationStep,
};
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
    let guard = RegistrationConfig::builder()
        .agent(consul.url())
        .service("web")
        .id("web-1")
        .address("127.0.0.1")
        .port(addr.port())
        .http_check(
            format!("http://{addr}/health"),
            Duration::from_secs(1),
            Duration::from_secs(1),
        )
        .build()
        .unwrap()
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
    let guard = RegistrationConfig::builder()
        .agent(consul.url())
        .service("web")
        .id("web-1")
        .address("127.0.0.1")
        .port(8080)
        .build()
        .unwrap()
        .register()
        .await
        .unwrap();
    drop(guard);
    until(Duration::from_secs(5), || !consul.is_registered("web-1")).await;
}

#[tokio::test(start_paused = true)]
async fn the_ttl_heartbeat_keeps_the_check_passing_and_stops_with_the_guard() {
    let consul = ConsulRegistry::start().await;
    let guard = RegistrationConfig::builder()
        .agent(consul.url())
        .service("job")
        .id("job-1")
        .address("127.0.0.1")
        .port(9000)
        .ttl_check(Duration::from_secs(10))
        .build()
        .unwrap()
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
    let err = RegistrationConfig::builder()
        .agent(consul.url())
        .service("web")
        .id("web-1")
        .address("0.0.0.0")
        .port(8080)
        .build()
        .unwrap()
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
    let err = RegistrationConfig::builder()
        .agent(consul.url())
        .service("web")
        .id("web-1")
        .address("127.0.0.1")
        .port(8080)
        .build()
        .unwrap()
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
fn an_agent_that_is_not_an_http_url_is_rejected_naming_the_field() {
    let err = RegistrationConfig::builder()
        .agent("consul:8500")
        .service("web")
        .id("web-1")
        .port(80)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "agent");
}

#[test]
fn a_missing_service_id_or_port_is_rejected_naming_the_field() {
    let full = || {
        RegistrationConfig::builder()
            .service("web")
            .id("web-1")
            .port(80)
    };
    for (builder, field) in [
        (
            RegistrationConfig::builder().id("web-1").port(80),
            "service",
        ),
        (RegistrationConfig::builder().service("web").port(80), "id"),
        (
            RegistrationConfig::builder().service("web").id("web-1"),
            "port",
        ),
    ] {
        let err = builder.build().unwrap_err();
        assert_eq!(err.to_string(), format!("invalid `{field}`: must be set"));
    }
    for (builder, field) in [(full().service(""), "service"), (full().id(""), "id")] {
        let err = builder.build().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("invalid `{field}`: must not be empty")
        );
    }
}

#[test]
fn invalid_checks_are_rejected_naming_the_field() {
    let full = || {
        RegistrationConfig::builder()
            .service("web")
            .id("web-1")
            .port(80)
    };
    let second = Duration::from_secs(1);
    for (builder, field, message) in [
        (
            full().http_check("http://127.0.0.1/health", Duration::ZERO, second),
            "check.interval",
            "must be greater than zero, got 0ns",
        ),
        (
            full().http_check("http://127.0.0.1/health", second, Duration::ZERO),
            "check.timeout",
            "must be greater than zero, got 0ns",
        ),
        (
            full().ttl_check(Duration::from_millis(500)),
            "check.ttl",
            "must be at least 1s, got 500ms",
        ),
    ] {
        let err = builder.build().unwrap_err();
        assert_eq!((err.field(), err.message()), (field, message));
    }
}

#[test]
fn the_defaults_are_the_local_agent_and_an_http_check_of_health() {
    let config = RegistrationConfig::builder()
        .service("web")
        .id("web-1")
        .address("10.0.0.7")
        .port(8080)
        .build()
        .unwrap();
    assert_eq!(config.agent(), "http://127.0.0.1:8500");
    assert_eq!(
        config.check(),
        &HealthCheck::Http {
            url: "http://10.0.0.7:8080/health".into(),
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
        }
    );
    assert_eq!(config.deregister_critical_after(), Duration::from_secs(600));
    assert_eq!(config.connect_timeout(), Duration::from_secs(2));
    assert_eq!(config.request_timeout(), Duration::from_secs(5));
    let without_address = RegistrationConfig::builder()
        .service("web")
        .id("web-1")
        .port(8080)
        .build()
        .unwrap();
    assert!(matches!(
        without_address.check(),
        HealthCheck::Http { url, .. } if url == "http://127.0.0.1:8080/health"
    ));
}

#[test]
fn a_config_file_gives_the_same_config_as_the_builder() {
    let from_file: RegistrationConfig = toml::from_str(
        r#"
        agent = "http://10.0.0.1:8500"
        service = "job"
        id = "job-1"
        address = "10.0.0.7"
        port = 9000
        tags = ["v2"]
        meta = { zone = "a" }
        check = { kind = "ttl", ttl = "30s" }
        deregister_critical_after = "90m"
        connect_timeout = "1s"
        request_timeout = "3s"
        "#,
    )
    .unwrap();
    let built = RegistrationConfig::builder()
        .agent("http://10.0.0.1:8500")
        .service("job")
        .id("job-1")
        .address("10.0.0.7")
        .port(9000)
        .tags(["v2"])
        .meta("zone", "a")
        .ttl_check(Duration::from_secs(30))
        .deregister_critical_after(Duration::from_secs(90 * 60))
        .connect_timeout(Duration::from_secs(1))
        .request_timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    assert_eq!(from_file, built);
}

#[test]
fn an_http_check_in_a_file_defaults_what_it_leaves_out() {
    let config: RegistrationConfig = toml::from_str(
        r#"
        service = "web"
        id = "web-1"
        port = 8080
        check = { kind = "http", interval = "5s" }
        "#,
    )
    .unwrap();
    assert_eq!(
        config.check(),
        &HealthCheck::Http {
            url: "http://127.0.0.1:8080/health".into(),
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(5),
        }
    );
}

#[test]
fn a_config_file_is_checked_as_the_builder_is() {
    for (text, expected) in [
        (
            "service = \"web\"\nid = \"web-1\"",
            "invalid `port`: must be set",
        ),
        (
            "service = \"web\"\nid = \"web-1\"\nport = 80\nrequest_timeout = \"0s\"",
            "invalid `request_timeout`: must be greater than zero, got 0ns",
        ),
        (
            "service = \"web\"\nid = \"web-1\"\nport = 80\nname = \"web\"",
            "unknown field `name`",
        ),
        (
            "service = \"web\"\nid = \"web-1\"\nport = 80\ncheck = { kind = \"ttl\", ttl = \"30s\", url = \"x\" }",
            "unknown field `url`",
        ),
    ] {
        let err = toml::from_str::<RegistrationConfig>(text).unwrap_err();
        assert!(err.to_string().contains(expected), "{err}");
    }
}

#[tokio::test]
async fn a_token_env_that_is_not_set_fails_before_anything_is_sent() {
    let consul = ConsulRegistry::start().await;
    let err = RegistrationConfig::builder()
        .agent(consul.url())
        .service("web")
        .id("web-1")
        .port(8080)
        .token_env("MESHGUARD_TEST_UNSET_CONSUL_TOKEN")
        .build()
        .unwrap()
        .register()
        .await
        .unwrap_err();
    match err {
        RegistrationError::Invalid(e) => assert_eq!(
            e.to_string(),
            "invalid `token_env`: environment variable MESHGUARD_TEST_UNSET_CONSUL_TOKEN is not set"
        ),
        other => panic!("{other:?}"),
    }
    assert!(!consul.is_registered("web-1"));
}

#[test]
fn the_body_has_the_shape_of_consuls_register_sample() {
    let sample: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string("tests/fixtures/consul/agent-service-register.json").unwrap(),
    )
    .unwrap();
    let ours: serde_json::Value = serde_json::from_str(
        &RegistrationConfig::builder()
            .agent("http://127.0.0.1:8500")
            .service("redis")
            .id("redis1")
            .address("127.0.0.1")
            .port(8000)
            .tags(["primary", "v1"])
            .meta("redis_version", "4.0")
            .http_check(
                "http://127.0.0.1:8000/health",
                Duration::from_secs(10),
                Duration::from_secs(5),
            )
            .deregister_critical_after(Duration::from_secs(90 * 60))
            .build()
            .unwrap()
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
    let builder = RegistrationConfig::builder()
        .service("web")
        .id("web-1")
        .port(80)
        .token(ConsulToken::new("s3cr3t"));
    assert!(!format!("{builder:?}").contains("s3cr3t"));
    let config = builder.build().unwrap();
    assert!(!format!("{config:?}").contains("s3cr3t"));
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
        RegistrationConfig::builder()
            .agent(&agent)
            .service("web")
            .id("web-1")
            .address("127.0.0.1")
            .port(8080)
            .request_timeout(Duration::from_secs(3))
            .build()
            .unwrap()
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
    let guard = RegistrationConfig::builder()
        .agent(&agent.url)
        .service("web")
        .id("web-1")
        .address("127.0.0.1")
        .port(8080)
        .build()
        .unwrap()
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
    let guard = RegistrationConfig::builder()
        .agent(&agent.url)
        .service("job")
        .id("job-1")
        .address("127.0.0.1")
        .port(9000)
        .ttl_check(Duration::from_secs(30))
        .build()
        .unwrap()
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
        RegistrationConfig::builder()
            .agent(&agent)
            .service("web")
            .id("web-1")
            .address("127.0.0.1")
            .port(8080)
            .build()
            .unwrap()
            .register(),
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
        RegistrationConfig::builder()
            .agent(&agent)
            .service("web")
            .id("web-1")
            .address("127.0.0.1")
            .port(8080)
            .build()
            .unwrap()
            .register(),
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
    let guard = RegistrationConfig::builder()
        .agent(consul.url())
        .service("web")
        .id(id)
        .address("127.0.0.1")
        .port(8080)
        .ttl_check(Duration::from_secs(10))
        .build()
        .unwrap()
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
    let base = || {
        RegistrationConfig::builder()
            .service("web")
            .id("web-1")
            .port(80)
    };
    for (builder, field) in [
        (base().connect_timeout(Duration::ZERO), "connect_timeout"),
        (base().request_timeout(Duration::ZERO), "request_timeout"),
    ] {
        let err = builder.build().unwrap_err();
        assert_eq!(err.field(), field);
        assert_eq!(
            err.to_string(),
            format!("invalid `{field}`: must be greater than zero, got 0ns")
        );
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
        RegistrationConfig::builder()
            .agent(&agent)
            .service("web")
            .id("web-1")
            .address("127.0.0.1")
            .port(8080)
            .connect_timeout(Duration::from_secs(1))
            .build()
            .unwrap()
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
    let err = RegistrationConfig::builder()
        .agent(&with_credentials)
        .service("web")
        .id("web-1")
        .address("127.0.0.1")
        .port(8080)
        .token(ConsulToken::new("t0k3n"))
        .build()
        .unwrap()
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
