//! `ServiceClient` discovering its instances through Consul (the in-process
//! Consul-compatible registry), built both ways: builder and config file.

use std::time::Duration;

use axum::routing::get;
use meshguard::backoff::Backoff;
use meshguard::client::{ClientError, ServiceClient, ServiceClientConfig};
use meshguard::discovery::consul::ConsulDiscovery;
use meshguard::testing::{CheckStatus, ConsulRegistry};

use crate::support::http::serve;

async fn instance(name: &'static str) -> u16 {
    let app = axum::Router::new().route("/whoami", get(move || async move { name }));
    serve(app).await.port()
}

async fn whoami(client: &ServiceClient) -> Result<String, ClientError> {
    let r = client.get("/whoami").send_raw().await?;
    Ok(String::from_utf8_lossy(r.body()).into_owned())
}

fn watch(consul: &ConsulRegistry) -> meshguard::discovery::consul::ConsulDiscoveryBuilder {
    ConsulDiscovery::builder(consul.url(), "users")
        .wait(Duration::from_secs(5))
        .min_interval(Duration::from_millis(10))
        .error_backoff(Backoff::constant(Duration::from_millis(20)))
}

/// A client of "users" through the registry, with defaults.
fn client_of(consul: &ConsulRegistry) -> ServiceClient {
    ServiceClient::builder("users")
        .consul(watch(consul))
        .build()
        .unwrap()
}

/// Waits (real time, bounded) until `f` holds.
async fn eventually(mut f: impl AsyncFnMut() -> bool) {
    for _ in 0..500 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached in 5 s");
}

#[tokio::test]
async fn calls_reach_the_instances_consul_lists() {
    let consul = ConsulRegistry::start().await;
    consul.register_passing("users", "a", "127.0.0.1", instance("a").await);
    let users = client_of(&consul);
    assert_eq!(whoami(&users).await.unwrap(), "a");

    // Replaced by a second instance: calls follow Consul's list.
    consul.register_passing("users", "b", "127.0.0.1", instance("b").await);
    consul.deregister("a");
    eventually(async || whoami(&users).await.unwrap() == "b").await;
    for _ in 0..20 {
        assert_eq!(whoami(&users).await.unwrap(), "b");
    }
}

#[tokio::test]
async fn a_failing_instance_leaves_the_set_and_calls_go_to_the_other() {
    let consul = ConsulRegistry::start().await;
    consul.register_passing("users", "a", "127.0.0.1", instance("a").await);
    consul.register_passing("users", "b", "127.0.0.1", instance("b").await);
    // PeakEwma's first estimate low, so a fresh instance is tried at once.
    let users = ServiceClient::builder("users")
        .consul(watch(&consul))
        .balance(
            meshguard::balance::BalanceConfig::builder()
                .default_rtt(Duration::from_micros(1))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    eventually(async || whoami(&users).await.unwrap() == "b").await;
    consul.set_health("b", CheckStatus::Critical);
    // Once the watch has seen it (ten answers in a row from a), every call
    // goes to a.
    eventually(async || {
        for _ in 0..10 {
            if whoami(&users).await.unwrap() != "a" {
                return false;
            }
        }
        true
    })
    .await;
    for _ in 0..50 {
        assert_eq!(whoami(&users).await.unwrap(), "a");
    }
}

#[tokio::test]
async fn no_instance_left_in_consul_is_no_endpoints() {
    let consul = ConsulRegistry::start().await;
    consul.register_passing("users", "a", "127.0.0.1", instance("a").await);
    let users = client_of(&consul);
    assert_eq!(whoami(&users).await.unwrap(), "a");
    consul.deregister("a");
    eventually(async || matches!(whoami(&users).await, Err(ClientError::NoEndpoints))).await;
}

#[tokio::test]
async fn a_service_consul_has_never_heard_of_is_no_endpoints() {
    let consul = ConsulRegistry::start().await;
    let users = client_of(&consul);
    let err = whoami(&users).await.unwrap_err();
    assert!(matches!(err, ClientError::NoEndpoints), "{err:?}");
}

#[tokio::test]
async fn the_config_file_form_watches_consul_too() {
    let consul = ConsulRegistry::start().await;
    consul.register_passing("users", "a", "127.0.0.1", instance("a").await);
    let config: ServiceClientConfig = toml::from_str(&format!(
        r#"
        service = "users"
        [consul]
        address = "{}"
        wait = "5s"
        "#,
        consul.url()
    ))
    .unwrap();
    let users = ServiceClient::from_config(config).unwrap();
    assert_eq!(whoami(&users).await.unwrap(), "a");
}

#[tokio::test]
async fn urls_and_consul_together_are_rejected_naming_consul() {
    let config: ServiceClientConfig = toml::from_str(
        r#"
        service = "users"
        urls = ["http://127.0.0.1:1"]
        [consul]
        address = "http://127.0.0.1:8500"
        "#,
    )
    .unwrap();
    assert_eq!(
        ServiceClient::from_config(config).unwrap_err().field(),
        "consul"
    );
}

#[tokio::test]
async fn a_missing_token_variable_is_rejected_naming_the_field() {
    let config: ServiceClientConfig = toml::from_str(
        r#"
        service = "users"
        [consul]
        token_env = "MESHGUARD_TEST_SURELY_UNSET_TOKEN"
        "#,
    )
    .unwrap();
    assert_eq!(
        ServiceClient::from_config(config).unwrap_err().field(),
        "consul.token_env"
    );
}

#[tokio::test]
async fn the_config_files_consul_filter_chooses_the_instances() {
    let consul = ConsulRegistry::start().await;
    consul.register_passing("users", "a", "127.0.0.1", instance("a").await);
    consul.register_passing("users", "b", "127.0.0.1", instance("b").await);
    let config: ServiceClientConfig = toml::from_str(&format!(
        r#"
        service = "users"
        [consul]
        address = "{}"
        filter = 'Service.ID == "b"'
        min_interval = "100ms"
        max_body_size = 65536
        "#,
        consul.url()
    ))
    .unwrap();
    let users = ServiceClient::from_config(config).unwrap();
    for _ in 0..10 {
        assert_eq!(whoami(&users).await.unwrap(), "b");
    }
}

#[tokio::test]
async fn a_consul_max_body_size_of_zero_is_rejected_naming_the_field() {
    let config: ServiceClientConfig = toml::from_str(
        r#"
        service = "users"
        [consul]
        max_body_size = 0
        "#,
    )
    .unwrap();
    assert_eq!(
        ServiceClient::from_config(config).unwrap_err().field(),
        "consul.max_body_size"
    );
}
