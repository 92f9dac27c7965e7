//! The API gateway.
//!
//! ```sh
//! export JWT_SECRET=$(openssl rand -base64 48)
//! cargo run -p meshguard-examples --bin gateway &
//! TOKEN=$(cargo run -q -p meshguard-examples --bin gateway -- token admin --admin)
//! curl -s localhost:8080/api/users/1 -H "authorization: Bearer $TOKEN"
//! ```
//!
//! Commands: `gateway` serves (and refuses to start without `JWT_SECRET`);
//! `gateway --dev` serves with a random key made for this run and prints
//! one admin token for it on stderr (development only: nothing else ever
//! prints a token); `gateway token SUB [--admin]` prints a token for `SUB`
//! signed with `JWT_SECRET`; `gateway healthcheck` asks the running
//! gateway's `/health` (exit 0 or 1).
//!
//! Environment: `PORT` (8080), `METRICS_PORT` (9090: `/metrics`, kept off
//! the public port), `JWT_SECRET` (HS256 key, at least 32 bytes),
//! `JWT_ISSUER`, `JWT_AUDIENCE`, `JWT_MAX_LIFETIME_SECS`,
//! `JWT_LEEWAY_SECS`, `RATE_LIMIT_PER_SECOND` (50 per client),
//! `RATE_LIMIT_MAX_CLIENTS` (10000), `CONSUL_HTTP_ADDR` (find the services
//! there; `CONSUL_HTTP_TOKEN`, the ACL token, never logged), else `USER_SERVICE_URLS` / `ORDER_SERVICE_URLS`; the server's
//! `HEADER_READ_TIMEOUT_MS`, `REQUEST_TIMEOUT_MS`, `DRAIN_MS`. See
//! examples/gateway/README.md.

use meshguard_examples::clients::service_client;
use meshguard_examples::config::{ServerConfig, Upstream, env_num};
use meshguard_examples::gateway::{
    ADMIN, DEFAULT_MAX_CLIENTS, GatewayState, JwtConfig, admin_app, app,
};
use meshguard_examples::server::{healthcheck, serve, shutdown_signal};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = env_num("PORT", 8080);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let dev = match args.as_slice() {
        [] => false,
        ["--dev"] => true,
        ["healthcheck"] => std::process::exit(healthcheck(port)),
        ["token", sub, rest @ ..] if rest.iter().all(|a| *a == "--admin") => {
            let jwt = JwtConfig::from_env().unwrap_or_else(|e| exit(&e));
            let roles: &[&str] = if rest.is_empty() { &[] } else { &[ADMIN] };
            println!("{}", jwt.token(sub, roles));
            return Ok(());
        }
        _ => exit("usage: gateway [--dev] | gateway token SUB [--admin] | gateway healthcheck"),
    };
    meshguard_examples::telemetry::init_logs();
    meshguard_examples::telemetry::prometheus();
    let jwt = if dev {
        let jwt = JwtConfig::random();
        tracing::warn!("--dev: a random JWT key made for this run; its admin token is on stderr");
        eprintln!("development admin token: {}", jwt.token("dev", &[ADMIN]));
        jwt
    } else {
        JwtConfig::from_env().unwrap_or_else(|e| exit(&e))
    };
    let users = Upstream::from_env("user-service", "USER_SERVICE_URLS", "http://127.0.0.1:8081");
    let orders = Upstream::from_env(
        "order-service",
        "ORDER_SERVICE_URLS",
        "http://127.0.0.1:8082",
    );
    let state = GatewayState::new(
        service_client("user-service", &users),
        service_client("order-service", &orders),
        jwt,
        env_num("RATE_LIMIT_PER_SECOND", 50),
    )
    .with_max_clients(env_num("RATE_LIMIT_MAX_CLIENTS", DEFAULT_MAX_CLIENTS));
    let config = ServerConfig::from_env();
    let metrics_port: u16 = env_num("METRICS_PORT", 9090);
    let metrics = tokio::net::TcpListener::bind(("0.0.0.0", metrics_port)).await?;
    tokio::spawn(serve(metrics, admin_app(), config, None, shutdown_signal()));
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    tracing::info!(port, metrics_port, "gateway listening");
    serve(listener, app(state), config, None, shutdown_signal()).await?;
    Ok(())
}

/// Stops with `message` on stderr and exit code 2: a configuration the
/// gateway refuses to start with.
fn exit(message: &str) -> ! {
    eprintln!("gateway: {message}");
    std::process::exit(2)
}
