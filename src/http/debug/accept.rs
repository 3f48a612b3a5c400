//! Proactive negotiation on `Accept` (RFC 9110, section 12.5.1): which of
//! the media types a view can be given in the client rates highest.

/// The index in `offered` (bare media types such as `text/plain`, in the
/// order the server prefers them) of the one `accept` rates highest, or
/// `None` when it rates every one of them `q=0` or matches none (the
/// client accepts none: 406).
///
/// Each offered type takes the quality of the most specific range that
/// matches it (`text/html` before `text/*` before `*/*`, case-insensitive);
/// among types of equal quality, the one whose range comes first in
/// `accept` wins, then the first offered. Elements that are not a media
/// range or carry a malformed `q` are ignored; when none is left, the
/// header says nothing and the first offered type is chosen.
pub(super) fn preferred(accept: &str, offered: &[&str]) -> Option<usize> {
    let ranges: Vec<Range<'_>> = accept
        .split(',')
        .enumerate()
        .filter_map(|(at, element)| Range::parse(element, at))
        .collect();
    if ranges.is_empty() {
        return (!offered.is_empty()).then_some(0);
    }
    let (quality, _, _, index) = offered
        .iter()
        .enumerate()
        .map(|(index, media)| {
            let (kind, sub) = media.split_once('/').unwrap_or((media, ""));
            // The most specific matching range; the first of equals.
            let best = ranges
                .iter()
                .filter_map(|range| range.specificity(kind, sub).map(|s| (s, range)))
                .fold(
                    None,
                    |best: Option<(u8, &Range<'_>)>, (s, range)| match best {
                        Some((b, _)) if b >= s => best,
                        _ => Some((s, range)),
                    },
                );
            match best {
                Some((_, range)) => (
                    range.quality,
                    usize::MAX - range.at,
                    offered.len() - index,
                    index,
                ),
                None => (0, 0, offered.len() - index, index),
            }
        })
        .max()?;
    (quality > 0).then_some(index)
}

/// One element of `Accept`: `type/subtype` and its quality.
struct Range<'a> {
    kind: &'a str,
    sub: &'a str,
    /// `q` in thousandths (RFC 9110 allows three decimals).
    quality: u16,
    /// Its position in the field.
    at: usize,
}

impl<'a> Range<'a> {
    fn parse(element: &'a str, at: usize) -> Option<Range<'a>> {
        let mut parts = element.split(';');
        let (kind, sub) = parts.next()?.trim().split_once('/')?;
        let (kind, sub) = (kind.trim(), sub.trim());
        if kind.is_empty() || sub.is_empty() || (kind == "*" && sub != "*") {
            return None;
        }
        let mut quality = 1000;
        for parameter in parts {
            if let Some((name, value)) = parameter.split_once('=') {
                if name.trim().eq_ignore_ascii_case("q") {
                    quality = parse_quality(value.trim())?;
                }
            }
        }
        Some(Range {
            kind,
            sub,
            quality,
            at,
        })
    }

    /// How specifically this range matches `kind/sub`: 2 exactly, 1 as
    /// `kind/*`, 0 as `*/*`; `None` if it does not.
    fn specificity(&self, kind: &str, sub: &str) -> Option<u8> {
        match (self.kind, self.sub) {
            ("*", "*") => Some(0),
            (k, "*") if k.eq_ignore_ascii_case(kind) => Some(1),
            (k, s) if k.eq_ignore_ascii_case(kind) && s.eq_ignore_ascii_case(sub) => Some(2),
            _ => None,
        }
    }
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in
/// thousandths.
fn parse_quality(value: &str) -> Option<u16> {
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = format!("{fraction:0<3}").parse::<u16>().ok()?;
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFERED: [&str; 3] = ["text/plain", "application/json", "text/html"];

    fn pick(accept: &str) -> Option<&'static str> {
        preferred(accept, &OFFERED).map(|i| OFFERED[i])
    }

    #[test]
    fn the_highest_quality_wins_then_the_first_named_then_the_first_offered() {
        let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert_eq!(pick(browser), Some("text/html"));
        assert_eq!(pick("*/*"), Some("text/plain"));
        assert_eq!(pick("application/json"), Some("application/json"));
        assert_eq!(
            pick("application/json, text/html"),
            Some("application/json")
        );
        assert_eq!(pick("text/html, application/json"), Some("text/html"));
        assert_eq!(pick("application/json;q=0.5, text/html"), Some("text/html"));
        assert_eq!(pick("text/*"), Some("text/plain"));
        assert_eq!(pick("text/*, text/html;q=0.1"), Some("text/plain"));
        assert_eq!(pick("*/*;q=0.1, TEXT/HTML"), Some("text/html"));
        assert_eq!(
            pick("application/json; charset=utf-8; q=1.000"),
            Some("application/json")
        );
    }

    #[test]
    fn q_zero_excludes_and_nothing_acceptable_is_none() {
        assert_eq!(pick("application/json;q=0, text/html"), Some("text/html"));
        assert_eq!(pick("*/*, text/plain;q=0"), Some("application/json"));
        assert_eq!(pick("image/png"), None);
        assert_eq!(
            pick("application/jsonx"),
            None,
            "a longer name is another type"
        );
        assert_eq!(pick("*/*;q=0"), None);
    }

    #[test]
    fn malformed_elements_are_ignored() {
        assert_eq!(pick(""), Some("text/plain"));
        assert_eq!(pick("garbage"), Some("text/plain"));
        assert_eq!(pick("text/html;q=2"), Some("text/plain"), "q above 1");
        assert_eq!(
            pick("text/html;q=0.1234"),
            Some("text/plain"),
            "four decimals"
        );
        assert_eq!(
            pick("text/html;q=-1, application/json"),
            Some("application/json")
        );
        assert_eq!(pick("*/html"), Some("text/plain"));
        assert_eq!(pick(",,;,/,"), Some("text/plain"));
    }

    #[test]
    fn qualities_parse_as_rfc_9110_writes_them() {
        assert_eq!(parse_quality("0"), Some(0));
        assert_eq!(parse_quality("0.8"), Some(800));
        assert_eq!(parse_quality("0.125"), Some(125));
        assert_eq!(parse_quality("1"), Some(1000));
        assert_eq!(parse_quality("1.000"), Some(1000));
        assert_eq!(parse_quality("1.001"), None);
        assert_eq!(parse_quality("0."), Some(0));
        assert_eq!(parse_quality(".5"), None);
        assert_eq!(parse_quality("0.5x"), None);
    }
}
