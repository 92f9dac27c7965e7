//! Flow control (`meshguard::limit`): the bulkhead, the adaptive
//! concurrency limit and client-side throttling through `ServiceClient`
//! against real axum upstreams (and the adaptive limit and throttle alone
//! over a tower `service_fn`, where their limit and probability can be
//! read), server-side load shedding in an axum `Router`, and the
//! configuration file's flow-control sections.
//!
//! Paused time and real sockets: while the runtime waits for a socket,
//! tokio's paused clock jumps to the next timer. So a paused test never has
//! a timer pending while it waits for an answer that must come first (the
//! upstream holds its requests until released, the client's timeouts and
//! pool are off); tests whose upstream answers while a timer waits run on
//! real time with timers far beyond the test.

#[path = "../support/mod.rs"]
mod support;

mod adaptive;
mod bulkhead;
mod config;
mod shed;
mod throttle;
mod upstream;
