//! The server side: `users.Users/Get` answered from the user store, as a
//! route of the user service's axum router (tonic's codec and unary
//! handling, without tonic's transport).

use std::convert::Infallible;
use std::future::{Ready, ready};

use axum::Router;
use tonic::Status;
use tonic::server::{Grpc, UnaryService};
use tonic_prost::ProstCodec;

use super::proto::{GET, GetUser, User};
use crate::user::UserState;

/// `users.Users/Get`: the user, or NOT_FOUND.
#[derive(Clone)]
struct Get(UserState);

impl UnaryService<GetUser> for Get {
    type Response = User;
    type Future = Ready<Result<tonic::Response<User>, Status>>;

    fn call(&mut self, request: tonic::Request<GetUser>) -> Self::Future {
        let id = request.into_inner().id;
        ready(match self.0.store.get(id) {
            Some(user) => Ok(tonic::Response::new(user.into())),
            None => Err(Status::not_found(format!("user {id} not found"))),
        })
    }
}

/// The gRPC API's routes: `POST /users.Users/Get` (gRPC calls are POSTs
/// to `/{package}.{Service}/{Method}`).
pub fn routes(state: UserState) -> Router {
    let get = tower::service_fn(move |req: axum::extract::Request| {
        let method = Get(state.clone());
        async move {
            let mut grpc = Grpc::new(ProstCodec::<User, GetUser>::default());
            Ok::<_, Infallible>(grpc.unary(method, req).await)
        }
    });
    Router::new().route_service(GET, get)
}
