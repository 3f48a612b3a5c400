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
