//! The debug views (`milieu::http::debug`) served by `http::serve` over
//! real loopback sockets, for stages that did real work on their worker
//! threads: every format of both views, the refusals, escaping, and (run
//! by `.ci/browser_views.sh`) both HTML pages in headless Chromium.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use milieu::http::debug::DebugViews;
use milieu::http::{HttpLimits, Request, Response};
use milieu::stage::{CloseMode, Stage};

use common::browser::{artefacts, headless, png_size};
use common::server::HttpServer;
use common::SOCKET_DEADLINE;

/// A value with markup in it, installed in the context of every request:
/// the HTML views must show it as text.
#[derive(Debug)]
#[allow(dead_code)] // read through `Debug`, by the dumps
struct Note(&'static str);

const HOSTILE: &str = "<script>alert('x')</script>";

/// Debug views of two stages that did work, served on loopback: `resize`
/// (two workers, items that sleep for the milliseconds they carry) with
/// 40 sampled intervals of varying load, and a stage whose name is markup.
/// Other paths get "the app".
struct Served {
    server: HttpServer,
    stages: Vec<Stage<u64, u64>>,
}

impl Served {
    fn start() -> Served {
        let resize = Stage::builder("resize")
            .workers(2)
            .capacity(64)
            .build(|ms: u64| {
                std::thread::sleep(Duration::from_millis(ms));
                ms
            })
            .unwrap();
        let marked = Stage::builder(HOSTILE).build(|n: u64| n).unwrap();
        let views = DebugViews::new()
            .stage(resize.clone())
            .stage(marked.clone());
        views.sample();
        for round in 0..40u64 {
            // Between 4 and 26 items of 1 to 4 ms: the queue depth,
            // throughput and latencies change from interval to interval.
            let items = 4 + (round * 7) % 23;
            let submitted: Vec<_> = (0..items)
                .map(|i| resize.submit(1 + (round + i) % 4).unwrap())
                .collect();
            // Sampled with the items queued: the depth shows.
            views.sample();
            for submission in submitted {
                futures::executor::block_on(submission).unwrap();
            }
        }
        futures::executor::block_on(marked.submit(1).unwrap()).unwrap();
        views.sample();

        let server = HttpServer::start(HttpLimits::new(), move |request: Request| {
            milieu::scope()
                .with_debug(Note(HOSTILE))
                .because("markup the views must escape")
                .run(|| views.handle(&request))
                .unwrap_or_else(|| Response::text(200, "the app\n"))
        });
        Served {
            server,
            stages: vec![resize, marked],
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.addr)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        for stage in &self.stages {
            let _ = stage.close(CloseMode::Drain);
        }
    }
}

/// A response read off the socket.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// `method target` with `Accept: accept` (if any) on a fresh connection.
fn ask(addr: SocketAddr, method: &str, target: &str, accept: Option<&str>) -> Answer {
    let mut stream = common::connect(addr);
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    write!(
        stream,
        "{method} {target} HTTP/1.1\r\nHost: t\r\n{accept}Connection: close\r\n\r\n"
    )
    .unwrap();
    let raw = String::from_utf8(common::read_to_end(&mut stream)).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a whole response");
    let status = head[9..12].parse().unwrap();
    Answer {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

fn get(addr: SocketAddr, target: &str, accept: Option<&str>) -> Answer {
    let answer = ask(addr, "GET", target, accept);
    assert_eq!(answer.status, 200, "GET {target}: {}", answer.body);
    answer
}

const HTML: Option<&str> = Some("text/html,application/xhtml+xml,*/*;q=0.8");
const JSON: Option<&str> = Some("application/json");

#[test]
fn the_stages_page_charts_each_stage_with_its_figures_in_human_units() {
    let served = Served::start();
    let page = get(served.server.addr, "/debug/stages", HTML);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page
        .header("content-security-policy")
        .unwrap()
        .contains("default-src 'none'"));
    let html = &page.body;
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    // Four charts per stage, each a line and its last value marked.
    assert_eq!(html.matches("<svg").count(), 8, "{html}");
    for chart in ["queue depth", "throughput", "latency p50", "latency p99"] {
        assert_eq!(
            html.matches(&format!("<b>{chart}</b>")).count(),
            2,
            "{chart}"
        );
    }
    assert!(
        html.matches("<polyline").count() >= 4,
        "resize's four lines: {html}"
    );
    assert!(html.contains("class=\"last\""));
    // The current figures: `resize` completed every item it was given.
    let resize = served.stages[0].stats();
    assert!(html.contains(&format!("<td class=\"num\">{}</td>", resize.completed)));
    assert!(html.contains("Stage <code>resize</code>"));
    // Durations for people, never serde's or Debug's.
    assert!(html.contains(" ms<") || html.contains(" µs<"), "{html}");
    assert!(!html.contains("secs") && !html.contains("nanos"), "{html}");
    // Markup in a stage's name is text.
    assert!(!html.contains(HOSTILE), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"),
        "{html}"
    );
    assert!(!html.contains("<script"), "{html}");
}

#[test]
fn the_stages_json_has_the_figures_and_the_history_for_people_and_programs() {
    let served = Served::start();
    let answer = get(served.server.addr, "/debug/stages", JSON);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    let json = answer.json();
    let stages = json.as_array().expect("an array of stages");
    assert_eq!(stages.len(), 2);
    let resize = &stages[0];
    assert_eq!(resize["name"], "resize");
    let p99 = resize["latency_p99"].as_str().expect("a human p99");
    assert!(p99.ends_with(" ms"), "items sleep 1 to 4 ms: {p99}");
    let p99_ns = resize["latency_p99_ns"].as_u64().expect("p99 in ns");
    assert!(p99_ns >= 4_000_000, "{p99_ns}");
    let history = resize["history"].as_array().unwrap();
    assert!(
        history.len() >= 41,
        "41 samples, 40 intervals and more: {}",
        history.len()
    );
    // Every interval with items queued at its end saw items complete
    // (those queued at the start of the one before).
    let busy: Vec<_> = history
        .iter()
        .filter(|p| p["queue_depth"].as_u64().unwrap() > 0)
        .collect();
    assert!(busy.len() >= 30, "{history:?}");
    for point in &history[2..] {
        if point["throughput"].as_f64().unwrap() > 0.0 {
            let p50 = point["latency_p50_ns"].as_u64().unwrap();
            assert!(p50 >= 1_000_000, "{point}");
            assert!(
                point["latency_p50"].as_str().unwrap().ends_with('s'),
                "{point}"
            );
        }
    }
    // Oldest first, each interval saying when it ended and how long it was.
    let ages: Vec<f64> = history
        .iter()
        .map(|p| p["seconds_ago"].as_f64().unwrap())
        .collect();
    assert!(ages.windows(2).all(|w| w[0] >= w[1]), "{ages:?}");
    assert!(history
        .iter()
        .all(|p| p["interval_ns"].as_u64().unwrap() > 0));
    assert!(history
        .iter()
        .all(|p| p["interval"].as_str().unwrap().ends_with('s')));
    assert_eq!(stages[1]["name"], HOSTILE);
}

#[test]
fn the_stages_text_is_a_line_per_stage_then_its_last_intervals() {
    let served = Served::start();
    let text = get(served.server.addr, "/debug/stages", None).body;
    assert!(text.starts_with("stage `resize`: "), "{text}");
    assert!(text.contains(", latency p50 "), "{text}");
    assert!(text.contains(" ms"), "{text}");
    assert!(!text.contains("secs"), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.starts_with("  ")).count(),
        12 + 12,
        "{text}"
    );
}

#[test]
fn the_context_views_show_the_requests_context_escaped() {
    let served = Served::start();
    let addr = served.server.addr;
    let page = get(addr, "/debug/context", HTML);
    let html = &page.body;
    assert!(html.contains("<h1>Context of this request</h1>"), "{html}");
    assert!(
        html.contains("RequestInfo") && html.contains("Note"),
        "{html}"
    );
    assert!(html.contains("markup the views must escape"));
    assert!(!html.contains("<script"), "{html}");
    assert!(html.contains("&lt;script&gt;"), "{html}");
    assert!(html.contains("<h2>Stages</h2>"));

    let json = get(addr, "/debug/context", JSON).json();
    assert_eq!(json["about"], "Context of this request");
    assert!(json["context"]["frames"].is_array(), "{json}");
    assert_eq!(json["stages"][0]["name"], "resize");
    assert!(json["stages"][0]["latency_p50"]
        .as_str()
        .unwrap()
        .ends_with(" ms"));

    let text = get(addr, "/debug/context?format=text", HTML).body;
    assert!(text.starts_with("Context of this request\n"), "{text}");
    assert!(
        text.contains("Note") && text.contains("stage `resize`"),
        "{text}"
    );
    // `?format=` wins over `Accept`.
    let html = get(addr, "/debug/context?format=html", JSON);
    assert_eq!(
        html.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    // Quality values count: `q=0` refuses a format, the higher one wins.
    let not_json = get(
        addr,
        "/debug/stages",
        Some("application/json;q=0, text/html"),
    );
    assert_eq!(
        not_json.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let rather_json = get(
        addr,
        "/debug/stages",
        Some("text/html;q=0.5, application/json;q=0.9"),
    );
    assert_eq!(rather_json.header("content-type"), Some("application/json"));
    // None of the three acceptable: 406, saying which there are.
    let refused = ask(addr, "GET", "/debug/stages", Some("image/png"));
    assert_eq!(refused.status, 406);
    assert!(refused
        .body
        .contains("text/plain, application/json, text/html"));
}

#[test]
fn bad_requests_get_clear_refusals_and_other_paths_go_to_the_app() {
    let served = Served::start();
    let addr = served.server.addr;
    assert_eq!(get(addr, "/orders", HTML).body, "the app\n");
    assert_eq!(get(addr, "/debugging", None).body, "the app\n");
    let missing = ask(addr, "GET", "/debug/nope", HTML);
    assert_eq!(missing.status, 404);
    assert!(
        missing.body.contains("/debug/context and /debug/stages"),
        "{}",
        missing.body
    );
    let post = ask(addr, "POST", "/debug/stages", None);
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    let format = ask(addr, "GET", "/debug/stages?format=xml", None);
    assert_eq!(format.status, 406);
    assert!(format.body.contains("format=html"), "{}", format.body);
    let unknown = ask(addr, "GET", "/debug/context?trace=1", None);
    assert_eq!(unknown.status, 400);
    assert!(unknown.body.contains("`trace=1`"), "{}", unknown.body);
    // HEAD: the header fields of the GET, no body.
    let head = ask(addr, "HEAD", "/debug/stages", HTML);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert!(
        head.header("content-length")
            .unwrap()
            .parse::<usize>()
            .unwrap()
            > 1000
    );
}

#[test]
#[ignore = "needs Chromium (Debian `chromium`, or MILIEU_CHROMIUM=path): run by \
            .ci/browser_views.sh, which installs it"]
fn a_browser_renders_both_html_views() {
    let served = Served::start();
    let scratch = tempfile::tempdir().unwrap();
    let profile = scratch.path().join("profile");
    let stages_url = served.url("/debug/stages");
    let context_url = served.url("/debug/context");

    // The DOM after rendering: the browser's own `Accept` chose HTML, the
    // SVG parsed into charts, the figures are there, the markup is text.
    let dom = String::from_utf8(headless(&profile, &["--dump-dom", &stages_url])).unwrap();
    assert!(dom.contains("<title>milieu stages</title>"), "{dom}");
    assert_eq!(dom.matches("<svg").count(), 8, "{dom}");
    assert!(dom.matches("<polyline").count() >= 4, "{dom}");
    for needle in [
        "Stage <code>resize</code>",
        "<b>latency p99</b>",
        "class=\"last\"",
        " ms",
    ] {
        assert!(
            dom.contains(needle),
            "{needle} missing from the DOM:\n{dom}"
        );
    }
    assert!(!dom.contains("<script"), "{dom}");
    let dom = String::from_utf8(headless(&profile, &["--dump-dom", &context_url])).unwrap();
    for needle in [
        "<h1>Context of this request</h1>",
        "RequestInfo",
        "<h2>Stages</h2>",
    ] {
        assert!(
            dom.contains(needle),
            "{needle} missing from the DOM:\n{dom}"
        );
    }
    assert!(!dom.contains("<script"), "{dom}");

    // Screenshots, kept for a person to look at, each against one of an
    // empty page of the same size: the view must have drawn something.
    let shoot = |target: &str, file: &Path, size: &str| {
        let out = format!("--screenshot={}", file.display());
        headless(&profile, &[&format!("--window-size={size}"), &out, target]);
        std::fs::read(file).unwrap()
    };
    let blank = shoot(
        "about:blank",
        &scratch.path().join("blank.png"),
        "1280,1000",
    );
    for (url, name) in [
        (&stages_url, "debug-stages.png"),
        (&context_url, "debug-context.png"),
    ] {
        let kept = artefacts().join(name);
        let page = shoot(url, &kept, "1280,1000");
        assert_eq!(png_size(&page), (1280, 1000));
        assert!(
            page.len() > 4 * blank.len(),
            "the screenshot ({} bytes) looks as empty as a blank page ({} bytes): {}",
            page.len(),
            blank.len(),
            kept.display()
        );
        println!("screenshot of {url}: {}", kept.display());
    }
}

#[test]
fn a_sampler_thread_samples_until_its_guard_is_dropped() {
    let stage = Stage::builder("sampled").build(|n: u64| n).unwrap();
    let views = DebugViews::new().stage(stage.clone());
    let sampler = views.sample_every(Duration::from_millis(10)).unwrap();
    let history = |views: &DebugViews| {
        let json = views
            .respond(
                "GET",
                "/debug/stages",
                Some("format=json"),
                None,
                milieu::dump,
            )
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
        json[0]["history"].as_array().unwrap().len()
    };
    // Work until the sampler has recorded a few intervals (the deadline
    // only stops a broken sampler from hanging the test).
    let deadline = Instant::now() + SOCKET_DEADLINE;
    let mut n = 0;
    while history(&views) < 5 {
        assert!(Instant::now() < deadline, "the sampler took no samples");
        futures::executor::block_on(stage.submit(n).unwrap()).unwrap();
        n += 1;
    }
    let page = views
        .respond(
            "GET",
            "/debug/stages",
            Some("format=html"),
            None,
            milieu::dump,
        )
        .unwrap();
    assert!(String::from_utf8(page.body)
        .unwrap()
        .contains("sampled every 10.0 ms"));
    // Dropping the guard stops and joins the thread.
    drop(sampler);
    let page = views
        .respond(
            "GET",
            "/debug/stages",
            Some("format=html"),
            None,
            milieu::dump,
        )
        .unwrap();
    assert!(String::from_utf8(page.body)
        .unwrap()
        .contains("no sampler running"));
    stage.close(CloseMode::Drain).unwrap();
}

#[test]
fn a_batched_stage_shows_its_batches_in_every_format() {
    use milieu::stage::{Batched, Batching};
    let sum = Stage::builder("summed")
        .build_batched_with(Batching::new(8), || {
            |batch: Vec<Batched<u64>>| batch.into_iter().map(|b| b.item).collect()
        })
        .unwrap();
    let plain = Stage::builder("single").build(|n: u64| n).unwrap();
    for n in 0..3 {
        futures::executor::block_on(sum.submit(n).unwrap()).unwrap();
        futures::executor::block_on(plain.submit(n).unwrap()).unwrap();
    }
    let views = DebugViews::new().stage(sum.clone()).stage(plain.clone());
    let view = |format: &str| {
        let answer = views
            .respond("GET", "/debug/stages", Some(format), None, milieu::dump)
            .unwrap();
        String::from_utf8(answer.body).unwrap()
    };
    // One at a time: three batches of one item.
    let html = view("format=html");
    assert!(html.contains("<th>batches (mean, largest)</th>"), "{html}");
    assert!(html.contains(">3 (1.0, 1)</td>"), "{html}");
    let text = view("format=text");
    assert!(
        text.contains("; 3 batches, mean 1.0 items, largest 1"),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&view("format=json")).unwrap();
    assert_eq!(json[0]["batches"], 3);
    assert_eq!(json[0]["mean_batch"], 1.0);
    assert_eq!(json[1]["batches"], 0);
    assert!(json[1]["mean_batch"].is_null());
    sum.close(CloseMode::Drain).unwrap();
    plain.close(CloseMode::Drain).unwrap();
}
