//! A watch of Consul's health API as a stream of endpoint changes.
//!
//! [`ConsulDiscovery`] runs a blocking-query loop on
//! `GET /v1/health/service/:name` through `rs-consul` and yields
//! [`Change`](super::Change)s (inserts and removals, diffed by instance id), usable
//! directly by `tower::balance`. The loop follows Consul's documented client
//! obligations (Consul's [blocking queries] page; the facts, with their
//! sources, are in the repository's `tests/fixtures/consul/README.md`, §2):
//!
//! - the index is reset to 0 when it goes backwards (a snapshot restore);
//! - an index below 1 is treated as 1, never 0, which would busy-loop;
//! - the loop is rate limited by a token bucket with a burst of 2, so the
//!   happy path runs at once and a churning result is polled slowly;
//! - errors (Consul down, 5xx, a body that is not the expected JSON) are
//!   retried with jittered exponential backoff, and the last good endpoint
//!   set is kept meanwhile: nothing is removed because Consul is unwell.
//!
//! The address is `Service.Address`, falling back to `Node.Address` when
//! empty (§6, Consul's [catalog API] page). The ACL token goes in the `X-Consul-Token` header and is
//! redacted in `Debug` and never logged.
//!
//! Two gaps in `rs-consul` 0.15 are worked around here: it has no `stale`
//! option (we append `&stale` to the query it builds), and it concatenates
//! `filter` into the URL unescaped (we percent-encode it first). Agent
//! registration, which `rs-consul` lacks, is our own small typed requests
//! ([`registration`](super::registration)).
//!
//! The parts: [`ConsulDiscovery::builder`] checks the settings
//! (`builder.rs`) and starts the loop (`watch.rs`, rate limited by
//! `bucket.rs`), whose changes the [`ConsulDiscovery`] stream yields
//! (`discovery.rs`); [`ConsulToken`] (`token.rs`) keeps the ACL token out of
//! logs.
//!
//! [blocking queries]: https://developer.hashicorp.com/consul/api-docs/features/blocking
//! [catalog API]: https://developer.hashicorp.com/consul/api-docs/catalog

mod bucket;
mod builder;
#[cfg(test)]
mod catalog;
mod discovery;
mod token;
mod watch;

pub use builder::ConsulDiscoveryBuilder;
pub use discovery::{ConsulDiscovery, WatchStatus};
pub use token::ConsulToken;
