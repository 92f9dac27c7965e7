#![doc = include_str!("../../docs/deadline.md")]

mod bounded;
mod grpc;
mod layer;

use std::fmt;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use tokio::time::Instant;

pub(crate) use bounded::{Bounded, Cut};
pub use grpc::GRPC_TIMEOUT;
#[cfg(feature = "grpc")]
pub(crate) use grpc::from_header_value as grpc_timeout;
pub use layer::{DeadlineLayer, DeadlineService, ResponseFuture};

/// The time left before the caller's deadline, in whole milliseconds when
/// the request was sent. Relative, like gRPC's `grpc-timeout`, so the two
/// hosts' clocks need not agree; the network time of the hop is not
/// subtracted.
pub const DEADLINE: HeaderName = HeaderName::from_static("x-deadline-ms");

/// When a whole call, every attempt and backoff included, must be over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline(Instant);

impl Deadline {
    /// A deadline at `at`.
    pub fn at(at: Instant) -> Self {
        Deadline(at)
    }

    /// A deadline `after` from now.
    pub fn after(after: Duration) -> Self {
        Deadline(Instant::now() + after)
    }

    /// The instant.
    pub fn instant(&self) -> Instant {
        self.0
    }

    /// The time left, zero once it has passed.
    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// The time left at `now`, as the [`DEADLINE`] header's value.
    pub fn to_header_value(&self, now: Instant) -> HeaderValue {
        let ms = self.0.saturating_duration_since(now).as_millis() as u64;
        number_value(ms, None)
    }

    /// The deadline a [`DEADLINE`] header value gives, counted from `now`;
    /// `None` when it is not a whole number of milliseconds (surrounding
    /// spaces allowed). Values beyond a year are read as a year.
    pub fn from_header_value(value: &HeaderValue, now: Instant) -> Option<Deadline> {
        let text = value.to_str().ok()?.trim();
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let ms: u64 = text.parse().ok()?;
        // Far-future values saturate instead of overflowing the clock.
        let year = Duration::from_secs(86_400 * 365);
        Some(Deadline(now + Duration::from_millis(ms).min(year)))
    }

    /// The time left from `now`, as a [`GRPC_TIMEOUT`] value (`1500m`).
    pub fn to_grpc_timeout(&self, now: Instant) -> HeaderValue {
        grpc::to_header_value(self.0.saturating_duration_since(now))
    }

    /// The deadline a [`GRPC_TIMEOUT`] value gives, counted from `now`;
    /// `None` when it is not one (1 to 8 digits and a unit of `H`, `M`,
    /// `S`, `m`, `u`, `n`). Values beyond a year are read as a year.
    pub fn from_grpc_timeout(value: &HeaderValue, now: Instant) -> Option<Deadline> {
        Some(Deadline(now + grpc::from_header_value(value)?))
    }
}

/// A call's own time limit, counted from when it enters the
/// [`DeadlineLayer`] (for HTTP, in the request's extensions): a per-call
/// deadline, merged with the others there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout(pub Duration);

/// The whole call outlived its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeadlineExceeded;

impl fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline exceeded")
    }
}

impl std::error::Error for DeadlineExceeded {}

/// A request that carries a deadline.
///
/// Implemented for `http::Request<B>` (the [`Deadline`] and the per-call
/// [`Timeout`] are in its extensions). For your own request types, an empty
/// `impl HasDeadline for MyRequest {}` keeps the defaults: the request
/// carries nothing, so the [`DeadlineLayer`] still ends the call on time but
/// the layers below cannot read the deadline (the retry layer then plans
/// retries without regard to it).
pub trait HasDeadline {
    /// The deadline the request carries, if any.
    fn deadline(&self) -> Option<Deadline> {
        None
    }

    /// Sets the deadline the request carries.
    fn set_deadline(&mut self, deadline: Deadline) {
        let _ = deadline;
    }

    /// The request's own time limit, if it has one.
    fn timeout(&self) -> Option<Duration> {
        None
    }
}

impl<B> HasDeadline for http::Request<B> {
    #[inline]
    fn deadline(&self) -> Option<Deadline> {
        self.extensions().get::<Deadline>().copied()
    }

    #[inline]
    fn set_deadline(&mut self, deadline: Deadline) {
        self.extensions_mut().insert(deadline);
    }

    #[inline]
    fn timeout(&self) -> Option<Duration> {
        self.extensions().get::<Timeout>().map(|t| t.0)
    }
}

/// `n` in decimal, then `unit` if given, as a header value. Digits by hand
/// into one buffer: `HeaderValue::from(u64)` goes through a growing
/// `BytesMut`, and `format!` through the formatting machinery and a
/// `String`, each allocating on every call.
pub(crate) fn number_value(n: u64, unit: Option<u8>) -> HeaderValue {
    let mut text = [0u8; 21];
    let mut at = text.len();
    if let Some(unit) = unit {
        at -= 1;
        text[at] = unit;
    }
    let mut rest = n;
    loop {
        at -= 1;
        text[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    HeaderValue::from_bytes(&text[at..]).expect("ASCII digits and a unit")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_header_carries_whole_milliseconds_left() {
        let now = Instant::now();
        let d = Deadline::at(now + Duration::from_micros(1_500_900));
        assert_eq!(d.to_header_value(now), "1500");
        assert_eq!(
            Deadline::from_header_value(&HeaderValue::from_static("1500"), now),
            Some(Deadline::at(now + Duration::from_millis(1500)))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_header_writes_every_digit_of_long_and_round_values() {
        let now = Instant::now();
        for ms in [10u64, 100, 9_999, 31_536_000_000] {
            let d = Deadline::at(now + Duration::from_millis(ms));
            assert_eq!(d.to_header_value(now), ms.to_string().as_str());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_huge_header_value_is_capped_instead_of_overflowing_the_clock() {
        let now = Instant::now();
        let d = Deadline::from_header_value(&HeaderValue::from(u64::MAX), now).unwrap();
        assert_eq!(d.instant(), now + Duration::from_secs(86_400 * 365));
    }

    #[tokio::test(start_paused = true)]
    async fn a_header_that_is_not_whole_milliseconds_gives_no_deadline() {
        let now = Instant::now();
        for bad in ["", "-5", "1.5", "soon", "1e3"] {
            assert_eq!(
                Deadline::from_header_value(&HeaderValue::from_static(bad), now),
                None,
                "{bad:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_past_deadline_has_no_time_left() {
        let now = Instant::now();
        let d = Deadline::at(now);
        tokio::time::advance(Duration::from_millis(5)).await;
        assert_eq!(d.remaining(), Duration::ZERO);
        assert_eq!(d.to_header_value(Instant::now()), "0");
    }
}
