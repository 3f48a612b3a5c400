//! The stages view: per stage, the current figures and, over the last
//! minutes, queue depth, throughput and p50/p99 latency per interval; as
//! text, JSON or HTML with inline SVG charts.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::stage::{HumanDuration, StageStats};

use super::chart::{line_chart, Unit};
use super::history::Point;
use super::html::{esc, figures_table, latency_cell, page};
use super::{DebugResponse, Format};

/// What the view shows of one stage: its figures now and its history.
#[derive(Debug)]
pub(super) struct StageView {
    pub(super) stats: StageStats,
    pub(super) points: Vec<Point>,
}

/// How the history is sampled, for the page's explanations.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sampling {
    /// How much history is kept.
    pub(super) keep: Duration,
    /// The interval of a running sampler, if any.
    pub(super) every: Option<Duration>,
}

fn nanos(d: Option<Duration>) -> Option<u64> {
    d.map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn human(d: Option<Duration>) -> Option<String> {
    d.map(|d| HumanDuration(d).to_string())
}

/// The view in `format`, at `now`.
pub(super) fn render(
    views: &[StageView],
    sampling: Sampling,
    now: Instant,
    format: Format,
) -> DebugResponse {
    match format {
        Format::Text => DebugResponse::ok(format, text(views, now).into_bytes()),
        Format::Json => {
            let stages: Vec<serde_json::Value> = views
                .iter()
                .map(|view| {
                    let mut stage = serde_json::to_value(&view.stats).unwrap_or_default();
                    let history: Vec<serde_json::Value> = view
                        .points
                        .iter()
                        .map(|p| {
                            serde_json::json!({
                                "seconds_ago": now.saturating_duration_since(p.at).as_secs_f64(),
                                "interval": HumanDuration(p.span).to_string(),
                                "interval_ns": nanos(Some(p.span)),
                                "queue_depth": p.queue_depth,
                                "throughput": p.throughput,
                                "latency_p50": human(p.p50),
                                "latency_p50_ns": nanos(p.p50),
                                "latency_p99": human(p.p99),
                                "latency_p99_ns": nanos(p.p99),
                            })
                        })
                        .collect();
                    if let Some(object) = stage.as_object_mut() {
                        object.insert("history".into(), history.into());
                    }
                    stage
                })
                .collect();
            let body = serde_json::Value::from(stages).to_string();
            DebugResponse::ok(format, body.into_bytes())
        }
        Format::Html => DebugResponse::ok(format, html(views, sampling, now).into_bytes()),
    }
}

/// Each stage's line, then its last 12 intervals, newest first: when each
/// ended, how long it was, and its figures.
fn text(views: &[StageView], now: Instant) -> String {
    let mut text = String::new();
    if views.is_empty() {
        text.push_str("no stages registered with these debug views\n");
    }
    for view in views {
        let _ = writeln!(text, "{}", view.stats);
        for p in view.points.iter().rev().take(12) {
            let _ = writeln!(
                text,
                "  {:>9} ago, {:>9} long: {:>4} queued, {:>8.1}/s, p50 {:>9}, p99 {:>9}",
                HumanDuration(now.saturating_duration_since(p.at)),
                HumanDuration(p.span),
                p.queue_depth,
                p.throughput,
                latency_cell(p.p50),
                latency_cell(p.p99),
            );
        }
    }
    text
}

fn html(views: &[StageView], sampling: Sampling, now: Instant) -> String {
    let mut body = String::new();
    if views.is_empty() {
        body.push_str("<p>No stages are registered with these debug views.</p>");
    } else {
        body.push_str("<h2>Now</h2><section>");
        let stats: Vec<StageStats> = views.iter().map(|v| v.stats.clone()).collect();
        figures_table(&mut body, &stats);
        body.push_str("</section>");
    }
    for view in views {
        // From the start of the oldest interval to the latest sample.
        let ago = |at: Instant| now.saturating_duration_since(at).as_secs_f64();
        let window = match (view.points.first(), view.points.last()) {
            (Some(first), Some(last)) => (ago(first.at) + first.span.as_secs_f64(), ago(last.at)),
            _ => (60.0, 0.0),
        };
        let series = |value: &dyn Fn(&Point) -> Option<f64>| -> Vec<(f64, Option<f64>)> {
            view.points
                .iter()
                .map(|p| (now.saturating_duration_since(p.at).as_secs_f64(), value(p)))
                .collect()
        };
        let name = esc(&view.stats.name);
        let _ = write!(
            body,
            "<section class=\"stage\"><h2>Stage <code>{name}</code></h2>\
             <p class=\"muted\">{} intervals over {}; the marked value is the latest.</p>\
             <div class=\"charts\">",
            view.points.len(),
            HumanDuration(Duration::from_secs_f64(window.0 - window.1)),
        );
        let last = view.points.last();
        // Title, unit, points, latest value.
        type Chart = (&'static str, Unit, Vec<(f64, Option<f64>)>, String);
        let charts: [Chart; 4] = [
            (
                "queue depth",
                Unit::Items,
                series(&|p| Some(p.queue_depth as f64)),
                last.map_or("-".into(), |p| p.queue_depth.to_string()),
            ),
            (
                "throughput",
                Unit::PerSecond,
                series(&|p| Some(p.throughput)),
                last.map_or("-".into(), |p| Unit::PerSecond.label(p.throughput)),
            ),
            (
                "latency p50",
                Unit::Nanos,
                series(&|p| nanos(p.p50).map(|n| n as f64)),
                last.map_or("-".into(), |p| latency_cell(p.p50)),
            ),
            (
                "latency p99",
                Unit::Nanos,
                series(&|p| nanos(p.p99).map(|n| n as f64)),
                last.map_or("-".into(), |p| latency_cell(p.p99)),
            ),
        ];
        for (title, unit, points, latest) in charts {
            let _ = write!(
                body,
                "<figure><figcaption><b>{title}</b> · latest {}</figcaption>{}</figure>",
                esc(&latest),
                line_chart(
                    &format!("{} of stage {}", title, view.stats.name),
                    unit,
                    &points,
                    window
                ),
            );
        }
        body.push_str("</div></section>");
    }
    let sampler = match sampling.every {
        Some(every) => format!("sampled every {}", HumanDuration(every)),
        None => "sampled when this page is asked for (no sampler running)".into(),
    };
    let subtitle = format!(
        "Per interval between two samples: queue depth at its end, items completed per second, \
         and the latency percentiles of the items completed in it; {sampler}, {} kept. \
         Also as <a href=\"?format=json\">JSON</a> and <a href=\"?format=text\">text</a>.",
        HumanDuration(sampling.keep)
    );
    page("milieu stages", "Stages", &subtitle, &body)
}
