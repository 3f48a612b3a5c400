//! The `tracestate` header: [`TraceState`], the vendors' ordered list of
//! `key=value` members, parsed by the W3C Trace Context Level 2 grammar
//! and truncated as the spec says when sent.

use std::fmt;

/// The `tracestate` of a trace: up to 32 `key=value` members, each
/// tracing vendor's own, most recently updated first.
///
/// Parsed by the Trace Context Level 2 grammar:
///
/// - a **key** is 1 to 256 characters: a lowercase letter or a digit,
///   then lowercase letters, digits, `_`, `-`, `*`, `/` and `@` (so both
///   Level 1 forms, `vendor` and `tenant@system`, are keys);
/// - a **value** is 1 to 256 printable ASCII characters (`0x20`-`0x7E`)
///   other than `,` and `=`, not ending with a space;
/// - members are separated by commas; spaces and tabs around a member are
///   ignored, and so are empty members (several header fields are joined
///   with commas, so an empty field is an empty member).
///
/// A list with more than 32 members, or with any member outside the
/// grammar, is invalid as a whole ([`TraceStateError`]); the caller then
/// discards it. A key that appears again is dropped, the first (left-most,
/// most recent) member kept: the spec lets a vendor discard duplicates,
/// and the W3C test suite expects the rest of the list to survive them.
///
/// The value is immutable: [`with`](TraceState::with) and
/// [`without`](TraceState::without) return a new list.
///
/// # Examples
///
/// ```
/// use milieu::remote::TraceState;
///
/// let state = TraceState::parse(&["rojo=00f067aa0ba902b7", " congo=t61rcWkgMzE "])?;
/// assert_eq!(state.get("congo"), Some("t61rcWkgMzE"));
///
/// // Our own entry goes to the front.
/// let state = state.with("acme", "1")?;
/// assert_eq!(state.header().as_deref(), Some("acme=1,rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"));
///
/// assert!(TraceState::parse(&["Rojo=1"]).is_err()); // uppercase key
/// # Ok::<(), milieu::remote::TraceStateError>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct TraceState {
    /// Valid, unique keys with valid values; at most `MAX_MEMBERS`.
    members: Vec<(String, String)>,
}

/// What parsing a `tracestate` found, for [`Extracted`](super::Extracted).
pub(super) struct ParsedTraceState {
    pub(super) state: TraceState,
    /// Members dropped because their key came earlier in the list.
    pub(super) duplicates: usize,
}

impl TraceState {
    /// The most members a list may have.
    pub const MAX_MEMBERS: usize = 32;

    /// The length [`header`](TraceState::header) keeps the list within,
    /// commas included: the 512 characters every vendor should propagate.
    pub const MAX_HEADER_LEN: usize = 512;

    /// An empty list.
    pub const fn new() -> TraceState {
        TraceState {
            members: Vec::new(),
        }
    }

    /// Parses the values of every `tracestate` header field of a message,
    /// in order, as one list (fields are joined with commas, RFC 9110 §5.3).
    ///
    /// # Errors
    ///
    /// [`TraceStateError`] when the list has more than 32 members or a
    /// member outside the grammar (see [`TraceState`]); the spec's answer
    /// is to discard the whole list. Work stops at the first error, so a
    /// huge header costs one pass and no allocation past 32 members.
    ///
    /// # Examples
    ///
    /// ```
    /// use milieu::remote::{TraceState, TraceStateError};
    ///
    /// let state = TraceState::parse(&["foo=1,bar=2", "", "baz=3"])?;
    /// assert_eq!(state.len(), 3);
    /// assert_eq!(
    ///     TraceState::parse(&["foo=bar=baz"]),
    ///     Err(TraceStateError::InvalidValue { index: 0 })
    /// );
    /// # Ok::<(), TraceStateError>(())
    /// ```
    pub fn parse(fields: &[&str]) -> Result<TraceState, TraceStateError> {
        parse_list(fields).map(|parsed| parsed.state)
    }

    /// The value of `key`, if the list has it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.members
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// This list with `key=value` at the front: an existing member of that
    /// key is removed (the spec's "update moves the key to the left"), and
    /// if the list would then exceed 32 members, the right-most is dropped.
    ///
    /// # Errors
    ///
    /// [`TraceStateError::InvalidKey`] or
    /// [`InvalidValue`](TraceStateError::InvalidValue) (with `index: 0`,
    /// the place the member would have taken) if either is outside the
    /// grammar; `self` is unchanged.
    ///
    /// # Examples
    ///
    /// ```
    /// use milieu::remote::TraceState;
    ///
    /// let state = TraceState::parse(&["a=1,b=2"])?.with("b", "3")?;
    /// assert_eq!(state.header().as_deref(), Some("b=3,a=1"));
    /// assert!(state.with("b", "x,y").is_err());
    /// # Ok::<(), milieu::remote::TraceStateError>(())
    /// ```
    pub fn with(&self, key: &str, value: &str) -> Result<TraceState, TraceStateError> {
        if !is_key(key) {
            return Err(TraceStateError::InvalidKey { index: 0 });
        }
        if !is_value(value) {
            return Err(TraceStateError::InvalidValue { index: 0 });
        }
        let mut members = Vec::with_capacity(self.members.len() + 1);
        members.push((key.to_owned(), value.to_owned()));
        members.extend(self.members.iter().filter(|(k, _)| k != key).cloned());
        members.truncate(TraceState::MAX_MEMBERS);
        Ok(TraceState { members })
    }

    /// This list without the member of `key` (unchanged if there is none).
    /// The spec asks vendors to delete only their own keys.
    pub fn without(&self, key: &str) -> TraceState {
        let members = self
            .members
            .iter()
            .filter(|(k, _)| k != key)
            .cloned()
            .collect();
        TraceState { members }
    }

    /// The members in order, as `(key, value)`.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.members.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the list has no member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The value of the `tracestate` header to send, or `None` when there
    /// is nothing to send (the spec asks not to send an empty header).
    ///
    /// At most [`MAX_HEADER_LEN`](TraceState::MAX_HEADER_LEN) characters:
    /// when the whole list is longer, whole members are dropped as the
    /// spec says: members longer than 128 characters first (right-most
    /// first), then from the right end, until the rest fits.
    ///
    /// # Examples
    ///
    /// ```
    /// use milieu::remote::TraceState;
    ///
    /// let long = "x".repeat(200);
    /// let mut state = TraceState::new().with("big", &long)?;
    /// for i in 0..30 {
    ///     state = state.with(&format!("k{i:02}"), "0123456789")?;
    /// }
    /// // 30 members of 14 characters and one of 204: 654 > 512, so the
    /// // large one goes, and the rest (449) fits.
    /// let header = state.header().unwrap();
    /// assert!(!header.contains("big="));
    /// assert!(header.starts_with("k29=0123456789,"));
    /// assert_eq!(header.len(), 449);
    /// # Ok::<(), milieu::remote::TraceStateError>(())
    /// ```
    pub fn header(&self) -> Option<String> {
        let member_len = |(k, v): &&(String, String)| k.len() + 1 + v.len();
        let mut kept: Vec<&(String, String)> = self.members.iter().collect();
        let header_len = |kept: &[&(String, String)]| {
            kept.iter().map(member_len).sum::<usize>() + kept.len().saturating_sub(1)
        };
        while header_len(&kept) > TraceState::MAX_HEADER_LEN {
            let victim = kept
                .iter()
                .rposition(|m| member_len(m) > 128)
                .or(kept.len().checked_sub(1));
            match victim {
                Some(i) => kept.remove(i),
                None => break,
            };
        }
        if kept.is_empty() {
            return None;
        }
        let mut header = String::with_capacity(header_len(&kept));
        for (i, (key, value)) in kept.iter().enumerate() {
            if i > 0 {
                header.push(',');
            }
            header.push_str(key);
            header.push('=');
            header.push_str(value);
        }
        Some(header)
    }
}

impl fmt::Debug for TraceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TraceState(")?;
        for (i, (key, value)) in self.members.iter().enumerate() {
            let comma = if i > 0 { "," } else { "" };
            write!(f, "{comma}{key}={value}")?;
        }
        f.write_str(")")
    }
}

/// Why a `tracestate` list is invalid (and so discarded), or why
/// [`TraceState::with`] refused a member. `index` counts the list's
/// non-empty members from 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TraceStateError {
    /// More than [`TraceState::MAX_MEMBERS`] members.
    TooManyMembers,
    /// A member without `=`.
    NotKeyValue {
        /// Which member.
        index: usize,
    },
    /// A key outside the grammar (see [`TraceState`]).
    InvalidKey {
        /// Which member.
        index: usize,
    },
    /// A value outside the grammar (see [`TraceState`]).
    InvalidValue {
        /// Which member.
        index: usize,
    },
}

impl fmt::Display for TraceStateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceStateError::TooManyMembers => write!(
                f,
                "tracestate has more than {} list members",
                TraceState::MAX_MEMBERS
            ),
            TraceStateError::NotKeyValue { index } => {
                write!(f, "tracestate member {index} is not `key=value`")
            }
            TraceStateError::InvalidKey { index } => write!(
                f,
                "tracestate member {index} has an invalid key (1-256 of a-z 0-9 _ - * / @, \
                 starting with a-z or 0-9)"
            ),
            TraceStateError::InvalidValue { index } => write!(
                f,
                "tracestate member {index} has an invalid value (1-256 printable ASCII \
                 characters other than `,` and `=`, not ending with a space)"
            ),
        }
    }
}

impl std::error::Error for TraceStateError {}

/// Parses the joined `fields` (see [`TraceState::parse`]).
pub(super) fn parse_list(fields: &[&str]) -> Result<ParsedTraceState, TraceStateError> {
    let mut members: Vec<(String, String)> = Vec::new();
    let mut duplicates = 0;
    let mut index = 0;
    let pieces = fields.iter().flat_map(|field| field.split(','));
    for piece in pieces {
        let member = trim_ows(piece);
        if member.is_empty() {
            continue;
        }
        if index == TraceState::MAX_MEMBERS {
            return Err(TraceStateError::TooManyMembers);
        }
        // A value has no `=`, so the first one ends the key.
        let (key, value) = member
            .split_once('=')
            .ok_or(TraceStateError::NotKeyValue { index })?;
        if !is_key(key) {
            return Err(TraceStateError::InvalidKey { index });
        }
        if !is_value(value) {
            return Err(TraceStateError::InvalidValue { index });
        }
        if members.iter().any(|(k, _)| k == key) {
            duplicates += 1;
        } else {
            members.push((key.to_owned(), value.to_owned()));
        }
        index += 1;
    }
    Ok(ParsedTraceState {
        state: TraceState { members },
        duplicates,
    })
}

/// The members of a list made by other code (OpenTelemetry's
/// `TraceState`, whose grammar is a little different from Level 2's) that
/// fit ours, in order: a member outside the grammar, a key seen before and
/// every member past the 32nd are dropped, one by one. Not the whole list,
/// as [`parse_list`] does with a header: the spec lets a vendor drop
/// members it cannot pass on, and the others should still reach the next
/// service.
#[cfg_attr(not(feature = "opentelemetry"), allow(dead_code))]
pub(super) fn keep_valid<'a>(members: impl IntoIterator<Item = (&'a str, &'a str)>) -> TraceState {
    let mut kept: Vec<(String, String)> = Vec::new();
    for (key, value) in members {
        if kept.len() == TraceState::MAX_MEMBERS {
            break;
        }
        if is_key(key) && is_value(value) && !kept.iter().any(|(k, _)| k == key) {
            kept.push((key.to_owned(), value.to_owned()));
        }
    }
    TraceState { members: kept }
}

/// `text` less the spaces and tabs around it (OWS).
fn trim_ows(text: &str) -> &str {
    text.trim_matches([' ', '\t'])
}

/// `key = ( lcalpha / DIGIT ) 0*255 ( keychar )`, keychar = lcalpha /
/// DIGIT / `_` / `-` / `*` / `/` / `@` (Trace Context Level 2).
fn is_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    match bytes.split_first() {
        Some((first, rest)) => {
            rest.len() <= 255
                && matches!(first, b'a'..=b'z' | b'0'..=b'9')
                && rest.iter().all(
                    |b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/' | b'@'),
                )
        }
        None => false,
    }
}

/// `value = 0*255(chr) nblk-chr`: printable ASCII but `,` and `=`, the
/// last not a space.
fn is_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    (1..=256).contains(&bytes.len())
        && bytes
            .iter()
            .all(|&b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=')
        && bytes.last() != Some(&b' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(state: &TraceState) -> Vec<&str> {
        state.iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn fields_are_joined_in_order_and_empty_members_ignored() {
        let state =
            TraceState::parse(&["foo=1,bar=2", "rojo=1,congo=2", "", " , ", "baz=3"]).unwrap();
        assert_eq!(keys(&state), ["foo", "bar", "rojo", "congo", "baz"]);
        assert!(TraceState::parse(&[""]).unwrap().is_empty());
        assert!(TraceState::parse(&[]).unwrap().is_empty());
    }

    #[test]
    fn spaces_and_tabs_around_members_are_ignored_but_leading_value_spaces_kept() {
        let state = TraceState::parse(&["foo=1 \t , \t bar=2,\t \tbaz=3\t"]).unwrap();
        assert_eq!(state.get("foo"), Some("1"));
        assert_eq!(state.get("baz"), Some("3"));
        let state = TraceState::parse(&["foo= 1"]).unwrap();
        assert_eq!(state.get("foo"), Some(" 1"));
    }

    #[test]
    fn thirty_two_members_pass_and_thirty_three_do_not() {
        let list: Vec<String> = (1..=33).map(|i| format!("bar{i:02}={i:02}")).collect();
        assert_eq!(
            TraceState::parse(&[&list[..32].join(",")]).unwrap().len(),
            32
        );
        assert_eq!(
            TraceState::parse(&[&list.join(",")]),
            Err(TraceStateError::TooManyMembers)
        );
    }

    #[test]
    fn keys_follow_the_level_2_grammar() {
        let lower: String = ('a'..='z').collect::<String>() + "0123456789_-*/";
        for key in [
            lower.as_str(),
            "foo@",
            "foo@@bar",
            "foo@bar@baz",
            "0day",
            &"z".repeat(256),
            &format!("{}@{}", "t".repeat(241), "v".repeat(14)),
            &format!("{}@v", "t".repeat(242)),
            &format!("t@{}", "v".repeat(15)),
        ] {
            assert!(is_key(key), "{key}");
        }
        for key in [
            "",
            "@foo",
            "FOO",
            "foo ",
            "foo.bar",
            "_foo",
            &"z".repeat(257),
        ] {
            assert!(!is_key(key), "{key}");
        }
    }

    #[test]
    fn values_follow_the_grammar() {
        let all: String = (0x20u8..=0x7e)
            .filter(|&b| b != b',' && b != b'=')
            .map(char::from)
            .collect();
        assert!(is_value(&all));
        assert!(is_value(&"v".repeat(256)));
        for value in ["", " ", "a ", "a=b", "a,b", "a\tb", "é", &"v".repeat(257)] {
            assert!(!is_value(value), "{value:?}");
        }
    }

    #[test]
    fn any_invalid_member_invalidates_the_list_and_says_which() {
        assert_eq!(
            TraceState::parse(&["foo=1", "bar"]),
            Err(TraceStateError::NotKeyValue { index: 1 })
        );
        assert_eq!(
            TraceState::parse(&["foo=,bar=3"]),
            Err(TraceStateError::InvalidValue { index: 0 })
        );
        assert_eq!(
            TraceState::parse(&["ok=1,@foo=1"]),
            Err(TraceStateError::InvalidKey { index: 1 })
        );
        let err = TraceState::parse(&["foo =1"]).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("tracestate member 0 has an invalid key"));
    }

    #[test]
    fn a_repeated_key_keeps_the_left_most_member() {
        let parsed = parse_list(&["foo=1,bar=2", "foo=3"]).unwrap();
        assert_eq!(parsed.duplicates, 1);
        assert_eq!(parsed.state.header().as_deref(), Some("foo=1,bar=2"));
    }

    #[test]
    fn with_moves_the_key_to_the_front_and_keeps_at_most_32() {
        let list: Vec<String> = (1..=32).map(|i| format!("k{i:02}=v")).collect();
        let state = TraceState::parse(&[&list.join(",")]).unwrap();
        let state = state.with("new", "1").unwrap();
        assert_eq!(state.len(), 32);
        assert_eq!(keys(&state)[0], "new");
        assert_eq!(state.get("k32"), None, "the right-most member goes");
        let state = state.with("k05", "2").unwrap();
        assert_eq!(keys(&state)[..2], ["k05", "new"]);
        assert_eq!(state.len(), 32);
        assert_eq!(state.without("k05").len(), 31);
        assert_eq!(
            state.with("K", "1"),
            Err(TraceStateError::InvalidKey { index: 0 })
        );
    }

    #[test]
    fn header_drops_long_members_first_then_from_the_end() {
        // Five members of 100 characters fit (504); a sixth does not.
        let value = "v".repeat(97);
        let mut list: Vec<String> = (0..6).map(|i| format!("k{i}={value}")).collect();
        let state = TraceState::parse(&[&list.join(",")]).unwrap();
        let header = state.header().unwrap();
        assert_eq!(header, list[..5].join(","));

        // A long member in the middle goes before any short one.
        list.truncate(4);
        list.insert(1, format!("long={}", "l".repeat(200)));
        let state = TraceState::parse(&[&list.join(",")]).unwrap();
        assert_eq!(
            state.header().unwrap(),
            list[..1]
                .iter()
                .chain(&list[2..])
                .cloned()
                .collect::<Vec<_>>()
                .join(",")
        );

        // One member of 513 characters cannot be sent at all.
        let state = TraceState::new()
            .with(&"k".repeat(256), &"v".repeat(256))
            .unwrap();
        assert_eq!(state.header(), None);
        assert_eq!(TraceState::new().header(), None);
    }

    #[test]
    fn keep_valid_drops_bad_members_one_by_one() {
        let state = keep_valid([
            ("a", "1"),
            ("Bad", "2"),
            ("b", "trailing "),
            ("a", "again"),
            ("c", "3"),
        ]);
        assert_eq!(state.header().as_deref(), Some("a=1,c=3"));
        let many: Vec<(String, String)> = (0..40).map(|i| (format!("k{i}"), "v".into())).collect();
        let state = keep_valid(many.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        assert_eq!(state.len(), 32);
        assert_eq!(state.get("k31"), Some("v"));
        assert_eq!(state.get("k32"), None);
    }

    #[test]
    fn debug_shows_the_list() {
        let state = TraceState::parse(&["a=1,b=2"]).unwrap();
        assert_eq!(format!("{state:?}"), "TraceState(a=1,b=2)");
    }
}
