//! The configuration file's flow-control sections: `[bulkhead]`,
//! `[adaptive_limit]` and `[throttle]` are read, applied, and checked.

use std::time::Duration;

use meshguard::client::{ClientError, ServiceClient, ServiceClientConfig};
use meshguard::limit::{
    AdaptiveLimitConfig, BulkheadConfig, LimitAlgorithm, LimitReason, ThrottleConfig,
};

use crate::upstream::Gated;

fn parse(sections: &str) -> Result<ServiceClientConfig, toml::de::Error> {
    toml::from_str(&format!(
        "service = \"flow\"\nurls = [\"http://127.0.0.1:1\"]\n{sections}"
    ))
}

#[tokio::test]
async fn the_flow_control_sections_are_read_and_the_client_builds() {
    let config = parse(
        r#"
        [bulkhead]
        max_concurrent = 8
        max_queue = 16
        max_wait = "20ms"

        [adaptive_limit]
        algorithm = "aimd"
        initial_limit = 10
        max_limit = 100
        backoff_ratio = 0.75

        [throttle]
        k = 1.5
        window = "30s"
        "#,
    )
    .unwrap();
    let bulkhead = BulkheadConfig::builder()
        .max_concurrent(8)
        .max_queue(16)
        .max_wait(Duration::from_millis(20))
        .build()
        .unwrap();
    assert_eq!(config.bulkhead, Some(bulkhead));
    let adaptive = AdaptiveLimitConfig::builder()
        .algorithm(LimitAlgorithm::Aimd)
        .initial_limit(10)
        .max_limit(100)
        .backoff_ratio(0.75)
        .build()
        .unwrap();
    assert_eq!(config.adaptive_limit, Some(adaptive));
    let throttle = ThrottleConfig::builder()
        .k(1.5)
        .window(Duration::from_secs(30))
        .build()
        .unwrap();
    assert_eq!(config.throttle, Some(throttle));
    let svc = ServiceClient::from_config(config).unwrap();
    assert_eq!(svc.name(), "flow");
}

#[tokio::test]
async fn without_the_sections_a_client_has_no_flow_control() {
    let config = parse("").unwrap();
    assert_eq!(
        (config.bulkhead, config.adaptive_limit, config.throttle),
        (None, None, None)
    );
}

#[tokio::test(start_paused = true)]
async fn the_bulkhead_section_limits_the_clients_calls() {
    let mut up = Gated::start().await;
    let config: ServiceClientConfig = toml::from_str(&format!(
        "service = \"flow\"\nurls = [\"{}\"]\n[bulkhead]\nmax_concurrent = 1",
        up.base
    ))
    .unwrap();
    let svc = ServiceClient::from_config(config).unwrap();
    let held = tokio::spawn({
        let svc = svc.clone();
        async move { svc.get("/").send::<()>().await }
    });
    up.arrival().await;
    let err = svc.get("/").send::<()>().await.unwrap_err();
    assert!(
        matches!(err, ClientError::LimitExceeded(LimitReason::QueueFull)),
        "{err:?}"
    );
    up.release(1);
    held.await.unwrap().unwrap();
    assert_eq!(up.hits(), 1);
}

#[test]
fn an_invalid_value_in_a_flow_control_section_fails_naming_its_field() {
    for (section, field) in [
        ("[bulkhead]\nmax_concurrent = 0", "`max_concurrent`"),
        ("[bulkhead]\nmax_queue = 1\nmax_wait = \"0s\"", "`max_wait`"),
        ("[adaptive_limit]\nmin_limit = 0", "`min_limit`"),
        ("[adaptive_limit]\ninitial_limit = 2000", "`initial_limit`"),
        ("[adaptive_limit]\nbackoff_ratio = 1.0", "`backoff_ratio`"),
        ("[throttle]\nk = 0.5", "`k`"),
        ("[throttle]\nwindow = \"100ms\"", "`window`"),
    ] {
        let err = parse(section).unwrap_err().to_string();
        // toml points at the section, the section's own check names the
        // field.
        let header = section.lines().next().unwrap();
        assert!(
            err.contains(header) && err.contains(field),
            "{section}: {err}"
        );
    }
}

#[test]
fn an_unknown_field_in_a_flow_control_section_is_rejected() {
    for section in ["bulkhead", "adaptive_limit", "throttle"] {
        let err = parse(&format!("[{section}]\nlimit = 3"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `limit`"), "{section}: {err}");
    }
}
