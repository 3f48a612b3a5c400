//! `Missing`: a failed lookup explains itself.

mod common;

use std::any::type_name;
use std::rc::Rc;
use std::sync::Arc;

use common::{assert_contains, assert_not_contains, in_fresh_thread, site_prefix};
use milieu::dump::{EntryStatus, HopKind, NearMissKind};
use milieu::Missing;

struct Clock;
struct Db;
struct Tenant;
struct Scratch(#[allow(dead_code)] Rc<u8>);

mod other {
    pub struct Clock;
}

/// The error of a lookup expected to fail.
#[track_caller]
fn missing<T>(result: Result<T, Missing>) -> Missing {
    match result {
        Ok(_) => panic!("expected the lookup to fail"),
        Err(missing) => missing,
    }
}

#[test]
fn display_names_the_type_the_site_and_everything_present() {
    in_fresh_thread("missing-display", || {
        let (_db, db_line) = (milieu::provide(Db), line!());
        let (tenant, tenant_line) = (milieu::scope().with(Tenant), line!());
        let _tenant = tenant.because("request tenant").enter();
        let (err, lookup_line) = (missing(milieu::get::<Clock>()), line!());

        assert_eq!(err.type_name(), type_name::<Clock>());
        assert_eq!(
            (
                err.site().expect("lookup site").file,
                err.site().expect("lookup site").line
            ),
            (file!(), lookup_line)
        );
        assert_eq!(err.thread().name.as_deref(), Some("missing-display"));
        assert_eq!(err.present().entries().count(), 2);
        assert!(err.near_misses().is_empty(), "{:?}", err.near_misses());

        let text = err.to_string();
        assert_contains(
            &text,
            &format!("no `{}` in the context", type_name::<Clock>()),
        );
        assert_contains(
            &text,
            &format!("looked up at {}", site_prefix(file!(), lookup_line)),
        );
        assert_contains(&text, "on thread `missing-display`");
        assert_contains(&text, type_name::<Db>());
        assert_contains(
            &text,
            &format!("installed at {}", site_prefix(file!(), db_line)),
        );
        assert_contains(&text, type_name::<Tenant>());
        assert_contains(
            &text,
            &format!("installed at {}", site_prefix(file!(), tenant_line)),
        );
        assert_contains(&text, "because \"request tenant\"");
        assert_not_contains(&text, "near miss");
    });
}

#[test]
fn with_reports_its_own_call_site() {
    let _db = milieu::provide(Db);
    let (err, line) = (missing(milieu::with(|_: &Clock| ())), line!());
    assert_eq!(
        (
            err.site().expect("lookup site").file,
            err.site().expect("lookup site").line
        ),
        (file!(), line)
    );
    assert_contains(&err.to_string(), &site_prefix(file!(), line));
}

#[test]
fn near_miss_same_name_in_another_module() {
    let (_guard, line) = (milieu::provide(other::Clock), line!());
    let err = missing(milieu::get::<Clock>());
    let near = err.near_misses();
    assert_eq!(near.len(), 1, "{near:?}");
    assert_eq!(near[0].kind, NearMissKind::OtherPath);
    assert_eq!(near[0].entry.type_name, type_name::<other::Clock>());
    assert_eq!(near[0].entry.provenance.site.line, line);
    let text = err.to_string();
    assert_contains(
        &text,
        &format!(
            "near miss: `{}` installed at {}",
            type_name::<other::Clock>(),
            site_prefix(file!(), line)
        ),
    );
    assert_contains(&text, "another path");
}

#[test]
fn near_miss_asking_for_arc_of_an_installed_type() {
    let _guard = milieu::provide(Db);
    let err = missing(milieu::get::<Arc<Db>>());
    assert_eq!(err.type_name(), type_name::<Arc<Db>>());
    let near = err.near_misses();
    assert_eq!(near.len(), 1, "{near:?}");
    assert_eq!(near[0].kind, NearMissKind::Wrapper);
    assert_eq!(near[0].entry.type_name, type_name::<Db>());
    assert_contains(&err.to_string(), "wrapper");
}

#[test]
fn near_miss_asking_for_a_type_installed_as_arc() {
    // `provide(Arc::new(x))` keys the entry by `Arc<T>`: a classic mistake.
    let _guard = milieu::provide(Arc::new(Db));
    let err = missing(milieu::get::<Db>());
    let near = err.near_misses();
    assert_eq!(near.len(), 1, "{near:?}");
    assert_eq!(near[0].kind, NearMissKind::Wrapper);
    assert_eq!(near[0].entry.type_name, type_name::<Arc<Db>>());
}

#[test]
fn near_miss_local_entry_left_behind_by_a_thread_hop() {
    let (_scratch, local_line) = (milieu::provide_local(Scratch(Rc::new(1))), line!());
    let work = || missing(milieu::get::<Scratch>());
    let (handle, spawn_line) = (milieu::thread::spawn(work), line!());
    let err = handle.join().unwrap();

    let near = err.near_misses();
    assert_eq!(near.len(), 1, "{near:?}");
    assert_eq!(near[0].kind, NearMissKind::NotCarried);
    assert_eq!(near[0].entry.provenance.site.line, local_line);
    match &near[0].entry.status {
        EntryStatus::NotCarried { hop: Some(hop) } => {
            assert_eq!(hop.kind, HopKind::Thread);
            assert_eq!((hop.site.file, hop.site.line), (file!(), spawn_line));
        }
        other => panic!("expected NotCarried past the thread hop, got {other:?}"),
    }
    let text = err.to_string();
    assert_contains(&text, "local");
    assert_contains(&text, "NOT CARRIED past thread");
    assert_contains(&text, &site_prefix(file!(), spawn_line));
}

#[test]
fn missing_is_a_std_error() {
    fn assert_error<E: std::error::Error + Send + Sync + 'static>(_: &E) {}
    let err = missing(milieu::get::<Clock>());
    assert_error(&err);
    assert!(std::error::Error::source(&err).is_none());
    assert_eq!(
        format!("{err:?}"),
        err.to_string(),
        "Debug is the full report"
    );

    fn lookup() -> Result<(), Box<dyn std::error::Error>> {
        milieu::get::<Clock>()?;
        Ok(())
    }
    let boxed = lookup().unwrap_err();
    assert!(boxed.downcast_ref::<Missing>().is_some());
}

#[test]
fn empty_context_says_so() {
    in_fresh_thread("missing-empty", || {
        let err = missing(milieu::get::<Clock>());
        assert_eq!(err.present().frames.len(), 0);
        assert!(err.near_misses().is_empty());
        let text = err.to_string();
        assert_contains(
            &text,
            &format!("no `{}` in the context", type_name::<Clock>()),
        );
        assert_contains(&text, "present: nothing (the context is empty)");
    });
}

#[test]
fn snapshot_lookup_says_snapshot() {
    let ctx = milieu::scope().with(Db).run(milieu::Context::current);
    let (err, line) = (missing(ctx.get::<Tenant>()), line!());
    assert_eq!(err.site().expect("lookup site").line, line);
    assert!(err.present().snapshot);
    let text = err.to_string();
    assert_contains(
        &text,
        &format!("no `{}` in the snapshot", type_name::<Tenant>()),
    );
    assert_contains(&text, type_name::<Db>());
}

#[test]
fn a_lookup_in_an_empty_context_says_where_context_is_usually_lost() {
    #[derive(Debug)]
    struct Db;
    let _db = milieu::provide(Db);

    // A bare std thread.
    let err = std::thread::spawn(|| milieu::get::<Db>().unwrap_err())
        .join()
        .unwrap();
    assert!(err.context_is_empty());
    let text = err.to_string();
    assert!(
        text.contains("hint: this thread's context is entirely empty"),
        "{text}"
    );
    assert!(text.contains("milieu::thread::spawn"), "{text}");

    // A bare tokio task on a worker thread.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let err = runtime
        .block_on(async { tokio::spawn(async { milieu::get::<Db>().unwrap_err() }).await })
        .unwrap();
    assert!(err.context_is_empty());
    assert!(err.to_string().contains("in_current_context"));

    // Not when something is there, nor for a lookup in a snapshot.
    #[derive(Debug)]
    struct Other;
    let err = milieu::get::<Other>().unwrap_err();
    assert!(!err.context_is_empty());
    assert!(!err.to_string().contains("hint:"));
    let err = milieu::Context::empty().get::<Other>().unwrap_err();
    assert!(!err.context_is_empty());
    assert!(!err.to_string().contains("hint:"));
}
