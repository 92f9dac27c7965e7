//! Registration with the agent, against the in-process registry.

use std::time::Duration;

use meshguard::discovery::consul::ConsulToken;
use meshguard::discovery::registration::{Registration, RegistrationError};
use meshguard::testing::{CheckStatus, ConsulRegistry};

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
        RegistrationError::Rejected { status, body } => {
            assert_eq!((status, body.as_str()), (400, "Invalid service address"));
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
    assert!(matches!(err, RegistrationError::Unreachable(_)), "{err:?}");
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
