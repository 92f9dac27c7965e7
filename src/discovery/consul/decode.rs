//! From an answer's body to instances: gunzip within the bound, then
//! `serde_json::from_slice` into rs-consul's `ServiceNode`s, from
//! contiguous bytes.

use std::io::Read;

use rs_consul::ServiceNode;

use super::transport::{Answer, too_large};

/// JSON up to this size is parsed on the tokio worker, in well under a
/// millisecond (`serde_json` parses Consul's answers at about 850 MB/s on
/// the development machine); larger answers are decoded on tokio's
/// blocking pool, so no worker waits on a fleet's answer.
const INLINE_JSON: usize = 64 * 1024;

/// A gzip body at most this long is decoded inline: Consul's answers
/// compress 20 to 50 times (at most about 100 KiB of JSON here), and
/// deflate's own limit (1032 to 1) keeps even a pathological one near
/// 2 MiB, a few milliseconds.
const INLINE_GZIP: usize = 2 * 1024;

/// Whether decoding `answer` belongs on the blocking pool rather than on a
/// tokio worker.
pub(super) fn is_large(answer: &Answer) -> bool {
    if answer.gzip {
        answer.body.len() > INLINE_GZIP
    } else {
        answer.body.len() > INLINE_JSON
    }
}

/// The instances of a health answer; an answer that is not one is an
/// error in words, never a panic.
pub(super) fn service_nodes(answer: &Answer, max: usize) -> Result<Vec<ServiceNode>, String> {
    let inflated;
    let json: &[u8] = if answer.gzip {
        inflated = inflate(&answer.body, max)?;
        &inflated
    } else {
        &answer.body
    };
    serde_json::from_slice(json).map_err(|e| {
        format!("the answer is not a health service list (could not deserialize it: {e})")
    })
}

/// A gzip body decompressed, at most `max` bytes of it (an error naming
/// `max_body_size` beyond).
pub(super) fn inflate(gz: &[u8], max: usize) -> Result<Vec<u8>, String> {
    // The trailer's ISIZE (the length mod 2^32) sizes the buffer at once.
    let hint = match gz.len().checked_sub(4) {
        Some(at) if gz.len() >= 18 => {
            u32::from_le_bytes([gz[at], gz[at + 1], gz[at + 2], gz[at + 3]]) as usize
        }
        _ => 0,
    };
    let mut out = Vec::with_capacity(hint.min(max));
    flate2::read::GzDecoder::new(gz)
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("the answer's gzip body is corrupt: {e}"))?;
    if out.len() > max {
        return Err(too_large(max));
    }
    Ok(out)
}

/// The first `n` bytes of a gzip body, or as much as decodes.
pub(super) fn inflate_prefix(gz: &[u8], n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut decoder = flate2::read::GzDecoder::new(gz).take(n as u64);
    let mut chunk = [0u8; 256];
    while let Ok(read) = decoder.read(&mut chunk) {
        if read == 0 {
            break;
        }
        out.extend_from_slice(&chunk[..read]);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use bytes::Bytes;

    use super::*;

    fn gzip(data: &[u8]) -> Bytes {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        Bytes::from(e.finish().unwrap())
    }

    fn sample() -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/consul/health-service-wire.json",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(path).unwrap()
    }

    #[test]
    fn a_gzip_answer_is_inflated_and_parsed() {
        let answer = Answer {
            index: 3,
            body: gzip(&sample()),
            gzip: true,
        };
        let nodes = service_nodes(&answer, 1 << 20).unwrap();
        assert_eq!(nodes.len(), 1);
        assert!(!nodes[0].service.id.is_empty());
    }

    #[test]
    fn an_answer_inflating_past_the_bound_is_an_error_naming_max_body_size() {
        let answer = Answer {
            index: 3,
            body: gzip(&vec![b' '; 10_000]),
            gzip: true,
        };
        let err = service_nodes(&answer, 9_999).unwrap_err();
        assert!(err.contains("max_body_size"), "{err}");
    }

    #[test]
    fn a_corrupt_gzip_body_is_an_error() {
        let answer = Answer {
            index: 3,
            body: Bytes::from_static(b"\x1f\x8b\x08\x00garbage"),
            gzip: true,
        };
        assert!(
            service_nodes(&answer, 1 << 20)
                .unwrap_err()
                .contains("gzip")
        );
    }

    #[test]
    fn only_large_answers_leave_the_worker() {
        let answer = |len: usize, gzip: bool| Answer {
            index: 1,
            body: Bytes::from(vec![0; len]),
            gzip,
        };
        assert!(!is_large(&answer(64 * 1024, false)));
        assert!(is_large(&answer(64 * 1024 + 1, false)));
        assert!(!is_large(&answer(2048, true)));
        assert!(is_large(&answer(2049, true)));
    }

    #[test]
    fn a_message_is_inflated_in_part() {
        assert_eq!(
            inflate_prefix(&gzip(b"permission denied"), 10),
            b"permission"
        );
    }
}
