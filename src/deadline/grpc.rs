//! `grpc-timeout`: the deadline as gRPC carries it, beside
//! [`DEADLINE`](super::DEADLINE) (`x-deadline-ms`).

use std::time::Duration;

use http::{HeaderName, HeaderValue};

/// The `grpc-timeout` header: the time left, as gRPC writes it (at most 8
/// digits and a unit: `H`, `M`, `S`, `m`, `u`, `n`).
pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// `left` as a `grpc-timeout` value: the finest unit whose count fits in 8
/// digits (milliseconds for anything under a day).
pub(crate) fn to_header_value(left: Duration) -> HeaderValue {
    const MAX: u128 = 99_999_999;
    let nanos = left.as_nanos();
    let (count, unit) = [
        (nanos / 1_000_000, 'm'),
        (nanos / 1_000_000_000, 'S'),
        (nanos / 60_000_000_000, 'M'),
        (nanos / 3_600_000_000_000, 'H'),
    ]
    .into_iter()
    .find(|(count, _)| *count <= MAX)
    .unwrap_or((MAX, 'H'));
    super::number_value(count as u64, Some(unit as u8))
}

/// The time a `grpc-timeout` value gives, or `None` if it is not one (1 to
/// 8 digits and a unit). Values beyond a year are read as a year.
pub(crate) fn from_header_value(value: &HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?;
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let count: u64 = digits.parse().ok()?;
    let left = match unit {
        "H" => Duration::from_secs(count.checked_mul(3600)?),
        "M" => Duration::from_secs(count.checked_mul(60)?),
        "S" => Duration::from_secs(count),
        "m" => Duration::from_millis(count),
        "u" => Duration::from_micros(count),
        "n" => Duration::from_nanos(count),
        _ => return None,
    };
    Some(left.min(Duration::from_secs(86_400 * 365)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_is_written_in_milliseconds_when_it_fits() {
        assert_eq!(to_header_value(Duration::from_millis(1500)), "1500m");
        assert_eq!(to_header_value(Duration::from_secs(86_399)), "86399000m");
        assert_eq!(to_header_value(Duration::from_secs(200_000)), "200000S");
        assert_eq!(to_header_value(Duration::ZERO), "0m");
    }

    #[test]
    fn every_unit_is_read() {
        let read = |s: &'static str| from_header_value(&HeaderValue::from_static(s));
        assert_eq!(read("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(read("3M"), Some(Duration::from_secs(180)));
        assert_eq!(read("4S"), Some(Duration::from_secs(4)));
        assert_eq!(read("250m"), Some(Duration::from_millis(250)));
        assert_eq!(read("7u"), Some(Duration::from_micros(7)));
        assert_eq!(read("9n"), Some(Duration::from_nanos(9)));
        assert_eq!(read("99999999H"), Some(Duration::from_secs(86_400 * 365)));
    }

    #[test]
    fn malformed_values_are_not_timeouts() {
        for bad in ["", "m", "10", "10x", "123456789m", "-1m", "1.5S", " 1S"] {
            assert_eq!(
                from_header_value(&HeaderValue::from_static(bad)),
                None,
                "{bad:?}"
            );
        }
    }
}
