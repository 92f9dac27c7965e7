//! A development Consul: meshguard's in-process Consul-compatible registry
//! as a process of its own, like `consul agent -dev`, for running the
//! example services as separate processes (see examples/run-processes.sh).
//!
//! ```sh
//! cargo run -p meshguard-examples --bin dev_registry -- --port 8500
//! # consul-compatible registry listening on http://127.0.0.1:8500
//! export CONSUL_HTTP_ADDR=127.0.0.1:8500
//! ```
//!
//! Options: `--port P` (8500; 0 picks a free port), `--token-env VAR`
//! (require the ACL token held in the environment variable `VAR`, e.g.
//! `CONSUL_HTTP_TOKEN`), `--token T` (the same, given on the command line,
//! where other users of the machine can see it in the process list). With
//! a token, every request but `/v1/status/*` must carry it
//! (`X-Consul-Token`, `Authorization: Bearer` or `?token=`), else 403. The
//! token is never printed. It listens on 127.0.0.1 only and keeps its
//! catalog in memory; it stops on Ctrl-C or SIGTERM.

use std::net::SocketAddr;

use meshguard::testing::ConsulRegistry;
use meshguard_examples::server::shutdown_signal;

struct Options {
    port: u16,
    token: Option<String>,
}

fn usage(problem: &str) -> ! {
    eprintln!("dev_registry: {problem}");
    eprintln!("usage: dev_registry [--port P] [--token-env VAR | --token T]");
    std::process::exit(2)
}

fn options() -> Options {
    let mut o = Options {
        port: 8500,
        token: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| usage(&format!("{name} needs a value")))
        };
        match arg.as_str() {
            "--port" => {
                let v = value("--port");
                o.port = v
                    .parse()
                    .unwrap_or_else(|_| usage(&format!("--port {v:?} is not a port")));
            }
            "--token" => o.token = Some(value("--token")),
            "--token-env" => {
                let var = value("--token-env");
                let token = std::env::var(&var).unwrap_or_default();
                if token.is_empty() {
                    usage(&format!(
                        "--token-env {var}: the variable is unset or empty"
                    ));
                }
                o.token = Some(token);
            }
            "-h" | "--help" => usage("a development Consul-compatible registry"),
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    if o.token.as_deref() == Some("") {
        usage("--token must not be empty");
    }
    o
}

#[tokio::main]
async fn main() {
    let o = options();
    let mut builder = ConsulRegistry::builder().addr(SocketAddr::from(([127, 0, 0, 1], o.port)));
    let acl = o.token.is_some();
    if let Some(token) = o.token {
        builder = builder.acl_token(token);
    }
    let consul = match builder.start().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dev_registry: cannot listen on 127.0.0.1:{}: {e}", o.port);
            std::process::exit(1);
        }
    };
    println!("consul-compatible registry listening on {}", consul.url());
    if acl {
        println!("ACL: a token is required (X-Consul-Token); it is not printed");
    }
    shutdown_signal().await;
    println!("dev_registry: stopped");
}
