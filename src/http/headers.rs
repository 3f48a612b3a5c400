//! Header fields: an ordered list of name/value pairs, looked up by name
//! without regard to ASCII case.

use std::borrow::Cow;
use std::error::Error;
use std::fmt;

/// The header fields of a [`Request`](super::Request) or a
/// [`Response`](super::Response), in the order they were received or added.
///
/// Names are compared without regard to ASCII case. Values are bytes (a
/// request may carry `obs-text`); [`get_str`](Headers::get_str) reads one
/// as text. Every field in a `Headers` is valid: the parser only hands on
/// what `httparse` accepted, and [`append`](Headers::append) /
/// [`insert`](Headers::insert) refuse a name that is not a token and a
/// value holding a control character (CR, LF, NUL, ...), so no field can
/// smuggle a line break into a response.
///
/// # Examples
///
/// ```
/// use milieu::http::Headers;
///
/// let mut headers = Headers::new();
/// headers.append("Accept", "text/html")?;
/// headers.append("accept", "text/plain")?;
/// assert_eq!(headers.get_str("ACCEPT"), Some("text/html"));
/// assert_eq!(headers.get_all("Accept").count(), 2);
/// assert!(headers.append("X-Evil", "a\r\nSet-Cookie: b").is_err());
/// # Ok::<(), milieu::http::InvalidHeader>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers {
    /// Borrowed for the fixed fields the crate adds itself (no allocation
    /// per response), owned for everything else.
    fields: Vec<(Cow<'static, str>, Cow<'static, [u8]>)>,
}

impl Headers {
    /// No fields.
    pub fn new() -> Headers {
        Headers::default()
    }

    /// The value of the first field named `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| &**v)
    }

    /// The value of the first field named `name`, if it is UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The values of every field named `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.fields
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| &**v)
    }

    /// Whether a field named `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Whether a field named `name` lists `token` (a comma-separated list,
    /// over all fields of that name, compared without regard to ASCII
    /// case): `Connection: keep-alive, close` has the token `close`.
    ///
    /// # Examples
    ///
    /// ```
    /// use milieu::http::Headers;
    ///
    /// let mut headers = Headers::new();
    /// headers.append("Connection", "Keep-Alive, Upgrade")?;
    /// assert!(headers.has_token("connection", "upgrade"));
    /// assert!(!headers.has_token("connection", "close"));
    /// # Ok::<(), milieu::http::InvalidHeader>(())
    /// ```
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.get_all(name)
            .flat_map(|value| value.split(|&b| b == b','))
            .any(|item| trim_ows(item).eq_ignore_ascii_case(token.as_bytes()))
    }

    /// Every field, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        self.fields.iter().map(|(n, v)| (&**n, &**v))
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Adds a field after the others.
    ///
    /// # Errors
    ///
    /// [`InvalidHeader`] if `name` is not an HTTP token or `value` holds
    /// a control character other than horizontal tab; nothing is added.
    pub fn append(&mut self, name: &str, value: impl AsRef<[u8]>) -> Result<(), InvalidHeader> {
        let value = value.as_ref();
        validate(name, value)?;
        self.fields
            .push((Cow::Owned(name.into()), Cow::Owned(value.into())));
        Ok(())
    }

    /// [`append`](Headers::append) for a value the caller has already
    /// cleared of control characters (`Response::with_header`): only the
    /// name is checked, the value is not scanned a second time.
    pub(crate) fn append_clean_value(
        &mut self,
        name: &str,
        value: &[u8],
    ) -> Result<(), InvalidHeader> {
        debug_assert!(!has_forbidden_in_value(value));
        validate_name(name)?;
        self.fields
            .push((Cow::Owned(name.into()), Cow::Owned(value.into())));
        Ok(())
    }

    /// Replaces every field named `name` with one holding `value`.
    ///
    /// # Errors
    ///
    /// As for [`append`](Headers::append); nothing is changed.
    pub fn insert(&mut self, name: &str, value: impl AsRef<[u8]>) -> Result<(), InvalidHeader> {
        let value = value.as_ref();
        validate(name, value)?;
        self.remove(name);
        self.fields
            .push((Cow::Owned(name.into()), Cow::Owned(value.into())));
        Ok(())
    }

    /// Removes every field named `name`; returns how many there were.
    pub fn remove(&mut self, name: &str) -> usize {
        let before = self.fields.len();
        self.fields.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        before - self.fields.len()
    }

    /// Adds a constant field known to be valid (the `Content-Type` of
    /// `Response::text`): no check, no copy.
    pub(crate) fn push_static(&mut self, name: &'static str, value: &'static [u8]) {
        debug_assert!(validate(name, value).is_ok(), "{name} is not a valid field");
        self.fields
            .push((Cow::Borrowed(name), Cow::Borrowed(value)));
    }

    /// Adds a field the parser already validated.
    pub(crate) fn push_parsed(&mut self, name: &str, value: &[u8]) {
        let name = match COMMON_NAMES.iter().find(|common| **common == name) {
            Some(common) => Cow::Borrowed(*common),
            None => Cow::Owned(name.into()),
        };
        self.fields.push((name, Cow::Owned(value.into())));
    }

    /// Empty, with room for `fields` fields.
    pub(crate) fn with_capacity(fields: usize) -> Headers {
        Headers {
            fields: Vec::with_capacity(fields),
        }
    }
}

/// Field names most requests send, spelled as clients send them: a parsed
/// field with one of these names borrows it instead of copying it (one
/// allocation less per field; the name keeps the client's spelling either
/// way).
const COMMON_NAMES: &[&str] = &[
    "Host",
    "host",
    "User-Agent",
    "user-agent",
    "Accept",
    "accept",
    "Accept-Encoding",
    "accept-encoding",
    "Accept-Language",
    "Connection",
    "connection",
    "Content-Length",
    "content-length",
    "Content-Type",
    "content-type",
];

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.fields
                    .iter()
                    .map(|(n, v)| (n, String::from_utf8_lossy(v))),
            )
            .finish()
    }
}

/// A header field [`Headers`] refused: its name is not a token, or its
/// value holds a control character (a CR or LF would end the field early
/// and let the rest pose as another field: header injection).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidHeader {
    name: String,
    reason: &'static str,
}

impl InvalidHeader {
    /// The refused field's name (lossy if it was not printable).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for InvalidHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "header field {:?} refused: {}", self.name, self.reason)
    }
}

impl Error for InvalidHeader {}

fn validate(name: &str, value: &[u8]) -> Result<(), InvalidHeader> {
    validate_name(name)?;
    if has_forbidden_in_value(value) {
        return Err(InvalidHeader {
            name: name.to_owned(),
            reason: "the value holds a control character (CR, LF, NUL, ...)",
        });
    }
    Ok(())
}

fn validate_name(name: &str) -> Result<(), InvalidHeader> {
    let refuse = |reason| {
        Err(InvalidHeader {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return refuse("the name is empty");
    }
    if !name.bytes().all(is_token) {
        return refuse("the name is not an HTTP token (letters, digits, !#$%&'*+-.^_`|~)");
    }
    Ok(())
}

/// Whether `b` may appear in a token (RFC 9110 `tchar`).
#[inline]
pub(crate) fn is_token(b: u8) -> bool {
    crate::remote::is_tchar(b)
}

/// Whether `value` holds a byte [`is_forbidden_in_value`]. Every byte is
/// looked at, with no early exit, so the loop vectorizes: values are
/// short and nearly always clean, and one is checked for every header
/// field a response adds.
#[inline]
pub(crate) fn has_forbidden_in_value(value: &[u8]) -> bool {
    value
        .iter()
        .fold(false, |found, &b| found | is_forbidden_in_value(b))
}

/// Whether `b` may not appear in a field value: controls but HTAB.
#[inline]
pub(crate) fn is_forbidden_in_value(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

/// `bytes` without leading and trailing spaces and tabs (RFC 9110 `OWS`).
pub(crate) fn trim_ows(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    &bytes[start..end.max(start)]
}

/// Searches `input` from `from` for the blank line that ends a header
/// (or trailer) section: a line end, `\n`, followed by an empty line,
/// `\r\n` or `\n`. `from` must be where the section's first line starts
/// or a later point reached by an earlier search; a section without
/// fields is found if `from` is at the line end just before it.
///
/// `Ok(end)`: the offset just past the blank line, or past a `\n\r`
/// followed by another byte than `\n`, which is no line end at all: the
/// section ends there or is malformed there, and the parser can tell
/// which. `Err(resume)`: no end yet; the next search, once more input
/// has arrived, starts at `resume`, so that each byte is searched once
/// (a `\n` whose next bytes are not in yet is searched again, as a line
/// end can straddle two reads).
pub(crate) fn find_blank_line(input: &[u8], from: usize) -> Result<usize, usize> {
    let mut at = from;
    while let Some(found) = input.get(at..).and_then(|rest| memchr::memchr(b'\n', rest)) {
        let line_end = at + found;
        match input.get(line_end + 1..).unwrap_or_default() {
            [b'\n', ..] => return Ok(line_end + 2),
            [b'\r', _, ..] => return Ok(line_end + 3),
            [] | [b'\r'] => return Err(line_end),
            _ => at = line_end + 1,
        }
    }
    Err(input.len().max(from))
}

#[cfg(test)]
mod tests {
    use super::{find_blank_line, is_token, trim_ows, Headers};

    #[test]
    fn the_token_table_is_rfc_9110_tchar() {
        // RFC 9110 §5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*"
        // / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
        let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        for b in 0..=255u8 {
            assert_eq!(is_token(b), tchar(b), "byte {b:#04x}");
        }
    }

    #[test]
    fn the_blank_line_is_found_however_the_input_is_cut() {
        let section = b"GET / HTTP/1.1\r\nHost: h\r\n\r\nbody";
        let end = section.len() - 4;
        for cut in 0..=section.len() {
            let mut resume = 0;
            // Every prefix, then the whole: the end is found once it is in.
            for len in [cut, section.len()] {
                match find_blank_line(&section[..len], resume) {
                    Ok(found) => {
                        assert_eq!(found, end, "cut {cut}");
                        assert!(len >= end, "cut {cut}");
                    }
                    Err(next) => {
                        assert!(len < end, "cut {cut}: missed");
                        assert!(next >= resume && next <= len, "cut {cut}");
                        resume = next;
                    }
                }
            }
        }
        assert_eq!(find_blank_line(b"A: 1\n\nrest", 0), Ok(6));
        assert_eq!(find_blank_line(b"0\r\n\r\n", 2), Ok(5), "an empty section");
        assert_eq!(
            find_blank_line(b"A: 1\n\rX", 0),
            Ok(7),
            "malformed: decided here"
        );
        assert_eq!(find_blank_line(b"A: 1\r\nB", 0), Err(7));
        assert_eq!(find_blank_line(b"A: 1\r\n\r", 0), Err(5));
    }

    #[test]
    fn lookup_ignores_case_and_keeps_order() {
        let mut h = Headers::new();
        h.append("X-A", "1").unwrap();
        h.append("x-a", "2").unwrap();
        h.append("Other", "3").unwrap();
        assert_eq!(h.get("X-a"), Some(&b"1"[..]));
        assert_eq!(h.get_all("X-A").collect::<Vec<_>>(), [b"1", b"2"]);
        h.insert("X-A", "9").unwrap();
        assert_eq!(h.get_all("x-a").collect::<Vec<_>>(), [b"9"]);
        assert_eq!(h.remove("OTHER"), 1);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn invalid_names_and_values_are_refused() {
        let mut h = Headers::new();
        assert!(h.append("", "x").is_err());
        assert!(h.append("Bad Name", "x").is_err());
        assert!(h.append("Bad:Name", "x").is_err());
        assert!(h.append("X", "a\rb").is_err());
        assert!(h.append("X", "a\nb").is_err());
        assert!(h.append("X", "a\0b").is_err());
        assert!(h.insert("X", "a\r\n").is_err());
        assert!(h.is_empty());
        h.append("X", "tab\tand obs-text \u{e9}").unwrap();
        let err = Headers::new().append("X", "\n").unwrap_err();
        assert!(err.to_string().contains("control character"), "{err}");
    }

    #[test]
    fn tokens_are_found_in_lists_over_several_fields() {
        let mut h = Headers::new();
        h.append("Connection", " foo ,\tKeep-Alive").unwrap();
        h.append("Connection", "close").unwrap();
        assert!(h.has_token("connection", "keep-alive"));
        assert!(h.has_token("connection", "CLOSE"));
        assert!(!h.has_token("connection", "clos"));
    }

    #[test]
    fn ows_is_trimmed_on_both_sides() {
        assert_eq!(trim_ows(b"  a b\t"), b"a b");
        assert_eq!(trim_ows(b" \t "), b"");
        assert_eq!(trim_ows(b""), b"");
    }
}
