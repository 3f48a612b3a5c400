//! The W3C formats of `milieu::remote`, through the public API only:
//! `traceparent` and `tracestate` (every case of the W3C test suite at
//! strictness 2 and spec level 2, played against a service that extracts
//! and then injects), `baggage` (round trips, limits, percent-encoding,
//! malformed members), `#[derive(Baggage)]`, the round trip through the
//! context, default deny, and properties over random input.

use milieu::remote::{
    Baggage, BaggageHeader, BaggageLimit, BaggageLimits, BaggageMember, Declined, ForwardedBaggage,
    MalformedReason, ParsedBaggage, Propagation, SpanId, TraceContext, TraceFlags, TraceId,
    TraceOrigin, TraceState, TraceStateIssue, TraceparentError,
};
use proptest::prelude::*;

const TRACE: &str = "12345678901234567890123456789012";
const PARENT: &str = "1234567890123456";

// ---------------------------------------------------------------------
// A service under the W3C test suite: it receives headers, extracts them,
// and makes one callback from inside the extracted context.
// ---------------------------------------------------------------------

/// The callback's headers.
struct Callback {
    traceparent: String,
    tracestate: Option<String>,
    baggage: Option<String>,
}

impl Callback {
    fn trace_id(&self) -> &str {
        &self.traceparent[3..35]
    }

    fn parent_id(&self) -> &str {
        &self.traceparent[36..52]
    }

    fn flags(&self) -> u8 {
        u8::from_str_radix(&self.traceparent[53..55], 16).unwrap()
    }

    /// The tracestate as the suite reads it: a list it must be able to
    /// parse (an invalid one would fail its test).
    fn tracestate(&self) -> TraceState {
        let fields: Vec<&str> = self.tracestate.iter().map(String::as_str).collect();
        TraceState::parse(&fields).expect("the service sent a valid tracestate")
    }
}

/// Header names are matched case-insensitively, as the HTTP layer does.
fn values<'a>(headers: &[(&str, &'a str)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
        .collect()
}

fn serve(propagation: &Propagation, headers: &[(&str, &str)]) -> Callback {
    let incoming = propagation.extract(
        &values(headers, "traceparent"),
        &values(headers, "tracestate"),
        &values(headers, "baggage"),
    );
    let mut sent: Vec<(&'static str, String)> = Vec::new();
    incoming.into_scope(milieu::scope()).run(|| {
        propagation.inject(&mut |name, value| sent.push((name, value.to_owned())));
    });
    let one = |name: &str| -> Option<String> {
        let found: Vec<&String> = sent
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v)
            .collect();
        assert!(found.len() <= 1, "{name} sent {} times", found.len());
        found.first().map(|v| (*v).clone())
    };
    let callback = Callback {
        traceparent: one("traceparent").expect("a traceparent is always sent"),
        tracestate: one("tracestate"),
        baggage: one("baggage"),
    };
    // The suite's own check of every traceparent it receives.
    let tp = &callback.traceparent;
    assert_eq!(tp.len(), 55, "{tp}");
    assert!(tp.starts_with("00-"), "{tp}");
    assert!(tp[3..].bytes().enumerate().all(|(i, b)| match i {
        32 | 49 => b == b'-',
        _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
    }));
    assert_ne!(callback.trace_id(), "0".repeat(32));
    assert_ne!(callback.parent_id(), "0".repeat(16));
    callback
}

fn call(headers: &[(&str, &str)]) -> Callback {
    serve(&Propagation::new(), headers)
}

fn tp(flags: &str) -> String {
    format!("00-{TRACE}-{PARENT}-{flags}")
}

#[test]
fn w3c_no_headers_start_a_trace() {
    let callback = call(&[]);
    assert!(callback.tracestate.is_none());
    let flags = TraceFlags::from_bits(callback.flags());
    assert!(flags.is_sampled() && flags.is_random());
}

#[test]
fn w3c_a_traceparent_continues_the_trace_under_a_new_parent_id() {
    let callback = call(&[("traceparent", &tp("01"))]);
    assert_eq!(callback.trace_id(), TRACE);
    assert_ne!(callback.parent_id(), PARENT);
    assert_eq!(callback.flags(), 0x01);
}

#[test]
fn w3c_header_names_any_case_and_no_other_name() {
    for name in ["TraceParent", "TrAcEpArEnT", "TRACEPARENT"] {
        assert_eq!(call(&[(name, &tp("01"))]).trace_id(), TRACE);
    }
    for name in ["trace-parent", "trace.parent"] {
        assert_ne!(call(&[(name, &tp("01"))]).trace_id(), TRACE);
    }
}

#[test]
fn w3c_two_traceparents_restart_the_trace() {
    let callback = call(&[
        (
            "traceparent",
            "00-12345678901234567890123456789011-1234567890123456-01",
        ),
        ("traceparent", &tp("01")),
    ]);
    assert_ne!(callback.trace_id(), TRACE);
    assert_ne!(callback.trace_id(), "12345678901234567890123456789011");
}

#[test]
fn w3c_invalid_traceparents_restart_the_trace() {
    let invalid = [
        // version 00 with trailing characters
        format!("{}.", tp("01")),
        format!("{}-what-the-future-will-be-like", tp("01")),
        format!("cc-{TRACE}-{PARENT}-01.what-the-future-will-be-like"),
        format!("ff-{TRACE}-{PARENT}-01"),
        format!(".0-{TRACE}-{PARENT}-01"),
        format!("0.-{TRACE}-{PARENT}-01"),
        format!("000-{TRACE}-{PARENT}-01"),
        format!("0000-{TRACE}-{PARENT}-01"),
        format!("0-{TRACE}-{PARENT}-01"),
        format!("00-.2345678901234567890123456789012-{PARENT}-01"),
        format!("00-1234567890123456789012345678901.-{PARENT}-01"),
        format!("00-{TRACE}3-{PARENT}-01"),
        format!("00-{}-{PARENT}-01", &TRACE[..31]),
        format!("00-{TRACE}-0000000000000000-01"),
        format!("00-{TRACE}-.234567890123456-01"),
        format!("00-{TRACE}-123456789012345.-01"),
        format!("00-{TRACE}-{PARENT}7-01"),
        format!("00-{TRACE}-{}-01", &PARENT[..15]),
        format!("00-{TRACE}-{PARENT}-.0"),
        format!("00-{TRACE}-{PARENT}-0."),
        format!("00-{TRACE}-{PARENT}-001"),
        format!("00-{TRACE}-{PARENT}-1"),
    ];
    for traceparent in &invalid {
        let callback = call(&[("traceparent", traceparent)]);
        assert_ne!(callback.trace_id(), TRACE, "{traceparent}");
    }
    let zero = format!("00-{}-{PARENT}-01", "0".repeat(32));
    assert_ne!(call(&[("traceparent", &zero)]).trace_id(), "0".repeat(32));
}

#[test]
fn w3c_a_future_version_is_read_from_its_first_55_characters() {
    for traceparent in [
        format!("cc-{TRACE}-{PARENT}-01"),
        format!("cc-{TRACE}-{PARENT}-01-what-the-future-will-be-like"),
    ] {
        let callback = call(&[("traceparent", &traceparent)]);
        assert_eq!(callback.trace_id(), TRACE);
        assert!(
            callback.traceparent.starts_with("00-"),
            "answered in version 00"
        );
    }
}

#[test]
fn w3c_spaces_and_tabs_around_the_traceparent() {
    for traceparent in [
        format!(" {}", tp("01")),
        format!("\t{}", tp("01")),
        format!("{} ", tp("01")),
        format!("{}\t", tp("01")),
        format!("\t {} \t", tp("01")),
    ] {
        assert_eq!(call(&[("traceparent", &traceparent)]).trace_id(), TRACE);
    }
}

#[test]
fn w3c_tracestate_without_traceparent_is_dropped() {
    let one = call(&[("tracestate", "foo=1")]);
    let two = call(&[("tracestate", "foo=1,bar=2")]);
    assert_eq!(one.tracestate().len(), two.tracestate().len());
    assert!(one.tracestate.is_none());
}

#[test]
fn w3c_tracestate_is_inherited_combined_and_ordered() {
    let callback = call(&[("traceparent", &tp("00")), ("tracestate", "foo=1,bar=2")]);
    assert_eq!(callback.trace_id(), TRACE);
    assert_eq!(callback.tracestate().get("foo"), Some("1"));
    assert_eq!(callback.tracestate().get("bar"), Some("2"));

    for name in ["TraceState", "TrAcEsTaTe", "TRACESTATE"] {
        let callback = call(&[("traceparent", &tp("00")), (name, "foo=1")]);
        assert_eq!(callback.tracestate().get("foo"), Some("1"));
    }
    for name in ["trace-state", "trace.state"] {
        let callback = call(&[("traceparent", &tp("00")), (name, "foo=1")]);
        assert_eq!(callback.tracestate().get("foo"), None);
    }

    let callback = call(&[
        ("traceparent", &tp("00")),
        ("tracestate", "foo=1,bar=2"),
        ("tracestate", "rojo=1,congo=2"),
        ("tracestate", "baz=3"),
    ]);
    assert_eq!(
        callback.tracestate.as_deref(),
        Some("foo=1,bar=2,rojo=1,congo=2,baz=3")
    );
}

#[test]
fn w3c_empty_tracestate_fields() {
    let callback = call(&[("traceparent", &tp("00")), ("tracestate", "")]);
    assert_eq!(callback.trace_id(), TRACE);
    assert!(
        callback.tracestate.is_none(),
        "an empty tracestate is not sent"
    );
    for fields in [["foo=1", ""], ["", "foo=1"]] {
        let callback = call(&[
            ("traceparent", &tp("00")),
            ("tracestate", fields[0]),
            ("tracestate", fields[1]),
        ]);
        assert_eq!(callback.tracestate().get("foo"), Some("1"));
    }
}

#[test]
fn w3c_duplicated_tracestate_keys_keep_the_rest() {
    for fields in [
        &["foo=1,foo=1"][..],
        &["foo=1,foo=2"][..],
        &["foo=1", "foo=1"][..],
        &["foo=1", "foo=2"][..],
    ] {
        let mut headers = vec![("traceparent", tp("00"))];
        headers.extend(fields.iter().map(|f| ("tracestate", (*f).to_owned())));
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let callback = call(&headers);
        assert_eq!(callback.trace_id(), TRACE);
        assert_eq!(callback.tracestate.as_deref(), Some("foo=1"), "{fields:?}");
    }
}

#[test]
fn w3c_all_allowed_tracestate_characters() {
    let key: String = ('a'..='z').collect::<String>() + "0123456789_-*/";
    let value: String = (0x20u8..=0x2b)
        .chain(0x2d..=0x3c)
        .chain(0x3e..=0x7e)
        .map(char::from)
        .collect();
    for key in [key.clone(), key + "@a-z0-9_-*/"] {
        let member = format!("{key}={value}");
        let callback = call(&[("traceparent", &tp("00")), ("tracestate", &member)]);
        assert_eq!(callback.tracestate().get(&key), Some(value.as_str()));
    }
}

#[test]
fn w3c_spaces_and_tabs_around_tracestate_members() {
    for field in [
        "foo=1 \t , \t bar=2, \t baz=3",
        "foo=1\t \t,\t \tbar=2,\t \tbaz=3",
    ] {
        let callback = call(&[("traceparent", &tp("00")), ("tracestate", field)]);
        let state = callback.tracestate();
        assert_eq!(
            state.iter().collect::<Vec<_>>(),
            [("foo", "1"), ("bar", "2"), ("baz", "3")]
        );
    }
    for field in [" foo=1", "\tfoo=1", "foo=1 ", "foo=1\t", "\t foo=1 \t"] {
        let callback = call(&[("traceparent", &tp("00")), ("tracestate", field)]);
        assert_eq!(callback.trace_id(), TRACE);
        assert_eq!(callback.tracestate().get("foo"), Some("1"), "{field:?}");
    }
}

#[test]
fn w3c_invalid_tracestate_keys_discard_the_list() {
    for field in ["foo =1", "FOO=1", "foo.bar=1", "@foo=1,bar=2"] {
        let callback = call(&[("traceparent", &tp("00")), ("tracestate", field)]);
        assert!(callback.tracestate.is_none(), "{field}");
        assert_eq!(callback.trace_id(), TRACE, "the traceparent still counts");
    }
}

#[test]
fn w3c_at_signs_in_tracestate_keys() {
    for key in ["foo@", "foo@@bar", "foo@bar@baz"] {
        let field = format!("{key}=1,bar=2");
        let callback = call(&[("traceparent", &tp("00")), ("tracestate", &field)]);
        assert_eq!(callback.tracestate().get(key), Some("1"));
        assert_eq!(callback.tracestate().get("bar"), Some("2"));
    }
}

#[test]
fn w3c_at_most_32_tracestate_members() {
    let fields: Vec<String> = (0..4)
        .map(|row| {
            (row * 10 + 1..=(row * 10 + 10).min(33))
                .map(|i| format!("bar{i:02}={i:02}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    let traceparent = tp("00");
    let headers: Vec<(&str, &str)> = vec![("traceparent", &traceparent)];
    // 32 members: inherited.
    let thirty_two = fields[3].replace(",bar33=33", "");
    let mut with_32 = headers.clone();
    with_32.extend(fields[..3].iter().map(|f| ("tracestate", f.as_str())));
    with_32.push(("tracestate", &thirty_two));
    let state = call(&with_32).tracestate();
    assert_eq!(state.len(), 32);
    assert_eq!(state.get("bar01"), Some("01"));
    // 33: discarded.
    let mut with_33 = headers;
    with_33.extend(fields.iter().map(|f| ("tracestate", f.as_str())));
    assert_eq!(call(&with_33).tracestate().get("bar01"), None);
}

#[test]
fn w3c_tracestate_key_lengths() {
    for key in [
        "z".repeat(256),
        format!("{}@{}", "t".repeat(241), "v".repeat(14)),
        format!("{}@v", "t".repeat(242)),
        format!("t@{}", "v".repeat(15)),
    ] {
        let member = format!("{key}=1");
        let callback = call(&[
            ("traceparent", &tp("00")),
            ("tracestate", "foo=1"),
            ("tracestate", &member),
        ]);
        assert_eq!(callback.tracestate().get("foo"), Some("1"));
        assert_eq!(
            callback.tracestate().get(&key),
            Some("1"),
            "{} characters",
            key.len()
        );
    }
    let too_long = format!("{}=1", "z".repeat(257));
    let callback = call(&[
        ("traceparent", &tp("00")),
        ("tracestate", "foo=1"),
        ("tracestate", &too_long),
    ]);
    assert_eq!(callback.tracestate().get("foo"), None);
}

#[test]
fn w3c_invalid_tracestate_values_discard_the_list() {
    for field in ["foo=bar=baz", "foo=,bar=3"] {
        let callback = call(&[("traceparent", &tp("00")), ("tracestate", field)]);
        assert!(callback.tracestate.is_none(), "{field}");
    }
}

#[test]
fn w3c_each_request_gets_its_own_parent_id() {
    for headers in [
        vec![("traceparent", tp("01"))],
        vec![],
        vec![("traceparent", format!("00-{}-{PARENT}-01", "0".repeat(32)))],
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let incoming = Propagation::new().extract(&values(&headers, "traceparent"), &[], &[]);
        let mut parents = std::collections::HashSet::new();
        let mut traces = std::collections::HashSet::new();
        incoming.into_scope(milieu::scope()).run(|| {
            for _ in 0..3 {
                let injected = Propagation::new().inject(&mut |_, _| {});
                parents.insert(injected.trace().span_id());
                traces.insert(injected.trace().trace_id());
            }
        });
        assert_eq!(parents.len(), 3);
        assert_eq!(traces.len(), 1, "one trace for the whole request");
        assert_ne!(traces.iter().next().unwrap().to_string(), "0".repeat(32));
    }
}

#[test]
fn w3c_level_2_the_random_flag_is_propagated() {
    let callback = call(&[("traceparent", &tp("02"))]);
    assert_eq!(callback.trace_id(), TRACE);
    assert_ne!(callback.parent_id(), PARENT);
    assert_eq!(callback.flags() & 0x02, 0x02);
    assert_eq!(
        call(&[("traceparent", &tp("01"))]).flags() & 0x02,
        0,
        "and only when set"
    );
}

// ---------------------------------------------------------------------
// traceparent and tracestate through the API
// ---------------------------------------------------------------------

#[test]
fn the_spec_examples_of_traceparent() {
    for (value, sampled) in [
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            true,
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            false,
        ),
    ] {
        let extracted = TraceContext::extract(Some(value), &[]);
        assert_eq!(extracted.origin(), &TraceOrigin::Continued);
        let context = extracted.context();
        assert_eq!(
            context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(
            context.parent_id().map(|p| p.to_string()).as_deref(),
            Some("00f067aa0ba902b7")
        );
        assert_eq!(context.flags().is_sampled(), sampled);
    }
}

#[test]
fn refusals_say_why() {
    let cases = [
        (
            format!("ff-{TRACE}-{PARENT}-01"),
            TraceparentError::VersionFf,
        ),
        (
            format!("00-{}-{PARENT}-01", "0".repeat(32)),
            TraceparentError::ZeroTraceId,
        ),
        (
            format!("00-{TRACE}-{}-01", "0".repeat(16)),
            TraceparentError::ZeroParentId,
        ),
        (
            format!("00-{TRACE}-{PARENT}-01-x"),
            TraceparentError::Length { len: 57 },
        ),
        (
            format!("00-{}-{PARENT}-01", TRACE.replace('1', "A")),
            TraceparentError::TraceId,
        ),
        (
            format!("cc-{TRACE}-{PARENT}-01+"),
            TraceparentError::Trailing,
        ),
    ];
    for (value, reason) in cases {
        let extracted = TraceContext::extract(Some(&value), &["foo=1"]);
        assert_eq!(
            extracted.origin(),
            &TraceOrigin::Restarted(reason),
            "{value}"
        );
        assert_eq!(
            extracted.tracestate_issue(),
            Some(&TraceStateIssue::Ignored)
        );
        assert!(extracted.warning().unwrap().contains(&reason.to_string()));
    }
}

#[test]
fn tracestate_is_truncated_by_the_spec_when_sent() {
    let long = "l".repeat(150);
    let mut members = vec![format!("first={long}")];
    members.extend((0..30).map(|i| format!("k{i:02}=0123456789")));
    let state = TraceState::parse(&[&members.join(",")]).unwrap();
    let header = state.header().unwrap();
    assert!(header.len() <= TraceState::MAX_HEADER_LEN);
    assert!(!header.contains("first="), "the long member goes first");
    assert!(
        header.starts_with("k00="),
        "then from the end: the front stays"
    );
    assert_eq!(TraceState::parse(&[&header]).unwrap().len(), 30);
}

// ---------------------------------------------------------------------
// baggage
// ---------------------------------------------------------------------

#[test]
fn baggage_round_trips_with_percent_encoding() {
    let members = vec![
        BaggageMember::new("userId", "Amélie").unwrap(),
        BaggageMember::new("serverNode", "DF 28").unwrap(),
        BaggageMember::new("isProduction", "false").unwrap(),
        BaggageMember::new("odd", "100% \"quoted\", a;b\\c").unwrap(),
    ];
    let mut header = BaggageHeader::new(BaggageLimits::new());
    for member in &members {
        assert!(header.push(member));
    }
    let header = header.finish().unwrap();
    assert_eq!(
        header,
        "userId=Am%C3%A9lie,serverNode=DF%2028,isProduction=false,\
         odd=100%25%20%22quoted%22%2C%20a%3Bb%5Cc"
    );
    let parsed = ParsedBaggage::parse(&[&header], &BaggageLimits::new());
    assert_eq!(parsed.members(), members.as_slice());
}

#[test]
fn malformed_baggage_members_are_dropped_and_reported() {
    let parsed = ParsedBaggage::parse(
        &["a=1,no-equals,sp ace=1", "b=%E2%82%AC, c=x y ,d=%4"],
        &BaggageLimits::new(),
    );
    let kept: Vec<(&str, &str)> = parsed
        .members()
        .iter()
        .map(|m| (m.key(), m.value()))
        .collect();
    assert_eq!(kept, [("a", "1"), ("b", "€")]);
    let reasons: Vec<MalformedReason> = parsed.malformed().iter().map(|m| m.reason()).collect();
    assert_eq!(
        reasons,
        [
            MalformedReason::NotKeyValue,
            MalformedReason::InvalidKey,
            MalformedReason::InvalidValue,
            MalformedReason::InvalidPercentEncoding,
        ]
    );
}

#[test]
fn a_megabyte_of_baggage_stays_bounded() {
    // 100,000 members in 1 MB, in one field and spread over many.
    let members: Vec<String> = (0..100_000).map(|i| format!("k{i:05}=v{i:05}")).collect();
    let one_field = members.join(",");
    assert!(one_field.len() > 1_000_000);
    let many_fields: Vec<&str> = members.iter().map(String::as_str).collect();
    for fields in [vec![one_field.as_str()], many_fields] {
        let parsed = ParsedBaggage::parse(&fields, &BaggageLimits::new());
        assert_eq!(parsed.members().len(), 64);
        let truncated = parsed.truncated().expect("reading stopped");
        assert_eq!(truncated.limit(), BaggageLimit::Members);
        assert_eq!(truncated.read(), 64);
        // Everything after the 64th member (13 bytes and a comma each)
        // was left unread.
        assert_eq!(truncated.unread_bytes(), one_field.len() - 64 * 14);
    }
    // The byte limit stops a header of few, large members the same way.
    let large: Vec<String> = (0..1000)
        .map(|i| format!("k{i:03}={}", "x".repeat(1000)))
        .collect();
    let parsed = ParsedBaggage::parse(&[&large.join(",")], &BaggageLimits::new());
    assert_eq!(parsed.members().len(), 8);
    assert_eq!(parsed.truncated().unwrap().limit(), BaggageLimit::Bytes);
    assert!(parsed.truncated().unwrap().unread_bytes() > 990_000);
}

#[test]
fn the_limits_hold_on_the_way_out_too() {
    let propagation = Propagation::new();
    let forwarded: Vec<BaggageMember> = (0..100)
        .map(|i| BaggageMember::new(&format!("k{i}"), "v").unwrap())
        .collect();
    let mut baggage = None;
    let injected = milieu::scope()
        .with(ForwardedBaggage::new(forwarded))
        .run(|| {
            propagation.inject(&mut |name, value| {
                if name == "baggage" {
                    baggage = Some(value.to_owned());
                }
            })
        });
    assert_eq!(injected.baggage_members(), 64);
    assert_eq!(injected.skipped().len(), 36);
    let parsed = ParsedBaggage::parse(&[baggage.as_deref().unwrap()], &BaggageLimits::new());
    assert_eq!(parsed.members().len(), 64);
    assert!(parsed.truncated().is_none());
}

// ---------------------------------------------------------------------
// carried types: the derive, the round trip, default deny
// ---------------------------------------------------------------------

#[derive(Debug, PartialEq, Baggage)]
#[baggage(key = "tenant")]
struct Tenant(String);

#[derive(Debug, PartialEq, milieu::remote::Baggage)]
#[baggage(key = "tier")]
struct UserTier(u8);

#[derive(Debug, PartialEq, Baggage)]
#[baggage(key = "session")]
struct Session(String);

#[test]
fn the_derive_uses_display_and_from_str() {
    assert_eq!(Tenant::KEY, "tenant");
    let mut text = String::new();
    UserTier(42).encode(&mut text);
    assert_eq!(text, "42");
    assert_eq!(UserTier::decode("7"), Ok(UserTier(7)));
    let err = UserTier::decode("300").unwrap_err();
    assert_eq!(
        err.to_string(),
        "baggage `tier`: number too large to fit in target type"
    );
}

#[test]
fn carried_types_cross_and_come_back() {
    let propagation = Propagation::new().carry::<Tenant>().carry::<UserTier>();
    let mut headers: Vec<(&'static str, String)> = Vec::new();
    {
        let _tenant = milieu::provide(Tenant("acme, inc.".into()));
        let _tier = milieu::provide(UserTier(3));
        propagation.inject(&mut |name, value| headers.push((name, value.to_owned())));
    }
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    assert_eq!(
        values(&headers, "baggage"),
        ["tenant=acme%2C%20inc.,tier=3"]
    );

    let incoming = propagation.extract(
        &values(&headers, "traceparent"),
        &values(&headers, "tracestate"),
        &values(&headers, "baggage"),
    );
    assert!(incoming.trace().is_continued());
    let arrived: Vec<(&str, &str)> = incoming
        .arrived()
        .iter()
        .map(|a| (a.key(), a.type_name()))
        .collect();
    assert_eq!(
        arrived,
        [
            ("tenant", std::any::type_name::<Tenant>()),
            ("tier", std::any::type_name::<UserTier>())
        ]
    );
    assert!(incoming.declined().is_empty() && incoming.forwarded().is_empty());
    assert_eq!(incoming.warning(), None);

    let (tenant, tier, dump) = incoming.into_scope(milieu::scope()).run(|| {
        (
            milieu::get::<Tenant>().map(|t| t.0.clone()),
            milieu::get::<UserTier>().map(|t| t.0),
            milieu::dump().to_string(),
        )
    });
    assert_eq!(tenant.unwrap(), "acme, inc.");
    assert_eq!(tier.unwrap(), 3);
    // Provenance: installed here, and said to come from the caller.
    assert!(dump.contains("baggage member sent by the caller"), "{dump}");
    assert!(dump.contains("tests/remote_formats.rs"), "{dump}");
}

#[test]
fn what_is_not_carried_never_leaves() {
    let propagation = Propagation::new().carry::<Tenant>();
    let mut sent = Vec::new();
    milieu::scope()
        .with(Tenant("acme".into()))
        .with(Session("s3cr3t".into()))
        .run(|| propagation.inject(&mut |name, value| sent.push(format!("{name}: {value}"))));
    assert!(sent
        .iter()
        .all(|h| !h.contains("s3cr3t") && !h.contains("session")));
    assert!(sent.contains(&"baggage: tenant=acme".to_owned()));

    // And arriving, an uncarried key is only passed on, never decoded.
    let incoming = propagation.extract(&[], &[], &["session=forged,tenant=acme"]);
    assert_eq!(incoming.forwarded().members()[0].key(), "session");
    let installed = incoming
        .into_scope(milieu::scope())
        .run(milieu::contains::<Session>);
    assert!(!installed);
}

#[test]
fn unknown_members_are_passed_on_as_received() {
    let propagation = Propagation::new().carry::<Tenant>();
    let callback = serve(
        &propagation,
        &[
            ("baggage", "region = eu%2Dwest;ttl=3, tenant=acme"),
            ("baggage", "k=%41"),
        ],
    );
    assert_eq!(
        callback.baggage.as_deref(),
        Some("tenant=acme,region = eu%2Dwest;ttl=3,k=%41")
    );
}

#[test]
fn one_warning_sums_up_what_was_refused() {
    let propagation = Propagation::new().carry::<UserTier>();
    let incoming = propagation.extract(
        &[&format!("ff-{TRACE}-{PARENT}-01")],
        &["foo=1"],
        &["tier=gold,bad key=1,tier=2"],
    );
    assert_eq!(incoming.declined().len(), 3);
    assert!(matches!(incoming.declined()[0], Declined::Malformed(_)));
    assert_eq!(incoming.declined()[1].key(), Some("tier"));
    let warning = incoming.warning().unwrap();
    assert_eq!(
        warning,
        format!(
            "context from the caller: traceparent refused (version ff is forbidden): a new trace \
             was started; tracestate ignored (no valid traceparent); baggage: 3 declined: \
             malformed member 1 (\"bad key\"): the key is not a token; `tier` not decoded as {0}: \
             baggage `tier`: invalid digit found in string; `tier` ({0}) sent again, the first \
             one counts",
            std::any::type_name::<UserTier>()
        )
    );
}

// ---------------------------------------------------------------------
// properties
// ---------------------------------------------------------------------

fn as_strs(values: &[String]) -> Vec<&str> {
    values.iter().map(String::as_str).collect()
}

fn trace_id() -> impl Strategy<Value = TraceId> {
    any::<u128>().prop_filter_map("not all zero", |n| TraceId::from_bytes(n.to_be_bytes()))
}

fn span_id() -> impl Strategy<Value = SpanId> {
    any::<u64>().prop_filter_map("not all zero", |n| SpanId::from_bytes(n.to_be_bytes()))
}

/// Up to 8 members of at most 52 characters: within 512 once joined, so
/// nothing is truncated.
fn trace_state() -> impl Strategy<Value = TraceState> {
    let key = "[a-z0-9][a-z0-9_*/@-]{0,20}";
    let value = "[ -+\\--<>-~]{0,29}[!-+\\--<>-~]";
    proptest::collection::vec((key, value), 0..8).prop_map(|members| {
        members
            .iter()
            .rev()
            .try_fold(TraceState::new(), |state, (k, v)| state.with(k, v))
            .expect("generated by the grammar")
    })
}

fn baggage_member() -> impl Strategy<Value = BaggageMember> {
    (
        "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,16}",
        any::<String>().prop_map(|s| s.chars().take(40).collect::<String>()),
    )
        .prop_map(|(key, value)| BaggageMember::new(&key, &value).expect("a token"))
}

/// Text made mostly of what the three headers are made of.
fn header_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[0-9a-fA-F=,;% \t@.-]{0,120}",
        "(00|cc|ff|0)-[0-9a-f]{30,34}-[0-9a-f]{14,18}-[0-9a-f]{1,3}(-.{0,5})?",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_trace_context_survives_its_headers(
        trace in trace_id(), parent in span_id(), flags in 0u8..4, state in trace_state()
    ) {
        let sent = TraceContext::continue_from(trace, parent, TraceFlags::from_bits(flags), state);
        let tracestate = sent.tracestate();
        let fields: Vec<&str> = tracestate.iter().map(String::as_str).collect();
        let extracted = TraceContext::extract(Some(&sent.traceparent()), &fields);
        prop_assert!(extracted.is_continued());
        prop_assert_eq!(extracted.tracestate_issue(), None);
        let received = extracted.context();
        prop_assert_eq!(received.trace_id(), sent.trace_id());
        prop_assert_eq!(received.parent_id(), Some(sent.span_id()));
        prop_assert_eq!(received.flags(), sent.flags());
        prop_assert_eq!(received.state(), sent.state());
    }

    #[test]
    fn baggage_survives_its_header(members in proptest::collection::vec(baggage_member(), 0..12)) {
        let mut header = BaggageHeader::new(BaggageLimits::new());
        for member in &members {
            prop_assert!(header.push(member));
        }
        let fields: Vec<String> = header.finish().into_iter().collect();
        let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
        let parsed = ParsedBaggage::parse(&fields, &BaggageLimits::new());
        prop_assert_eq!(parsed.members(), members.as_slice());
        prop_assert!(parsed.malformed().is_empty());
    }

    #[test]
    fn any_headers_extract_without_panic_and_reextract_the_same(
        traceparent in proptest::collection::vec(header_text(), 0..3),
        tracestate in proptest::collection::vec(header_text(), 0..3),
        baggage in proptest::collection::vec(header_text(), 0..3),
    ) {
        let propagation = Propagation::new().carry::<UserTier>();
        let incoming = propagation.extract(&as_strs(&traceparent), &as_strs(&tracestate), &as_strs(&baggage));
        let _ = incoming.warning();

        // What was extracted, written out, reads back the same (the
        // tracestate as truncated for sending).
        let context = incoming.trace().context().clone();
        let state = context.tracestate().map_or_else(TraceState::new, |header| {
            TraceState::parse(&[&header]).expect("a valid tracestate is sent")
        });
        let forwarded = incoming.forwarded().clone();
        let mut sent: Vec<(&str, String)> = Vec::new();
        let injected = incoming.into_scope(milieu::scope()).run(|| {
            propagation.inject(&mut |name, value| sent.push((name, value.to_owned())))
        });
        // What was read within the limits fits within them again.
        prop_assert!(injected.skipped().is_empty());
        let sent: Vec<(&str, &str)> = sent.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let again = propagation.extract(
            &values(&sent, "traceparent"),
            &values(&sent, "tracestate"),
            &values(&sent, "baggage"),
        );
        prop_assert!(again.trace().is_continued());
        prop_assert_eq!(again.trace().tracestate_issue(), None);
        prop_assert_eq!(again.trace().context().trace_id(), context.trace_id());
        prop_assert_eq!(again.trace().context().flags(), context.flags());
        prop_assert_eq!(again.trace().context().state(), &state);
        prop_assert_eq!(again.forwarded(), &forwarded);
        prop_assert!(again.declined().is_empty());
    }

    #[test]
    fn any_tracestate_header_sent_is_valid_and_short(
        members in proptest::collection::vec(("[a-z][a-z0-9@]{0,255}", "[!-+\\--<>-~]{1,256}"), 0..40)
    ) {
        let state = members
            .iter()
            .try_fold(TraceState::new(), |state, (k, v)| state.with(k, v))
            .expect("generated by the grammar");
        prop_assert!(state.len() <= TraceState::MAX_MEMBERS);
        if let Some(header) = state.header() {
            prop_assert!(header.len() <= TraceState::MAX_HEADER_LEN);
            let back = TraceState::parse(&[&header]).expect("valid");
            // Whole members only, in their order.
            let all: Vec<(&str, &str)> = state.iter().collect();
            let mut rest = all.iter();
            for member in back.iter() {
                prop_assert!(rest.any(|m| *m == member));
            }
        }
    }
}
