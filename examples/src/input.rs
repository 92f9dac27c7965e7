//! What the services accept: JSON bodies up to [`BODY_LIMIT`], text
//! fields trimmed and capped, stores with a capacity; and the answers
//! when input is refused, bounded and free of library error texts.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// The largest request body a service or the gateway reads: 16 KiB. A
/// larger one is 413.
pub const BODY_LIMIT: usize = 16 * 1024;

/// The longest excerpt of a parser's message an answer quotes.
const MAX_DETAIL: usize = 200;

/// A JSON error body: `{"error": "..."}`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

/// The answer for a body that is not the JSON expected: 413 over
/// [`BODY_LIMIT`], 415 without a JSON content type, else 400 (or 422 for
/// well-formed JSON of the wrong shape) with at most 200 characters of
/// what the parser said (it may quote the input).
pub fn json_rejection(e: &JsonRejection) -> Response {
    let status = e.status();
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => error(
            status,
            format!("request body over {} KiB", BODY_LIMIT / 1024),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            error(status, "content-type must be application/json")
        }
        _ => {
            let detail: String = e.body_text().chars().take(MAX_DETAIL).collect();
            error(
                StatusCode::BAD_REQUEST,
                format!("invalid JSON body: {detail}"),
            )
        }
    }
}

/// `value` trimmed, if it has 1 to `max` characters and no control
/// character; else a message naming `field`.
pub fn text_field(field: &str, value: &str, max: usize) -> Result<String, String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(format!("{field} must not be empty"));
    }
    if trimmed.chars().count() > max {
        return Err(format!("{field} must be at most {max} characters"));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(format!("{field} must not contain control characters"));
    }
    Ok(trimmed.to_string())
}

/// A store at its capacity: nothing more is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreFull {
    /// What the store holds at most.
    pub capacity: usize,
}

impl std::fmt::Display for StoreFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "store full ({} entries)", self.capacity)
    }
}

impl std::error::Error for StoreFull {}

impl StoreFull {
    /// 507 Insufficient Storage: the request was fine, the example's
    /// in-memory store has no room (a real service puts a database with
    /// quotas behind the store).
    pub fn response(&self, what: &str) -> Response {
        error(
            StatusCode::INSUFFICIENT_STORAGE,
            format!("{what} store full ({} entries)", self.capacity),
        )
    }
}
