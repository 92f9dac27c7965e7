//! Consul: discovery through the health API, registration with the agent,
//! and discovery feeding the balancer, against the in-process registry
//! (`meshguard::testing::ConsulRegistry`; its own tests are in the
//! `testing` binary, `ServiceClient` over Consul in the `client` binary).

#[path = "../support/mod.rs"]
mod support;

mod balancer;
mod discovery;
mod registration;
mod transport;
