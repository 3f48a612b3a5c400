//! Provenance: install sites, threads, sequence numbers, reasons and hops.

mod common;

use std::rc::Rc;

use common::{assert_contains, assert_site, in_fresh_thread, site_prefix};
use milieu::dump::{Dump, EntryDump, EntryStatus, FrameDump, HopKind};
use milieu::{Context, FutureExt, ScopeExt};

struct A;
struct B;
struct C;
#[derive(Debug)]
struct D(#[allow(dead_code)] u8);
struct Scratch(#[allow(dead_code)] Rc<u8>);

#[track_caller]
fn entry<T>(dump: &Dump) -> &EntryDump {
    let name = std::any::type_name::<T>();
    dump.entries()
        .find(|e| e.type_name == name)
        .unwrap_or_else(|| panic!("no {name} in dump:\n{dump}"))
}

#[test]
fn each_entry_records_its_install_call() {
    let (_a, a_line) = (milieu::provide(A), line!());
    let scope = milieu::scope();
    let (scope, b_line) = (scope.with(B), line!());
    let (scope, c_line) = (scope.with_arc(std::sync::Arc::new(C)), line!());
    let (scope, d_line) = (scope.with_debug(D(1)), line!());
    let (_scope, enter_line) = (scope.enter(), line!());

    let dump = milieu::dump();
    assert_site(entry::<A>(&dump).provenance.site, file!(), a_line);
    assert_site(entry::<B>(&dump).provenance.site, file!(), b_line);
    assert_site(entry::<C>(&dump).provenance.site, file!(), c_line);
    assert_site(entry::<D>(&dump).provenance.site, file!(), d_line);

    // Frames record the `enter` / `provide` call.
    let sites: Vec<_> = dump
        .frames
        .iter()
        .map(|f| match f {
            FrameDump::Installed { site, .. } => site.line,
            other => panic!("unexpected frame {other:?}"),
        })
        .collect();
    assert_eq!(sites, [enter_line, a_line], "top frame first");
}

#[test]
fn run_and_local_installs_record_their_sites_too() {
    let (_l, l_line) = (milieu::provide_local(Scratch(Rc::new(0))), line!());
    let scope = milieu::scope();
    let (scope, b_line) = (scope.with(B), line!());
    let (dump, run_line) = (scope.run(milieu::dump), line!());
    assert_site(entry::<Scratch>(&dump).provenance.site, file!(), l_line);
    assert_site(entry::<B>(&dump).provenance.site, file!(), b_line);
    match &dump.frames[0] {
        FrameDump::Installed { site, .. } => assert_site(*site, file!(), run_line),
        other => panic!("unexpected frame {other:?}"),
    }
}

#[test]
fn the_installing_thread_is_recorded() {
    let dump = in_fresh_thread("prov-installer", || {
        let _a = milieu::provide(A);
        let dump = milieu::dump();
        let id = format!("{:?}", std::thread::current().id());
        let e = entry::<A>(&dump);
        assert_eq!(e.provenance.thread.name.as_deref(), Some("prov-installer"));
        assert_eq!(e.provenance.thread.id, id);
        dump
    });
    assert_eq!(dump.thread.name.as_deref(), Some("prov-installer"));
    let text = dump.to_string();
    assert_contains(&text, "on thread `prov-installer`");
    // Seen from another thread, the entry still names its installer.
    let _a = milieu::provide(A);
    let seen = in_fresh_thread("prov-reader", {
        let ctx = Context::current();
        move || ctx.run(milieu::dump)
    });
    assert_eq!(seen.thread.name.as_deref(), Some("prov-reader"));
    assert_eq!(
        entry::<A>(&seen).provenance.thread.name,
        std::thread::current().name().map(Into::into)
    );
}

#[test]
fn sequence_numbers_increase_in_installation_order() {
    let _a = milieu::provide(A);
    let _bc = milieu::scope().with(B).with(C).enter();
    let _d = milieu::provide(D(0));
    let dump = milieu::dump();
    let seq = |e: &EntryDump| e.provenance.seq;
    let (a, b, c, d) = (
        seq(entry::<A>(&dump)),
        seq(entry::<B>(&dump)),
        seq(entry::<C>(&dump)),
        seq(entry::<D>(&dump)),
    );
    assert!(a < b && b < c && c < d, "seqs {a} {b} {c} {d}");
}

#[test]
fn reasons_are_recorded() {
    let _g = milieu::scope().with(A).because("primary").with(B).enter();
    let dump = milieu::dump();
    assert_eq!(
        entry::<A>(&dump).provenance.reason.as_deref(),
        Some("primary")
    );
    assert_eq!(entry::<B>(&dump).provenance.reason, None);
    let owned = String::from("computed reason");
    let _h = milieu::scope().with(C).because(owned).enter();
    assert_eq!(
        entry::<C>(&milieu::dump()).provenance.reason.as_deref(),
        Some("computed reason")
    );
}

#[test]
fn a_builder_thread_spawn_records_a_thread_hop() {
    let _a = milieu::provide(A);
    let me = std::thread::current().name().map(str::to_owned);
    let builder = milieu::thread::Builder::new().name("prov-worker");
    let (spawned, spawn_line) = (builder.spawn(milieu::dump), line!());
    let dump = spawned.unwrap().join().unwrap();

    let hops: Vec<_> = dump.hops().collect();
    assert_eq!(hops.len(), 1, "{dump}");
    let hop = hops[0];
    assert_eq!(hop.kind, HopKind::Thread);
    assert_eq!(hop.label.as_deref(), Some("prov-worker"));
    assert_site(hop.site, file!(), spawn_line);
    assert_eq!(hop.from.name, me);
    assert_eq!(
        hop.to.as_ref().and_then(|t| t.name.as_deref()),
        Some("prov-worker")
    );

    let e = entry::<A>(&dump);
    assert_eq!(e.provenance.hops, std::slice::from_ref(hop));
    assert_contains(
        &dump.to_string(),
        &format!(
            "hop: thread `prov-worker` at {}",
            site_prefix(file!(), spawn_line)
        ),
    );
}

#[test]
fn a_plain_thread_spawn_records_an_unlabelled_thread_hop() {
    let _a = milieu::provide(A);
    let (handle, spawn_line) = (milieu::thread::spawn(milieu::dump), line!());
    let dump = handle.join().unwrap();
    let hop = dump.hops().next().expect("one hop");
    assert_eq!(hop.kind, HopKind::Thread);
    assert_eq!(hop.label, None);
    assert_site(hop.site, file!(), spawn_line);
}

#[test]
fn a_wrapped_future_records_a_task_hop() {
    let _a = milieu::provide(A);
    let (task, task_line) = (async { milieu::dump() }.in_current_context(), line!());
    let dump = futures::executor::block_on(task);
    let hops: Vec<_> = dump.hops().collect();
    assert_eq!(hops.len(), 1, "{dump}");
    assert_eq!(hops[0].kind, HopKind::Task);
    assert_eq!(hops[0].label, None);
    assert_site(hops[0].site, file!(), task_line);
    assert_eq!(entry::<A>(&dump).provenance.hops.len(), 1);
}

#[test]
fn scope_wrap_records_a_task_hop_and_the_entry_sites() {
    let scope = milieu::scope();
    let (scope, b_line) = (scope.with(B), line!());
    let (task, wrap_line) = (scope.wrap(async { milieu::dump() }), line!());
    let dump = futures::executor::block_on(task);
    let hop = dump.hops().next().expect("a task hop");
    assert_eq!(hop.kind, HopKind::Task);
    assert_site(hop.site, file!(), wrap_line);
    assert_site(entry::<B>(&dump).provenance.site, file!(), b_line);
}

#[test]
fn a_custom_labelled_hop() {
    let _a = milieu::provide(A);
    let ctx = Context::current();
    let (carried, hop_line) = (ctx.hop_labeled(HopKind::Stage, "db"), line!());
    let dump = in_fresh_thread("db-stage", move || carried.run(milieu::dump));
    let hop = dump.hops().next().expect("a stage hop");
    assert_eq!(hop.kind, HopKind::Stage);
    assert_eq!(hop.label.as_deref(), Some("db"));
    assert_site(hop.site, file!(), hop_line);
    assert_eq!(
        hop.to.as_ref().and_then(|t| t.name.as_deref()),
        Some("db-stage")
    );
    assert_contains(&dump.to_string(), "hop: stage `db` at");

    let (process, process_line) = (Context::current().hop(HopKind::Process), line!());
    let dump = process.dump();
    let hop = dump.hops().next().expect("a process hop");
    assert_eq!((hop.kind, hop.label.as_deref()), (HopKind::Process, None));
    assert_site(hop.site, file!(), process_line);
}

#[test]
fn hopping_an_empty_context_records_nothing() {
    in_fresh_thread("prov-empty", || {
        let carried = Context::current().hop(HopKind::Thread);
        assert!(carried.is_empty());
        assert!(carried.dump().frames.is_empty());
    });
}

#[test]
fn two_hops_are_recorded_oldest_first() {
    let _a = milieu::provide(A);
    let builder = milieu::thread::Builder::new().name("prov-two-hops");
    let work = || {
        let (task, line) = (async { milieu::dump() }.in_current_context(), line!());
        (futures::executor::block_on(task), line)
    };
    let (handle, spawn_line) = (builder.spawn(work), line!());
    let (dump, task_line) = handle.unwrap().join().unwrap();

    let e = entry::<A>(&dump);
    let kinds: Vec<_> = e.provenance.hops.iter().map(|h| h.kind).collect();
    assert_eq!(
        kinds,
        [HopKind::Thread, HopKind::Task],
        "entry hops are oldest first"
    );
    assert_site(e.provenance.hops[0].site, file!(), spawn_line);
    assert_site(e.provenance.hops[1].site, file!(), task_line);
    // The dump's frames (and `hops()`) are top first, i.e. newest first.
    let frame_kinds: Vec<_> = dump.hops().map(|h| h.kind).collect();
    assert_eq!(frame_kinds, [HopKind::Task, HopKind::Thread]);
    let text = dump.to_string();
    let carried = text
        .lines()
        .find(|l| l.contains("carried by"))
        .expect("a carried-by line");
    let thread_at = carried.find(&format!("thread at {}", site_prefix(file!(), spawn_line)));
    let task_at = carried.find(&format!("-> task at {}", site_prefix(file!(), task_line)));
    assert!(
        matches!((thread_at, task_at), (Some(t), Some(k)) if t < k),
        "expected `carried by thread at .. -> task at ..`:\n{text}"
    );
}

#[test]
fn entries_installed_after_a_hop_only_list_later_hops() {
    let _a = milieu::provide(A);
    let dump = milieu::thread::spawn(|| {
        let _b = milieu::provide(B);
        futures::executor::block_on(async { milieu::dump() }.in_current_context())
    })
    .join()
    .unwrap();
    let a: Vec<_> = entry::<A>(&dump)
        .provenance
        .hops
        .iter()
        .map(|h| h.kind)
        .collect();
    let b: Vec<_> = entry::<B>(&dump)
        .provenance
        .hops
        .iter()
        .map(|h| h.kind)
        .collect();
    assert_eq!(a, [HopKind::Thread, HopKind::Task]);
    assert_eq!(b, [HopKind::Task]);
    assert_ne!(
        entry::<B>(&dump).provenance.thread.id,
        entry::<A>(&dump).provenance.thread.id,
        "B was installed on the spawned thread"
    );
}

/// A local entry left out when its snapshot is re-entered on its own thread
/// was left behind by that re-entry (`hop: None`), not by a hop taken later
/// inside the re-entered snapshot.
#[test]
fn a_local_entry_left_out_by_a_reentered_snapshot_names_no_later_hop() {
    let _local = milieu::provide_local(Scratch(Rc::new(0)));
    let snap = Context::current();
    let dump =
        snap.run(|| futures::executor::block_on(async { milieu::dump() }.in_current_context()));
    let e = entry::<Scratch>(&dump);
    assert_eq!(
        e.status,
        EntryStatus::NotCarried { hop: None },
        "the re-entry, not the task hop above it, left the local entry out:\n{dump}"
    );
}

/// The nearest cut is the one that left a local entry behind: a thread hop
/// below a later task hop.
#[test]
fn a_local_entry_is_left_behind_at_the_nearest_hop() {
    let _local = milieu::provide_local(Scratch(Rc::new(0)));
    let work = || futures::executor::block_on(async { milieu::dump() }.in_current_context());
    let (handle, spawn_line) = (milieu::thread::spawn(work), line!());
    let dump = handle.join().unwrap();
    match &entry::<Scratch>(&dump).status {
        EntryStatus::NotCarried { hop: Some(hop) } => {
            assert_eq!(hop.kind, HopKind::Thread);
            assert_site(hop.site, file!(), spawn_line);
        }
        other => panic!("expected NotCarried past the thread hop, got {other:?}"),
    }
}
