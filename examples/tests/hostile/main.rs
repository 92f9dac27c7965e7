//! The example system against hostile callers: oversize and malformed
//! input, forged and stretched tokens, other users' records, many
//! clients, slow and silent connections, a stopped Redis, and shutdown
//! with clients still connected. One behaviour per test.
//!
//! Timeouts are tested on tokio's paused clock with real sockets on
//! 127.0.0.1 (exact: the clock moves only when every task waits); the
//! system and Redis tests run on real time, with bounded waits.

#[path = "../common/mod.rs"]
mod common;

mod auth;
mod deregister;
mod events;
mod gateway;
mod input;
mod limiter;
mod server;
