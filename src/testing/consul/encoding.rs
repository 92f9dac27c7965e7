//! gzip answers, as Consul's agent sends them to a client that asks: its
//! HTTP handlers are wrapped in `NYTimes/gziphandler`, which compresses
//! any answer when `Accept-Encoding` names `gzip` with a q-value above 0,
//! at Go's default level (6), and always sends `Vary: Accept-Encoding`.

use std::io::Write;

use axum::http::HeaderMap;
use axum::http::header::ACCEPT_ENCODING;
use bytes::Bytes;

/// A body larger than this is compressed on tokio's blocking pool.
const INLINE: usize = 64 * 1024;

/// Whether the request's `Accept-Encoding` accepts gzip: a `gzip` coding
/// whose `q` is above 0 (`q` defaults to 1). `*` does not count, as in
/// gziphandler.
pub(super) fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .map(|q| q.trim().parse::<f64>().unwrap_or(0.0))
                .next()
                .unwrap_or(1.0);
            name.eq_ignore_ascii_case("gzip") && q > 0.0
        })
}

/// `plain` gzipped at the default level; off the runtime when large.
pub(super) async fn gzip(plain: Bytes) -> Bytes {
    if plain.len() <= INLINE {
        return compress(&plain);
    }
    tokio::task::spawn_blocking(move || compress(&plain))
        .await
        .expect("gzip does not panic")
}

fn compress(plain: &[u8]) -> Bytes {
    let mut e = flate2::write::GzEncoder::new(
        Vec::with_capacity(plain.len() / 8 + 64),
        flate2::Compression::default(),
    );
    e.write_all(plain).expect("writing to memory");
    Bytes::from(e.finish().expect("writing to memory"))
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use axum::http::HeaderValue;

    use super::*;

    fn asks(value: &str) -> bool {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT_ENCODING, HeaderValue::from_str(value).unwrap());
        accepts_gzip(&h)
    }

    #[test]
    fn gzip_is_accepted_when_named_with_a_positive_q() {
        assert!(asks("gzip"));
        assert!(asks("br, GZIP;q=0.5"));
        assert!(!asks("gzip;q=0"));
        assert!(!asks("identity"));
        assert!(!asks("*"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[tokio::test]
    async fn a_large_body_is_compressed_and_inflates_back() {
        let plain = Bytes::from(b"[{\"Node\":1}]".repeat(20_000));
        let gz = gzip(plain.clone()).await;
        assert!(gz.len() < plain.len() / 20);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, plain);
    }
}
