//! The in-process Consul-compatible registry, documented in
//! [`crate::testing`]; the Consul API facts it follows, with their sources,
//! are in `tests/fixtures/consul/README.md` (section numbers in comments
//! refer to it).
//!
//! - [`registry`]: the public [`ConsulRegistry`] handle (start, faults,
//!   helpers that change the catalog without HTTP) and its routes;
//! - [`state`]: the catalog of instances and checks, and the index;
//! - [`health`]: `GET /v1/health/service/:name` (blocking queries);
//! - [`render`]: its answers in the wire shape, serialised once per
//!   catalog state and query shape and kept, plain and gzipped;
//! - [`encoding`]: gzip when `Accept-Encoding` asks, as Consul's agent;
//! - [`agent`]: agent register, deregister and maintenance endpoints;
//! - [`checks`]: HTTP checks run for real, TTL expiry and TTL updates;
//! - [`params`]: query parameters and error answers as the agent has them;
//! - [`filter`]: the bexpr subset;
//! - [`builder`]: a chosen address and a required ACL token ([`acl`]);
//! - [`catalog`], [`agent_read`], [`check_register`], [`status`]: the
//!   catalog, the agent's read endpoints and `/v1/health/checks`, check
//!   registration, the status endpoints (shapes in [`shapes`], blocking
//!   queries in [`blocking`]).

mod acl;
mod agent;
mod agent_read;
mod blocking;
mod builder;
mod catalog;
mod check_register;
mod checks;
mod encoding;
mod filter;
mod health;
mod params;
mod registry;
mod render;
mod shapes;
mod state;
mod status;

pub use builder::ConsulRegistryBuilder;
pub use registry::ConsulRegistry;
pub use state::CheckStatus;
