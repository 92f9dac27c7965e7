//! Discovery through the Consul health API, against the in-process
//! Consul-compatible registry on 127.0.0.1:0. Real time where propagation
//! is measured, with short waits; paused time where a timeout is the point.

use std::time::Duration;
use tokio::time::Instant;

use meshguard::backoff::Backoff;
use meshguard::discovery::Change;
use meshguard::discovery::consul::{ConsulDiscovery, ConsulDiscoveryBuilder, ConsulToken};
use meshguard::testing::{CheckStatus, ConsulRegistry};
use tokio_stream_ext::next;

mod tokio_stream_ext {
    //! `next()` on our streams without another dependency.
    use std::future::poll_fn;
    use std::pin::Pin;

    pub async fn next<S: futures_core::Stream + Unpin>(s: &mut S) -> Option<S::Item> {
        poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await
    }
}

fn watch(consul: &ConsulRegistry, service: &str) -> ConsulDiscoveryBuilder {
    ConsulDiscovery::builder(consul.url(), service)
        .wait(Duration::from_secs(2))
        .min_interval(Duration::from_millis(10))
        .error_backoff(Backoff::constant(Duration::from_millis(50)))
}

/// The next change, failing the test after `limit`.
async fn change_within(d: &mut ConsulDiscovery, limit: Duration) -> Change {
    tokio::time::timeout(limit, next(d))
        .await
        .expect("a change in time")
        .expect("the stream lives")
        .unwrap()
}

fn key(c: &Change) -> (&'static str, String) {
    match c {
        Change::Insert(k, _) => ("insert", k.clone()),
        Change::Remove(k) => ("remove", k.clone()),
    }
}

#[tokio::test]
async fn registered_instances_are_inserted_with_their_address() {
    let consul = ConsulRegistry::start().await;
    consul.register_passing("users", "users-1", "10.0.0.1", 8081);
    let mut d = watch(&consul, "users").build().unwrap();
    match change_within(&mut d, Duration::from_secs(2)).await {
        Change::Insert(id, e) => {
            assert_eq!(id, "users-1");
            assert_eq!(e.base_url(), "http://10.0.0.1:8081");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_empty_service_address_falls_back_to_the_node_address() {
    let consul = ConsulRegistry::start().await;
    consul.register_passing("users", "users-1", "", 8081);
    let mut d = watch(&consul, "users").build().unwrap();
    match change_within(&mut d, Duration::from_secs(2)).await {
        Change::Insert(_, e) => assert_eq!(e.base_url(), "http://127.0.0.1:8081"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_registration_reaches_the_stream_within_a_second() {
    let consul = ConsulRegistry::start().await;
    consul.register_passing("users", "users-1", "10.0.0.1", 8081);
    let mut d = watch(&consul, "users").build().unwrap();
    change_within(&mut d, Duration::from_secs(2)).await;
    // The watch is now blocked in a query; the next registration wakes it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = Instant::now();
    consul.register_passing("users", "users-2", "10.0.0.2", 8081);
    let c = change_within(&mut d, Duration::from_secs(1)).await;
    let took = start.elapsed();
    assert_eq!(key(&c), ("insert", "users-2".into()));
    eprintln!("registration propagated in {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");

    let start = Instant::now();
    consul.deregister("users-1");
    let c = change_within(&mut d, Duration::from_secs(1)).await;
    eprintln!("deregistration propagated in {:?}", start.elapsed());
    assert_eq!(key(&c), ("remove", "users-1".into()));
}

#[tokio::test]
async fn only_passing_instances_by_default_and_recovery_inserts() {
    let consul = ConsulRegistry::start().await;
    consul.register_passing("users", "users-1", "10.0.0.1", 8081);
    consul.register_passing("users", "users-2", "10.0.0.2", 8081);
    consul.set_health("users-2", CheckStatus::Warning);
    let mut d = watch(&consul, "users").build().unwrap();
    assert_eq!(
        key(&change_within(&mut d, Duration::from_secs(2)).await),
        ("insert", "users-1".into())
    );
    consul.set_health("users-2", CheckStatus::Passing);
    assert_eq!(
        key(&change_within(&mut d, Duration::from_secs(2)).await),
        ("insert", "users-2".into())
    );
    consul.set_health("users-1", CheckStatus::Critical);
    assert_eq!(
        key(&change_within(&mut d, Duration::from_secs(2)).await),
        ("remove", "users-1".into())
    );
}

#[tokio::test]
async fn a_tag_selects_instances() {
    let consul = ConsulRegistry::start().await;
    let client = reqwest::Client::new();
    for (id, tags) in [("a", vec!["v1"]), ("b", vec!["v2", "canary"])] {
        let body = serde_json::json!({
            "ID": id, "Name": "users", "Tags": tags, "Address": "10.0.0.9", "Port": 80,
            "Check": {"TTL": "60s", "Status": "passing"}
        });
        let r = client
            .put(format!("{}/v1/agent/service/register", consul.url()))
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let mut d = watch(&consul, "users").tag("v2").build().unwrap();
    let c = change_within(&mut d, Duration::from_secs(2)).await;
    assert_eq!(key(&c), ("insert", "b".into()));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), next(&mut d))
            .await
            .is_err(),
        "untagged instance inserted"
    );
}

#[tokio::test]
async fn the_last_good_set_is_kept_while_consul_is_down_and_the_watch_resumes() {
    let consul = ConsulRegistry::start().await;
    consul.register_passing("users", "users-1", "10.0.0.1", 8081);
    let mut d = watch(&consul, "users").build().unwrap();
    change_within(&mut d, Duration::from_secs(2)).await;
    let mut status = d.status_watch();

    consul.go_down().await;
    status
        .wait_for(|s| s.failures >= 3)
        .await
        .expect("status lives");
    assert_eq!(d.status().endpoints, 1);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), next(&mut d))
            .await
            .is_err(),
        "a change while Consul was down"
    );

    consul.come_back().await;
    consul.register_passing("users", "users-2", "10.0.0.2", 8081);
    let c = change_within(&mut d, Duration::from_secs(2)).await;
    assert_eq!(key(&c), ("insert", "users-2".into()));
    assert_eq!(d.status().failures, 0);
}

#[tokio::test]
async fn errors_and_malformed_answers_keep_the_last_good_set() {
    let consul = ConsulRegistry::start().await;
    consul.register_passing("users", "users-1", "10.0.0.1", 8081);
    let mut d = watch(&consul, "users").build().unwrap();
    change_within(&mut d, Duration::from_secs(2)).await;
    let mut status = d.status_watch();
    for fault in [0, 1] {
        if fault == 0 {
            consul.fail_with_500(true);
        } else {
            consul.answer_malformed(true);
        }
        status
            .wait_for(|s| s.failures >= 2)
            .await
            .expect("status lives");
        let error = d.status().last_error.unwrap();
        assert!(
            if fault == 0 {
                error.contains("500")
            } else {
                error.to_lowercase().contains("deserializ") || error.contains("EOF")
            },
            "{error}"
        );
        assert_eq!(d.status().endpoints, 1);
        consul.fail_with_500(false);
        consul.answer_malformed(false);
        status
            .wait_for(|s| s.failures == 0)
            .await
            .expect("status lives");
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(200), next(&mut d))
            .await
            .is_err()
    );
}

#[tokio::test(start_paused = true)]
async fn an_answer_that_stalls_mid_body_fails_the_query_within_its_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Headers and the first byte of the body, then nothing.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut request = vec![0; 16 * 1024];
            let _ = stream.read(&mut request).await;
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                        x-consul-index: 7\r\ncontent-length: 1000\r\n\r\n[";
            let _ = stream.write_all(head.as_bytes()).await;
            held.push(stream);
        }
    });
    let d = ConsulDiscovery::builder(url, "users").build().unwrap();
    let mut status = d.status_watch();
    let start = Instant::now();
    tokio::time::timeout(
        Duration::from_secs(60),
        status.wait_for(|s| s.failures >= 1),
    )
    .await
    .expect("the stalled query failed within a minute")
    .expect("status lives");
    let took = start.elapsed();
    // The first query does not block: it gets the 5 s margin.
    assert!(
        took >= Duration::from_secs(5) && took <= Duration::from_millis(5002),
        "{took:?}"
    );
    assert_eq!(
        d.status().last_error.as_deref(),
        Some("no complete answer within 5s")
    );
}

#[tokio::test]
async fn an_index_going_backwards_restarts_the_watch_from_zero() {
    let consul = ConsulRegistry::start().await;
    for i in 0..6 {
        consul.register_passing("other", &format!("o-{i}"), "10.0.0.3", 80);
    }
    consul.register_passing("users", "users-1", "10.0.0.1", 8081);
    let mut d = watch(&consul, "users").build().unwrap();
    change_within(&mut d, Duration::from_secs(2)).await;
    let before = d.status().index;
    consul.move_index_backwards();
    let mut status = d.status_watch();
    status
        .wait_for(|s| s.index < before)
        .await
        .expect("status lives");
    // Watching again from the lower index: changes still arrive.
    consul.register_passing("users", "users-2", "10.0.0.2", 8081);
    let c = change_within(&mut d, Duration::from_secs(2)).await;
    assert_eq!(key(&c), ("insert", "users-2".into()));
}

#[tokio::test]
async fn invalid_settings_name_their_field() {
    let err = ConsulDiscovery::builder("consul:8500", "users")
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "address");
    let err = ConsulDiscovery::builder("http://127.0.0.1:8500", "")
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "service");
    let err = ConsulDiscovery::builder("http://127.0.0.1:8500", "users")
        .wait(Duration::from_secs(900))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "wait");
}

#[test]
fn the_token_is_redacted() {
    let token = ConsulToken::new("s3cr3t-acl-token");
    assert_eq!(format!("{token:?}"), "ConsulToken(<redacted>)");
    let b = ConsulDiscovery::builder("http://127.0.0.1:8500", "users").token(token);
    assert!(!format!("{b:?}").contains("s3cr3t"));
}

#[test]
fn rs_consul_parses_the_health_samples() {
    for file in ["health-service.json", "health-service-wire.json"] {
        let text = std::fs::read_to_string(format!("tests/fixtures/consul/{file}")).unwrap();
        let nodes: Vec<rs_consul::ServiceNode> = serde_json::from_str(&text).unwrap();
        assert_eq!(
            nodes.len(),
            if file == "health-service.json" { 2 } else { 1 }
        );
        assert!(nodes.iter().all(|n| !n.service.id.is_empty()));
    }
}
