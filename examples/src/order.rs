//! The order service: `POST /orders` (checks the user through the user
//! service, over gRPC unless configured otherwise), `GET /orders/{id}`,
//! `GET /known-users/{id}` (its view of the users, built from
//! `user.created` events), `GET /health`, `GET /metrics`. Orders and the
//! view are bounded: see [`OrderState`].

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use meshguard::limit::{ShedConfig, ShedLayer};
use meshguard::propagation::PropagationLayer;
use serde::{Deserialize, Serialize};

use super::clients::Users;
use super::events::UserCreated;
use super::input::{BODY_LIMIT, StoreFull, error, json_rejection, text_field};
use super::telemetry;
use super::user::MAX_NAME;

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
    /// What is ordered (1 to [`MAX_ITEM`] characters once trimmed).
    pub item: String,
    /// How many (1 to [`MAX_QUANTITY`]).
    pub quantity: u32,
}

/// The longest item name, in characters.
pub const MAX_ITEM: usize = 100;
/// The largest quantity of one order.
pub const MAX_QUANTITY: u32 = 1000;
/// How many orders the in-memory store holds by default (`MAX_ORDERS`).
pub const DEFAULT_MAX_ORDERS: usize = 10_000;
/// How many users the event-fed view holds by default (`MAX_KNOWN_USERS`);
/// beyond, the lowest ids (the oldest) are forgotten.
pub const DEFAULT_MAX_KNOWN_USERS: usize = 10_000;

impl NewOrder {
    /// The order as it is stored: the item trimmed, or why not.
    pub fn validate(&self) -> Result<NewOrder, String> {
        if self.item.trim().is_empty() || self.quantity == 0 {
            return Err("item must be named and quantity at least 1".into());
        }
        if self.quantity > MAX_QUANTITY {
            return Err(format!("quantity must be at most {MAX_QUANTITY}"));
        }
        Ok(NewOrder {
            user_id: self.user_id,
            item: text_field("item", &self.item, MAX_ITEM)?,
            quantity: self.quantity,
        })
    }
}

/// The order service's state: its client of the user service, its orders
/// (at most a capacity of them), and the users it learnt of from events
/// (likewise bounded).
#[derive(Clone)]
pub struct OrderState {
    /// The user service.
    pub users: Users,
    orders: Arc<RwLock<HashMap<u64, Order>>>,
    max_orders: usize,
    next: Arc<AtomicU64>,
    /// Users as the events told us: id to name (at most
    /// `max_known_users`, names capped at [`MAX_NAME`] characters).
    pub known_users: Arc<RwLock<BTreeMap<u64, String>>>,
    max_known_users: usize,
}

impl OrderState {
    /// No orders yet, no users known; the default capacities.
    pub fn new(users: Users) -> Self {
        OrderState {
            users,
            orders: Arc::default(),
            max_orders: DEFAULT_MAX_ORDERS,
            next: Arc::default(),
            known_users: Arc::default(),
            max_known_users: DEFAULT_MAX_KNOWN_USERS,
        }
    }

    /// Holds at most `max` orders; beyond, `POST /orders` is 507.
    pub fn with_max_orders(mut self, max: usize) -> Self {
        self.max_orders = max;
        self
    }

    /// Remembers at most `max` users from events (at least 1).
    pub fn with_max_known_users(mut self, max: usize) -> Self {
        self.max_known_users = max.max(1);
        self
    }

    /// How many orders it holds.
    pub fn order_count(&self) -> usize {
        self.orders.read().unwrap().len()
    }

    /// Applies a `user.created` event to the local view, forgetting the
    /// oldest user when the view is full. The name is cut to
    /// [`MAX_NAME`] characters: events are input too.
    pub fn apply(&self, event: UserCreated) {
        let name: String = event.name.chars().take(MAX_NAME).collect();
        let mut known = self.known_users.write().unwrap();
        known.insert(event.id, name);
        while known.len() > self.max_known_users {
            known.pop_first();
        }
    }
}

/// The order service's routes: its API, shedding load beyond what it can
/// serve (503 with `Retry-After`), and the operational routes, never shed.
/// Bodies are read up to [`BODY_LIMIT`].
pub fn app(state: OrderState) -> Router {
    Router::new()
        .route("/orders", post(create_order))
        .route("/orders/{id}", get(get_order))
        .route("/known-users/{id}", get(known_user))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(ShedLayer::new("order-service", ShedConfig::default()))
        .route("/health", get(|| async { "ok" }))
        .route("/metrics", get(telemetry::metrics_handler))
        .with_state(state)
        .layer(PropagationLayer::new())
}

async fn create_order(
    State(state): State<OrderState>,
    body: Result<Json<NewOrder>, JsonRejection>,
) -> Response {
    let new = match body {
        Ok(Json(new)) => new,
        Err(e) => return json_rejection(&e),
    };
    let new = match new.validate() {
        Ok(valid) => valid,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
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
    let order = {
        let mut orders = state.orders.write().unwrap();
        if orders.len() >= state.max_orders {
            drop(orders);
            let full = StoreFull {
                capacity: state.max_orders,
            };
            tracing::warn!(capacity = full.capacity, "order store full: order refused");
            return full.response("order");
        }
        let id = state.next.fetch_add(1, Ordering::Relaxed) + 1;
        let order = Order {
            id,
            user_id: new.user_id,
            item: new.item,
            quantity: new.quantity,
        };
        orders.insert(id, order.clone());
        order
    };
    tracing::info!(order = order.id, user = order.user_id, "order placed");
    (StatusCode::CREATED, Json(order)).into_response()
}

async fn get_order(State(state): State<OrderState>, Path(id): Path<u64>) -> Response {
    let order = state.orders.read().unwrap().get(&id).cloned();
    match order {
        Some(order) => Json(order).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("order {id} not found")),
    }
}

async fn known_user(State(state): State<OrderState>, Path(id): Path<u64>) -> Response {
    let name = state.known_users.read().unwrap().get(&id).cloned();
    match name {
        Some(name) => Json(serde_json::json!({ "id": id, "name": name })).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no user.created event for {id} yet"),
        ),
    }
}
