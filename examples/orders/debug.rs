//! The debug views of both roles: a context (of the request being
//! handled, or one kept from an earlier request) as text, JSON or an HTML
//! page, and the DB stage's figures.

use std::fmt::Write as _;

use milieu::dump::{Dump, EntryStatus, FrameDump, HopDump};
use milieu::http::{Request, Response};
use milieu::stage::StageStats;

/// What the client asked for in `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Html,
}

impl Format {
    /// The first of JSON or HTML named in `Accept`, else text.
    pub fn of(request: &Request) -> Format {
        let accept = request.header("accept").unwrap_or("");
        let json = accept.find("application/json");
        let html = accept.find("text/html");
        match (json, html) {
            (Some(j), Some(h)) if h < j => Format::Html,
            (Some(_), _) => Format::Json,
            (None, Some(_)) => Format::Html,
            (None, None) => Format::Text,
        }
    }
}

/// The `about` of the context of the request being handled.
pub const THIS_REQUEST: &str = "Context of this request";

/// A context dump in the requested format, under a line saying whose
/// context it is (`about`: the heading of the page), followed by the
/// service's stage figures when it has stages (stock has none).
pub fn context(about: &str, dump: &Dump, stages: Option<&StageStats>, format: Format) -> Response {
    match format {
        Format::Text => {
            let mut text = format!("{about}\n{dump}");
            if !text.ends_with('\n') {
                text.push('\n');
            }
            if let Some(stages) = stages {
                let _ = writeln!(text, "DB stage: {stages}");
            }
            Response::text(200, text)
        }
        Format::Json => {
            let mut body = serde_json::json!({
                "about": about,
                "context": serde_json::from_str::<serde_json::Value>(&dump.to_json())
                    .unwrap_or(serde_json::Value::Null),
            });
            if let Some(stages) = stages {
                body["stages"] = serde_json::json!([stages]);
            }
            Response::json(200, &body)
        }
        Format::Html => Response::status(200)
            .with_header("content-type", "text/html; charset=utf-8")
            .with_body(html_page(about, dump, stages)),
    }
}

/// The stage figures in the requested format.
pub fn stages(stages: &StageStats, format: Format) -> Response {
    match format {
        Format::Json | Format::Html => Response::json(200, &[stages]),
        Format::Text => Response::text(200, format!("{stages}\n")),
    }
}

/// A latency percentile for a table cell: `-` before the first item.
fn latency(percentile: Option<std::time::Duration>) -> String {
    percentile.map_or_else(|| "-".to_owned(), |d| format!("{d:?}"))
}

/// A thread for a `<code>` element: its name without the backticks the
/// text dump marks it with (the element marks it already).
fn thread_html(thread: &impl std::fmt::Display) -> String {
    esc(thread.to_string().trim_matches('`'))
}

/// Escapes text for HTML element content and attribute values.
fn esc(text: &str) -> String {
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

fn hop_line(hop: &HopDump) -> String {
    esc(&hop.to_string())
}

/// A page a person can read: one table per frame, top first, with each
/// entry's type, status, value (when shown), install site and the hops that
/// carried it; then the stage figures, if any.
fn html_page(about: &str, dump: &Dump, stages: Option<&StageStats>) -> String {
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>milieu context</title><style>\
         body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}\
         table{{border-collapse:collapse;margin:0 0 1.5em 0;width:100%}}\
         td{{overflow-wrap:anywhere}} td:nth-child(2),td:nth-child(3){{overflow-wrap:normal}}\
         th,td{{border:1px solid #ccc;padding:.35em .6em;text-align:left;vertical-align:top}}\
         th{{background:#f0f0f0}} code{{font-size:.95em}} .hop{{color:#555;margin:.5em 0 1.5em}}\
         .shadowed{{color:#999}} .notcarried{{color:#a60}}\
         </style></head><body><h1>{}</h1>\
         <p>Thread <code>{}</code>, {} frames, top first.</p>",
        esc(about),
        thread_html(&dump.thread),
        dump.frames.len()
    );
    for frame in &dump.frames {
        match frame {
            FrameDump::Installed {
                site,
                thread,
                entries,
            } => {
                let _ = write!(
                    page,
                    "<h2>Frame installed at <code>{}</code> on <code>{}</code></h2>\
                     <table><tr><th>type</th><th>status</th><th>value</th>\
                     <th>installed at</th><th>reason</th><th>carried by</th></tr>",
                    esc(&site.to_string()),
                    thread_html(thread)
                );
                for entry in entries {
                    let (class, status) = match &entry.status {
                        EntryStatus::Visible => ("", "visible".to_owned()),
                        EntryStatus::Shadowed { .. } => ("shadowed", "shadowed".to_owned()),
                        EntryStatus::NotCarried { hop } => (
                            "notcarried",
                            match hop {
                                Some(hop) => format!("not carried past {hop}"),
                                None => "not carried".to_owned(),
                            },
                        ),
                        _ => ("", "other".to_owned()),
                    };
                    // Where it came from before this process (another
                    // process's account of it), then the hops in this one.
                    let remote = entry.provenance.remote.iter().map(|r| esc(&r.to_string()));
                    let hops: Vec<String> = remote
                        .chain(entry.provenance.hops.iter().map(hop_line))
                        .collect();
                    let _ = write!(
                        page,
                        "<tr class=\"{class}\"><td><code>{}</code> ({:?})</td><td>{}</td>\
                         <td>{}</td><td><code>{}</code> on <code>{}</code></td><td>{}</td><td>{}</td></tr>",
                        esc(entry.type_name),
                        entry.policy,
                        esc(&status),
                        entry.value.as_deref().map(esc).unwrap_or_else(|| "<i>hidden</i>".into()),
                        esc(&entry.provenance.site.to_string()),
                        thread_html(&entry.provenance.thread),
                        entry.provenance.reason.as_deref().map(esc).unwrap_or_default(),
                        hops.join("<br>"),
                    );
                }
                page.push_str("</table>");
            }
            FrameDump::Hop(hop) => {
                let _ = write!(page, "<p class=\"hop\">&#8593; hop: {}</p>", hop_line(hop));
            }
            FrameDump::Entered { site, thread } => {
                let _ = write!(
                    page,
                    "<p class=\"hop\">snapshot entered at <code>{}</code> on <code>{}</code></p>",
                    esc(&site.to_string()),
                    thread_html(thread)
                );
            }
            _ => {}
        }
    }
    if let Some(stages) = stages {
        stages_table(&mut page, stages);
    }
    page.push_str("</body></html>");
    page
}

/// The stage figures as a table.
fn stages_table(page: &mut String, stages: &StageStats) {
    let _ = write!(
        page,
        "<h2>Stages</h2><table><tr><th>stage</th><th>queued</th><th>in flight</th>\
         <th>accepted</th><th>refused</th><th>completed</th><th>panicked</th>\
         <th>throughput</th><th>p50</th><th>p99</th></tr>\
         <tr><td><code>{}</code></td><td>{} / {}</td><td>{}</td><td>{}</td><td>{}</td>\
         <td>{}</td><td>{}</td><td>{:.1}/s</td><td>{}</td><td>{}</td></tr></table>",
        esc(&stages.name),
        stages.queue_depth,
        stages.capacity,
        stages.in_flight,
        stages.accepted,
        stages.refused,
        stages.completed,
        stages.panicked,
        stages.throughput,
        latency(stages.latency_p50),
        latency(stages.latency_p99),
    );
}
