// A binary of its own: it installs the process-wide `metrics` recorder.
//! The `metrics` feature: a scripted scenario through real clients against
//! an axum server, then every counter, gauge and histogram it should have
//! moved, read from metrics-util's debugging recorder. One test: the
//! recorder is global to the process.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use meshguard::backoff::Backoff;
use meshguard::client::{ClientError, ServiceClient};
use meshguard::retry::{RetryBudgetConfig, RetryPolicy};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

mod support;
use support::http::{serve, url};

type Entries = Vec<(
    metrics_util::CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    DebugValue,
)>;

fn value<'a>(entries: &'a Entries, name: &str, labels: &[(&str, &str)]) -> Option<&'a DebugValue> {
    let (_, _, _, v) = entries.iter().find(|(k, _, _, _)| {
        let key = k.key();
        let mut have: Vec<(&str, &str)> = key.labels().map(|l| (l.key(), l.value())).collect();
        let mut want = labels.to_vec();
        have.sort();
        want.sort();
        key.name() == name && have == want
    })?;
    Some(v)
}

fn counter(entries: &Entries, name: &str, labels: &[(&str, &str)]) -> u64 {
    match value(entries, name, labels) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!("{name} {labels:?}: {other:?}"),
    }
}

fn gauge(entries: &Entries, name: &str, labels: &[(&str, &str)]) -> f64 {
    match value(entries, name, labels) {
        Some(DebugValue::Gauge(v)) => v.into_inner(),
        other => panic!("{name} {labels:?}: {other:?}"),
    }
}

#[tokio::test]
async fn a_scripted_scenario_moves_exactly_the_expected_metrics() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let flaky_hits = Arc::new(AtomicUsize::new(0));
    let hits = flaky_hits.clone();
    let app = axum::Router::new()
        .route("/ok", get(|| async { "{}" }))
        .route("/missing", get(|| async { StatusCode::NOT_FOUND }))
        .route(
            "/flaky",
            get(move || {
                let first = hits.fetch_add(1, Ordering::SeqCst) == 0;
                async move {
                    if first {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::OK
                    }
                }
            }),
        )
        .route("/down", get(|| async { StatusCode::SERVICE_UNAVAILABLE }));
    let (a, b) = (url(serve(app.clone()).await), url(serve(app).await));
    let quick = || {
        RetryPolicy::builder()
            .max_attempts(2)
            .backoff(Backoff::constant(Duration::from_millis(1)))
    };
    let metered = ServiceClient::builder("metered")
        .urls([a.clone(), b])
        .retry(quick().build().unwrap())
        .build()
        .unwrap();
    let stingy = ServiceClient::builder("stingy")
        .urls([a.clone()])
        .retry(
            quick()
                .budget(
                    RetryBudgetConfig::builder()
                        .ratio(0.0)
                        .min_per_second(0)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();

    // A reqwest_middleware client through meshguard's middleware, reporting
    // under its own name.
    #[cfg(feature = "reqwest")]
    let through_reqwest = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(
            meshguard::reqwest::Resilience::builder()
                .name("via-reqwest")
                .retry(quick().build().unwrap())
                .build()
                .unwrap(),
        )
        .build();

    // The script.
    #[cfg(feature = "reqwest")]
    {
        let ok = through_reqwest.get(format!("{a}/ok")).send().await.unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        let down = through_reqwest
            .get(format!("{a}/down"))
            .send()
            .await
            .unwrap();
        assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    for _ in 0..3 {
        metered
            .get("/ok")
            .send::<serde_json::Value>()
            .await
            .unwrap();
    }
    let absent: Option<serde_json::Value> = metered.get("/missing").send_opt().await.unwrap();
    assert!(absent.is_none());
    metered.get("/flaky").send::<()>().await.unwrap(); // 503, retried, 200
    metered
        .breaker()
        .expect("a service breaker by default")
        .force_open();
    let err = metered.get("/ok").send::<()>().await.unwrap_err();
    assert!(matches!(err, ClientError::CircuitOpen { .. }), "{err:?}");
    let err = stingy.get("/down").send::<()>().await.unwrap_err(); // no budget to retry
    assert_eq!(err.status(), Some(StatusCode::SERVICE_UNAVAILABLE));

    let s: Entries = snapshotter.snapshot().into_vec();
    let calls = "meshguard_client_requests_total";
    let m = ("service", "metered");
    assert_eq!(counter(&s, calls, &[m, ("outcome", "success")]), 4);
    assert_eq!(counter(&s, calls, &[m, ("outcome", "client_error")]), 1);
    assert_eq!(counter(&s, calls, &[m, ("outcome", "circuit_open")]), 1);
    assert_eq!(counter(&s, calls, &[m, ("outcome", "server_error")]), 0);
    assert_eq!(
        counter(
            &s,
            calls,
            &[("service", "stingy"), ("outcome", "server_error")]
        ),
        1
    );
    match value(&s, "meshguard_client_request_duration_seconds", &[m]) {
        Some(DebugValue::Histogram(v)) => assert_eq!(v.len(), 6),
        other => panic!("{other:?}"),
    }

    assert_eq!(
        counter(
            &s,
            "meshguard_retries_total",
            &[m, ("reason", "503 service unavailable")]
        ),
        1
    );
    assert_eq!(
        counter(
            &s,
            "meshguard_retry_budget_exhausted_total",
            &[("service", "stingy")]
        ),
        1
    );

    let breaker = ("breaker", "metered");
    assert_eq!(
        counter(&s, "meshguard_breaker_rejections_total", &[breaker]),
        1
    );
    assert_eq!(gauge(&s, "meshguard_breaker_state", &[breaker]), 3.0);
    assert_eq!(
        counter(
            &s,
            "meshguard_breaker_transitions_total",
            &[breaker, ("to", "forced_open")]
        ),
        1
    );

    #[cfg(feature = "reqwest")]
    {
        let r = ("service", "via-reqwest");
        assert_eq!(counter(&s, calls, &[r, ("outcome", "success")]), 1);
        assert_eq!(counter(&s, calls, &[r, ("outcome", "server_error")]), 1);
        // 1 for /ok, 2 for /down (retried once, then out of attempts).
        assert_eq!(counter(&s, "meshguard_client_attempts_total", &[r]), 3);
        assert_eq!(
            counter(
                &s,
                "meshguard_retries_total",
                &[r, ("reason", "503 service unavailable")]
            ),
            1
        );
    }

    assert_eq!(gauge(&s, "meshguard_endpoints_ready", &[m]), 2.0);
    assert_eq!(gauge(&s, "meshguard_endpoints_ejected", &[m]), 0.0);
}
