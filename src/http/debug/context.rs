//! The context view: a [`Dump`] under a line saying whose context it is,
//! then the current figures of the stages, as text, JSON or HTML.

use std::fmt::Write as _;

use crate::dump::{Dump, EntryStatus, FrameDump};
use crate::stage::StageStats;

use super::html::{breakable, esc, figures_table, page};
use super::{DebugResponse, Format};

/// The view in `format`.
pub(super) fn render(
    about: &str,
    dump: &Dump,
    stages: &[StageStats],
    format: Format,
) -> DebugResponse {
    match format {
        Format::Text => {
            let mut text = format!("{about}\n{dump}");
            if !text.ends_with('\n') {
                text.push('\n');
            }
            for stats in stages {
                let _ = writeln!(text, "{stats}");
            }
            DebugResponse::ok(format, text.into_bytes())
        }
        Format::Json => {
            let context = serde_json::from_str::<serde_json::Value>(&dump.to_json())
                .unwrap_or(serde_json::Value::Null);
            let body = serde_json::json!({ "about": about, "context": context, "stages": stages });
            DebugResponse::ok(format, body.to_string().into_bytes())
        }
        Format::Html => DebugResponse::ok(format, html(about, dump, stages).into_bytes()),
    }
}

/// A thread for a `<code>` element: its name without the backticks the
/// text dump marks it with.
fn thread_html(thread: &impl std::fmt::Display) -> String {
    esc(thread.to_string().trim_matches('`'))
}

/// One table per frame, top first, with each entry's type, status, value
/// (when shown), install site and the hops that carried it; then the
/// stages' figures.
fn html(about: &str, dump: &Dump, stages: &[StageStats]) -> String {
    let mut body = String::new();
    for frame in &dump.frames {
        match frame {
            FrameDump::Installed {
                site,
                thread,
                entries,
            } => {
                let _ = write!(
                    body,
                    "<section><h2>Frame installed at <code>{}</code> on <code>{}</code></h2>\
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
                    };
                    // Where it came from before this process (another
                    // process's account of it), then the hops in this one.
                    let remote = entry
                        .provenance
                        .remote
                        .iter()
                        .map(|r| breakable(&r.to_string()));
                    let hops: Vec<String> = remote
                        .chain(
                            entry
                                .provenance
                                .hops
                                .iter()
                                .map(|h| breakable(&h.to_string())),
                        )
                        .collect();
                    let _ = write!(
                        body,
                        "<tr class=\"{class}\"><td><code>{}</code> <span class=\"muted\">({:?})</span></td>\
                         <td>{}</td><td>{}</td><td><code>{}</code> on <code>{}</code></td><td>{}</td><td>{}</td></tr>",
                        breakable(entry.type_name),
                        entry.policy,
                        esc(&status),
                        entry
                            .value
                            .as_deref()
                            .map(|v| format!("<code>{}</code>", esc(v)))
                            .unwrap_or_else(|| "<i class=\"muted\">hidden</i>".into()),
                        breakable(&entry.provenance.site.to_string()),
                        thread_html(&entry.provenance.thread),
                        entry.provenance.reason.as_deref().map(esc).unwrap_or_default(),
                        hops.join("<br>"),
                    );
                }
                body.push_str("</table></section>");
            }
            FrameDump::Hop(hop) => {
                let _ = write!(
                    body,
                    "<p class=\"hop\">&#8593; hop: {}</p>",
                    esc(&hop.to_string())
                );
            }
            FrameDump::Entered { site, thread } => {
                let _ = write!(
                    body,
                    "<p class=\"hop\">snapshot entered at <code>{}</code> on <code>{}</code></p>",
                    esc(&site.to_string()),
                    thread_html(thread)
                );
            }
        }
    }
    if !stages.is_empty() {
        body.push_str("<h2>Stages</h2><section>");
        figures_table(&mut body, stages);
        body.push_str("<p class=\"muted\">Over time: <a href=\"/debug/stages\">/debug/stages</a></p></section>");
    }
    let subtitle = format!(
        "Thread <code>{}</code>, {} frames, top first.",
        thread_html(&dump.thread),
        dump.frames.len()
    );
    page("milieu context", about, &subtitle, &body)
}
