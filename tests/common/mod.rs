//! Helpers shared by the integration tests. Each test file uses a subset.
#![allow(dead_code)]

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll, Waker};

use milieu::dump::Site;

pub mod browser;
pub mod examples;
#[cfg(feature = "sqlite")]
pub mod orders_example;
pub mod server;

/// How long a blocking test client waits on a socket before failing.
pub const SOCKET_DEADLINE: std::time::Duration = std::time::Duration::from_secs(20);

/// The text of a panic payload (`&str` or `String`), or a placeholder.
pub fn panic_message(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(s) => (*s).to_owned(),
            Err(_) => "<non-string panic payload>".to_owned(),
        },
    }
}

/// Runs `f`, catching a panic and returning its message.
pub fn catch<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(panic_message)
}

/// `file:line:` as `Location` / `Site` display it (the column follows).
pub fn site_prefix(file: &str, line: u32) -> String {
    format!("{file}:{line}:")
}

#[track_caller]
pub fn assert_contains(haystack: &str, needle: &str) {
    assert!(
        haystack.contains(needle),
        "expected to find {needle:?} in:\n{haystack}"
    );
}

#[track_caller]
pub fn assert_not_contains(haystack: &str, needle: &str) {
    assert!(
        !haystack.contains(needle),
        "expected NOT to find {needle:?} in:\n{haystack}"
    );
}

/// Asserts that `site` is `file:line` (any column).
#[track_caller]
pub fn assert_site(site: Site, file: &str, line: u32) {
    assert_eq!(
        (site.file, site.line),
        (file, line),
        "unexpected site {site}"
    );
}

/// Asserts this thread's current context has no entry and no frame.
#[track_caller]
pub fn assert_empty_context() {
    let dump = milieu::dump();
    assert!(
        dump.frames.is_empty(),
        "expected an empty context, found:\n{dump}"
    );
    assert!(
        milieu::Context::current().is_empty(),
        "expected an empty snapshot:\n{dump}"
    );
}

/// Runs `f` on a fresh, named `std` thread (no context is carried) and
/// returns its result, re-raising its panic.
pub fn in_fresh_thread<R: Send + 'static>(name: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let handle = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .expect("spawn thread");
    match handle.join() {
        Ok(r) => r,
        Err(payload) => std::panic::resume_unwind(payload),
    }
}

/// Counts how many of its tokens were dropped.
#[derive(Clone, Debug, Default)]
pub struct DropCounter(Arc<AtomicUsize>);

impl DropCounter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn token(&self) -> DropToken {
        DropToken(Arc::clone(&self.0))
    }

    pub fn dropped(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// Increments its counter when dropped.
#[derive(Debug)]
pub struct DropToken(Arc<AtomicUsize>);

impl Drop for DropToken {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A future that is pending once (waking itself), then ready.
#[derive(Debug, Default)]
pub struct YieldNow(bool);

pub fn yield_now() -> YieldNow {
    YieldNow(false)
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// Polls `fut` once with a no-op waker.
pub fn poll_once<F: Future + ?Sized>(fut: Pin<&mut F>) -> Poll<F::Output> {
    let mut cx = TaskContext::from_waker(Waker::noop());
    fut.poll(&mut cx)
}

/// One event seen by a [`Capture`] subscriber.
#[derive(Clone, Debug)]
pub struct CapturedEvent {
    pub target: String,
    pub level: tracing::Level,
    pub message: String,
    pub fields: Vec<(String, String)>,
    pub thread: Option<String>,
}

impl CapturedEvent {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal `tracing` subscriber that records every event.
#[derive(Clone, Debug, Default)]
pub struct Capture {
    events: Arc<Mutex<Vec<CapturedEvent>>>,
    next_span: Arc<AtomicU64>,
}

impl Capture {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn events(&self) -> Vec<CapturedEvent> {
        self.events.lock().unwrap().clone()
    }

    pub fn messages(&self) -> Vec<String> {
        self.events().into_iter().map(|e| e.message).collect()
    }

    pub fn saw(&self, message: &str) -> bool {
        self.messages().iter().any(|m| m == message)
    }
}

struct FieldVisitor<'a> {
    message: &'a mut String,
    fields: &'a mut Vec<(String, String)>,
}

impl tracing::field::Visit for FieldVisitor<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            *self.message = value.to_owned();
        } else {
            self.fields
                .push((field.name().to_owned(), value.to_owned()));
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            *self.message = format!("{value:?}");
        } else {
            self.fields
                .push((field.name().to_owned(), format!("{value:?}")));
        }
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(self.next_span.fetch_add(1, Ordering::SeqCst) + 1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let mut message = String::new();
        let mut fields = Vec::new();
        event.record(&mut FieldVisitor {
            message: &mut message,
            fields: &mut fields,
        });
        let meta = event.metadata();
        self.events.lock().unwrap().push(CapturedEvent {
            target: meta.target().to_owned(),
            level: *meta.level(),
            message,
            fields,
            thread: std::thread::current().name().map(str::to_owned),
        });
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

/// A blocking loopback client whose reads give up after [`SOCKET_DEADLINE`].
pub fn connect(addr: std::net::SocketAddr) -> std::net::TcpStream {
    let stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(SOCKET_DEADLINE)).unwrap();
    stream
}

/// Reads until the peer ends its stream.
pub fn read_to_end(stream: &mut std::net::TcpStream) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    stream
        .read_to_end(&mut out)
        .expect("read until end of stream");
    out
}

/// Reads exactly `n` bytes.
pub fn read_exactly(stream: &mut std::net::TcpStream, n: usize) -> Vec<u8> {
    use std::io::Read;
    let mut out = vec![0; n];
    stream.read_exact(&mut out).expect("read");
    out
}

/// `responses` (the text of one or more HTTP responses) without their
/// `Date` fields, once it is checked that each final response (not a
/// `100 Continue`) has exactly one, and that each is an IMF-fixdate
/// (`Sun, 06 Nov 1994 08:49:37 GMT`): what is left can be compared
/// byte for byte.
#[cfg(feature = "http")]
#[track_caller]
pub fn without_date(responses: &str) -> String {
    const FIELD: &str = "\r\nDate: ";
    let mut out = String::with_capacity(responses.len());
    let mut rest = responses;
    let mut dates = 0;
    while let Some(at) = rest.find(FIELD) {
        let value_start = at + FIELD.len();
        let value_len = rest[value_start..]
            .find("\r\n")
            .unwrap_or_else(|| panic!("an unterminated Date field in:\n{responses}"));
        let value = &rest[value_start..value_start + value_len];
        let reformatted = httpdate::parse_http_date(value).map(httpdate::fmt_http_date);
        assert_eq!(
            reformatted.ok().as_deref(),
            Some(value),
            "Date is not an IMF-fixdate in:\n{responses}"
        );
        // Keep the CRLF before the field, drop the field and its CRLF.
        out.push_str(&rest[..at + 2]);
        rest = &rest[value_start + value_len + 2..];
        dates += 1;
    }
    out.push_str(rest);
    let finals = responses.matches("HTTP/1.1 ").count() - responses.matches("HTTP/1.1 1").count();
    assert_eq!(
        dates, finals,
        "one Date per final response expected in:\n{responses}"
    );
    out
}

/// A value a handler holds across `.await`: its drop sends the request's
/// path and trace id as the context shows them then (`None` for what is
/// not there), to tell whether it was dropped inside the request.
#[cfg(feature = "remote")]
pub struct SeenOnDrop(pub std::sync::mpsc::Sender<(Option<String>, Option<String>)>);

#[cfg(feature = "remote")]
impl Drop for SeenOnDrop {
    fn drop(&mut self) {
        let path = milieu::remote::RequestInfo::current()
            .ok()
            .map(|info| info.path().to_owned());
        let trace = milieu::get::<milieu::remote::TraceContext>()
            .ok()
            .map(|trace| trace.trace_id().to_string());
        let _ = self.0.send((path, trace));
    }
}
