//! Reading `Retry-After`.

use std::time::{Duration, SystemTime};

/// Parses a `Retry-After` value: delay-seconds or an HTTP date (RFC 9110
/// section 10.2.3), relative to `now`. A date in the past is a zero delay;
/// anything unparseable is `None`.
pub fn parse_retry_after(value: &[u8], now: SystemTime) -> Option<Duration> {
    let text = std::str::from_utf8(value).ok()?.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<u64>().ok().map(Duration::from_secs);
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_delay_seconds() {
        let now = SystemTime::UNIX_EPOCH;
        assert_eq!(
            parse_retry_after(b"120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(b" 0 ", now), Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_reads_an_http_date_relative_to_now() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            parse_retry_after(b"Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after(b"Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn retry_after_rejects_garbage() {
        let now = SystemTime::UNIX_EPOCH;
        for bad in [&b""[..], b"-5", b"1.5", b"soon", b"\xff\xfe"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }
}
