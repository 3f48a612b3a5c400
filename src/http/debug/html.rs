//! What every HTML view shares: escaping, and the page around a view
//! (inline CSS only: no script, no external resource).

use std::fmt::Write as _;

use crate::stage::{HumanDuration, StageStats};

/// Escapes text for HTML element content and attribute values (and SVG
/// text, which follows the same rules).
pub(super) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// [`esc`], with a line-break opportunity (`<wbr>`) after each `::` and
/// `/`: long type names and source paths wrap between their parts.
pub(super) fn breakable(text: &str) -> String {
    esc(text).replace("::", "::<wbr>").replace('/', "/<wbr>")
}

/// The style of every view: readable tables, charts in a grid, no web
/// fonts.
const STYLE: &str = "\
:root{--fg:#1d2330;--muted:#5b6475;--line:#d8dde6;--head:#f3f5f9;--accent:#2f6fdf}\
*{box-sizing:border-box}\
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:var(--fg);background:#fafbfc}\
header{background:#1d2330;color:#fff;padding:.9em 2em}\
header h1{margin:0;font-size:1.25em;font-weight:600}\
header p{margin:.25em 0 0;color:#b9c2d3;font-size:.9em}\
header a{color:#b9d0ff}\
main{padding:1.2em 2em 2em}\
h2{font-size:1.1em;margin:1.6em 0 .6em}\
section{background:#fff;border:1px solid var(--line);border-radius:6px;padding:.2em 1.2em 1em;margin:0 0 1.4em}\
section h2{margin-top:.8em}\
table{border-collapse:collapse;margin:.4em 0 1em;width:100%;font-size:.92em}\
th,td{border:1px solid var(--line);padding:.35em .6em;text-align:left;vertical-align:top}\
td{overflow-wrap:break-word}\
th{background:var(--head);font-weight:600}\
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}\
.scroll{overflow-x:auto}\
table.figures th,table.figures td{padding:.3em .45em}\
code{font-family:ui-monospace,'SFMono-Regular',Menlo,Consolas,monospace;font-size:.9em}\
.muted{color:var(--muted)} .hop{color:var(--muted);margin:.6em 0 1em;font-size:.92em}\
tr.shadowed td{color:#9aa1ad} tr.notcarried td{color:#a35a00}\
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:.8em}\
figure{margin:0;border:1px solid var(--line);border-radius:4px;padding:.4em .5em .2em;background:#fff}\
figcaption{font-size:.85em;color:var(--muted);margin:0 0 .2em}\
figcaption b{color:var(--fg);font-weight:600}\
svg{display:block;width:100%;height:auto}\
";

/// A whole page: `title` in the tab, `heading` and `subtitle` (already
/// HTML) in the header, then `body` (already HTML).
pub(super) fn page(title: &str, heading: &str, subtitle: &str, body: &str) -> String {
    let mut page = String::with_capacity(body.len() + 4096);
    let _ = write!(
        page,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>\
         <header><h1>{}</h1><p>{subtitle}</p></header><main>{body}</main></body></html>",
        esc(title),
        esc(heading),
    );
    page
}

/// A latency percentile for a table cell: `-` before the first item.
pub(super) fn latency_cell(percentile: Option<std::time::Duration>) -> String {
    percentile.map_or_else(|| "-".to_owned(), |d| HumanDuration(d).to_string())
}

/// A batched stage's batches (group commit on a DB stage): their number,
/// mean size and largest; `-` for a stage of single items.
pub(super) fn batches_cell(stats: &StageStats) -> String {
    match stats.mean_batch() {
        Some(mean) => format!("{} ({mean:.1}, {})", stats.batches, stats.largest_batch),
        None => "-".to_owned(),
    }
}

/// The stages' current figures, one row per stage.
pub(super) fn figures_table(body: &mut String, stages: &[StageStats]) {
    body.push_str(
        "<div class=\"scroll\"><table class=\"figures\"><tr><th>stage</th><th>queued</th><th>in flight</th><th>workers</th>\
         <th>accepted</th><th>refused</th><th>completed</th><th>panicked</th><th>cancelled</th>\
         <th>replaced</th><th>throughput (since start)</th><th>p50</th><th>p99</th>\
         <th>batches (mean, largest)</th></tr>",
    );
    for s in stages {
        let _ = write!(
            body,
            "<tr><td><code>{}</code></td><td class=\"num\">{} / {}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{:.1}/s</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(&s.name),
            s.queue_depth,
            s.capacity,
            s.in_flight,
            s.workers,
            s.accepted,
            s.refused,
            s.completed,
            s.panicked,
            s.cancelled,
            s.replaced,
            s.throughput,
            latency_cell(s.latency_p50),
            latency_cell(s.latency_p99),
            batches_cell(s),
        );
    }
    body.push_str("</table></div>");
}
