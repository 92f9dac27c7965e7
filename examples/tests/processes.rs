//! The dev registry as a process (`dev_registry`), and a service process
//! registering against it with `CONSUL_HTTP_ADDR` and `CONSUL_HTTP_TOKEN`:
//! what examples/run-processes.sh does, checked.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

const TOKEN: &str = "3c1e9f7a-processes-test-token";

/// Starts `dev_registry --port 0 --token-env DEV_TOKEN`; its URL, read
/// from the line it prints.
async fn dev_registry() -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dev_registry"))
        .args(["--port", "0", "--token-env", "DEV_TOKEN"])
        .env("DEV_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start dev_registry");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("dev_registry prints its address")
        .unwrap()
        .unwrap();
    let url = first
        .strip_prefix("consul-compatible registry listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_string();
    let rest = lines.next_line().await.unwrap().unwrap_or_default();
    assert!(!rest.contains(TOKEN) && !first.contains(TOKEN));
    (child, url)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn agent_services(url: &str, token: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new().get(format!("{url}/v1/agent/services"));
    if let Some(t) = token {
        req = req.header("X-Consul-Token", t);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn the_dev_registry_process_requires_its_token() {
    let (_registry, url) = dev_registry().await;
    assert_eq!(agent_services(&url, None).await.0, 403);
    assert_eq!(agent_services(&url, Some("wrong")).await.0, 403);
    assert_eq!(agent_services(&url, Some(TOKEN)).await, (200, "{}".into()));
}

#[tokio::test]
async fn a_user_service_process_registers_with_the_token_and_never_logs_it() {
    let (mut registry, url) = dev_registry().await;
    let port = free_port();
    let mut service = Command::new(env!("CARGO_BIN_EXE_user_service"))
        .env("PORT", port.to_string())
        .env("CONSUL_HTTP_ADDR", url.trim_start_matches("http://"))
        .env("CONSUL_HTTP_TOKEN", TOKEN)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start user_service");
    let id = format!("user-service-{port}");
    let mut registered = false;
    for _ in 0..300 {
        let (status, body) = agent_services(&url, Some(TOKEN)).await;
        if status == 200 && body.contains(&id) {
            registered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(registered, "{id} did not register");
    let health = format!("{url}/v1/health/service/user-service?passing");
    let mut passing = false;
    for _ in 0..300 {
        let body = reqwest::Client::new()
            .get(&health)
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if body.contains(&id) {
            passing = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(passing, "{id}'s HTTP check did not pass");
    service.kill().await.unwrap();
    registry.kill().await.unwrap();
    // The registry's first lines were checked by `dev_registry`.
    for child in [&mut service, &mut registry] {
        let mut logs = String::new();
        if let Some(mut out) = child.stdout.take() {
            out.read_to_string(&mut logs).await.unwrap();
        }
        if let Some(mut err) = child.stderr.take() {
            err.read_to_string(&mut logs).await.unwrap();
        }
        assert!(!logs.contains(TOKEN), "the token was logged");
    }
}
