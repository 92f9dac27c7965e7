//! Optional ACL enforcement (§5): when the registry is started with a
//! required token, a request must carry it (`X-Consul-Token`,
//! `Authorization: Bearer`, or the deprecated `?token=`), else 403. The
//! token never reaches a `Debug` output or an answer.

use std::fmt;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ConsulRegistry;

/// A required ACL token; `Debug` prints it redacted.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct AclToken(String);

impl AclToken {
    pub(super) fn new(token: String) -> Self {
        AclToken(token)
    }

    /// Compares without stopping at the first differing byte.
    fn matches(&self, offered: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), offered.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl fmt::Debug for AclToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AclToken(<redacted>)")
    }
}

/// The token a request offers, in Consul's precedence: `?token=`, then
/// `X-Consul-Token`, then `Authorization: Bearer`.
fn offered(req: &Request) -> Option<String> {
    let from_query = req.uri().query().and_then(|q| {
        q.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == "token").then(|| percent_decode(v))
        })
    });
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    from_query
        .filter(|t| !t.is_empty())
        .or_else(|| header("x-consul-token").filter(|t| !t.is_empty()))
        .or_else(|| {
            header("authorization")
                .and_then(|v| v.strip_prefix("Bearer ").map(|t| t.trim().to_string()))
                .filter(|t| !t.is_empty())
        })
}

fn percent_decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The middleware: passes a request with the required token (or any
/// request when none is required); `/v1/status/*` needs no token, as in
/// Consul. Without a token the answer is 403 `Permission denied` (the
/// anonymous token may do nothing); with another token 403 `ACL not found`.
pub(super) async fn enforce(
    State(reg): State<ConsulRegistry>,
    req: Request,
    next: Next,
) -> Response {
    let Some(required) = reg.acl_token() else {
        return next.run(req).await;
    };
    if req.uri().path().starts_with("/v1/status/") {
        return next.run(req).await;
    }
    match offered(&req) {
        Some(t) if required.matches(&t) => next.run(req).await,
        Some(_) => (StatusCode::FORBIDDEN, "ACL not found").into_response(),
        None => (
            StatusCode::FORBIDDEN,
            "Permission denied: anonymous token lacks permission (the registry requires an ACL token)",
        )
            .into_response(),
    }
}
