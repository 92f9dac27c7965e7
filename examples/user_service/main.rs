//! The user service: its JSON API and the gRPC method `users.Users/Get`
//! on one port (HTTP/1.1 and h2c).
//!
//! ```sh
//! cargo run -p meshguard-examples --bin user_service
//! curl -s localhost:8081/users -H 'content-type: application/json' \
//!      -d '{"name":"Ada","email":"ada@example.com"}'
//! curl -s localhost:8081/users/1
//! ```
//!
//! Environment: `PORT` (8081), `CONSUL_HTTP_ADDR` (register there, with an
//! HTTP check on /health; deregister on Ctrl-C or SIGTERM, before
//! draining; `CONSUL_HTTP_TOKEN`, the ACL token, never logged), `SERVICE_ADDRESS` (the address Consul gives callers;
//! 127.0.0.1), `INSTANCE_ID` (`user-service-{PORT}`), `REDIS_URL` (publish
//! `user.created` events there), `MAX_USERS` (10000), and the server's
//! `HEADER_READ_TIMEOUT_MS`, `REQUEST_TIMEOUT_MS`, `DRAIN_MS`.
//! `user_service healthcheck` asks the running service's `/health` (exit
//! 0 or 1), for container health checks. See examples/user_service/README.md.

use meshguard_examples::config::{ServerConfig, env_num, env_opt, env_or};
use meshguard_examples::events::Publisher;
use meshguard_examples::server::{
    healthcheck, healthcheck_requested, register, serve, shutdown_signal,
};
use meshguard_examples::user::{DEFAULT_MAX_USERS, MemoryStore, UserState, app};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = env_num("PORT", 8081);
    if healthcheck_requested() {
        std::process::exit(healthcheck(port));
    }
    meshguard_examples::telemetry::init_logs();
    meshguard_examples::telemetry::prometheus();
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    let events = env_opt("REDIS_URL")
        .map(|url| Publisher::start(&url))
        .transpose()?;
    let state = UserState {
        store: Arc::new(MemoryStore::with_capacity(env_num(
            "MAX_USERS",
            DEFAULT_MAX_USERS,
        ))),
        events,
    };
    let registration = match env_opt("CONSUL_HTTP_ADDR") {
        Some(agent) => {
            let address = env_or("SERVICE_ADDRESS", "127.0.0.1");
            let id = env_or("INSTANCE_ID", &format!("user-service-{port}"));
            Some(register(&agent, "user-service", &id, &address, port).await?)
        }
        None => None,
    };
    tracing::info!(port, "user-service listening");
    let config = ServerConfig::from_env();
    serve(
        listener,
        app(state),
        config,
        registration,
        shutdown_signal(),
    )
    .await?;
    Ok(())
}
