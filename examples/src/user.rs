//! The user service: `GET /users/{id}`, `POST /users`, the gRPC method
//! `users.Users/Get` (see [`grpc`](super::grpc)), `GET /health`,
//! `GET /metrics`; publishes `user.created`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use meshguard::limit::{ShedConfig, ShedLayer};
use meshguard::propagation::PropagationLayer;
use serde::{Deserialize, Serialize};

use super::events::{Publisher, UserCreated};
pub use super::input::error;
use super::input::{BODY_LIMIT, StoreFull, json_rejection, text_field};
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
    /// The name (1 to [`MAX_NAME`] characters once trimmed).
    pub name: String,
    /// The email address (`local@domain.tld`, at most [`MAX_EMAIL`]
    /// bytes once trimmed).
    pub email: String,
}

/// The longest name, in characters.
pub const MAX_NAME: usize = 100;
/// The longest email address, in bytes (RFC 5321's path limit).
pub const MAX_EMAIL: usize = 254;
/// How many users the in-memory store holds by default (`MAX_USERS`).
pub const DEFAULT_MAX_USERS: usize = 10_000;

impl NewUser {
    /// The user as it is stored: name and email trimmed, or why not.
    pub fn validate(&self) -> Result<NewUser, String> {
        let name = text_field("name", &self.name, MAX_NAME)?;
        let email = self.email.trim();
        if email.len() > MAX_EMAIL {
            return Err(format!("email must be at most {MAX_EMAIL} bytes"));
        }
        // Checked under the cap, so the message quotes at most 254 bytes.
        let valid = match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && local.len() <= 64
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            }
            None => false,
        } && !email.chars().any(|c| c.is_whitespace() || c.is_control());
        if !valid {
            return Err(format!("email {email:?} is not an address"));
        }
        Ok(NewUser {
            name,
            email: email.to_string(),
        })
    }
}

/// Where users live. The example keeps them in memory; a real service puts
/// a database behind the same two methods.
pub trait UserStore: Send + Sync + 'static {
    /// The user with `id`, if there is one.
    fn get(&self, id: u64) -> Option<User>;
    /// Stores `user` under a new id, unless the store is full.
    fn insert(&self, user: NewUser) -> Result<User, StoreFull>;
}

/// Users in memory, at most a capacity of them. Instances in one process
/// (the demo) share one store, as instances share a database; separate
/// processes each have their own.
pub struct MemoryStore {
    capacity: usize,
    next: AtomicU64,
    users: RwLock<HashMap<u64, User>>,
}

impl Default for MemoryStore {
    /// Holds [`DEFAULT_MAX_USERS`].
    fn default() -> Self {
        MemoryStore::with_capacity(DEFAULT_MAX_USERS)
    }
}

impl MemoryStore {
    /// Holds at most `capacity` users.
    pub fn with_capacity(capacity: usize) -> Self {
        MemoryStore {
            capacity,
            next: AtomicU64::new(0),
            users: RwLock::default(),
        }
    }

    /// How many users it holds.
    pub fn len(&self) -> usize {
        self.users.read().unwrap().len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl UserStore for MemoryStore {
    fn get(&self, id: u64) -> Option<User> {
        self.users.read().unwrap().get(&id).cloned()
    }

    fn insert(&self, new: NewUser) -> Result<User, StoreFull> {
        let mut users = self.users.write().unwrap();
        if users.len() >= self.capacity {
            return Err(StoreFull {
                capacity: self.capacity,
            });
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let user = User {
            id,
            name: new.name,
            email: new.email,
        };
        users.insert(id, user.clone());
        Ok(user)
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

/// The service: its API, shedding load beyond what it can serve (a 503
/// with `Retry-After` at once, rather than a queue that grows until every
/// request times out), with the operational routes, which are never shed
/// (a health check failing under load would take the instance out of
/// discovery just when the others need it most).
pub fn app(state: UserState) -> Router {
    with_operations(routes(state).layer(ShedLayer::new("user-service", ShedConfig::default())))
}

/// The API alone: `GET /users/{id}`, `POST /users` (a body of at most
/// [`BODY_LIMIT`]), and gRPC's `users.Users/Get`, on one router (HTTP/1.1
/// and h2c on one port).
pub fn routes(state: UserState) -> Router {
    Router::new()
        .route("/users/{id}", get(get_user))
        .route("/users", axum::routing::post(create_user))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
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

async fn create_user(
    State(state): State<UserState>,
    body: Result<Json<NewUser>, JsonRejection>,
) -> Response {
    let new = match body {
        Ok(Json(new)) => new,
        Err(e) => return json_rejection(&e),
    };
    let new = match new.validate() {
        Ok(valid) => valid,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let user = match state.store.insert(new) {
        Ok(user) => user,
        Err(full) => {
            tracing::warn!(capacity = full.capacity, "user store full: user refused");
            return full.response("user");
        }
    };
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
