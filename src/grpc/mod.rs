#![doc = include_str!("../../docs/grpc.md")]

mod body;
mod builder;
mod call;
mod channel;
mod classify;
mod link;
mod stack;
mod transport;

pub use crate::deadline::GRPC_TIMEOUT;
pub use body::ResponseBody;
pub use builder::ChannelBuilder;
pub use channel::{Channel, ResponseFuture};
pub use classify::{GRPC_RETRY_PUSHBACK, GrpcClassifier, GrpcRetryOn};
