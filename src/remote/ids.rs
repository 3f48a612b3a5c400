//! The identifiers of W3C Trace Context: [`TraceId`], [`SpanId`] and
//! [`TraceFlags`], their lowercase-hex text form and their random
//! generation.
//!
//! Both ids are never all zero: the spec makes an all-zero id invalid, so
//! the types hold that as an invariant (every constructor checks it), and
//! the header parser relies on it.

use std::fmt;
use std::str::FromStr;

/// The id of a whole distributed trace: 16 bytes, never all zero.
///
/// Its text form (`Display`, [`FromStr`]) is 32 lowercase hex digits, as
/// in the `traceparent` header.
///
/// # Examples
///
/// ```
/// use milieu::remote::TraceId;
///
/// let id: TraceId = "4bf92f3577b34da6a3ce929d0e0e4736".parse()?;
/// assert_eq!(id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert_eq!(id.to_bytes()[0], 0x4b);
/// assert!("00000000000000000000000000000000".parse::<TraceId>().is_err());
/// # Ok::<(), milieu::remote::ParseIdError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId([u8; 16]);

/// The id of one span (a unit of work in one process): 8 bytes, never all
/// zero.
///
/// Its text form is 16 lowercase hex digits. In a `traceparent` header it
/// is the `parent-id` field: the span of the caller.
///
/// # Examples
///
/// ```
/// use milieu::remote::SpanId;
///
/// let id: SpanId = "00f067aa0ba902b7".parse()?;
/// assert_eq!(id.to_string(), "00f067aa0ba902b7");
/// assert!(SpanId::from_bytes([0; 8]).is_none());
/// # Ok::<(), milieu::remote::ParseIdError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId([u8; 8]);

impl TraceId {
    /// The id made of these bytes, or `None` if they are all zero (an
    /// invalid trace id).
    pub const fn from_bytes(bytes: [u8; 16]) -> Option<TraceId> {
        if u128::from_be_bytes(bytes) == 0 {
            None
        } else {
            Some(TraceId(bytes))
        }
    }

    /// A new random id: all 16 bytes random (so a trace started with it may
    /// set [`TraceFlags::RANDOM`]), never all zero.
    ///
    /// The randomness is `fastrand`'s (wyrand, seeded per thread): unique
    /// with overwhelming probability, **not** cryptographic. W3C Trace
    /// Context asks for random ids so that they are unique and can be
    /// sampled on; it does not ask for secret ones, and a trace id is sent
    /// in clear to every service the request reaches.
    pub fn random() -> TraceId {
        loop {
            // One chance in 2^128 of looping.
            if let Some(id) = TraceId::from_bytes(fastrand::u128(..).to_be_bytes()) {
                return id;
            }
        }
    }

    /// The 16 bytes.
    pub const fn to_bytes(self) -> [u8; 16] {
        self.0
    }

    /// The text form (32 lowercase hex digits) as ASCII bytes, with no
    /// allocation: for a header value or a log field on every request,
    /// where `to_string` would allocate a `String` to copy from.
    ///
    /// # Examples
    ///
    /// ```
    /// use milieu::remote::TraceId;
    ///
    /// let id: TraceId = "4bf92f3577b34da6a3ce929d0e0e4736".parse()?;
    /// assert_eq!(&id.to_hex(), b"4bf92f3577b34da6a3ce929d0e0e4736");
    /// let response = milieu::http::Response::status(204).with_header("trace-id", id.to_hex());
    /// assert_eq!(
    ///     response.headers().get_str("trace-id"),
    ///     Some("4bf92f3577b34da6a3ce929d0e0e4736")
    /// );
    /// # Ok::<(), milieu::remote::ParseIdError>(())
    /// ```
    pub fn to_hex(self) -> [u8; 32] {
        hex(&self.0)
    }
}

impl SpanId {
    /// The id made of these bytes, or `None` if they are all zero (an
    /// invalid span id).
    pub const fn from_bytes(bytes: [u8; 8]) -> Option<SpanId> {
        if u64::from_be_bytes(bytes) == 0 {
            None
        } else {
            Some(SpanId(bytes))
        }
    }

    /// A new random id, never all zero. Not cryptographic: see
    /// [`TraceId::random`].
    pub fn random() -> SpanId {
        loop {
            if let Some(id) = SpanId::from_bytes(fastrand::u64(..).to_be_bytes()) {
                return id;
            }
        }
    }

    /// The 8 bytes.
    pub const fn to_bytes(self) -> [u8; 8] {
        self.0
    }

    /// The text form (16 lowercase hex digits) as ASCII bytes, with no
    /// allocation (see [`TraceId::to_hex`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use milieu::remote::SpanId;
    ///
    /// let id: SpanId = "00f067aa0ba902b7".parse()?;
    /// assert_eq!(&id.to_hex(), b"00f067aa0ba902b7");
    /// # Ok::<(), milieu::remote::ParseIdError>(())
    /// ```
    pub fn to_hex(self) -> [u8; 16] {
        hex(&self.0)
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

impl FromStr for TraceId {
    type Err = ParseIdError;

    /// Parses 32 lowercase hex digits (uppercase is refused, as in the
    /// `traceparent` header).
    fn from_str(text: &str) -> Result<TraceId, ParseIdError> {
        let bytes = parse_hex::<16>(text, IdKind::Trace)?;
        TraceId::from_bytes(bytes).ok_or(ParseIdError {
            id: IdKind::Trace,
            problem: IdProblem::AllZero,
        })
    }
}

impl FromStr for SpanId {
    type Err = ParseIdError;

    /// Parses 16 lowercase hex digits.
    fn from_str(text: &str) -> Result<SpanId, ParseIdError> {
        let bytes = parse_hex::<8>(text, IdKind::Span)?;
        SpanId::from_bytes(bytes).ok_or(ParseIdError {
            id: IdKind::Span,
            problem: IdProblem::AllZero,
        })
    }
}

/// The 8 bit flags of a `traceparent`: a bit field, so test bits with
/// [`contains`](TraceFlags::contains), never compare whole values.
///
/// | flag | bit | meaning |
/// |---|---|---|
/// | [`SAMPLED`](TraceFlags::SAMPLED) | `0x01` | the caller may have recorded trace data |
/// | [`RANDOM`](TraceFlags::RANDOM) | `0x02` | at least the right-most 7 bytes of the trace id are random (Trace Context Level 2) |
///
/// The other bits are reserved: the spec says to send them as zero, so
/// [`TraceContext`](super::TraceContext) keeps only [`KNOWN`](TraceFlags::KNOWN)
/// bits of what it receives.
///
/// # Examples
///
/// ```
/// use milieu::remote::TraceFlags;
///
/// let flags = TraceFlags::SAMPLED | TraceFlags::RANDOM;
/// assert!(flags.contains(TraceFlags::SAMPLED));
/// assert_eq!(flags.to_string(), "03");
/// assert_eq!(TraceFlags::from_bits(0xff).known(), flags);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TraceFlags(u8);

impl TraceFlags {
    /// No flag set.
    pub const NONE: TraceFlags = TraceFlags(0);
    /// The caller may have recorded trace data (bit `0x01`).
    pub const SAMPLED: TraceFlags = TraceFlags(0x01);
    /// The trace id's right-most 7 bytes (at least) are random (bit
    /// `0x02`, Trace Context Level 2). Kept unchanged for as long as the
    /// trace id is.
    pub const RANDOM: TraceFlags = TraceFlags(0x02);
    /// Every flag this implementation knows: `SAMPLED | RANDOM`.
    pub const KNOWN: TraceFlags = TraceFlags(0x03);

    /// The flags of these bits, reserved ones included.
    pub const fn from_bits(bits: u8) -> TraceFlags {
        TraceFlags(bits)
    }

    /// The bits.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every bit of `other` is set in `self`.
    pub const fn contains(self, other: TraceFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// These flags less the reserved bits.
    pub const fn known(self) -> TraceFlags {
        TraceFlags(self.0 & TraceFlags::KNOWN.0)
    }

    /// Whether [`SAMPLED`](TraceFlags::SAMPLED) is set.
    pub const fn is_sampled(self) -> bool {
        self.contains(TraceFlags::SAMPLED)
    }

    /// Whether [`RANDOM`](TraceFlags::RANDOM) is set.
    pub const fn is_random(self) -> bool {
        self.contains(TraceFlags::RANDOM)
    }
}

impl std::ops::BitOr for TraceFlags {
    type Output = TraceFlags;

    fn bitor(self, other: TraceFlags) -> TraceFlags {
        TraceFlags(self.0 | other.0)
    }
}

impl fmt::Display for TraceFlags {
    /// Two lowercase hex digits, as in the `traceparent` header.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}", self.0)
    }
}

impl fmt::Debug for TraceFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceFlags({:02x})", self.0)
    }
}

/// A text that is not a valid [`TraceId`] or [`SpanId`].
///
/// # Examples
///
/// ```
/// use milieu::remote::SpanId;
///
/// let err = "00F067AA0BA902B7".parse::<SpanId>().unwrap_err();
/// assert_eq!(err.to_string(), "invalid span id: not 16 lowercase hex digits");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ParseIdError {
    id: IdKind,
    problem: IdProblem,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum IdKind {
    Trace,
    Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum IdProblem {
    /// Wrong length, or a character that is not `0-9a-f`.
    NotHex,
    /// All zeros: valid hex, invalid id.
    AllZero,
}

impl ParseIdError {
    /// Whether the text was well-formed hex for an all-zero id (which the
    /// spec makes invalid), rather than malformed.
    pub fn is_all_zero(&self) -> bool {
        self.problem == IdProblem::AllZero
    }
}

impl fmt::Display for ParseIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, digits) = match self.id {
            IdKind::Trace => ("trace", 32),
            IdKind::Span => ("span", 16),
        };
        match self.problem {
            IdProblem::NotHex => {
                write!(f, "invalid {name} id: not {digits} lowercase hex digits")
            }
            IdProblem::AllZero => write!(f, "invalid {name} id: all zeros"),
        }
    }
}

impl std::error::Error for ParseIdError {}

/// `N` bytes from exactly `2 * N` lowercase hex digits.
fn parse_hex<const N: usize>(text: &str, id: IdKind) -> Result<[u8; N], ParseIdError> {
    let not_hex = ParseIdError {
        id,
        problem: IdProblem::NotHex,
    };
    let digits = text.as_bytes();
    if digits.len() != 2 * N {
        return Err(not_hex);
    }
    let mut bytes = [0u8; N];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        match (hex_value(pair[0]), hex_value(pair[1])) {
            (Some(high), Some(low)) => *byte = high << 4 | low,
            _ => return Err(not_hex),
        }
    }
    Ok(bytes)
}

/// The byte that two lowercase hex digits spell (`traceparent`'s version
/// and flags fields), or `None`.
pub(super) fn hex_byte(digits: &[u8]) -> Option<u8> {
    match digits {
        [high, low] => Some(hex_value(*high)? << 4 | hex_value(*low)?),
        _ => None,
    }
}

/// The value of one lowercase hex digit. Uppercase is refused: the
/// `traceparent` grammar is `HEXDIGLC`.
fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

/// `bytes` as lowercase hex digits, at the start of `N` bytes (`N` at
/// least twice the length of `bytes`; the rest stays zero).
fn hex<const N: usize>(bytes: &[u8]) -> [u8; N] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    debug_assert!(N >= 2 * bytes.len());
    let mut text = [0u8; N];
    for (pair, byte) in text.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
    text
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    // One `write_str` per id rather than one per byte: ids are formatted on
    // every outbound request.
    let text: [u8; 32] = hex(bytes);
    let used = &text[..2 * bytes.len()];
    // Only ASCII hex digits were written.
    f.write_str(std::str::from_utf8(used).map_err(|_| fmt::Error)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_as_lowercase_hex_and_parse_back() {
        let trace: TraceId = "4bf92f3577b34da6a3ce929d0e0e4736".parse().unwrap();
        assert_eq!(trace.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            format!("{trace:?}"),
            "TraceId(4bf92f3577b34da6a3ce929d0e0e4736)"
        );
        let span: SpanId = "00f067aa0ba902b7".parse().unwrap();
        assert_eq!(
            span.to_bytes(),
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert_eq!(span.to_string(), "00f067aa0ba902b7");
    }

    #[test]
    fn uppercase_short_long_and_non_hex_ids_are_refused() {
        for text in [
            "4BF92F3577B34DA6A3CE929D0E0E4736",
            "4bf92f3577b34da6a3ce929d0e0e473",
            "4bf92f3577b34da6a3ce929d0e0e47360",
            "4bf92f3577b34da6a3ce929d0e0e473g",
            "",
        ] {
            let err = text.parse::<TraceId>().unwrap_err();
            assert!(!err.is_all_zero(), "{text}");
        }
        assert!("00f067aa0ba902b".parse::<SpanId>().is_err());
        assert!("+0f067aa0ba902b7".parse::<SpanId>().is_err());
    }

    #[test]
    fn all_zero_ids_do_not_exist() {
        let err = "00000000000000000000000000000000"
            .parse::<TraceId>()
            .unwrap_err();
        assert!(err.is_all_zero());
        assert_eq!(err.to_string(), "invalid trace id: all zeros");
        assert!("0000000000000000"
            .parse::<SpanId>()
            .unwrap_err()
            .is_all_zero());
        assert!(TraceId::from_bytes([0; 16]).is_none());
        assert!(SpanId::from_bytes([0; 8]).is_none());
    }

    #[test]
    fn random_ids_differ() {
        let traces: std::collections::HashSet<TraceId> =
            (0..1000).map(|_| TraceId::random()).collect();
        assert_eq!(traces.len(), 1000);
        let spans: std::collections::HashSet<SpanId> =
            (0..1000).map(|_| SpanId::random()).collect();
        assert_eq!(spans.len(), 1000);
    }

    #[test]
    fn flags_are_a_bit_field() {
        let flags = TraceFlags::from_bits(0x09);
        assert!(flags.is_sampled());
        assert!(!flags.is_random());
        assert_eq!(flags.known(), TraceFlags::SAMPLED);
        assert_eq!(flags.to_string(), "09");
        assert_eq!(format!("{:?}", TraceFlags::RANDOM), "TraceFlags(02)");
        assert_eq!((TraceFlags::SAMPLED | TraceFlags::RANDOM).bits(), 0x03);
    }
}
