//! The example microservices: a user service, an order service and an API
//! gateway that find each other through Consul (or static URLs) and call
//! each other through meshguard's `ServiceClient`, with events on Redis
//! Streams. Shared by the examples (`user_service`, `order_service`,
//! `gateway`, `mesh_demo`) and by the end-to-end test, which includes this
//! module with `#[path]`; each binary uses part of it.
#![allow(dead_code)]

pub mod clients;
pub mod config;
pub mod events;
pub mod gateway;
pub mod order;
pub mod server;
pub mod telemetry;
pub mod user;
