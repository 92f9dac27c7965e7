//! The API gateway.
//!
//! ```sh
//! cargo run -p meshguard-examples --bin gateway
//! curl -s localhost:8080/api/users/1 -H "authorization: Bearer $TOKEN"
//! ```
//!
//! Environment: `PORT` (8080), `JWT_SECRET` (HS256 key; a development
//! default, printed as a warning), `RATE_LIMIT_PER_SECOND` (50 per
//! client), `CONSUL_HTTP_ADDR` (find the services there), else
//! `USER_SERVICE_URLS` / `ORDER_SERVICE_URLS`. Prints a token for the
//! development key at start. See examples/gateway/README.md.

use meshguard_examples::clients::service_client;
use meshguard_examples::config::{Upstream, env_num, env_opt};
use meshguard_examples::gateway::{GatewayState, app, token};
use meshguard_examples::server::{serve, shutdown_signal};

const DEV_SECRET: &str = "meshguard-development-secret";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    meshguard_examples::telemetry::init_logs();
    meshguard_examples::telemetry::prometheus();
    let port: u16 = env_num("PORT", 8080);
    let secret = env_opt("JWT_SECRET").unwrap_or_else(|| {
        tracing::warn!(token = %token(DEV_SECRET.as_bytes(), "dev"), "JWT_SECRET unset: using the development key");
        DEV_SECRET.to_string()
    });
    let users = Upstream::from_env("user-service", "USER_SERVICE_URLS", "http://127.0.0.1:8081");
    let orders = Upstream::from_env(
        "order-service",
        "ORDER_SERVICE_URLS",
        "http://127.0.0.1:8082",
    );
    let state = GatewayState::new(
        service_client("user-service", &users),
        service_client("order-service", &orders),
        secret.as_bytes(),
        env_num("RATE_LIMIT_PER_SECOND", 50),
    );
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    tracing::info!(port, "gateway listening");
    serve(listener, app(state), shutdown_signal()).await?;
    Ok(())
}
