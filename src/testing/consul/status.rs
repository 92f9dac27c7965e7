//! `GET /v1/status/leader` and `/v1/status/peers`: the one server this
//! registry pretends to be, at Consul's server RPC port. No token needed.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

const SERVER: &str = "\"127.0.0.1:8300\"";

/// `GET /v1/status/leader`: `"127.0.0.1:8300"`.
pub(super) async fn leader() -> Response {
    json(SERVER.to_string())
}

/// `GET /v1/status/peers`: `["127.0.0.1:8300"]`.
pub(super) async fn peers() -> Response {
    json(format!("[{SERVER}]"))
}

fn json(body: String) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}
