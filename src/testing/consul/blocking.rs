//! Blocking queries (§2) and the read headers (§3) for the endpoints added
//! beside `/v1/health/service`: the catalog, `/v1/health/checks` and the
//! agent's read endpoints.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

use super::ConsulRegistry;
use super::params::{bad_request, param, parse_go_duration};
use super::state::DATACENTER;

/// The longest blocking wait (Consul's `maxQueryTime`).
const MAX_WAIT: Duration = Duration::from_secs(600);
/// The wait of a blocking query that names none (`defaultQueryTime`).
const DEFAULT_WAIT: Duration = Duration::from_secs(300);

/// When a blocking query received at `now` with `wait` (none: the
/// default) answers if nothing changed: the wait, at most [`MAX_WAIT`],
/// plus a random jitter of up to 1/16 of it (§2).
pub(super) fn gives_up_at(now: Instant, wait: Option<Duration>) -> Instant {
    let timeout = match wait {
        Some(w) if w > MAX_WAIT => MAX_WAIT,
        Some(w) if !w.is_zero() => w,
        _ => DEFAULT_WAIT,
    };
    let jitter = Duration::from_nanos(fastrand::u64(0..=(timeout.as_nanos() / 16) as u64));
    now + timeout + jitter
}

/// Checks `dc`, `stale`/`consistent`, and, when `index` is given, waits
/// until the registry's index differs from it or the wait (plus up to
/// 1/16 jitter) ends, as §2 says. An `Err` is the answer to send.
pub(super) async fn block(reg: &ConsulRegistry, ps: &[(String, String)]) -> Result<(), Response> {
    let index = match param(ps, "index") {
        None => 0,
        Some(v) => v.parse::<u64>().map_err(|_| bad_request("Invalid index"))?,
    };
    let wait = match param(ps, "wait") {
        None => None,
        Some(v) => Some(parse_go_duration(v).ok_or_else(|| bad_request("Invalid wait time"))?),
    };
    if param(ps, "stale").is_some() && param(ps, "consistent").is_some() {
        return Err(bad_request(
            "Cannot specify ?stale with ?consistent, conflicting semantics.",
        ));
    }
    if let Some(dc) = param(ps, "dc") {
        if !dc.is_empty() && dc != DATACENTER {
            return Err(
                (StatusCode::INTERNAL_SERVER_ERROR, "No path to datacenter").into_response()
            );
        }
    }
    if index == 0 {
        return Ok(());
    }
    let deadline = gives_up_at(Instant::now(), wait);
    let mut changes = reg.subscribe();
    loop {
        if reg.lock().index != index {
            return Ok(());
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return Ok(()) },
            _ = tokio::time::sleep_until(deadline) => return Ok(()),
        }
    }
}

/// A JSON answer with the headers of a read (§3), `X-Consul-Index` never 0.
pub(super) fn json_answer(index: u64, ps: &[(String, String)], body: String) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert("Content-Type", HeaderValue::from_static("application/json"));
    headers.insert("X-Consul-Index", HeaderValue::from(index.max(1)));
    headers.insert("X-Consul-Knownleader", HeaderValue::from_static("true"));
    headers.insert("X-Consul-Lastcontact", HeaderValue::from_static("0"));
    headers.insert(
        "X-Consul-Effective-Consistency",
        HeaderValue::from_static(if param(ps, "stale").is_some() {
            "stale"
        } else {
            "leader"
        }),
    );
    (StatusCode::OK, headers, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The range of `gives_up_at(now, wait)` over many draws.
    fn range(wait: Option<Duration>) -> (Duration, Duration) {
        let now = Instant::now();
        let waits: Vec<Duration> = (0..2_000).map(|_| gives_up_at(now, wait) - now).collect();
        (*waits.iter().min().unwrap(), *waits.iter().max().unwrap())
    }

    #[test]
    fn a_wait_is_kept_with_up_to_a_sixteenth_more() {
        let (min, max) = range(Some(Duration::from_secs(1)));
        assert!(min >= Duration::from_secs(1), "{min:?}");
        assert!(
            max <= Duration::from_millis(1_062) + Duration::from_micros(500),
            "{max:?}"
        );
        // Jittered, not fixed.
        assert!(max > min);
    }

    #[test]
    fn no_wait_or_zero_is_the_default_and_a_long_one_is_capped() {
        for wait in [None, Some(Duration::ZERO)] {
            let (min, max) = range(wait);
            assert!(min >= DEFAULT_WAIT && max <= DEFAULT_WAIT + DEFAULT_WAIT / 16);
        }
        let (min, max) = range(Some(Duration::from_secs(3_600)));
        assert!(min >= MAX_WAIT && max <= MAX_WAIT + MAX_WAIT / 16);
    }
}
