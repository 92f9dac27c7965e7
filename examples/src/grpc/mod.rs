//! The user service's gRPC API, `users.Users`, with one unary method,
//! `Get`: served next to the HTTP API on the same port (HTTP/1.1 and h2c
//! on one listener, routed by path), called by the order service through
//! meshguard's `grpc::Channel`.
//!
//! The messages are written by hand with prost's derive: no `.proto` file
//! is compiled, so no protoc and no build script. The `.proto` they mirror:
//!
//! ```proto
//! syntax = "proto3";
//! package users;
//!
//! service Users {
//!   // The user with this id; NOT_FOUND if there is none.
//!   rpc Get(GetUser) returns (User);
//! }
//!
//! message GetUser { uint64 id = 1; }
//! message User { uint64 id = 1; string name = 2; string email = 3; }
//! ```

mod client;
mod proto;
mod server;

pub use client::{GrpcError, UsersClient, channel};
pub use proto::{GET, GetUser, User};
pub use server::routes;
