//! [`TraceState`]: the W3C `tracestate` value, checked and passed on as
//! it came.

use std::fmt;

use http::{HeaderMap, HeaderValue};

use super::TRACESTATE;

/// The most list members a `tracestate` may have (W3C trace context).
pub const TRACESTATE_MAX_MEMBERS: usize = 32;
/// The longest `tracestate` passed on, in characters (W3C: vendors
/// propagate at least 512; longer ones are dropped here, not cut).
pub const TRACESTATE_MAX_LEN: usize = 512;

/// A W3C `tracestate` value (vendor-specific trace data, `key=value` list
/// members separated by commas), checked against the spec's grammar and
/// limits and then passed on unchanged.
///
/// [`PropagationLayer`](super::PropagationLayer) reads it from an incoming
/// request that also has a valid `traceparent` (the spec ties the two); a
/// `ServiceClient` and the reqwest middleware send it beside the
/// `traceparent` on every attempt.
///
/// ```
/// use meshguard::propagation::TraceState;
///
/// let state = TraceState::parse(b"congo=t61rcWkgMzE,rojo=00f067aa0ba902b7").unwrap();
/// assert_eq!(state.as_str(), "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
/// assert_eq!(TraceState::parse(b"Upper=1"), None);
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TraceState(HeaderValue);

impl TraceState {
    /// Checks a `tracestate` value. Rejects (with `None`) one longer than
    /// [`TRACESTATE_MAX_LEN`], with more than [`TRACESTATE_MAX_MEMBERS`]
    /// list members, a member that is not `key=value` by the spec's
    /// grammar, a key given twice, or no member at all.
    pub fn parse(value: &[u8]) -> Option<TraceState> {
        if !valid(value) {
            return None;
        }
        HeaderValue::from_bytes(value).ok().map(TraceState)
    }

    /// As [`parse`](Self::parse), keeping `value` itself (a header value
    /// is shared, not copied).
    pub fn from_header_value(value: &HeaderValue) -> Option<TraceState> {
        valid(value.as_bytes()).then(|| TraceState(value.clone()))
    }

    /// The `tracestate` of `headers`: several header lines are one list,
    /// joined with commas (as the spec says to read them).
    pub(crate) fn from_headers(headers: &HeaderMap) -> Option<TraceState> {
        let mut values = headers.get_all(TRACESTATE).iter();
        let first = values.next()?;
        let Some(second) = values.next() else {
            return TraceState::from_header_value(first);
        };
        let mut joined = Vec::with_capacity(TRACESTATE_MAX_LEN);
        for value in [first, second].into_iter().chain(values) {
            if !joined.is_empty() {
                joined.push(b',');
            }
            joined.extend_from_slice(value.as_bytes());
            if joined.len() > TRACESTATE_MAX_LEN {
                return None;
            }
        }
        TraceState::parse(&joined)
    }

    /// The value as text.
    pub fn as_str(&self) -> &str {
        // Checked to be printable ASCII.
        self.0.to_str().expect("checked: printable ASCII")
    }

    /// The header value (shared, not copied).
    pub fn to_header_value(&self) -> HeaderValue {
        self.0.clone()
    }
}

impl fmt::Display for TraceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for TraceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// The W3C grammar: `list = list-member 0*31( OWS "," OWS list-member )`,
/// empty members allowed (and not counted), keys unique.
fn valid(value: &[u8]) -> bool {
    if value.len() > TRACESTATE_MAX_LEN {
        return false;
    }
    let mut keys: [&[u8]; TRACESTATE_MAX_MEMBERS] = [&[]; TRACESTATE_MAX_MEMBERS];
    let mut members = 0;
    for member in value.split(|&b| b == b',') {
        let member = member.trim_ascii_start().trim_ascii_end();
        if member.is_empty() {
            continue;
        }
        if members == TRACESTATE_MAX_MEMBERS {
            return false;
        }
        let Some(eq) = member.iter().position(|&b| b == b'=') else {
            return false;
        };
        let (key, value) = (&member[..eq], &member[eq + 1..]);
        if !valid_key(key) || !valid_value(value) || keys[..members].contains(&key) {
            return false;
        }
        keys[members] = key;
        members += 1;
    }
    members > 0
}

/// `simple-key = lcalpha 0*255( lcalpha / DIGIT / "_" / "-"/ "*" / "/" )`
/// or `tenant-id "@" system-id`, the tenant up to 241 characters starting
/// with a letter or digit, the system up to 14 starting with a letter.
fn valid_key(key: &[u8]) -> bool {
    match key.iter().position(|&b| b == b'@') {
        None => valid_key_part(key, 256, false),
        Some(at) => {
            valid_key_part(&key[..at], 241, true) && valid_key_part(&key[at + 1..], 14, false)
        }
    }
}

fn valid_key_part(part: &[u8], max: usize, digit_first: bool) -> bool {
    let Some((&first, rest)) = part.split_first() else {
        return false;
    };
    part.len() <= max
        && (first.is_ascii_lowercase() || (digit_first && first.is_ascii_digit()))
        && rest.iter().all(|&b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'*' | b'/')
        })
}

/// `value = 0*255(chr) nblk-chr`: printable ASCII but `,` and `=`, spaces
/// inside only (the member was trimmed, so it does not end in one).
fn valid_value(value: &[u8]) -> bool {
    !value.is_empty()
        && value.len() <= 256
        && value
            .iter()
            .all(|&b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_tracestate_is_kept_as_it_came() {
        for text in [
            "congo=t61rcWkgMzE",
            "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
            "rojo=00f067aa0ba902b7 ,\t congo=t61rcWkgMzE",
            "tenant1@vendor=a b c",
            "0tenant@vendor=x",
            "a=1,,b=2",
        ] {
            let state = TraceState::parse(text.as_bytes()).expect(text);
            assert_eq!(state.as_str(), text);
        }
    }

    #[test]
    fn a_malformed_tracestate_is_rejected() {
        for bad in [
            "",
            " , ",
            "novalue",
            "Upper=1",
            "1digitfirst=1",
            "k=",
            "k=a=b",
            "k=trailing\u{7f}",
            "a=1,a=2",
            "tenant@Vendor=1",
            "tenant@vendorwaytoolong=1",
            "@vendor=1",
            "tenant@=1",
        ] {
            assert_eq!(TraceState::parse(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn thirty_two_members_are_kept_and_thirty_three_dropped() {
        let list = |n: usize| {
            (0..n)
                .map(|i| format!("k{i}=v"))
                .collect::<Vec<_>>()
                .join(",")
        };
        assert!(TraceState::parse(list(32).as_bytes()).is_some());
        assert_eq!(TraceState::parse(list(33).as_bytes()), None);
    }

    #[test]
    fn five_hundred_twelve_characters_are_kept_and_more_dropped() {
        let member = |key: &str, n: usize| format!("{key}={}", "v".repeat(n - 2));
        // One member's value is at most 256 characters: two members.
        let long = |n: usize| format!("{},{}", member("a", 256), member("b", n - 257));
        assert!(TraceState::parse(long(512).as_bytes()).is_some());
        assert_eq!(TraceState::parse(long(513).as_bytes()), None);
    }

    #[test]
    fn several_header_lines_are_one_list() {
        let mut headers = HeaderMap::new();
        headers.append(TRACESTATE, HeaderValue::from_static("a=1"));
        headers.append(TRACESTATE, HeaderValue::from_static("b=2"));
        let state = TraceState::from_headers(&headers).unwrap();
        assert_eq!(state.as_str(), "a=1,b=2");
    }

    #[test]
    fn several_header_lines_with_a_key_twice_are_dropped() {
        let mut headers = HeaderMap::new();
        headers.append(TRACESTATE, HeaderValue::from_static("a=1"));
        headers.append(TRACESTATE, HeaderValue::from_static("a=2"));
        assert_eq!(TraceState::from_headers(&headers), None);
    }
}
