//! The order service: `POST /orders` (checks the user through the user
//! service, over gRPC unless configured otherwise), `GET /orders/{id}`, `GET /known-users/{id}` (its view of the
//! users, built from `user.created` events), `GET /health`, `GET /metrics`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use meshguard::limit::{ShedConfig, ShedLayer};
use meshguard::propagation::PropagationLayer;
use serde::{Deserialize, Serialize};

use super::clients::Users;
use super::events::UserCreated;
use super::telemetry;
use super::user::error;

/// An order, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// The order's id.
    pub id: u64,
    /// The user who placed it.
    pub user_id: u64,
    /// What was ordered.
    pub item: String,
    /// How many.
    pub quantity: u32,
}

/// An order to create: `POST /orders`'s body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewOrder {
    /// The user placing it (checked through the user service).
    pub user_id: u64,
    /// What is ordered.
    pub item: String,
    /// How many.
    pub quantity: u32,
}

/// The order service's state: its client of the user service, its orders,
/// and the users it learnt of from events.
#[derive(Clone)]
pub struct OrderState {
    /// The user service.
    pub users: Users,
    orders: Arc<RwLock<HashMap<u64, Order>>>,
    next: Arc<AtomicU64>,
    /// Users as the events told us: id to name.
    pub known_users: Arc<RwLock<HashMap<u64, String>>>,
}

impl OrderState {
    /// No orders yet, no users known.
    pub fn new(users: Users) -> Self {
        OrderState {
            users,
            orders: Arc::default(),
            next: Arc::default(),
            known_users: Arc::default(),
        }
    }

    /// Applies a `user.created` event to the local view.
    pub fn apply(&self, event: UserCreated) {
        self.known_users
            .write()
            .unwrap()
            .insert(event.id, event.name);
    }
}

/// The order service's routes: its API, shedding load beyond what it can
/// serve (503 with `Retry-After`), and the operational routes, never shed.
pub fn app(state: OrderState) -> Router {
    Router::new()
        .route("/orders", post(create_order))
        .route("/orders/{id}", get(get_order))
        .route("/known-users/{id}", get(known_user))
        .layer(ShedLayer::new("order-service", ShedConfig::default()))
        .route("/health", get(|| async { "ok" }))
        .route("/metrics", get(telemetry::metrics_handler))
        .with_state(state)
        .layer(PropagationLayer::new())
}

async fn create_order(
    State(state): State<OrderState>,
    body: Result<Json<NewOrder>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(new) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    if new.item.trim().is_empty() || new.quantity == 0 {
        return error(
            StatusCode::BAD_REQUEST,
            "item must be named and quantity at least 1",
        );
    }
    match state.users.get(new.user_id).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("unknown user {}", new.user_id),
            );
        }
        Err(e) => return e.response("user-service"),
    }
    let id = state.next.fetch_add(1, Ordering::Relaxed) + 1;
    let order = Order {
        id,
        user_id: new.user_id,
        item: new.item,
        quantity: new.quantity,
    };
    state.orders.write().unwrap().insert(id, order.clone());
    tracing::info!(order = id, user = order.user_id, "order placed");
    (StatusCode::CREATED, Json(order)).into_response()
}

async fn get_order(State(state): State<OrderState>, Path(id): Path<u64>) -> Response {
    match state.orders.read().unwrap().get(&id) {
        Some(order) => Json(order.clone()).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("order {id} not found")),
    }
}

async fn known_user(State(state): State<OrderState>, Path(id): Path<u64>) -> Response {
    match state.known_users.read().unwrap().get(&id) {
        Some(name) => Json(serde_json::json!({ "id": id, "name": name })).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no user.created event for {id} yet"),
        ),
    }
}
