//! The example microservices: a user service, an order service and an API
//! gateway that find each other through Consul (or static URLs) and call
//! each other through meshguard: the gateway over HTTP (`ServiceClient`),
//! the order service over gRPC (`grpc::Channel`), with events on Redis
//! Streams. The crate's binaries (`user_service`, `order_service`,
//! `gateway`, `mesh_demo`) and its end-to-end and deployment tests are
//! built on these modules.

pub mod clients;
pub mod config;
pub mod events;
pub mod gateway;
pub mod grpc;
pub mod input;
pub mod order;
pub mod server;
pub mod telemetry;
pub mod user;
