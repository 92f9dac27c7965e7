#![doc = concat!(
    "The user service's gRPC API, `users.Users`, with one unary method, \
     `Get`: served next to the HTTP API on the same port (HTTP/1.1 and h2c \
     on one listener, routed by path), called by the order service through \
     meshguard's `grpc::Channel`.\n\n\
     The messages are written by hand with prost's derive: `users.proto`, \
     beside this module, is not compiled (no protoc, no build script); it \
     is what they mirror, and what a tool such as grpcurl reads:\n\n\
     ```proto\n",
    include_str!("users.proto"),
    "```"
)]

mod client;
mod proto;
mod server;

pub use client::{GrpcError, UsersClient, channel};
pub use proto::{GET, GetUser, User};
pub use server::routes;
