//! The W3C `baggage` header: parsing one or more field values into
//! [`BaggageMember`]s within [`BaggageLimits`] ([`ParsedBaggage`]), and
//! writing members back ([`BaggageHeader`]).
//!
//! The grammar (W3C Baggage):
//!
//! ```text
//! baggage-string = list-member 0*179( OWS "," OWS list-member )
//! list-member    = key OWS "=" OWS value *( OWS ";" OWS property )
//! property       = key OWS "=" OWS value / key OWS
//! key            = token                        ; RFC 7230 tchar
//! value          = *baggage-octet               ; percent-encoded UTF-8
//! baggage-octet  = %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E
//! ```

use std::fmt;
use std::hash::{Hash, Hasher};

/// How much baggage is read from a request and written to one.
///
/// The spec's limits are minimums: a platform must propagate every member
/// as long as there are at most 64 of them in at most 8,192 bytes. These
/// are the defaults, and the values below which the setters do not go;
/// raise them to carry more.
///
/// Reading stops at the limits (see [`ParsedBaggage::parse`]); writing
/// skips members that do not fit (see [`BaggageHeader::push`]).
///
/// # Examples
///
/// ```
/// use milieu::remote::BaggageLimits;
///
/// let limits = BaggageLimits::new().with_max_members(128);
/// assert_eq!(limits.max_members(), 128);
/// assert_eq!(limits.max_bytes(), 8192);
/// // Never below the spec's minimum:
/// assert_eq!(BaggageLimits::new().with_max_bytes(100).max_bytes(), 8192);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BaggageLimits {
    max_members: usize,
    max_bytes: usize,
}

impl BaggageLimits {
    /// The fewest members a platform must propagate: 64.
    pub const MIN_MEMBERS: usize = 64;
    /// The fewest bytes of baggage a platform must propagate: 8,192.
    pub const MIN_BYTES: usize = 8192;

    /// The spec's minimums: 64 members, 8,192 bytes.
    pub const fn new() -> BaggageLimits {
        BaggageLimits {
            max_members: BaggageLimits::MIN_MEMBERS,
            max_bytes: BaggageLimits::MIN_BYTES,
        }
    }

    /// At most `max` members (raised to [`MIN_MEMBERS`](BaggageLimits::MIN_MEMBERS)
    /// if lower: fewer would break the spec).
    pub const fn with_max_members(mut self, max: usize) -> BaggageLimits {
        self.max_members = if max < BaggageLimits::MIN_MEMBERS {
            BaggageLimits::MIN_MEMBERS
        } else {
            max
        };
        self
    }

    /// At most `max` bytes of all `baggage` fields together, commas and
    /// spaces included (raised to [`MIN_BYTES`](BaggageLimits::MIN_BYTES)
    /// if lower).
    pub const fn with_max_bytes(mut self, max: usize) -> BaggageLimits {
        self.max_bytes = if max < BaggageLimits::MIN_BYTES {
            BaggageLimits::MIN_BYTES
        } else {
            max
        };
        self
    }

    /// The most members read or written.
    pub const fn max_members(&self) -> usize {
        self.max_members
    }

    /// The most bytes read or written.
    pub const fn max_bytes(&self) -> usize {
        self.max_bytes
    }
}

impl Default for BaggageLimits {
    fn default() -> BaggageLimits {
        BaggageLimits::new()
    }
}

/// One member of a `baggage` list: a key, its (decoded) value, and its
/// properties kept as received.
///
/// A member parsed from a header also keeps the exact text it arrived as
/// ([`encoded`](BaggageMember::encoded)), so one that is only passed on
/// leaves the process as it came in. Equality and hashing look at the
/// key, value and properties, not at that text (`a=%41` equals `a=A`).
///
/// # Examples
///
/// ```
/// use milieu::remote::BaggageMember;
///
/// let member = BaggageMember::new("serverNode", "DF 28")?;
/// assert_eq!(member.encoded(), "serverNode=DF%2028");
/// assert_eq!(BaggageMember::new("sum", "1+1")?.encoded(), "sum=1%2B1");
/// assert_eq!(member.value(), "DF 28");
/// assert!(BaggageMember::new("no spaces", "x").is_err());
/// # Ok::<(), milieu::remote::InvalidBaggageKey>(())
/// ```
#[derive(Clone)]
pub struct BaggageMember {
    key: String,
    value: String,
    /// What follows the value's `;`, less the spaces around it.
    properties: Option<String>,
    /// The member as sent: as received (less surrounding spaces) for a
    /// parsed member, `key=<percent-encoded value>` for a new one.
    encoded: String,
    /// Whether the value's percent-escapes were not UTF-8 and were
    /// replaced with U+FFFD.
    lossy: bool,
}

impl BaggageMember {
    /// A member with this key and value (any text: it is percent-encoded
    /// when written, `+` included, see below), without properties.
    ///
    /// The encoded value escapes what W3C Baggage requires (what is not a
    /// `baggage-octet`, and `%`) and `+`, which form decoders would read
    /// as a space: `"1+1"` is sent as `1%2B1`.
    ///
    /// # Errors
    ///
    /// [`InvalidBaggageKey`] if `key` is not an RFC 7230 token (one or
    /// more of ``A-Z a-z 0-9 ! # $ % & ' * + - . ^ _ ` | ~``).
    pub fn new(key: &str, value: &str) -> Result<BaggageMember, InvalidBaggageKey> {
        if !is_token(key) {
            return Err(InvalidBaggageKey {
                key: clip(key).to_owned(),
            });
        }
        Ok(BaggageMember::with_valid_key(key, value))
    }

    /// [`new`](BaggageMember::new) for a key already checked.
    pub(super) fn with_valid_key(key: &str, value: &str) -> BaggageMember {
        let mut encoded = String::with_capacity(key.len() + 1 + value.len());
        encoded.push_str(key);
        encoded.push('=');
        percent_encode(value, &mut encoded);
        BaggageMember {
            key: key.to_owned(),
            value: value.to_owned(),
            properties: None,
            encoded,
            lossy: false,
        }
    }

    /// The key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The value, percent-decoded.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The properties (`k1=v1;k2`: what followed the value's first `;`)
    /// as received, if any. The spec gives them no meaning; milieu passes
    /// them on.
    pub fn properties(&self) -> Option<&str> {
        self.properties.as_deref()
    }

    /// Whether the value's percent-escapes did not spell UTF-8: as the
    /// spec says, each bad sequence was replaced with U+FFFD, so
    /// [`value`](BaggageMember::value) is not what the sender meant.
    pub fn is_lossy(&self) -> bool {
        self.lossy
    }

    /// The member as written in a header.
    pub fn encoded(&self) -> &str {
        &self.encoded
    }
}

impl PartialEq for BaggageMember {
    fn eq(&self, other: &BaggageMember) -> bool {
        self.key == other.key
            && self.value == other.value
            && self.properties == other.properties
            && self.lossy == other.lossy
    }
}

impl Eq for BaggageMember {}

impl Hash for BaggageMember {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state);
        self.value.hash(state);
        self.properties.hash(state);
        self.lossy.hash(state);
    }
}

impl fmt::Debug for BaggageMember {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("BaggageMember");
        debug.field("key", &self.key).field("value", &self.value);
        if let Some(properties) = &self.properties {
            debug.field("properties", properties);
        }
        if self.lossy {
            debug.field("lossy", &true);
        }
        debug.finish()
    }
}

/// A baggage key that is not an RFC 7230 token.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct InvalidBaggageKey {
    /// The key (its first 64 bytes at most).
    key: String,
}

impl fmt::Display for InvalidBaggageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid baggage key {:?}: a key is one or more of A-Z a-z 0-9 ! # $ % & ' * + - . ^ _ ` | ~",
            self.key
        )
    }
}

impl std::error::Error for InvalidBaggageKey {}

/// The members read from a request's `baggage` fields, the members
/// dropped as malformed, and where reading stopped at a limit.
///
/// # Examples
///
/// ```
/// use milieu::remote::{BaggageLimits, MalformedReason, ParsedBaggage};
///
/// let parsed = ParsedBaggage::parse(
///     &["userId=Am%C3%A9lie,serverNode = DF%2028", "bad key=1,isProduction=false;p=1"],
///     &BaggageLimits::new(),
/// );
/// let values: Vec<&str> = parsed.members().iter().map(|m| m.value()).collect();
/// assert_eq!(values, ["Amélie", "DF 28", "false"]);
/// assert_eq!(parsed.members()[2].properties(), Some("p=1"));
/// assert_eq!(parsed.malformed()[0].reason(), MalformedReason::InvalidKey);
/// assert!(parsed.truncated().is_none());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedBaggage {
    members: Vec<BaggageMember>,
    malformed: Vec<MalformedMember>,
    truncated: Option<Truncated>,
}

impl ParsedBaggage {
    /// Parses the values of every `baggage` field of a message, in order,
    /// as one list (fields are joined with commas, RFC 9110 §5.3).
    ///
    /// A malformed member is dropped and listed in
    /// [`malformed`](ParsedBaggage::malformed); the others are kept, in
    /// order, duplicates included (the spec allows them). Empty members
    /// (`a=1,,b=2`) are skipped.
    ///
    /// The limits hold while reading, not after: only members that end
    /// within the first [`max_bytes`](BaggageLimits::max_bytes) of the
    /// joined list are read, and only the first
    /// [`max_members`](BaggageLimits::max_members) non-empty ones
    /// (malformed or not). Reading stops at the first member past either,
    /// and [`truncated`](ParsedBaggage::truncated) says how much was left
    /// unread; nothing after it is looked at, so a header of any size
    /// costs at most `max_bytes` of work and memory.
    pub fn parse(fields: &[&str], limits: &BaggageLimits) -> ParsedBaggage {
        let mut parsed = ParsedBaggage {
            members: Vec::new(),
            malformed: Vec::new(),
            truncated: None,
        };
        // The joined list: fields separated by one comma each.
        let total = fields.iter().map(|f| f.len()).sum::<usize>() + fields.len().saturating_sub(1);
        let mut offset = 0; // where the current field starts in the joined list
        let mut read = 0; // non-empty members read
        'fields: for field in fields {
            let bytes = field.as_bytes();
            // A member may end at `room` at the latest (in this field).
            let room = limits.max_bytes.saturating_sub(offset);
            let mut start = 0;
            while start <= bytes.len() {
                // Look for the comma only as far as the byte limit allows:
                // past it, nothing is read.
                let window = &bytes[start..bytes.len().min(room.saturating_add(1)).max(start)];
                let end = match memchr_comma(window) {
                    Some(i) => start + i,
                    None if bytes.len() <= room => bytes.len(),
                    None => {
                        parsed.truncated = Some(Truncated {
                            limit: BaggageLimit::Bytes,
                            read,
                            unread_bytes: total.saturating_sub(offset + start),
                        });
                        break 'fields;
                    }
                };
                // `start` and `end` are at a comma or an end of `field`,
                // so on character boundaries: `get` cannot fail.
                let member = trim_ows(field.get(start..end).unwrap_or(""));
                if !member.is_empty() {
                    if read == limits.max_members {
                        parsed.truncated = Some(Truncated {
                            limit: BaggageLimit::Members,
                            read,
                            unread_bytes: total.saturating_sub(offset + start),
                        });
                        break 'fields;
                    }
                    match parse_member(member) {
                        Ok(member) => parsed.members.push(member),
                        Err((key, reason)) => parsed.malformed.push(MalformedMember {
                            index: read,
                            key: key.map(|key| clip(key).to_owned()),
                            reason,
                        }),
                    }
                    read += 1;
                }
                start = end + 1;
            }
            offset += bytes.len() + 1;
        }
        parsed
    }

    /// The well-formed members, in order.
    pub fn members(&self) -> &[BaggageMember] {
        &self.members
    }

    /// The members dropped as malformed, in order.
    pub fn malformed(&self) -> &[MalformedMember] {
        &self.malformed
    }

    /// Where reading stopped at a limit, if it did.
    pub fn truncated(&self) -> Option<&Truncated> {
        self.truncated.as_ref()
    }

    /// The three parts: members, malformed members, truncation.
    pub fn into_parts(self) -> (Vec<BaggageMember>, Vec<MalformedMember>, Option<Truncated>) {
        (self.members, self.malformed, self.truncated)
    }
}

/// A member dropped while parsing, and why.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MalformedMember {
    index: usize,
    key: Option<String>,
    reason: MalformedReason,
}

impl MalformedMember {
    /// Its place among the non-empty members of the list, from 0.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Its key as received (the first 64 bytes at most), when it has one
    /// (not for [`NotKeyValue`](MalformedReason::NotKeyValue)).
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// What is wrong with it.
    pub fn reason(&self) -> MalformedReason {
        self.reason
    }
}

impl fmt::Display for MalformedMember {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(f, "member {} ({key:?}): {}", self.index, self.reason),
            None => write!(f, "member {}: {}", self.index, self.reason),
        }
    }
}

/// Why a baggage member is malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MalformedReason {
    /// No `=` after the key.
    NotKeyValue,
    /// The key is not an RFC 7230 token.
    InvalidKey,
    /// The value has a character outside `baggage-octet` (a space, `"`,
    /// `,`, `;`, `\`, a control or non-ASCII character).
    InvalidValue,
    /// A `%` not followed by two hex digits.
    InvalidPercentEncoding,
    /// A property that is neither `key` nor `key=value`.
    InvalidProperty,
}

impl fmt::Display for MalformedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MalformedReason::NotKeyValue => "not `key=value`",
            MalformedReason::InvalidKey => "the key is not a token",
            MalformedReason::InvalidValue => {
                "the value has a character that must be percent-encoded"
            }
            MalformedReason::InvalidPercentEncoding => "a `%` is not followed by two hex digits",
            MalformedReason::InvalidProperty => "a property is neither `key` nor `key=value`",
        })
    }
}

/// Where [`ParsedBaggage::parse`] stopped reading at a limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Truncated {
    limit: BaggageLimit,
    read: usize,
    unread_bytes: usize,
}

impl Truncated {
    /// The limit that stopped reading.
    pub fn limit(&self) -> BaggageLimit {
        self.limit
    }

    /// How many non-empty members were read before (kept or malformed).
    pub fn read(&self) -> usize {
        self.read
    }

    /// How many bytes of the joined list were left unread.
    pub fn unread_bytes(&self) -> usize {
        self.unread_bytes
    }
}

impl fmt::Display for Truncated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let limit = match self.limit {
            BaggageLimit::Members => "member",
            BaggageLimit::Bytes => "byte",
        };
        write!(
            f,
            "baggage read up to the {limit} limit: {} member(s) read, {} byte(s) left unread",
            self.read, self.unread_bytes
        )
    }
}

/// One of the [`BaggageLimits`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BaggageLimit {
    /// [`BaggageLimits::max_members`].
    Members,
    /// [`BaggageLimits::max_bytes`].
    Bytes,
}

/// A `baggage` header value being written, within [`BaggageLimits`].
///
/// # Examples
///
/// ```
/// use milieu::remote::{BaggageHeader, BaggageLimits, BaggageMember};
///
/// let mut header = BaggageHeader::new(BaggageLimits::new());
/// assert!(header.push(&BaggageMember::new("userId", "alice")?));
/// assert!(header.push(&BaggageMember::new("serverNode", "DF 28")?));
/// // A member that would take the header past 8,192 bytes is skipped.
/// assert!(!header.push(&BaggageMember::new("huge", &"x".repeat(9000))?));
/// assert_eq!(header.finish().as_deref(), Some("userId=alice,serverNode=DF%2028"));
/// # Ok::<(), milieu::remote::InvalidBaggageKey>(())
/// ```
#[derive(Clone, Debug)]
pub struct BaggageHeader {
    value: String,
    members: usize,
    limits: BaggageLimits,
}

impl BaggageHeader {
    /// An empty header that will hold at most what `limits` allow.
    pub fn new(limits: BaggageLimits) -> BaggageHeader {
        BaggageHeader {
            value: String::new(),
            members: 0,
            limits,
        }
    }

    /// Appends `member` if it fits within the limits, and says whether it
    /// did. A member that does not fit is left out whole (the spec forbids
    /// sending part of one); a smaller one after it may still fit.
    pub fn push(&mut self, member: &BaggageMember) -> bool {
        let comma = usize::from(self.members > 0);
        let len = self.value.len() + comma + member.encoded.len();
        if self.members == self.limits.max_members || len > self.limits.max_bytes {
            return false;
        }
        if comma == 1 {
            self.value.push(',');
        }
        self.value.push_str(&member.encoded);
        self.members += 1;
        true
    }

    /// How many members were appended.
    pub fn len(&self) -> usize {
        self.members
    }

    /// Whether no member was appended.
    pub fn is_empty(&self) -> bool {
        self.members == 0
    }

    /// The header value, or `None` if no member was appended (the header
    /// is then better left out).
    pub fn finish(self) -> Option<String> {
        (self.members > 0).then_some(self.value)
    }
}

/// Parses one trimmed, non-empty member; on error, its key if it got that
/// far, and why.
fn parse_member(text: &str) -> Result<BaggageMember, (Option<&str>, MalformedReason)> {
    let (key, rest) = text
        .split_once('=')
        .ok_or((None, MalformedReason::NotKeyValue))?;
    let key = trim_ows(key);
    if !is_token(key) {
        return Err((Some(key), MalformedReason::InvalidKey));
    }
    let (value, properties) = match rest.split_once(';') {
        Some((value, properties)) => (value, Some(trim_ows(properties))),
        None => (rest, None),
    };
    let (value, lossy) = percent_decode(trim_ows(value)).map_err(|reason| (Some(key), reason))?;
    if let Some(properties) = properties {
        if !properties.split(';').all(is_property) {
            return Err((Some(key), MalformedReason::InvalidProperty));
        }
    }
    Ok(BaggageMember {
        key: key.to_owned(),
        value,
        properties: properties.map(str::to_owned),
        encoded: text.to_owned(),
        lossy,
    })
}

/// `property = key OWS "=" OWS value / key OWS`, OWS around it.
fn is_property(text: &str) -> bool {
    match text.split_once('=') {
        Some((key, value)) => is_token(trim_ows(key)) && percent_decode(trim_ows(value)).is_ok(),
        None => is_token(trim_ows(text)),
    }
}

/// Decodes a value: baggage-octets and `%XX` escapes (either case), as
/// UTF-8; sequences that are not UTF-8 become U+FFFD (the spec's rule),
/// reported by the `bool`.
fn percent_decode(value: &str) -> Result<(String, bool), MalformedReason> {
    let bytes = value.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let escape = bytes.get(i + 1..i + 3).and_then(|pair| {
                let high = char::from(pair[0]).to_digit(16)?;
                let low = char::from(pair[1]).to_digit(16)?;
                u8::try_from(high << 4 | low).ok()
            });
            decoded.push(escape.ok_or(MalformedReason::InvalidPercentEncoding)?);
            i += 3;
        } else if is_baggage_octet(b) {
            decoded.push(b);
            i += 1;
        } else {
            return Err(MalformedReason::InvalidValue);
        }
    }
    Ok(match String::from_utf8(decoded) {
        Ok(text) => (text, false),
        Err(err) => (String::from_utf8_lossy(err.as_bytes()).into_owned(), true),
    })
}

/// Appends `value` percent-encoded: every byte outside `baggage-octet`,
/// `%`, and `+`, as `%XX` (uppercase, RFC 3986).
///
/// `+` is a baggage-octet, but some implementations decode values as HTML
/// forms do, reading `+` as a space (OpenTelemetry Python's
/// `W3CBaggagePropagator` up to at least 1.45, open-telemetry/opentelemetry-python#5566).
/// The spec lets any character be percent-encoded, and every decoder reads
/// `%2B` as `+`, so sending it that way loses nothing and keeps the value
/// intact for those peers too. A `+` that arrives is still read as `+`.
fn percent_encode(value: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in value.as_bytes() {
        if is_baggage_octet(b) && b != b'%' && b != b'+' {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
}

/// `baggage-octet = %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E`: ASCII
/// but controls, space, `"`, `,`, `;` and `\`.
fn is_baggage_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e)
}

/// `token = 1*tchar` (RFC 7230 §3.2.6).
pub(super) fn is_token(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(is_tchar)
}

/// Whether `b` is a `tchar` (RFC 9110 §5.6.2): the bytes of a token, as
/// in header names and baggage keys. Checked by table, one load per byte:
/// the HTTP server checks every header name a response adds with it.
#[inline]
pub(crate) fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

const TCHAR: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    table
};

/// `text` less the spaces and tabs around it (OWS).
fn trim_ows(text: &str) -> &str {
    // Byte by byte: a `char` pattern decodes UTF-8 at each step, and this
    // runs several times per member of every request's baggage.
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let bytes = text.as_bytes();
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    // Space and tab are ASCII: both ends are on character boundaries.
    text.get(start..end).unwrap_or("")
}

/// The first comma in `bytes`.
fn memchr_comma(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b',')
}

/// At most the first 64 bytes of `text` (on a character boundary): what
/// an error message quotes of input.
fn clip(text: &str) -> &str {
    let mut end = text.len().min(64);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(fields: &[&str]) -> ParsedBaggage {
        ParsedBaggage::parse(fields, &BaggageLimits::new())
    }

    fn pairs(parsed: &ParsedBaggage) -> Vec<(&str, &str)> {
        parsed
            .members()
            .iter()
            .map(|m| (m.key(), m.value()))
            .collect()
    }

    #[test]
    fn the_spec_examples_parse() {
        let parsed = parse(&["key1=value1;property1;property2, key2 = value2, key3=value3; propertyKey=propertyValue"]);
        assert_eq!(
            pairs(&parsed),
            [("key1", "value1"), ("key2", "value2"), ("key3", "value3")]
        );
        assert_eq!(
            parsed.members()[0].properties(),
            Some("property1;property2")
        );
        assert_eq!(
            parsed.members()[2].properties(),
            Some("propertyKey=propertyValue")
        );

        let parsed = parse(&[
            "userId =   alice",
            "serverNode = DF%2028, isProduction = false",
        ]);
        assert_eq!(
            pairs(&parsed),
            [
                ("userId", "alice"),
                ("serverNode", "DF 28"),
                ("isProduction", "false")
            ]
        );
        let parsed = parse(&["userId=Am%C3%A9lie"]);
        assert_eq!(pairs(&parsed), [("userId", "Amélie")]);
        assert!(parsed.malformed().is_empty());
    }

    #[test]
    fn values_may_hold_equals_signs_and_be_empty() {
        let parsed = parse(&["a=b=c,empty=,x=%3D"]);
        assert_eq!(pairs(&parsed), [("a", "b=c"), ("empty", ""), ("x", "=")]);
    }

    #[test]
    fn malformed_members_are_dropped_and_reported_the_rest_kept() {
        let parsed = parse(&["ok=1,noequals,bad key=1,v=a b,p=%zz,q=1;=x,r=1;a b,\"x\"=1,ok2=2"]);
        assert_eq!(pairs(&parsed), [("ok", "1"), ("ok2", "2")]);
        let reasons: Vec<(usize, Option<&str>, MalformedReason)> = parsed
            .malformed()
            .iter()
            .map(|m| (m.index(), m.key(), m.reason()))
            .collect();
        assert_eq!(
            reasons,
            [
                (1, None, MalformedReason::NotKeyValue),
                (2, Some("bad key"), MalformedReason::InvalidKey),
                (3, Some("v"), MalformedReason::InvalidValue),
                (4, Some("p"), MalformedReason::InvalidPercentEncoding),
                (5, Some("q"), MalformedReason::InvalidProperty),
                (6, Some("r"), MalformedReason::InvalidProperty),
                (7, Some("\"x\""), MalformedReason::InvalidKey),
            ]
        );
        assert_eq!(
            parsed.malformed()[1].to_string(),
            "member 2 (\"bad key\"): the key is not a token"
        );
    }

    #[test]
    fn escapes_that_are_not_utf8_become_replacement_characters() {
        let parsed = parse(&["k=a%FFb,ok=%e2%82%ac"]);
        let members = parsed.members();
        assert_eq!(members[0].value(), "a\u{fffd}b");
        assert!(members[0].is_lossy());
        assert_eq!(members[1].value(), "€");
        assert!(!members[1].is_lossy());
    }

    #[test]
    fn encoding_escapes_what_is_not_a_baggage_octet_and_percent() {
        let member = BaggageMember::new("k", "a b,c;d\\e\"f%g=h/é\u{1}").unwrap();
        assert_eq!(member.encoded(), "k=a%20b%2Cc%3Bd%5Ce%22f%25g=h/%C3%A9%01");
        let back = parse(&[member.encoded()]);
        assert_eq!(back.members(), [member]);
    }

    #[test]
    fn a_plus_is_sent_escaped_and_read_literally() {
        // Escaped for the peers that decode `+` as a space...
        let member = BaggageMember::new("k", "1+1 = 2").unwrap();
        assert_eq!(member.encoded(), "k=1%2B1%20=%202");
        let back = parse(&[member.encoded()]);
        assert_eq!(back.members(), [member]);
        // ...and read as itself, as the spec says (never as a space).
        assert_eq!(parse(&["k=1+1"]).members()[0].value(), "1+1");
    }

    #[test]
    fn a_parsed_member_is_passed_on_as_received() {
        let parsed = parse(&["  k = %41 ;p "]);
        let member = &parsed.members()[0];
        assert_eq!(member.encoded(), "k = %41 ;p");
        assert_eq!(member.value(), "A");
        assert_eq!(
            member,
            &BaggageMember {
                properties: Some("p".into()),
                ..BaggageMember::new("k", "A").unwrap()
            }
        );
    }

    #[test]
    fn reading_stops_at_the_member_limit() {
        let header: String = (0..100).map(|i| format!("k{i}=v,")).collect();
        let parsed = parse(&[&header]);
        assert_eq!(parsed.members().len(), 64);
        let truncated = parsed.truncated().unwrap();
        assert_eq!(truncated.limit(), BaggageLimit::Members);
        assert_eq!(truncated.read(), 64);
        let read_len: usize = (0..64).map(|i| format!("k{i}=v,").len()).sum();
        assert_eq!(truncated.unread_bytes(), header.len() - read_len);
    }

    #[test]
    fn malformed_members_count_toward_the_member_limit() {
        let header = vec!["bad"; 64].join(",") + ",good=1";
        let parsed = parse(&[&header]);
        assert!(parsed.members().is_empty());
        assert_eq!(parsed.malformed().len(), 64);
        assert_eq!(parsed.truncated().unwrap().unread_bytes(), "good=1".len());
    }

    #[test]
    fn reading_stops_at_the_byte_limit_without_splitting_a_member() {
        // 8,190 bytes of one member, then a comma and another member: the
        // second would end past 8,192.
        let first = format!("a={}", "x".repeat(8188));
        let parsed = parse(&[&first, "bb=1"]);
        assert_eq!(pairs(&parsed).len(), 1);
        let truncated = parsed.truncated().unwrap();
        assert_eq!(truncated.limit(), BaggageLimit::Bytes);
        assert_eq!(truncated.unread_bytes(), 4);
        // One that ends exactly at the limit is read.
        let parsed = parse(&[&first, "b"]);
        assert_eq!(parsed.malformed().len(), 1);
        assert!(parsed.truncated().is_none());
        // A single member longer than the limit: nothing is read.
        let parsed = parse(&[&"k=".repeat(5000)]);
        assert!(parsed.members().is_empty() && parsed.malformed().is_empty());
        assert_eq!(parsed.truncated().unwrap().unread_bytes(), 10_000);
    }

    #[test]
    fn higher_limits_read_more() {
        let header: String = (0..100).map(|i| format!("k{i}=v,")).collect();
        let limits = BaggageLimits::new().with_max_members(100);
        let parsed = ParsedBaggage::parse(&[&header], &limits);
        assert_eq!(parsed.members().len(), 100);
        assert!(parsed.truncated().is_none());
    }

    #[test]
    fn the_header_writer_keeps_within_both_limits() {
        let mut header = BaggageHeader::new(BaggageLimits::new());
        let small = BaggageMember::new("k", "v").unwrap();
        for _ in 0..64 {
            assert!(header.push(&small));
        }
        assert!(!header.push(&small), "65th member");
        assert_eq!(header.len(), 64);

        let mut header = BaggageHeader::new(BaggageLimits::new());
        let half = BaggageMember::new("k", &"v".repeat(4094)).unwrap(); // 4,096 bytes
        assert!(header.push(&half));
        assert!(!header.push(&half), "8,193 bytes with the comma");
        assert!(header.push(&BaggageMember::new("k", &"v".repeat(4093)).unwrap()));
        assert_eq!(header.finish().unwrap().len(), 8192);
        assert_eq!(BaggageHeader::new(BaggageLimits::new()).finish(), None);
    }

    #[test]
    fn tokens_follow_rfc_7230() {
        assert!(is_token("!#$%&'*+-.^_`|~09AZaz"));
        for text in ["", "a b", "a\"", "a,", "a;", "a=", "é", "a(", "a/"] {
            assert!(!is_token(text), "{text:?}");
        }
        assert_eq!(
            BaggageMember::new("a b", "").unwrap_err().to_string(),
            "invalid baggage key \"a b\": a key is one or more of A-Z a-z 0-9 ! # $ % & ' * + - . ^ _ ` | ~"
        );
    }

    #[test]
    fn clip_keeps_character_boundaries() {
        let text = "é".repeat(40);
        assert_eq!(clip(&text).len(), 64);
        let text = format!("a{}", "é".repeat(40));
        assert_eq!(clip(&text).len(), 63);
    }
}
