//! A watch of Consul's health API as a stream of endpoint changes.
//!
//! [`ConsulDiscovery`] runs a blocking-query loop on
//! `GET /v1/health/service/:name` and yields [`Change`](super::Change)s
//! (inserts and removals, diffed by instance id), usable directly by
//! `tower::balance`. The loop follows Consul's documented client
//! obligations (Consul's [blocking queries] page; the facts, with their
//! sources, are in the repository's `tests/fixtures/consul/README.md`, §2):
//!
//! - the index is reset to 0 when it goes backwards (a snapshot restore);
//! - an index below 1 is treated as 1, never 0, which would busy-loop;
//! - the loop is rate limited by a token bucket with a burst of 2, so the
//!   happy path runs at once and a churning result is polled slowly;
//! - errors (Consul down, 5xx, a body that is not the expected JSON, an
//!   answer over `max_body_size`) are retried with jittered exponential
//!   backoff, and the last good endpoint set is kept meanwhile: nothing is
//!   removed because Consul is unwell.
//!
//! The address is `Service.Address`, falling back to `Node.Address` when
//! empty (§6, Consul's [catalog API] page). The ACL token goes in the
//! `X-Consul-Token` header (marked sensitive), is redacted in `Debug` and
//! never logged.
//!
//! The query is ours, over one long-lived connection (hyper, HTTP/1.1
//! keep-alive, reopened only when closed), asking for gzip (`Accept-Encoding: gzip`, which
//! Consul honours: a fleet's answer shrinks 20 to 50 times). Its parameters
//! (`passing`, `filter`, `dc`, `stale`, `index`, `wait`) are form-encoded.
//! The body is read whole, within `max_body_size` as received and
//! decompressed, then parsed from contiguous bytes
//! (`serde_json::from_slice`) into `rs-consul`'s `ServiceNode`; a large
//! answer is decompressed, parsed and diffed on tokio's blocking pool, so
//! no worker is held by it. What `rs-consul` still does and no longer does
//! for us is in `docs/discovery.md`. Agent registration, which `rs-consul`
//! lacks, is our own small typed requests
//! ([`registration`](super::registration)).
//!
//! The parts: [`ConsulDiscovery::builder`] checks the settings
//! (`builder.rs`) and starts the loop (`watch.rs`, rate limited by
//! `bucket.rs`), which builds each query's URL (`query.rs`), sends it
//! (`transport.rs`), decodes the answer (`decode.rs`) and diffs it
//! against the endpoints yielded so far (`known.rs`); the
//! [`ConsulDiscovery`] stream yields the changes (`discovery.rs`);
//! [`ConsulToken`] (`token.rs`) keeps the ACL token out of logs.
//!
//! [blocking queries]: https://developer.hashicorp.com/consul/api-docs/features/blocking
//! [catalog API]: https://developer.hashicorp.com/consul/api-docs/catalog

mod bucket;
mod builder;
#[cfg(test)]
mod catalog;
mod decode;
mod discovery;
mod known;
mod query;
mod token;
mod transport;
mod watch;

pub use builder::{ConsulDiscoveryBuilder, DEFAULT_MAX_BODY_SIZE, DEFAULT_WAIT};
pub use discovery::{ConsulDiscovery, WatchStatus};
pub use token::ConsulToken;
