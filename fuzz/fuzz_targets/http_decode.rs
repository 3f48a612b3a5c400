//! Arbitrary bytes, cut into reads at arbitrary points, through
//! `HttpProtocol`'s decode loop as the reactor drives it; whatever comes
//! out is answered and encoded. Nothing may panic, every error maps to a
//! 4xx/5xx status, and what is encoded starts with a valid status line.
//!
//! From `fuzz/`, with the seeds (well-formed requests) and the dictionary:
//!
//! ```text
//! mkdir -p corpus/http_decode
//! cargo +nightly fuzz run http_decode corpus/http_decode seeds/http_decode -- \
//!     -dict=http.dict -max_total_time=120
//! ```

#![no_main]

use libfuzzer_sys::fuzz_target;
use milieu::http::{HttpLimits, HttpProtocol, Response};
use milieu::reactor::Protocol;

/// The fuzzer's bytes, read as:
///
/// - one control byte: bits 0-3 the number of cuts `n`, bit 4 small limits;
/// - with small limits, 5 bytes: header bytes (u16 LE), header fields,
///   body bytes (u16 LE);
/// - `n` cut points (u16 LE each, taken modulo the stream's length);
/// - the stream: the rest.
///
/// Missing bytes read as zero, so every input is valid; a seed is a
/// request with a `\0` in front.
struct Input<'a> {
    limits: HttpLimits,
    cuts: Vec<u16>,
    bytes: &'a [u8],
}

impl<'a> Input<'a> {
    fn read(mut data: &'a [u8]) -> Input<'a> {
        let mut byte = || match data.split_first() {
            Some((&b, rest)) => {
                data = rest;
                b
            }
            None => 0,
        };
        let control = byte();
        let limits = if control & 0x10 != 0 {
            let header_bytes = u16_le(&mut byte);
            let fields = byte();
            let body = u16_le(&mut byte);
            HttpLimits::new()
                .with_max_header_bytes(usize::from(header_bytes))
                .with_max_headers(usize::from(fields % 64))
                .with_max_body(usize::from(body))
        } else {
            HttpLimits::new()
        };
        let cuts = (0..control & 0x0f).map(|_| u16_le(&mut byte)).collect();
        Input {
            limits,
            cuts,
            bytes: data,
        }
    }
}

fn u16_le(byte: &mut dyn FnMut() -> u8) -> u16 {
    u16::from_le_bytes([byte(), byte()])
}

fuzz_target!(|data: &[u8]| {
    let input = Input::read(data);
    let limits = input.limits;
    let mut protocol = HttpProtocol::with_limits(limits);
    let mut buffer = Vec::new();
    let mut output = Vec::new();
    let chunks = cut(input.bytes, &input.cuts);
    let last = chunks.len() - 1;
    let mut answered = 0usize;

    'reads: for (i, chunk) in chunks.iter().enumerate() {
        buffer.extend_from_slice(chunk);
        loop {
            let decoded = if i == last {
                protocol.decode_eof(&buffer)
            } else {
                protocol.decode(&buffer)
            };
            match decoded {
                Ok(Some((request, consumed))) => {
                    assert!(
                        consumed > 0 && consumed <= buffer.len(),
                        "consumed {consumed}"
                    );
                    buffer.drain(..consumed);
                    answered += 1;
                    // Every third handler "panics".
                    let response = if answered.is_multiple_of(3) {
                        protocol.panic_response().expect("HTTP answers panics")
                    } else {
                        Response::text(200, request.path())
                            .with_header("X-Method", request.method())
                            .with_header("X-Query", request.query().unwrap_or_default())
                            .with_body(request.into_body())
                    };
                    protocol.encode(response, &mut output);
                    if protocol.closing() {
                        break 'reads;
                    }
                }
                Ok(None) => {
                    protocol.interim(&mut output);
                    break;
                }
                Err(error) => {
                    assert!((400..=599).contains(&error.status()), "{error:?}");
                    let _ = error.to_string();
                    let response = protocol
                        .error_response(&error)
                        .expect("HTTP answers errors");
                    protocol.encode(response, &mut output);
                    assert!(protocol.closing());
                    break 'reads;
                }
            }
        }
    }
    // A request left incomplete: the read timeout's answer.
    if !protocol.closing() && !buffer.is_empty() {
        if let Some(response) = protocol.timeout_response() {
            protocol.encode(response, &mut output);
        }
    }

    if !output.is_empty() {
        let mut fields = [httparse::EMPTY_HEADER; 16];
        let mut parsed = httparse::Response::new(&mut fields);
        match parsed.parse(&output) {
            Ok(httparse::Status::Complete(_)) => {}
            other => panic!(
                "invalid response {other:?}: {:?}",
                String::from_utf8_lossy(&output)
            ),
        }
    }
});

/// `bytes` cut at `cuts` (modulo its length): at least one chunk.
fn cut<'a>(bytes: &'a [u8], cuts: &[u16]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|&c| usize::from(c) % (bytes.len() + 1))
        .collect();
    points.sort_unstable();
    points.dedup();
    let mut chunks = Vec::with_capacity(points.len() + 1);
    let mut start = 0;
    for point in points.into_iter().chain([bytes.len()]) {
        chunks.push(&bytes[start..point]);
        start = point;
    }
    chunks
}
