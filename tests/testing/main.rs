//! The test utilities of `meshguard::testing`: `FaultLayer`, and the
//! in-process Consul-compatible registry against the Consul API facts in
//! tests/fixtures/consul/README.md (with the `consul` feature).

mod consul_acl;
#[cfg(feature = "consul")]
mod consul_endpoints;
#[cfg(feature = "consul")]
mod consul_gzip;
#[cfg(feature = "consul")]
mod consul_registry;
mod fault;
