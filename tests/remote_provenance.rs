//! Entries received from another process: the caller's account of them
//! (install site, service, the process hop) in dumps and `Missing` reports,
//! through the core API a transport uses (`Scope::carried_from`).

use std::sync::Arc;

use milieu::dump::{ProcessHop, RemoteOrigin};

#[derive(Debug)]
struct Tenant(#[allow(dead_code)] String);
struct Tier;
struct Region;

fn hop() -> Arc<ProcessHop> {
    Arc::new(
        ProcessHop::new()
            .with_peer("127.0.0.1:8080")
            .with_service("orders")
            .with_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
            .with_arrived("tenant", std::any::type_name::<Tenant>())
            .with_declined("region", "failed to decode: unknown region `mars`")
            .with_forwarded("vendor.flag"),
    )
}

#[test]
fn a_dump_shows_the_callers_install_site_service_and_hop() {
    let hop = hop();
    let _guard = milieu::scope()
        .with_debug(Tenant("acme".into()))
        .carried_from(
            RemoteOrigin::new(Arc::clone(&hop))
                .installed_at("examples/orders/main.rs:162:9", "orders"),
        )
        .with(Tier)
        .enter();
    let dump = milieu::dump();
    let tenant = dump
        .entries()
        .find(|e| e.type_name.ends_with("Tenant"))
        .unwrap();
    let origin = tenant.provenance.remote.as_ref().expect("a remote origin");
    assert_eq!(
        origin.site.as_deref(),
        Some("examples/orders/main.rs:162:9")
    );
    assert_eq!(origin.service.as_deref(), Some("orders"));
    assert_eq!(*origin.hop, *hop);
    // The local site is where it was received.
    assert_eq!(tenant.provenance.site.file, file!());
    // An entry of the same scope added without an origin has none.
    let tier = dump
        .entries()
        .find(|e| e.type_name.ends_with("Tier"))
        .unwrap();
    assert!(tier.provenance.remote.is_none());

    let text = dump.to_string();
    assert!(
        text.contains(
            "installed at examples/orders/main.rs:162:9 in service orders, carried by process hop \
             from 127.0.0.1:8080 (service orders, traceparent \
             00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01)"
        ),
        "{text}"
    );
    assert!(text.contains(&format!("received at {}", file!())), "{text}");
}

#[test]
fn an_origin_given_before_any_entry_applies_to_all_and_survives_a_thread_hop() {
    let _guard = milieu::scope()
        .carried_from(RemoteOrigin::new(hop()))
        .with(Tier)
        .with(Region)
        .enter();
    let dump = milieu::thread::spawn(milieu::dump).join().unwrap();
    assert_eq!(dump.entries().count(), 2);
    for entry in dump.entries() {
        let origin = entry.provenance.remote.as_ref().expect("carried origin");
        assert_eq!(origin.hop.peer.as_deref(), Some("127.0.0.1:8080"));
        assert!(origin.site.is_none());
    }
    let text = dump.to_string();
    assert!(
        text.contains("carried by process hop from 127.0.0.1:8080"),
        "{text}"
    );
}

#[test]
fn missing_reports_what_arrived_from_the_caller_and_what_was_declined() {
    let _guard = milieu::scope()
        .with(Tenant("acme".into()))
        .carried_from(RemoteOrigin::new(hop()))
        .enter();
    let err = milieu::get::<Region>().err().expect("no Region");
    let arrival = err.arrival().expect("the process hop");
    assert_eq!(arrival.declined[0].key, "region");
    let text = err.to_string();
    assert!(
        text.contains("from another process: process hop from 127.0.0.1:8080"),
        "{text}"
    );
    assert!(text.contains("arrived: `tenant` as `"), "{text}");
    assert!(
        text.contains("declined: `region` (failed to decode: unknown region `mars`)"),
        "{text}"
    );
    assert!(text.contains("forwarded untouched"), "{text}");
}

#[test]
fn a_context_with_nothing_remote_says_nothing_about_another_process() {
    let _guard = milieu::provide(Tier);
    let err = milieu::get::<Region>().err().expect("no Region");
    assert!(err.arrival().is_none());
    assert!(!err.to_string().contains("another process"));
}

#[cfg(feature = "serde")]
#[test]
fn json_dumps_carry_the_remote_origin() {
    let _guard = milieu::scope()
        .with(Tenant("acme".into()))
        .carried_from(RemoteOrigin::new(hop()).installed_at("a.rs:1:1", "orders"))
        .enter();
    let json: serde_json::Value = serde_json::from_str(&milieu::dump().to_json()).unwrap();
    let text = json.to_string();
    assert!(text.contains("\"remote\":{"), "{text}");
    assert!(text.contains("\"peer\":\"127.0.0.1:8080\""), "{text}");
    assert!(text.contains("\"site\":\"a.rs:1:1\""), "{text}");
}

#[cfg(feature = "remote")]
mod across_processes {
    use milieu::dump::ProcessHop;
    use milieu::remote::{Baggage, Propagation, TraceContext};

    #[derive(Baggage, Debug)]
    #[baggage(key = "tenant")]
    struct Tenant(String);

    /// The headers `propagation.inject` writes in the current context.
    fn send(propagation: &Propagation) -> Vec<(&'static str, String)> {
        let mut headers = Vec::new();
        propagation.inject(&mut |name, value| headers.push((name, value.to_owned())));
        headers
    }

    fn values<'a>(headers: &'a [(&'static str, String)], name: &str) -> Vec<&'a str> {
        headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// What a server with `propagation` makes of `headers` from `peer`.
    fn receive(
        propagation: &Propagation,
        headers: &[(&'static str, String)],
        peer: &str,
    ) -> milieu::remote::Incoming {
        propagation.extract_process(
            &values(headers, "traceparent"),
            &values(headers, "tracestate"),
            &values(headers, "baggage"),
            &values(headers, "milieu-origin"),
            Some(peer),
        )
    }

    #[test]
    fn the_callee_dump_names_the_install_site_in_the_caller_when_both_sides_opt_in() {
        let caller = Propagation::new()
            .carry::<Tenant>()
            .with_service_name("orders")
            .with_install_sites(true);
        let (headers, line) = {
            let line = line!() + 1;
            let _tenant = milieu::provide(Tenant("acme".into()));
            (send(&caller), line)
        };
        let callee = Propagation::new()
            .carry::<Tenant>()
            .with_install_sites(true);
        let incoming = receive(&callee, &headers, "127.0.0.1:40312");
        let sent_parent = values(&headers, "traceparent")[0].to_owned();
        incoming.into_scope(milieu::scope()).run(|| {
            let hop = milieu::get::<ProcessHop>().unwrap();
            assert_eq!(hop.peer.as_deref(), Some("127.0.0.1:40312"));
            assert_eq!(hop.service.as_deref(), Some("orders"));
            assert_eq!(hop.traceparent.as_deref(), Some(sent_parent.as_str()));
            assert_eq!(hop.arrived[0].key, "tenant");
            let trace = milieu::get::<TraceContext>().unwrap();
            assert_eq!(
                Some(trace.parent_id().unwrap().to_string().as_str()),
                sent_parent.split('-').nth(2)
            );

            let text = milieu::dump().to_string();
            let expected = format!(
                "installed at {}:{line}:27 in service orders, carried by process hop from \
                 127.0.0.1:40312 (service orders, traceparent {sent_parent})",
                file!()
            );
            assert!(text.contains(&expected), "{expected}\n{text}");
        });
    }

    #[test]
    fn sites_stay_home_unless_both_sides_opt_in() {
        let _tenant = milieu::provide(Tenant("acme".into()));
        let quiet = Propagation::new()
            .carry::<Tenant>()
            .with_service_name("orders");
        let headers = send(&quiet);
        let origin = values(&headers, "milieu-origin");
        assert_eq!(origin, ["service=orders"], "only the service name is sent");

        let loud = Propagation::new()
            .carry::<Tenant>()
            .with_install_sites(true);
        let headers = send(&loud);
        assert!(values(&headers, "milieu-origin")[0].contains("site.tenant="));
        // A server that did not opt in does not read them.
        let incoming = receive(
            &Propagation::new().carry::<Tenant>(),
            &headers,
            "10.0.0.1:1",
        );
        incoming.into_scope(milieu::scope()).run(|| {
            let dump = milieu::dump();
            let tenant = dump
                .entries()
                .find(|e| e.type_name.ends_with("Tenant") && e.provenance.remote.is_some())
                .unwrap();
            assert!(tenant.provenance.remote.as_ref().unwrap().site.is_none());
        });
    }

    #[test]
    fn a_forwarding_service_passes_on_the_first_installers_site() {
        let sites = || {
            Propagation::new()
                .carry::<Tenant>()
                .with_install_sites(true)
        };
        let at_a = {
            let _tenant = milieu::provide(Tenant("acme".into()));
            send(&sites().with_service_name("a"))
        };
        // B receives it and calls C.
        let at_b = receive(&sites(), &at_a, "10.0.0.1:1")
            .into_scope(milieu::scope())
            .run(|| send(&sites().with_service_name("b")));
        receive(&sites(), &at_b, "10.0.0.2:1")
            .into_scope(milieu::scope())
            .run(|| {
                let dump = milieu::dump();
                let tenant = dump
                    .entries()
                    .find(|e| e.type_name.ends_with("Tenant"))
                    .unwrap();
                let origin = tenant.provenance.remote.as_ref().unwrap();
                assert_eq!(origin.service.as_deref(), Some("a"));
                assert!(origin.site.as_deref().unwrap().starts_with(file!()));
                assert_eq!(origin.hop.service.as_deref(), Some("b"));
            });
    }

    #[test]
    fn a_relay_sends_no_site_for_an_entry_that_arrived_without_one() {
        let _tenant = milieu::provide(Tenant("acme".into()));
        // A does not send sites; B would, and C reads them.
        let at_a = send(&Propagation::new().carry::<Tenant>().with_service_name("a"));
        let sites = || {
            Propagation::new()
                .carry::<Tenant>()
                .with_install_sites(true)
        };
        let at_b = receive(&sites(), &at_a, "10.0.0.1:1")
            .into_scope(milieu::scope())
            .run(|| send(&sites().with_service_name("b")));
        // B's own receiving line is not where Tenant was installed.
        assert_eq!(values(&at_b, "milieu-origin"), ["service=b"]);
        receive(&sites(), &at_b, "10.0.0.2:1")
            .into_scope(milieu::scope())
            .run(|| {
                let dump = milieu::dump();
                let tenant = dump
                    .entries()
                    .find(|e| e.type_name.ends_with("Tenant") && e.provenance.remote.is_some())
                    .unwrap();
                assert!(tenant.provenance.remote.as_ref().unwrap().site.is_none());
            });
    }

    #[test]
    fn a_request_that_brings_nothing_records_no_hop() {
        let incoming = Propagation::new().extract_process(&[], &[], &[], &[], Some("10.0.0.1:1"));
        assert!(incoming.process_hop().is_none());
        incoming.into_scope(milieu::scope()).run(|| {
            assert!(!milieu::contains::<ProcessHop>());
            assert!(
                milieu::contains::<TraceContext>(),
                "a new trace all the same"
            );
        });
    }

    #[test]
    fn missing_in_the_callee_lists_what_the_caller_sent_and_what_was_declined() {
        struct Region;
        let incoming = Propagation::new().carry::<Tenant>().extract_process(
            &["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"],
            &[],
            &["tenant=acme,flag=1,bad key=2"],
            &["service=orders"],
            Some("127.0.0.1:9"),
        );
        let text = incoming
            .into_scope(milieu::scope())
            .run(|| milieu::get::<Region>().err().unwrap().to_string());
        assert!(text.contains("from another process: process hop from 127.0.0.1:9 (service orders, traceparent 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01)"), "{text}");
        assert!(text.contains("arrived: `tenant` as `"), "{text}");
        assert!(
            text.contains("declined: `bad key` (") || text.contains("declined: `` ("),
            "{text}"
        );
        assert!(
            text.contains("forwarded untouched (no carried type claims them): `flag`"),
            "{text}"
        );
    }
}
