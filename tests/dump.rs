//! Dumps: the readable tree, JSON, and the `tracing` event.

mod common;

use std::rc::Rc;

use common::{assert_contains, in_fresh_thread, site_prefix, Capture};
use milieu::dump::{EntryStatus, FrameDump, HopKind};
use milieu::{Context, FutureExt};

#[derive(Debug)]
struct Level(#[allow(dead_code)] u32);
#[derive(Debug)]
struct Tenant(#[allow(dead_code)] &'static str);
struct Db;
struct Scratch(#[allow(dead_code)] Rc<u8>);

/// The line index of the first line containing `needle`.
#[track_caller]
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not found in:\n{text}"))
}

#[test]
fn the_text_dump_lists_the_top_frame_first() {
    let (_db, db_line) = (milieu::provide(Db), line!());
    let (_tenant, tenant_line) = (milieu::scope().with_debug(Tenant("acme")).enter(), line!());
    let dump = milieu::dump();
    let text = dump.to_string();

    assert_contains(&text, "2 visible (top frame first)");
    let tenant_frame = line_of(
        &text,
        &format!("frame installed at {}", site_prefix(file!(), tenant_line)),
    );
    let db_frame = line_of(
        &text,
        &format!("frame installed at {}", site_prefix(file!(), db_line)),
    );
    assert!(tenant_frame < db_frame, "top frame first:\n{text}");
    assert!(line_of(&text, "Tenant(\"acme\")") < line_of(&text, std::any::type_name::<Db>()));
    assert!(
        matches!(&dump.frames[0], FrameDump::Installed { site, .. } if site.line == tenant_line)
    );
}

#[test]
fn the_text_dump_marks_shadowed_entries() {
    let (_one, one_line) = (milieu::scope().with_debug(Level(1)).enter(), line!());
    let (_two, two_line) = (milieu::scope().with_debug(Level(2)).enter(), line!());
    let dump = milieu::dump();
    let statuses: Vec<_> = dump.entries().map(|e| e.status.clone()).collect();
    assert_eq!(statuses.len(), 2);
    assert_eq!(statuses[0], EntryStatus::Visible);
    match &statuses[1] {
        EntryStatus::Shadowed { by: Some(by) } => assert_eq!(by.line, two_line),
        other => panic!("expected Shadowed by the second install, got {other:?}"),
    }
    let text = dump.to_string();
    assert_contains(&text, "1 visible, 1 shadowed");
    let shadowed = line_of(&text, "Level(1)");
    assert_contains(
        text.lines().nth(shadowed).unwrap(),
        &format!("SHADOWED by {}", site_prefix(file!(), two_line)),
    );
    assert_contains(
        &text,
        &format!("installed at {}", site_prefix(file!(), one_line)),
    );
    assert!(!text
        .lines()
        .nth(line_of(&text, "Level(2)"))
        .unwrap()
        .contains("SHADOWED"));
}

#[test]
fn the_text_dump_marks_not_carried_and_lists_hops() {
    let _db = milieu::provide(Db);
    let _scratch = milieu::provide_local(Scratch(Rc::new(0)));
    let builder = milieu::thread::Builder::new().name("dump-worker");
    let work = || {
        let (task, task_line) = (async { milieu::dump() }.in_current_context(), line!());
        (futures::executor::block_on(task), task_line)
    };
    let (handle, spawn_line) = (builder.spawn(work), line!());
    let (dump, task_line) = handle.unwrap().join().unwrap();
    let text = dump.to_string();

    assert_contains(
        &text,
        "milieu context on thread `dump-worker`: 1 visible, 1 not carried",
    );
    assert_contains(
        &text,
        &format!(
            "NOT CARRIED past thread at {}",
            site_prefix(file!(), spawn_line)
        ),
    );
    let me = std::thread::current().name().unwrap().to_owned();
    let task_hop = line_of(
        &text,
        &format!("hop: task at {}", site_prefix(file!(), task_line)),
    );
    let thread_hop = line_of(
        &text,
        &format!(
            "hop: thread `dump-worker` at {}",
            site_prefix(file!(), spawn_line)
        ),
    );
    assert!(task_hop < thread_hop, "newest hop first:\n{text}");
    assert_contains(
        text.lines().nth(thread_hop).unwrap(),
        &format!("from `{me}` to `dump-worker`"),
    );
    assert_contains(text.lines().nth(task_hop).unwrap(), "on `dump-worker`");

    let hops: Vec<_> = dump.hops().map(|h| h.kind).collect();
    assert_eq!(hops, [HopKind::Task, HopKind::Thread]);
    assert_eq!(dump.visible().count(), 1);
    assert_eq!(dump.entries().count(), 2);
}

#[test]
fn a_snapshot_dump_marks_local_entries_not_carried_into_the_snapshot() {
    let _scratch = milieu::provide_local(Scratch(Rc::new(0)));
    let text = Context::current().dump().to_string();
    assert_contains(&text, "milieu snapshot (dumped on thread");
    assert_contains(&text, "NOT CARRIED into the snapshot");
}

#[test]
fn a_reentered_snapshot_is_shown_as_a_frame() {
    let _scratch = milieu::provide_local(Scratch(Rc::new(0)));
    let snap = Context::current();
    let (dump, run_line) = (snap.run(milieu::dump), line!());
    assert!(matches!(&dump.frames[0], FrameDump::Entered { site, .. } if site.line == run_line));
    assert_contains(
        &dump.to_string(),
        &format!("snapshot entered at {}", site_prefix(file!(), run_line)),
    );
}

#[test]
fn an_empty_dump() {
    let dump = in_fresh_thread("dump-empty", milieu::dump);
    assert!(dump.frames.is_empty());
    assert_eq!(dump.entries().count(), 0);
    assert_eq!(
        dump.to_string().trim_end(),
        "milieu context on thread `dump-empty`: 0 visible (empty)"
    );
}

#[test]
fn emit_produces_a_tracing_event() {
    let _db = milieu::provide(Db);
    let _tenant = milieu::scope().with_debug(Tenant("acme")).enter();
    let dump = milieu::dump();
    let capture = Capture::new();
    tracing::subscriber::with_default(capture.clone(), || dump.emit());
    let events = capture.events();
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event.target, "milieu::dump");
    assert_eq!(event.level, tracing::Level::INFO);
    assert_eq!(event.message, dump.to_string());
    assert_eq!(event.field("visible"), Some("2"));
    assert_eq!(
        event.field("thread").map(str::to_owned),
        Some(dump.thread.to_string())
    );
}

#[test]
fn emit_is_also_captured_by_tracing_subscriber_fmt() {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _db = milieu::provide(Db);
    tracing::subscriber::with_default(subscriber, || milieu::dump().emit());
    let out = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert_contains(&out, "milieu::dump");
    assert_contains(&out, std::any::type_name::<Db>());
}

#[cfg(feature = "serde")]
mod json {
    use super::*;
    use serde_json::Value;

    #[test]
    fn the_json_dump_has_the_expected_fields() {
        let (one, one_line) = (milieu::scope().with_debug(Level(1)), line!());
        let _one = one.because("base").enter();
        let (_two, two_line) = (milieu::provide(Level(2)), line!());
        let _scratch = milieu::provide_local(Scratch(Rc::new(0)));
        let builder = milieu::thread::Builder::new().name("json-worker");
        let (handle, spawn_line) = (builder.spawn(milieu::dump), line!());
        let dump = handle.unwrap().join().unwrap();

        let json: Value = serde_json::from_str(&dump.to_json()).expect("valid JSON");
        let pretty: Value = serde_json::from_str(&dump.to_json_pretty()).expect("valid JSON");
        assert_eq!(json, pretty);

        assert_eq!(json["thread"]["name"], "json-worker");
        assert!(json["thread"]["id"].is_string());
        assert_eq!(json["snapshot"], false);
        let frames = json["frames"].as_array().expect("frames array");
        assert_eq!(frames.len(), 4, "{json:#}");

        // Top frame first: the thread hop.
        let hop = &frames[0];
        assert_eq!(hop["frame"], "hop");
        assert_eq!(hop["kind"], "thread");
        assert_eq!(hop["label"], "json-worker");
        assert_eq!(hop["site"]["file"], file!());
        assert_eq!(hop["site"]["line"], spawn_line);
        assert!(hop["site"]["column"].as_u64().is_some());
        assert_eq!(hop["to"]["name"], "json-worker");

        // The local scratch: not carried past the hop.
        let scratch = &frames[1];
        assert_eq!(scratch["frame"], "installed");
        let entry = &scratch["entries"][0];
        assert_eq!(entry["type_name"], std::any::type_name::<Scratch>());
        assert_eq!(entry["policy"], "local");
        assert_eq!(entry["status"], "not_carried");
        assert_eq!(entry["hop"]["kind"], "thread");
        assert_eq!(entry["hop"]["site"]["line"], spawn_line);

        // Level(2): visible, value hidden, carried by the hop.
        let two = &frames[2]["entries"][0];
        assert_eq!(frames[2]["site"]["line"], two_line);
        assert_eq!(two["status"], "visible");
        assert_eq!(two["policy"], "inherited");
        assert!(two["value"].is_null());
        assert_eq!(two["provenance"]["site"]["line"], two_line);
        assert!(two["provenance"]["seq"].as_u64().is_some());
        assert_eq!(two["provenance"]["hops"].as_array().map(Vec::len), Some(1));
        assert_eq!(two["provenance"]["hops"][0]["kind"], "thread");

        // Level(1): shadowed by Level(2), value shown, reason recorded.
        let one = &frames[3]["entries"][0];
        assert_eq!(one["status"], "shadowed");
        assert_eq!(one["by"]["line"], two_line);
        assert_eq!(one["value"], "Level(1)");
        assert_eq!(one["provenance"]["reason"], "base");
        assert_eq!(one["provenance"]["site"]["line"], one_line);
        assert!(one["provenance"]["thread"]["name"].is_string());
    }

    #[test]
    fn an_empty_json_dump() {
        let dump = in_fresh_thread("json-empty", milieu::dump);
        let json: Value = serde_json::from_str(&dump.to_json()).unwrap();
        assert_eq!(json["frames"], Value::Array(Vec::new()));
        assert_eq!(json["thread"]["name"], "json-empty");
    }

    #[test]
    fn a_snapshot_json_dump_is_flagged() {
        let _db = milieu::provide(Db);
        let json: Value = serde_json::from_str(&Context::current().dump().to_json()).unwrap();
        assert_eq!(json["snapshot"], true);
    }
}
