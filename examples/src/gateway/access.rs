//! Who may do what through the gateway. A token's caller is one of:
//!
//! - an **admin** (`"roles": ["admin"]`): every route, every record;
//! - a **user** (no role; `sub` is the user's id, `"42"`):
//!   - `GET /api/users/{id}` for their own id only (another id: 403);
//!   - `POST /api/orders` with their own `user_id` only (another: 403);
//!   - `GET /api/orders/{id}` and `GET /api/order-details/{id}` for their
//!     own orders only: another user's order is 404, as if it did not
//!     exist (an order id tells nothing about whose it is);
//!   - anything else (creating users, other methods): 403.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{GatewayState, Outgoing, forward};
use crate::clients::{OrderClient, UserClient, error_response};
use crate::input::error;
use crate::order::Order;

/// The caller a verified token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's `sub`.
    pub sub: String,
    /// Whether the token has the `admin` role.
    pub admin: bool,
}

impl Caller {
    /// The user id `sub` names, if it is one.
    pub fn user_id(&self) -> Option<u64> {
        self.sub.parse().ok()
    }

    /// Whether the caller may see or act for `user_id`.
    pub fn owns(&self, user_id: u64) -> bool {
        self.admin || self.user_id() == Some(user_id)
    }
}

/// `/api/users` and `/api/users/*`, to the user service.
pub(super) async fn users(
    State(state): State<GatewayState>,
    Extension(caller): Extension<Caller>,
    req: Request,
) -> Response {
    let own_record = req.method() == Method::GET
        && req
            .uri()
            .path()
            .strip_prefix("/api/users/")
            .and_then(|id| id.parse::<u64>().ok())
            .is_some_and(|id| caller.owns(id));
    if !(caller.admin || own_record) {
        return error(
            StatusCode::FORBIDDEN,
            "a user may only read their own record",
        );
    }
    match Outgoing::from_request(req).await {
        Ok(out) => forward(&state.users, "user-service", out).await,
        Err(refused) => refused,
    }
}

/// `/api/orders` and `/api/orders/*`, to the order service.
pub(super) async fn orders(
    State(state): State<GatewayState>,
    Extension(caller): Extension<Caller>,
    req: Request,
) -> Response {
    if caller.admin {
        return match Outgoing::from_request(req).await {
            Ok(out) => forward(&state.orders, "order-service", out).await,
            Err(refused) => refused,
        };
    }
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    if method == Method::POST && path == "/api/orders" {
        let out = match Outgoing::from_request(req).await {
            Ok(out) => out,
            Err(refused) => return refused,
        };
        let user_id = serde_json::from_slice::<serde_json::Value>(&out.body)
            .ok()
            .and_then(|v| v.get("user_id")?.as_u64());
        return match user_id {
            Some(id) if caller.owns(id) => forward(&state.orders, "order-service", out).await,
            Some(_) => error(
                StatusCode::FORBIDDEN,
                "a user may only order for themselves",
            ),
            None => error(
                StatusCode::BAD_REQUEST,
                "the body must be a JSON object with a numeric user_id",
            ),
        };
    }
    let id = path
        .strip_prefix("/api/orders/")
        .and_then(|id| id.parse::<u64>().ok());
    match id {
        Some(id) if method == Method::GET => match own_order(&state, &caller, id).await {
            Ok(order) => Json(order).into_response(),
            Err(response) => response,
        },
        _ => error(
            StatusCode::FORBIDDEN,
            "a user may only place and read their own orders",
        ),
    }
}

/// Order `id` if the caller may see it; else the answer (404 for another
/// user's order, as for a missing one).
async fn own_order(state: &GatewayState, caller: &Caller, id: u64) -> Result<Order, Response> {
    match OrderClient(state.orders.clone()).get(id).await {
        Ok(Some(order)) if caller.owns(order.user_id) => Ok(order),
        Ok(_) => Err(error(
            StatusCode::NOT_FOUND,
            format!("order {id} not found"),
        )),
        Err(e) => Err(error_response("order-service", &e)),
    }
}

/// An order with its user. If the user service fails, the order comes
/// alone with `"degraded": true`: the page can still show it.
pub(super) async fn order_with_user(
    State(state): State<GatewayState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<u64>,
) -> Response {
    let order = match own_order(&state, &caller, id).await {
        Ok(order) => order,
        Err(response) => return response,
    };
    let users = UserClient(state.users.clone());
    match users.get(order.user_id).await {
        Ok(user) => Json(serde_json::json!({ "order": order, "user": user, "degraded": false }))
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "user service failed; answering without the user");
            Json(serde_json::json!({ "order": order, "user": null, "degraded": true }))
                .into_response()
        }
    }
}
