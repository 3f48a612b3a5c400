//! Debug views to mount on an admin listener: the context of the request
//! being handled (`/debug/context`) and the figures of the service's
//! stages over the last minutes (`/debug/stages`), each as text, JSON or
//! an HTML page.
//!
//! # Mount them on an admin listener only
//!
//! The views show what a service would rather keep to itself: install
//! sites (file and line of its source), peer addresses, the values of
//! entries installed with `with_debug`, and the load of its stages. Serve
//! them on a second listener bound to loopback or an operators' network
//! (as `examples/orders` does with `--admin-addr`), never on the public
//! one. They have no authentication of their own.
//!
//! # One line in a router
//!
//! [`DebugViews`] is built once, explicitly (no global registry), with
//! the stages it shows, and cloned into the handler.
//! [`DebugViews::handle`] answers the requests whose path is under
//! `/debug/` and returns `None` for the others, so the router calls it
//! first:
//!
//! ```
//! use milieu::http::{self, debug::DebugViews, Request, Response};
//! use milieu::stage::Stage;
//!
//! let resize = Stage::builder("resize").build(|width: u32| width / 2)?;
//! let views = DebugViews::new().stage(resize.clone());
//!
//! let admin = http::serve(move |request: Request| {
//!     views.handle(&request).unwrap_or_else(|| Response::status(404))
//! });
//! # drop(admin);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Any other server (a `tower` service, hyper, a test) calls the
//! framework-neutral [`DebugViews::respond`] with the request's method,
//! path, query and `Accept`, and gets back a [`DebugResponse`]: status,
//! header fields, body.
//!
//! # Paths and formats
//!
//! | path | shows |
//! |---|---|
//! | `/debug/context` | the context of the request being handled ([`milieu::dump()`](crate::dump())), then the stages' current figures |
//! | `/debug/stages` | per stage: the current figures, and queue depth, throughput and p50/p99 latency per interval over the last minutes (charts in HTML) |
//!
//! The format is the one of `text/plain`, `application/json` and
//! `text/html` that `Accept` rates highest, by RFC 9110's rules (quality
//! values, `q=0` excluding, specific ranges before wildcards, the first
//! named among equals): HTML for a browser, text for curl's `*/*` and
//! when `Accept` is absent, JSON when asked for; 406 when it accepts none
//! of them. `?format=text`, `?format=json` or `?format=html` overrides
//! `Accept`. Durations are in human units in
//! every format ([`HumanDuration`](crate::stage::HumanDuration): `491.5
//! µs`); JSON also gives each in nanoseconds (`latency_p50_ns`), see
//! [`StageStats`]'s formats.
//!
//! In JSON, `/debug/context` is `{"about": heading, "context": dump,
//! "stages": [figures]}` (the dump as [`Dump::to_json`] gives it, the
//! figures as [`StageStats`] serialises), and `/debug/stages` an array
//! with one object per stage: its figures plus `"history"`, the intervals
//! oldest first, each `{"seconds_ago", "interval", "interval_ns",
//! "queue_depth", "throughput", "latency_p50", "latency_p50_ns",
//! "latency_p99", "latency_p99_ns"}` (`seconds_ago`: when it ended;
//! `throughput`: items completed per second; a latency is `null` when no
//! item completed in it).
//!
//! Refusals are plain text: another path under `/debug/` is 404; a method
//! other than `GET` or `HEAD` is 405 (with `Allow`); an unknown `format`
//! is 406; any other query parameter is 400. Every response carries
//! `Cache-Control: no-store`; the HTML pages a `Content-Security-Policy`
//! that allows no script and no resource from elsewhere (they use none:
//! inline CSS and inline SVG only).
//!
//! # History: who samples, and when
//!
//! A stage's figures are cumulative (counts and a latency histogram since
//! it was built), so "over the last minutes" needs samples: each sample
//! reads every stage's figures, and the difference between two samples
//! is one interval's point (completed items per second, the percentiles of
//! the latencies recorded in between, the queue depth at its end). Each
//! stage keeps its points in a bounded ring: [`keep`](DebugViews::keep)
//! long (15 minutes by default), at most 1024 points.
//!
//! Nothing samples behind your back, and no thread starts unless asked:
//!
//! - every request for `/debug/stages` takes a sample if the last one is 5
//!   seconds old or older, so the views work with no set-up, with
//!   irregular intervals (as often as someone looks);
//! - [`sample_every`](DebugViews::sample_every) starts a named thread
//!   (`milieu-debug-sampler`) that samples at a fixed interval until its
//!   [`Sampler`] guard is dropped: regular history whether or not anyone
//!   looks. A thread rather than a reactor timer because the views do not
//!   need a reactor (a tower service has none), and a sample is a few
//!   hundred relaxed atomic loads, not worth a reactor's attention;
//! - [`sample`](DebugViews::sample) takes one now, for any other driver
//!   (a reactor's `call_later`, a tokio interval, a test).
//!
//! # Examples
//!
//! ```
//! use milieu::http::debug::{DebugViews, Format};
//! use milieu::stage::{CloseMode, Stage};
//!
//! let stage = Stage::builder("double").build(|n: u64| n * 2)?;
//! let views = DebugViews::new().stage(stage.clone());
//!
//! views.sample();
//! for n in 0..10 {
//!     futures::executor::block_on(stage.submit(n)?)?;
//! }
//! views.sample(); // one interval: 10 items
//!
//! let page = views
//!     .respond("GET", "/debug/stages", Some("format=html"), None, milieu::dump)
//!     .expect("a debug path");
//! assert_eq!(page.status, 200);
//! assert_eq!(page.content_type(), "text/html; charset=utf-8");
//! let html = String::from_utf8(page.body).unwrap();
//! assert_eq!(html.matches("<svg").count(), 4); // depth, throughput, p50, p99
//!
//! // Not a debug path: the router goes on.
//! assert!(views.respond("GET", "/orders", None, None, milieu::dump).is_none());
//! // A format nobody knows: 406.
//! let refused = views.respond("GET", "/debug/stages", Some("format=xml"), None, milieu::dump);
//! assert_eq!(refused.unwrap().status, 406);
//! assert_eq!(Format::negotiate(None, Some("application/json")), Ok(Format::Json));
//! stage.close(CloseMode::Drain)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod accept;
mod chart;
mod context;
mod history;
mod html;
mod stages;

use std::fmt;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::dump::Dump;
use crate::stage::{Stage, StageStats};

use super::{Request, Response};
use history::History;
use stages::{Sampling, StageView};

/// How often a request for `/debug/stages` samples at most (when no
/// sampler runs more often).
const SAMPLE_ON_REQUEST: Duration = Duration::from_secs(5);

/// How much history a stage keeps unless told otherwise.
const DEFAULT_KEEP: Duration = Duration::from_secs(15 * 60);

/// The heading of the context view of the request being handled.
pub const THIS_REQUEST: &str = "Context of this request";

/// Anything that yields a stage's figures: a [`Stage`], a
/// [`txn::Database`](crate::txn::Database) (its DB stage), or a closure.
///
/// # Examples
///
/// A stage that lives elsewhere, reached through a closure:
///
/// ```
/// use std::sync::Arc;
/// use milieu::http::debug::DebugViews;
/// use milieu::stage::Stage;
///
/// let stage = Arc::new(Stage::builder("parse").build(|s: String| s.len())?);
/// let views = DebugViews::new().stage({
///     let stage = Arc::clone(&stage);
///     move || stage.stats()
/// });
/// assert_eq!(views.stats()[0].name, "parse");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait StatsSource: Send + Sync + 'static {
    /// The figures now.
    fn stats(&self) -> StageStats;
}

impl<F> StatsSource for F
where
    F: Fn() -> StageStats + Send + Sync + 'static,
{
    fn stats(&self) -> StageStats {
        self()
    }
}

/// The views hold a clone of the stage (so it stays open until closed
/// with [`Stage::close`]).
impl<In: Send + 'static, Out: Send + 'static> StatsSource for Stage<In, Out> {
    fn stats(&self) -> StageStats {
        Stage::stats(self)
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl<B: crate::txn::Backend> StatsSource for crate::txn::Database<B> {
    fn stats(&self) -> StageStats {
        crate::txn::Database::stats(self)
    }
}

/// A stage the views show, with its history.
struct Tracked {
    source: Box<dyn StatsSource>,
    history: Mutex<History>,
}

impl Tracked {
    fn history(&self) -> std::sync::MutexGuard<'_, History> {
        // A panic while holding it left at worst a point half-pruned.
        self.history.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Clone)]
struct Settings {
    keep: Duration,
    stages: Vec<Arc<Tracked>>,
}

/// The debug views of one service: `/debug/context` and `/debug/stages`,
/// as text, JSON or HTML. See the [module docs](self) for what they show,
/// where to mount them (an admin listener only) and how the stages'
/// history is sampled.
///
/// Built once with the stages to show, then cloned wherever it is served
/// (clones share the stages and their history).
#[derive(Clone)]
pub struct DebugViews {
    settings: Arc<Settings>,
    /// The intervals of the running samplers (for the page).
    sampler_every: Arc<Mutex<Vec<Duration>>>,
}

impl fmt::Debug for DebugViews {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.stats().into_iter().map(|s| s.name).collect();
        f.debug_struct("DebugViews")
            .field("stages", &names)
            .field("keep", &self.settings.keep)
            .finish()
    }
}

impl Default for DebugViews {
    fn default() -> Self {
        DebugViews::new()
    }
}

impl DebugViews {
    /// Views with no stages yet, keeping 15 minutes of history.
    pub fn new() -> DebugViews {
        DebugViews {
            settings: Arc::new(Settings {
                keep: DEFAULT_KEEP,
                stages: Vec::new(),
            }),
            sampler_every: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Adds a stage to `/debug/stages` and to the figures under
    /// `/debug/context`, shown in the order added. Views cloned before
    /// this call do not show it.
    pub fn stage(self, source: impl StatsSource) -> DebugViews {
        let mut settings = (*self.settings).clone();
        settings.stages.push(Arc::new(Tracked {
            source: Box::new(source),
            history: Mutex::new(History::new(settings.keep)),
        }));
        DebugViews {
            settings: Arc::new(settings),
            sampler_every: self.sampler_every,
        }
    }

    /// How much history each stage keeps (15 minutes unless set; at most
    /// 1024 points whatever the interval). Set it before adding stages:
    /// it applies to the stages added after.
    pub fn keep(self, keep: Duration) -> DebugViews {
        let mut settings = (*self.settings).clone();
        settings.keep = keep;
        DebugViews {
            settings: Arc::new(settings),
            sampler_every: self.sampler_every,
        }
    }

    /// The figures of every stage now, in the order added.
    pub fn stats(&self) -> Vec<StageStats> {
        self.settings
            .stages
            .iter()
            .map(|t| t.source.stats())
            .collect()
    }

    /// Samples every stage now: the interval since the previous sample
    /// becomes a point of its history.
    pub fn sample(&self) {
        for tracked in &self.settings.stages {
            let stats = tracked.source.stats();
            tracked.history().record(Instant::now(), &stats);
        }
    }

    /// Samples the stages whose last sample is `every` old or older.
    fn sample_if_due(&self, every: Duration) {
        for tracked in &self.settings.stages {
            if tracked.history().due(Instant::now(), every) {
                let stats = tracked.source.stats();
                tracked.history().record(Instant::now(), &stats);
            }
        }
    }

    /// Starts a thread named `milieu-debug-sampler` that [samples](Self::sample)
    /// every `interval` until the returned guard is dropped (which stops
    /// and joins it). See the [module docs](self#history-who-samples-and-when).
    ///
    /// # Errors
    ///
    /// The thread could not be spawned.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use milieu::http::debug::DebugViews;
    ///
    /// let views = DebugViews::new();
    /// let sampler = views.sample_every(Duration::from_secs(5))?;
    /// // ... serve ...
    /// drop(sampler); // stops sampling
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn sample_every(&self, interval: Duration) -> std::io::Result<Sampler> {
        let interval = interval.max(Duration::from_millis(1));
        let (stop, stopped) = mpsc::channel::<()>();
        let views = self.clone();
        let thread = std::thread::Builder::new()
            .name("milieu-debug-sampler".into())
            .spawn(move || loop {
                views.sample();
                match stopped.recv_timeout(interval) {
                    Err(RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                }
            })?;
        self.sampler_every
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(interval);
        Ok(Sampler {
            stop: Some(stop),
            thread: Some(thread),
            interval,
            every: Arc::clone(&self.sampler_every),
        })
    }

    /// Answers a request for a debug view, framework-neutral: `None` if
    /// `path` is not under `/debug/` (the caller routes it elsewhere),
    /// else the response, refusals included (see the [module
    /// docs](self#paths-and-formats)).
    ///
    /// `query` is the request target's query (after `?`), `accept` the
    /// value of its `Accept` header field. `dump` gives the context
    /// `/debug/context` shows, called only for that path: usually
    /// [`milieu::dump`](crate::dump()), called on the thread handling the
    /// request, in its context.
    pub fn respond(
        &self,
        method: &str,
        path: &str,
        query: Option<&str>,
        accept: Option<&str>,
        dump: impl FnOnce() -> Dump,
    ) -> Option<DebugResponse> {
        if path != "/debug" && !path.starts_with("/debug/") {
            return None;
        }
        let view = match path {
            "/debug/context" | "/debug/stages" => path,
            _ => {
                return Some(DebugResponse::refusal(
                    404,
                    format!(
                        "no debug view at {}: there are /debug/context and /debug/stages\n",
                        path.escape_debug()
                    ),
                ))
            }
        };
        if method != "GET" && method != "HEAD" {
            let mut refusal = DebugResponse::refusal(405, "the debug views answer GET and HEAD\n");
            refusal.headers.push(("allow", "GET, HEAD".into()));
            return Some(refusal);
        }
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            if !pair.starts_with("format=") {
                return Some(DebugResponse::refusal(
                    400,
                    format!(
                        "unknown query parameter `{}`: the debug views take format=text|json|html\n",
                        pair.escape_debug()
                    ),
                ));
            }
        }
        let format = match Format::negotiate(query, accept) {
            Ok(format) => format,
            Err(refusal) => return Some(refusal),
        };
        Some(if view == "/debug/context" {
            self.context(THIS_REQUEST, &dump(), format)
        } else {
            self.stages(format)
        })
    }

    /// [`respond`](Self::respond) for a milieu [`Request`], with the
    /// context of the handler calling it: `None` if its path is not under
    /// `/debug/`.
    pub fn handle(&self, request: &Request) -> Option<Response> {
        self.respond(
            request.method(),
            request.path(),
            request.query(),
            request.header("accept"),
            crate::dump,
        )
        .map(Response::from)
    }

    /// The context view of any `dump` (one kept from an earlier request,
    /// say) under the heading `about`, followed by the stages' figures: what
    /// `/debug/context` shows of the request being handled, for an
    /// application's own debug paths.
    pub fn context(&self, about: &str, dump: &Dump, format: Format) -> DebugResponse {
        context::render(about, dump, &self.stats(), format)
    }

    /// The stages view, as `/debug/stages` shows it (sampling first if the
    /// last sample is 5 seconds old or older).
    pub fn stages(&self, format: Format) -> DebugResponse {
        self.sample_if_due(SAMPLE_ON_REQUEST);
        let views: Vec<StageView> = self
            .settings
            .stages
            .iter()
            .map(|t| StageView {
                stats: t.source.stats(),
                points: t.history().points(),
            })
            .collect();
        let sampling = Sampling {
            keep: self.settings.keep,
            // The most frequent, if several run.
            every: self
                .sampler_every
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .min()
                .copied(),
        };
        stages::render(&views, sampling, Instant::now(), format)
    }
}

/// The sampler thread of [`DebugViews::sample_every`]: dropping it stops
/// the thread and waits for it (at most one sample's time).
#[must_use = "dropping the Sampler stops sampling at once"]
pub struct Sampler {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    interval: Duration,
    every: Arc<Mutex<Vec<Duration>>>,
}

impl fmt::Debug for Sampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sampler").finish_non_exhaustive()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let mut every = self.every.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(at) = every.iter().position(|&i| i == self.interval) {
            every.swap_remove(at);
        }
    }
}

/// The format of a view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain`: what curl shows.
    Text,
    /// `application/json`.
    Json,
    /// `text/html`: a page for a browser.
    Html,
}

impl Format {
    /// The format a request asks for: `format=text|json|html` in `query`
    /// if there (other query parameters are ignored, for the application's
    /// own), else from `accept` (the `Accept` header field): the one it
    /// rates highest by RFC 9110's rules (quality values, `q=0` excluding,
    /// specific ranges before wildcards; among equals the first named,
    /// then text, JSON, HTML), text when it is absent or says nothing.
    ///
    /// # Errors
    ///
    /// A 406 response naming the formats, for any other `format`, or an
    /// `accept` that accepts none of the three.
    ///
    /// # Examples
    ///
    /// ```
    /// use milieu::http::debug::Format;
    ///
    /// let browser = Some("text/html,application/xhtml+xml,*/*;q=0.8");
    /// assert_eq!(Format::negotiate(None, browser), Ok(Format::Html));
    /// assert_eq!(Format::negotiate(Some("format=json"), browser), Ok(Format::Json));
    /// assert_eq!(Format::negotiate(None, Some("*/*")), Ok(Format::Text));
    /// let not_json = Some("application/json;q=0, text/html");
    /// assert_eq!(Format::negotiate(None, not_json), Ok(Format::Html));
    /// assert_eq!(Format::negotiate(None, Some("image/png")).unwrap_err().status, 406);
    /// assert_eq!(Format::negotiate(Some("format=yaml"), None).unwrap_err().status, 406);
    /// ```
    pub fn negotiate(query: Option<&str>, accept: Option<&str>) -> Result<Format, DebugResponse> {
        let asked = query
            .unwrap_or("")
            .split('&')
            .filter_map(|pair| pair.strip_prefix("format="))
            .next_back();
        if let Some(asked) = asked {
            return match asked {
                "text" => Ok(Format::Text),
                "json" => Ok(Format::Json),
                "html" => Ok(Format::Html),
                other => Err(DebugResponse::refusal(
                    406,
                    format!(
                        "unknown format `{}`: format=text, format=json or format=html\n",
                        other.escape_debug()
                    ),
                )),
            };
        }
        const FORMATS: [Format; 3] = [Format::Text, Format::Json, Format::Html];
        const MEDIA: [&str; 3] = ["text/plain", "application/json", "text/html"];
        match accept::preferred(accept.unwrap_or(""), &MEDIA) {
            Some(index) => Ok(FORMATS[index]),
            None => Err(DebugResponse::refusal(
                406,
                "`Accept` accepts none of this view's formats: text/plain, application/json, \
                 text/html (or ask with format=text, format=json or format=html)\n",
            )),
        }
    }

    /// The `Content-Type` of a view in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; charset=utf-8",
            Format::Json => "application/json",
            Format::Html => "text/html; charset=utf-8",
        }
    }
}

/// A debug view's response, framework-neutral: status, header fields
/// (`content-type` first) and body.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DebugResponse {
    /// The status code.
    pub status: u16,
    /// The header fields, lower-case names: `content-type` first, then
    /// `cache-control`, and others (`allow` on a 405,
    /// `content-security-policy` on a page).
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl DebugResponse {
    /// A view in `format`.
    fn ok(format: Format, body: Vec<u8>) -> DebugResponse {
        let mut headers = vec![
            ("content-type", format.content_type().to_owned()),
            ("cache-control", "no-store".to_owned()),
        ];
        if format == Format::Html {
            headers.push((
                "content-security-policy",
                "default-src 'none'; style-src 'unsafe-inline'; img-src data:".to_owned(),
            ));
        }
        DebugResponse {
            status: 200,
            headers,
            body,
        }
    }

    /// A refusal: `status` with a line of text saying why.
    fn refusal(status: u16, why: impl Into<String>) -> DebugResponse {
        DebugResponse {
            status,
            headers: vec![
                ("content-type", Format::Text.content_type().to_owned()),
                ("cache-control", "no-store".to_owned()),
            ],
            body: why.into().into_bytes(),
        }
    }

    /// The value of `content-type`.
    pub fn content_type(&self) -> &str {
        self.headers
            .iter()
            .find(|(name, _)| *name == "content-type")
            .map_or("", |(_, value)| value)
    }
}

impl From<DebugResponse> for Response {
    fn from(view: DebugResponse) -> Response {
        let mut response = Response::status(view.status);
        for (name, value) in &view.headers {
            response = response.with_header(name, value);
        }
        response.with_body(view.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_paths_methods_and_parameters_are_refused_clearly() {
        let views = DebugViews::new();
        let ask = |method, path, query| views.respond(method, path, query, None, crate::dump);
        assert!(ask("GET", "/", None).is_none());
        assert!(ask("GET", "/debugger", None).is_none());
        assert_eq!(ask("GET", "/debug", None).unwrap().status, 404);
        let missing = ask("GET", "/debug/<script>", None).unwrap();
        assert_eq!(missing.status, 404);
        assert_eq!(missing.content_type(), "text/plain; charset=utf-8");
        let post = ask("POST", "/debug/stages", None).unwrap();
        assert_eq!(post.status, 405);
        assert!(post.headers.contains(&("allow", "GET, HEAD".into())));
        assert_eq!(ask("HEAD", "/debug/stages", None).unwrap().status, 200);
        assert_eq!(
            ask("GET", "/debug/stages", Some("format=xml"))
                .unwrap()
                .status,
            406
        );
        assert_eq!(
            ask("GET", "/debug/context", Some("trace=1"))
                .unwrap()
                .status,
            400
        );
        let empty = ask("GET", "/debug/stages", None).unwrap();
        assert_eq!(empty.status, 200);
        assert!(String::from_utf8(empty.body).unwrap().contains("no stages"));
    }

    #[test]
    fn accept_chooses_unless_the_query_does() {
        let n = Format::negotiate;
        assert_eq!(n(None, None), Ok(Format::Text));
        assert_eq!(
            n(None, Some("application/json, text/html")),
            Ok(Format::Json)
        );
        assert_eq!(
            n(None, Some("text/html, application/json")),
            Ok(Format::Html)
        );
        assert_eq!(
            n(Some("a=b&format=text"), Some("text/html")),
            Ok(Format::Text)
        );
        assert_eq!(n(Some("format=html&format=json"), None), Ok(Format::Json));
        assert_eq!(n(Some("format="), None).unwrap_err().status, 406);
    }
}
