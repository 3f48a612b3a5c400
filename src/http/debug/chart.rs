//! Small inline SVG line charts: one series against time, the y axis
//! labelled in the series' unit, the last value marked.

use std::fmt::Write as _;
use std::time::Duration;

use crate::stage::HumanDuration;

use super::html::esc;

/// What a chart's values are, for its axis labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Unit {
    /// Items (queue depth): whole numbers.
    Items,
    /// Items per second.
    PerSecond,
    /// Nanoseconds, shown in human units.
    Nanos,
}

impl Unit {
    pub(super) fn label(self, value: f64) -> String {
        match self {
            Unit::Items => format!("{}", value.round() as u64),
            Unit::PerSecond if value >= 100.0 || value == 0.0 => format!("{value:.0}/s"),
            Unit::PerSecond if value >= 10.0 => format!("{value:.1}/s"),
            Unit::PerSecond => format!("{value:.2}/s"),
            Unit::Nanos if value <= 0.0 => "0".into(),
            Unit::Nanos => HumanDuration(Duration::from_nanos(value.max(0.0) as u64)).to_string(),
        }
    }
}

const WIDTH: f64 = 300.0;
const HEIGHT: f64 = 124.0;
/// The plot area: room on the left for the y labels, below for the x
/// labels, on the right for the last value's label.
const LEFT: f64 = 58.0;
const RIGHT: f64 = WIDTH - 10.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = HEIGHT - 22.0;

/// The smallest "round" number (1, 2, 2.5 or 5 times a power of ten) at or
/// above `value`: the top of the y axis.
fn nice_ceiling(value: f64) -> f64 {
    if value <= 0.0 || !value.is_finite() {
        return 1.0;
    }
    let power = 10f64.powf(value.log10().floor());
    for step in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if value <= step * power * (1.0 + 1e-9) {
            return step * power;
        }
    }
    10.0 * power
}

/// How long ago, for the x axis: `now`, `-45 s`, `-12 min`.
fn ago(seconds: f64) -> String {
    if seconds < 0.5 {
        "now".into()
    } else if seconds < 90.0 {
        format!("-{seconds:.0} s")
    } else {
        format!("-{:.0} min", seconds / 60.0)
    }
}

/// A chart of `points` (`(seconds ago, value)`, oldest first; `None`: no
/// value in that interval, a gap in the line) from `from` to `to` seconds
/// ago. `title` names the chart for screen readers.
pub(super) fn line_chart(
    title: &str,
    unit: Unit,
    points: &[(f64, Option<f64>)],
    (from, to): (f64, f64),
) -> String {
    let mut svg = String::with_capacity(2048);
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
         role=\"img\" aria-label=\"{0}\"><title>{0}</title>",
        esc(title)
    );
    let max = points.iter().filter_map(|&(_, v)| v).fold(0.0, f64::max);
    let top = match unit {
        // At least 0, 1, 2 on a queue's axis: whole items.
        Unit::Items => nice_ceiling(max.max(2.0)),
        Unit::PerSecond => nice_ceiling(max.max(1.0)),
        Unit::Nanos => nice_ceiling(max.max(1_000.0)),
    };
    let to = to.max(0.0);
    let span = if from > to { from - to } else { 1.0 };
    let x = |seconds_ago: f64| RIGHT - ((seconds_ago - to) / span).clamp(0.0, 1.0) * (RIGHT - LEFT);
    let y = |value: f64| BOTTOM - (value / top).clamp(0.0, 1.0) * (BOTTOM - TOP);

    // Grid lines and y labels at 0, half and the top.
    for fraction in [0.0, 0.5, 1.0] {
        let at = y(top * fraction);
        let _ = write!(
            svg,
            "<line x1=\"{LEFT}\" x2=\"{RIGHT}\" y1=\"{at:.1}\" y2=\"{at:.1}\" stroke=\"#e3e7ee\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\" fill=\"#5b6475\">{}</text>",
            LEFT - 5.0,
            at + 3.5,
            esc(&unit.label(top * fraction)),
        );
    }
    // The x axis: how long ago it starts and ends.
    let _ = write!(
        svg,
        "<line x1=\"{LEFT}\" x2=\"{RIGHT}\" y1=\"{BOTTOM}\" y2=\"{BOTTOM}\" stroke=\"#9aa3b2\"/>\
         <text x=\"{LEFT}\" y=\"{:.1}\" font-size=\"11\" fill=\"#5b6475\">{}</text>\
         <text x=\"{RIGHT}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\" fill=\"#5b6475\">{}</text>",
        BOTTOM + 14.0,
        ago(to + span),
        BOTTOM + 14.0,
        ago(to),
    );

    // The line, broken where an interval has no value.
    let mut segments: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
    for &(seconds_ago, value) in points {
        match value {
            Some(v) => segments.last_mut().unwrap().push((x(seconds_ago), y(v))),
            None if segments.last().is_some_and(|s| !s.is_empty()) => segments.push(Vec::new()),
            None => {}
        }
    }
    for segment in segments.iter().filter(|s| !s.is_empty()) {
        if let [(px, py)] = segment[..] {
            let _ = write!(
                svg,
                "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"1.8\" fill=\"#2f6fdf\"/>"
            );
            continue;
        }
        let line: Vec<String> = segment
            .iter()
            .map(|(px, py)| format!("{px:.1},{py:.1}"))
            .collect();
        let (first, last) = (segment[0].0, segment[segment.len() - 1].0);
        let _ = write!(
            svg,
            "<polygon points=\"{first:.1},{BOTTOM} {} {last:.1},{BOTTOM}\" fill=\"#2f6fdf\" fill-opacity=\"0.12\"/>\
             <polyline points=\"{}\" fill=\"none\" stroke=\"#2f6fdf\" stroke-width=\"1.6\" \
             stroke-linejoin=\"round\"/>",
            line.join(" "),
            line.join(" "),
        );
    }

    // The last value, marked and labelled.
    match points.iter().rev().find_map(|&(a, v)| v.map(|v| (a, v))) {
        Some((seconds_ago, value)) => {
            let (px, py) = (x(seconds_ago), y(value));
            let label_y = if py < TOP + 14.0 { py + 14.0 } else { py - 6.0 };
            let _ = write!(
                svg,
                "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"3.2\" fill=\"#d9480f\" stroke=\"#fff\" stroke-width=\"1\"/>\
                 <text x=\"{:.1}\" y=\"{label_y:.1}\" font-size=\"12\" font-weight=\"600\" text-anchor=\"end\" \
                 fill=\"#d9480f\" stroke=\"#fff\" stroke-width=\"3\" paint-order=\"stroke\" class=\"last\">{}</text>",
                px - 4.0,
                esc(&unit.label(value)),
            );
        }
        None => {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\" fill=\"#5b6475\">{}</text>",
                (LEFT + RIGHT) / 2.0,
                (TOP + BOTTOM) / 2.0,
                if points.is_empty() { "no samples yet" } else { "no items completed" },
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_tops_are_round() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(1.0), 1.0);
        assert_eq!(nice_ceiling(1.2), 2.0);
        assert_eq!(nice_ceiling(2.1), 2.5);
        assert_eq!(nice_ceiling(3.0), 5.0);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(491_519.0), 500_000.0);
    }

    #[test]
    fn a_chart_draws_its_line_and_labels_its_last_value() {
        let points = [
            (20.0, Some(1_000_000.0)),
            (10.0, None),
            (5.0, Some(2_000_000.0)),
            (0.0, Some(491_519.0)),
        ];
        let svg = line_chart("p50 <latency>", Unit::Nanos, &points, (30.0, 0.0));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("<title>p50 &lt;latency&gt;</title>"), "{svg}");
        assert_eq!(
            svg.matches("<polyline").count(),
            1,
            "one segment of two points: {svg}"
        );
        assert!(svg.contains(">491.5 µs</text>"), "{svg}");
        assert!(svg.contains(">2.0 ms</text>"), "the axis top: {svg}");
        assert!(svg.contains(">1.0 ms</text>"), "half the top: {svg}");
        assert!(
            svg.contains(">-30 s</text>") && svg.contains(">now</text>"),
            "{svg}"
        );
        let later = line_chart("p50", Unit::Nanos, &points, (32.0, 2.0));
        assert!(
            later.contains(">-32 s</text>") && later.contains(">-2 s</text>"),
            "{later}"
        );
    }

    #[test]
    fn an_empty_chart_says_so() {
        assert!(line_chart("q", Unit::Items, &[], (60.0, 0.0)).contains("no samples yet"));
        assert!(line_chart("q", Unit::Nanos, &[(1.0, None)], (60.0, 0.0))
            .contains("no items completed"));
    }
}
