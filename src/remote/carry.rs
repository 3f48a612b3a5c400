//! The [`Baggage`] trait: how a context entry type opts in to crossing
//! processes as a baggage member, and [`DecodeError`].
//!
//! Nothing crosses by default: a type crosses only if it implements
//! [`Baggage`] *and* a [`Propagation`](super::Propagation) lists it.

use std::borrow::Cow;
use std::fmt;

/// A context entry type that may cross to other processes as one `baggage`
/// member.
///
/// Implementing it allows, it does not send: a
/// [`Propagation`](super::Propagation) must also
/// [`carry`](super::Propagation::carry) the type. Derive it for a newtype
/// whose field has `Display` and `FromStr` (see
/// [`derive(Baggage)`](macro@super::Baggage)), or write it by hand.
///
/// Remember what baggage is: text in clear in every request, readable and
/// forgeable by anything between two services and by any caller. Carry
/// what a downstream service may use as a hint (a tenant, a tier, a
/// feature flag), never a secret or an authority.
///
/// # Examples
///
/// ```
/// use milieu::remote::{Baggage, DecodeError};
///
/// #[derive(Debug, PartialEq)]
/// struct Priority(u8);
///
/// impl Baggage for Priority {
///     const KEY: &'static str = "priority";
///
///     fn encode(&self, out: &mut String) {
///         out.push_str(&self.0.to_string());
///     }
///
///     fn decode(value: &str) -> Result<Self, DecodeError> {
///         match value.parse() {
///             Ok(n) if n <= 9 => Ok(Priority(n)),
///             _ => Err(DecodeError::new(format!("priority must be 0-9, got {value:?}"))),
///         }
///     }
/// }
///
/// assert_eq!(Priority::decode("3"), Ok(Priority(3)));
/// assert!(Priority::decode("12").is_err());
/// ```
pub trait Baggage: Sized + Send + Sync + 'static {
    /// The key of the baggage member: an RFC 7230 token (letters, digits
    /// and ``! # $ % & ' * + - . ^ _ ` | ~``), unique among the types a
    /// `Propagation` carries.
    const KEY: &'static str;

    /// Appends the value as plain text (any characters: the header layer
    /// percent-encodes it).
    fn encode(&self, out: &mut String);

    /// The value back from the text [`encode`](Baggage::encode) wrote
    /// (percent-decoded already).
    ///
    /// # Errors
    ///
    /// [`DecodeError`] when the text is not a valid value. The member is
    /// then not installed and the error is reported by
    /// [`Incoming::declined`](super::Incoming::declined).
    fn decode(value: &str) -> Result<Self, DecodeError>;
}

/// Why [`Baggage::decode`] refused a value: a message for the log.
///
/// # Examples
///
/// ```
/// use milieu::remote::DecodeError;
///
/// let err = DecodeError::new("not a tenant id");
/// assert_eq!(err.to_string(), "not a tenant id");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DecodeError {
    message: Cow<'static, str>,
}

impl DecodeError {
    /// An error with this message (say what was expected; the key is
    /// added where the error is reported).
    pub fn new(message: impl Into<Cow<'static, str>>) -> DecodeError {
        DecodeError {
            message: message.into(),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DecodeError {}
