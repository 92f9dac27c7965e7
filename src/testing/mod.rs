//! Test helpers (feature `test-util`).
//!
//! # `ConsulRegistry`
//!
//! An in-process imitation of the parts of Consul's HTTP API meshguard uses.
//!
//! It serves on `127.0.0.1:0` and behaves as the Consul API facts in the
//! repository's `tests/fixtures/consul/README.md` say, each with its
//! public source (the section numbers below refer to it; `docs/testing.md`
//! summarizes them): blocking queries on `/v1/health/service/:name` with
//! `index` and `wait` (§2), `X-Consul-Index` never 0 (§2), `passing` (§1),
//! agent registration and deregistration, TTL check updates and
//! maintenance mode (§8), with Consul's status codes and error texts, and
//! gzip answers when `Accept-Encoding` asks for them (§12). HTTP checks
//! are run for real on their interval. A health answer is serialised once
//! per state of the catalog and query shape and kept, plain and gzipped,
//! for every query that asks the same; `connections()` counts the
//! connections accepted. Faults can be injected: the
//! agent goes down (connections refused), answers 500, answers malformed
//! JSON, or its index moves backwards.
//!
//! It is written by hand because no maintained crate serves Consul's API
//! in-process; `@hashicorp/consul-api-double` (npm) is a UI fixture that
//! neither blocks nor filters (§10).
//!
//! It also serves what common Consul tools call (agent services and
//! checks, the catalog, `/v1/health/checks`, check registration, status),
//! and, when started through [`ConsulRegistry::builder`] with a token,
//! requires that ACL token (403 otherwise). Not imitated: ACL policies and
//! a default-deny policy's filtering, KV, `near`, several nodes, and bexpr
//! `filter` beyond the subset in [`ConsulRegistry`]'s docs (others get
//! 400, never a wrong answer).
//!
//! # `FaultLayer`
//!
//! Faults switched at run time through a [`FaultHandle`]: a delay before
//! each request or a status answered at once, for chaos tests and demos.

mod consul;
mod fault;

pub use consul::{CheckStatus, ConsulRegistry, ConsulRegistryBuilder};
pub use fault::{Fault, FaultHandle, FaultLayer, FaultService};
