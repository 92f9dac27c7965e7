//! The user service: `GET /users/{id}`, `POST /users`, the gRPC method
//! `users.Users/Get` (see [`grpc`](super::grpc)), `GET /health`,
//! `GET /metrics`; publishes `user.created`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use meshguard::limit::{ShedConfig, ShedLayer};
use meshguard::propagation::PropagationLayer;
use serde::{Deserialize, Serialize};

use super::events::{Publisher, UserCreated};
use super::telemetry;

/// A user, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// The user's id.
    pub id: u64,
    /// The user's name.
    pub name: String,
    /// The user's email address.
    pub email: String,
}

/// A user to create: `POST /users`'s body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewUser {
    /// The name (1 to 100 characters).
    pub name: String,
    /// The email address (`local@domain.tld`).
    pub email: String,
}

/// Where users live. The example keeps them in memory; a real service puts
/// a database behind the same two methods.
pub trait UserStore: Send + Sync + 'static {
    /// The user with `id`, if there is one.
    fn get(&self, id: u64) -> Option<User>;
    /// Stores `user` under a new id.
    fn insert(&self, user: NewUser) -> User;
}

/// Users in memory. Instances in one process (the demo) share one store,
/// as instances share a database; separate processes each have their own.
#[derive(Default)]
pub struct MemoryStore {
    next: AtomicU64,
    users: RwLock<HashMap<u64, User>>,
}

impl UserStore for MemoryStore {
    fn get(&self, id: u64) -> Option<User> {
        self.users.read().unwrap().get(&id).cloned()
    }

    fn insert(&self, new: NewUser) -> User {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let user = User {
            id,
            name: new.name,
            email: new.email,
        };
        self.users.write().unwrap().insert(id, user.clone());
        user
    }
}

/// The user service's state.
#[derive(Clone)]
pub struct UserState {
    /// Where users live.
    pub store: Arc<dyn UserStore>,
    /// Where `user.created` events go, if anywhere.
    pub events: Option<Publisher>,
}

/// A JSON error body: `{"error": "..."}`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

/// The service: its API, shedding load beyond what it can serve (a 503
/// with `Retry-After` at once, rather than a queue that grows until every
/// request times out), with the operational routes, which are never shed
/// (a health check failing under load would take the instance out of
/// discovery just when the others need it most).
pub fn app(state: UserState) -> Router {
    with_operations(routes(state).layer(ShedLayer::new("user-service", ShedConfig::default())))
}

/// The API alone: `GET /users/{id}`, `POST /users`, and gRPC's
/// `users.Users/Get`, on one router (HTTP/1.1 and h2c on one port).
pub fn routes(state: UserState) -> Router {
    Router::new()
        .route("/users/{id}", get(get_user))
        .route("/users", axum::routing::post(create_user))
        .with_state(state.clone())
        .merge(super::grpc::routes(state))
}

/// Adds `GET /health` and `GET /metrics` to `api`, and propagation (request
/// ID, trace context, deadline: `grpc-timeout` too) to everything.
pub fn with_operations(api: Router) -> Router {
    api.route("/health", get(|| async { "ok" }))
        .route("/metrics", get(telemetry::metrics_handler))
        .layer(PropagationLayer::new())
}

async fn get_user(State(state): State<UserState>, Path(id): Path<u64>) -> Response {
    match state.store.get(id) {
        Some(user) => Json(user).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("user {id} not found")),
    }
}

fn validate(new: &NewUser) -> Result<(), String> {
    let name = new.name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err("name must be 1 to 100 characters".into());
    }
    let email = new.email.trim();
    match email.split_once('@') {
        Some((local, domain)) if !local.is_empty() && domain.contains('.') => Ok(()),
        _ => Err(format!("email {email:?} is not an address")),
    }
}

async fn create_user(
    State(state): State<UserState>,
    body: Result<Json<NewUser>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(new) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    if let Err(message) = validate(&new) {
        return error(StatusCode::BAD_REQUEST, message);
    }
    let user = state.store.insert(new);
    tracing::info!(user = user.id, "user created");
    if let Some(events) = &state.events {
        events.publish(UserCreated {
            id: user.id,
            name: user.name.clone(),
            email: user.email.clone(),
        });
    }
    (StatusCode::CREATED, Json(user)).into_response()
}
