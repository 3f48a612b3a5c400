//! Arbitrary `traceparent`, `tracestate`, `baggage` and `milieu-origin`
//! field values through `milieu::remote`: extracted by a `Propagation`
//! that carries two types, installed, injected into an outbound request,
//! and extracted again; and extracted as from another process (with the
//! caller's `milieu-origin` and install sites read and sent), installed,
//! dumped and injected. Nothing may panic; every size stays within its
//! limit; what was extracted, written out, reads back the same.
//!
//! From `fuzz/`, with the seeds and the dictionary:
//!
//! ```text
//! mkdir -p corpus/w3c_headers
//! cargo +nightly fuzz run w3c_headers corpus/w3c_headers seeds/w3c_headers -- \
//!     -dict=w3c_headers.dict -max_total_time=120
//! ```

#![no_main]

use libfuzzer_sys::fuzz_target;
use milieu::remote::{
    Baggage, BaggageLimits, DecodeError, ParsedBaggage, Propagation, TraceContext, TraceState,
};

/// Carried through `#[derive(Baggage)]`: `Display` and `FromStr` of `u8`.
#[derive(Baggage)]
#[baggage(key = "tier")]
struct Tier(u8);

/// Carried by hand: any text but the empty one.
struct Tag(String);

impl Baggage for Tag {
    const KEY: &'static str = "tag";

    fn encode(&self, out: &mut String) {
        out.push_str(&self.0);
    }

    fn decode(value: &str) -> Result<Self, DecodeError> {
        if value.is_empty() {
            return Err(DecodeError::new("an empty tag"));
        }
        Ok(Tag(value.to_owned()))
    }
}

/// The fuzzer's bytes, read as text (lossy UTF-8), one field per line:
/// the first character says which header (`p` traceparent, `s`
/// tracestate, `b` baggage, `o` milieu-origin; other lines are ignored),
/// the rest is the
/// value. A first line of `!` raises the baggage limits above the spec's
/// minimums.
struct Input {
    traceparent: Vec<String>,
    tracestate: Vec<String>,
    baggage: Vec<String>,
    origin: Vec<String>,
    limits: BaggageLimits,
}

impl Input {
    fn read(data: &[u8]) -> Input {
        let text = String::from_utf8_lossy(data);
        let mut input = Input {
            traceparent: Vec::new(),
            tracestate: Vec::new(),
            baggage: Vec::new(),
            origin: Vec::new(),
            limits: BaggageLimits::new(),
        };
        for (i, line) in text.split('\n').enumerate() {
            let mut chars = line.chars();
            let Some(kind) = chars.next() else { continue };
            let value = chars.as_str().to_owned();
            match kind {
                '!' if i == 0 => {
                    input.limits = BaggageLimits::new()
                        .with_max_members(100)
                        .with_max_bytes(12_000)
                }
                'p' => input.traceparent.push(value),
                's' => input.tracestate.push(value),
                'b' => input.baggage.push(value),
                'o' => input.origin.push(value),
                _ => {}
            }
        }
        input
    }
}

fn strs(values: &[String]) -> Vec<&str> {
    values.iter().map(String::as_str).collect()
}

fuzz_target!(|data: &[u8]| {
    let input = Input::read(data);
    let limits = input.limits;
    let (traceparent, tracestate, baggage) = (
        strs(&input.traceparent),
        strs(&input.tracestate),
        strs(&input.baggage),
    );

    // The formats on their own.
    let parsed = ParsedBaggage::parse(&baggage, &limits);
    let read = parsed.members().len() + parsed.malformed().len();
    assert!(read <= limits.max_members(), "{read} members read");
    let kept: usize = parsed.members().iter().map(|m| m.encoded().len() + 1).sum();
    assert!(kept <= limits.max_bytes() + 1, "{kept} bytes kept");
    if let Ok(state) = TraceState::parse(&tracestate) {
        assert!(state.len() <= TraceState::MAX_MEMBERS);
        check_tracestate_header(&state);
    }
    let _ = TraceContext::extract_all(&traceparent, &tracestate);

    // Through a propagation: extract, install, inject.
    let propagation = Propagation::new()
        .carry::<Tier>()
        .carry::<Tag>()
        .with_baggage_limits(limits);
    check_from_process(&propagation, &input);
    let incoming = propagation.extract(&traceparent, &tracestate, &baggage);
    if let Some(warning) = incoming.warning() {
        // One log line, of bounded length whatever the input.
        assert!(warning.len() < 4096, "a warning of {} bytes", warning.len());
    }
    let context = incoming.trace().context().clone();
    check_tracestate_header(context.state());
    // Arrival order is the sender's; `inject` writes carried types in
    // `carry` order: compare as sets.
    let mut arrived: Vec<&'static str> = incoming.arrived().iter().map(|a| a.key()).collect();
    arrived.sort_unstable();
    let forwarded = incoming.forwarded().clone();

    let mut sent: Vec<(&'static str, String)> = Vec::new();
    let injected = incoming
        .into_scope(milieu::scope())
        .run(|| propagation.inject(&mut |name, value| sent.push((name, value.to_owned()))));
    // What was read within the limits is written within them: nothing
    // needs to be skipped.
    assert!(
        injected.skipped().is_empty(),
        "skipped {:?}",
        injected.skipped()
    );
    let field = |name: &str| -> Vec<&str> {
        sent.iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let (traceparent, tracestate, baggage) =
        (field("traceparent"), field("tracestate"), field("baggage"));
    assert_eq!(traceparent.len(), 1);
    assert_eq!(traceparent[0].len(), 55);
    assert!(tracestate.len() <= 1 && baggage.len() <= 1);
    if let Some(state) = tracestate.first() {
        assert!(state.len() <= TraceState::MAX_HEADER_LEN);
    }
    if let Some(baggage) = baggage.first() {
        assert!(baggage.len() <= limits.max_bytes());
    }

    // ... and read back: the same trace, state (as sent), baggage.
    let again = propagation.extract(&traceparent, &tracestate, &baggage);
    let trace = again.trace();
    assert!(trace.is_continued(), "{:?}", trace.origin());
    assert_eq!(trace.tracestate_issue(), None);
    assert_eq!(trace.context().trace_id(), context.trace_id());
    assert_eq!(
        trace.context().parent_id(),
        Some(injected.trace().span_id())
    );
    assert_eq!(trace.context().flags(), context.flags());
    let state_sent = match context.tracestate() {
        Some(header) => TraceState::parse(&[&header]).expect("a valid tracestate is sent"),
        None => TraceState::new(),
    };
    assert_eq!(trace.context().state(), &state_sent);
    assert_eq!(again.forwarded(), &forwarded);
    assert!(again.declined().is_empty(), "{:?}", again.declined());
    let mut arrived_again: Vec<&str> = again.arrived().iter().map(|a| a.key()).collect();
    arrived_again.sort_unstable();
    assert_eq!(arrived_again, arrived);
});

/// The header of `state` is within 512 characters, parses, and holds
/// whole members of `state` in their order.
fn check_tracestate_header(state: &TraceState) {
    let Some(header) = state.header() else { return };
    assert!(header.len() <= TraceState::MAX_HEADER_LEN);
    let back = TraceState::parse(&[&header]).expect("a valid tracestate header");
    let mut members = state.iter();
    for member in back.iter() {
        assert!(members.any(|m| m == member), "{member:?} not in order");
    }
}

/// The input as a request from another process: the caller's
/// `milieu-origin` read (install sites included), the hop recorded, the
/// context dumped and injected again with sites.
fn check_from_process(propagation: &Propagation, input: &Input) {
    let sites = propagation
        .clone()
        .with_service_name("fuzz")
        .with_install_sites(true);
    let incoming = sites.extract_process(
        &strs(&input.traceparent),
        &strs(&input.tracestate),
        &strs(&input.baggage),
        &strs(&input.origin),
        Some("127.0.0.1:1"),
    );
    if let Some(hop) = incoming.process_hop() {
        // The caller's words are shown as received: printable, bounded.
        if let Some(service) = &hop.service {
            assert!(service.len() <= 128, "a service of {} bytes", service.len());
            assert!(!service.chars().any(char::is_control), "{service:?}");
        }
    }
    incoming.into_scope(milieu::scope()).run(|| {
        let dump = milieu::dump().to_string();
        assert!(dump.len() < 1 << 20, "a dump of {} bytes", dump.len());
        let mut origin = None;
        sites.inject(&mut |name, value| {
            if name == Propagation::ORIGIN {
                origin = Some(value.len());
            }
        });
        if let Some(len) = origin {
            assert!(len <= 8192, "a milieu-origin of {len} bytes");
        }
    });
}
