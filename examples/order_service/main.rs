//! The order service.
//!
//! ```sh
//! cargo run -p meshguard-examples --bin order_service
//! curl -s localhost:8082/orders -H 'content-type: application/json' \
//!      -d '{"user_id":1,"item":"book","quantity":2}'
//! ```
//!
//! Environment: `PORT` (8082), `CONSUL_HTTP_ADDR` (find user-service there
//! and register itself; `CONSUL_HTTP_TOKEN`, the ACL token, never logged), else `USER_SERVICE_URLS` (http://127.0.0.1:8081);
//! `USER_SERVICE_PROTOCOL` (`grpc`, the default, or `http`);
//! `REDIS_URL` (consume `user.created` as group `order-service`);
//! `SERVICE_ADDRESS`, `INSTANCE_ID`; `MAX_ORDERS` (10000),
//! `MAX_KNOWN_USERS` (10000); the server's `HEADER_READ_TIMEOUT_MS`,
//! `REQUEST_TIMEOUT_MS`, `DRAIN_MS`. `order_service healthcheck` asks the
//! running service's `/health`. See examples/order_service/README.md.

use meshguard_examples::clients::Users;
use meshguard_examples::config::{Protocol, ServerConfig, Upstream, env_num, env_opt, env_or};
use meshguard_examples::order::{DEFAULT_MAX_KNOWN_USERS, DEFAULT_MAX_ORDERS, OrderState, app};
use meshguard_examples::server::{
    healthcheck, healthcheck_requested, register, serve, shutdown_signal,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = env_num("PORT", 8082);
    if healthcheck_requested() {
        std::process::exit(healthcheck(port));
    }
    meshguard_examples::telemetry::init_logs();
    meshguard_examples::telemetry::prometheus();
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    let upstream = Upstream::from_env("user-service", "USER_SERVICE_URLS", "http://127.0.0.1:8081");
    let protocol = Protocol::from_env("USER_SERVICE_PROTOCOL");
    let state = OrderState::new(Users::new(protocol, &upstream))
        .with_max_orders(env_num("MAX_ORDERS", DEFAULT_MAX_ORDERS))
        .with_max_known_users(env_num("MAX_KNOWN_USERS", DEFAULT_MAX_KNOWN_USERS));
    if let Some(url) = env_opt("REDIS_URL") {
        let view = state.clone();
        let consumer = env_or("INSTANCE_ID", &format!("order-service-{port}"));
        tokio::spawn(meshguard_examples::events::consume(
            url,
            "order-service",
            consumer,
            move |e| view.apply(e),
        ));
    }
    let registration = match env_opt("CONSUL_HTTP_ADDR") {
        Some(agent) => {
            let address = env_or("SERVICE_ADDRESS", "127.0.0.1");
            let id = env_or("INSTANCE_ID", &format!("order-service-{port}"));
            Some(register(&agent, "order-service", &id, &address, port).await?)
        }
        None => None,
    };
    tracing::info!(port, ?protocol, "order-service listening");
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
