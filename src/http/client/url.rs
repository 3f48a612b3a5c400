//! URLs the client accepts, `http://host[:port]/path?query`, parsed
//! strictly (RFC 3986 syntax, with the restrictions the module docs
//! list): where to connect (the [`Origin`]) and what to put on the
//! request line (the target).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::error::ClientError;

/// The port of `http` URLs without one.
const DEFAULT_PORT: u16 = 80;

/// A parsed URL: its origin, and the request target (path and query).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Url {
    origin: Origin,
    /// The `Host` field value: the authority as the URL writes it (it
    /// parsed as an origin, so it is `host[:port]`), kept so that each
    /// request copies it rather than formatting the origin again.
    authority: String,
    /// `/path?query`: the origin-form request target (RFC 9112 §3.2.1).
    target: String,
    /// Length of the path in `target`.
    path_len: usize,
}

impl Url {
    /// Parses `url` (see the module docs for what is accepted).
    ///
    /// # Errors
    ///
    /// [`ClientError::UnsupportedScheme`] for a scheme other than `http`,
    /// [`ClientError::InvalidUrl`] for anything else that is not
    /// `http://host[:port]/path?query`.
    pub(super) fn parse(url: &str) -> Result<Url, ClientError> {
        let invalid = |reason| ClientError::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(invalid(
                "not an absolute URL: `http://host[:port]/path?query` expected",
            ));
        };
        let mut scheme_bytes = scheme.bytes();
        let scheme_ok = scheme_bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
            && scheme_bytes.all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
        if !scheme_ok {
            return Err(invalid(
                "the scheme is not letters, digits, `+`, `-` or `.`",
            ));
        }
        if !scheme.eq_ignore_ascii_case("http") {
            return Err(ClientError::UnsupportedScheme {
                scheme: scheme.to_ascii_lowercase(),
            });
        }
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let origin = Origin::parse(authority).map_err(invalid)?;
        // The fragment is the client's own business: never sent (RFC 9110
        // §4.2.5).
        let tail = tail.split_once('#').map_or(tail, |(before, _)| before);
        let (path, query) = match tail.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (tail, None),
        };
        if let Some(reason) = check_chars(path, b"/") {
            return Err(invalid(reason));
        }
        if let Some(reason) = query.and_then(|query| check_chars(query, b"/?")) {
            return Err(invalid(reason));
        }
        // `http://host` and `http://host?q` ask for `/` (RFC 9112 §3.2.1).
        let path = if path.is_empty() { "/" } else { path };
        let mut target = String::with_capacity(path.len() + query.map_or(0, |q| q.len() + 1));
        target.push_str(path);
        if let Some(query) = query {
            target.push('?');
            target.push_str(query);
        }
        Ok(Url {
            origin,
            authority: authority.to_owned(),
            target,
            path_len: path.len(),
        })
    }

    /// Where to connect.
    pub(super) fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The `Host` field's value (RFC 9110 §7.2).
    pub(super) fn authority(&self) -> &str {
        &self.authority
    }

    /// The request target: `/path?query`.
    pub(super) fn target(&self) -> &str {
        &self.target
    }

    /// The path, without the query.
    pub(super) fn path(&self) -> &str {
        &self.target[..self.path_len]
    }
}

/// Where requests go: host and port (the scheme is always `http`). The
/// pool keeps connections per origin.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Origin {
    host: Host,
    port: u16,
}

/// The host of an [`Origin`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Host {
    /// An IPv4 address, or an IPv6 address in brackets in the URL:
    /// connected to without resolving.
    Ip(IpAddr),
    /// A name, in lower case (names are case-insensitive): resolved
    /// before connecting.
    Name(String),
}

impl Origin {
    /// Parses an authority, `host[:port]`; the error says why not.
    fn parse(authority: &str) -> Result<Origin, &'static str> {
        if authority.contains('@') {
            return Err("user information (`user@host`) is not supported");
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let Some((literal, after)) = bracketed.split_once(']') else {
                return Err("an IPv6 address without its closing `]`");
            };
            let ip = literal.parse::<Ipv6Addr>().map_err(|_| {
                "not an IPv6 address between `[` and `]` (zone ids are not supported)"
            })?;
            let port = match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or("only `:port` may follow an IPv6 address")?,
                ),
            };
            (Host::Ip(IpAddr::V6(ip)), port)
        } else {
            let (host, port) = match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            };
            (parse_host(host)?, port)
        };
        let port = match port {
            None => DEFAULT_PORT,
            Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                match digits.parse::<u16>() {
                    Ok(port) if port > 0 => port,
                    _ => return Err("the port is not from 1 to 65535"),
                }
            }
            Some(_) => return Err("the port is not a decimal number"),
        };
        Ok(Origin { host, port })
    }

    /// The host.
    pub(super) fn host(&self) -> &Host {
        &self.host
    }

    /// The port.
    pub(super) fn port(&self) -> u16 {
        self.port
    }

    /// The address to connect to, if the host is an IP address.
    pub(super) fn socket_addr(&self) -> Option<SocketAddr> {
        match self.host {
            Host::Ip(ip) => Some(SocketAddr::new(ip, self.port)),
            Host::Name(_) => None,
        }
    }
}

/// `host[:port]` as the `Host` field says it (RFC 9110 §7.2): the port
/// left out when it is the default.
impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]")?,
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}")?,
            Host::Name(name) => f.write_str(name)?,
        }
        if self.port != DEFAULT_PORT {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

/// A host that is not a bracketed IP literal: an IPv4 address, or a DNS
/// name (letters, digits, `-`, `_`, dot-separated labels of 1 to 63
/// bytes, 253 bytes at most, a final dot allowed).
fn parse_host(host: &str) -> Result<Host, &'static str> {
    if host.is_empty() {
        return Err("the host is empty");
    }
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        // RFC 3986 reads digits and dots as an IPv4 address; a name of
        // that shape would be resolved differently by different resolvers
        // (`127.1`), so it is refused.
        return host
            .parse::<Ipv4Addr>()
            .map(|ip| Host::Ip(IpAddr::V4(ip)))
            .map_err(|_| "digits and dots that are not an IPv4 address (a.b.c.d)");
    }
    if host.len() > 253 {
        return Err("the host name is longer than 253 bytes");
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("a label of the host name is empty or longer than 63 bytes");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(
                "the host name holds a byte other than letters, digits, `-`, `_` and `.` \
                        (internationalized names must be given in their `xn--` form)",
            );
        }
    }
    Ok(Host::Name(host.to_ascii_lowercase()))
}

/// Why `part` (a path, or a query) is not RFC 3986 syntax: `pchar`s
/// (unreserved, sub-delims, `:`, `@` and percent-encoded bytes) and the
/// bytes of `extra`. `None` if it is.
fn check_chars(part: &str, extra: &[u8]) -> Option<&'static str> {
    let mut bytes = part.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = bytes.next().is_some_and(|b| b.is_ascii_hexdigit())
                && bytes.next().is_some_and(|b| b.is_ascii_hexdigit());
            if !hex {
                return Some("a `%` not followed by two hexadecimal digits");
            }
        } else if !(b.is_ascii_alphanumeric()
            || b"-._~!$&'()*+,;=:@".contains(&b)
            || extra.contains(&b))
        {
            return Some(
                "the path or query holds a byte that must be percent-encoded \
                 (a space, a control, a non-ASCII character, or one of \"<>\\^`{|})",
            );
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use super::{Host, Url};
    use crate::http::ClientError;

    fn parts(url: &str) -> (Host, u16, String, String, String) {
        let url = Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        let origin = url.origin().clone();
        (
            origin.host().clone(),
            origin.port(),
            url.target().to_owned(),
            url.path().to_owned(),
            origin.to_string(),
        )
    }

    fn name(n: &str) -> Host {
        Host::Name(n.to_owned())
    }

    #[test]
    fn http_urls_give_origin_target_and_host_field() {
        let v4 = Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let v6 = Host::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST));
        let cases = [
            (
                "http://example.com",
                name("example.com"),
                80,
                "/",
                "/",
                "example.com",
            ),
            (
                "HTTP://Example.COM:80/",
                name("example.com"),
                80,
                "/",
                "/",
                "example.com",
            ),
            (
                "http://127.0.0.1:8080/orders?id=7",
                v4.clone(),
                8080,
                "/orders?id=7",
                "/orders",
                "127.0.0.1:8080",
            ),
            (
                "http://[::1]:9/a/b",
                v6.clone(),
                9,
                "/a/b",
                "/a/b",
                "[::1]:9",
            ),
            ("http://[::1]", v6, 80, "/", "/", "[::1]"),
            ("http://h?q=1#frag", name("h"), 80, "/?q=1", "/", "h"),
            ("http://h/p#f?not-a-query", name("h"), 80, "/p", "/p", "h"),
            (
                "http://h/a%20b/c?x=%2F&y=a/b?c",
                name("h"),
                80,
                "/a%20b/c?x=%2F&y=a/b?c",
                "/a%20b/c",
                "h",
            ),
            (
                "http://my_host.local./",
                name("my_host.local."),
                80,
                "/",
                "/",
                "my_host.local.",
            ),
            ("http://127.0.0.1/", v4, 80, "/", "/", "127.0.0.1"),
        ];
        for (url, host, port, target, path, field) in cases {
            assert_eq!(
                parts(url),
                (host, port, target.into(), path.into(), field.into()),
                "{url}"
            );
        }
    }

    #[test]
    fn other_schemes_are_unsupported() {
        for (url, scheme) in [
            ("https://example.com/", "https"),
            ("HTTPS://example.com/", "https"),
            ("ftp://h/", "ftp"),
            ("ws://h/", "ws"),
        ] {
            match Url::parse(url) {
                Err(ClientError::UnsupportedScheme { scheme: s }) => assert_eq!(s, scheme),
                other => panic!("{url}: {other:?}"),
            }
        }
    }

    #[test]
    fn malformed_urls_are_refused_with_a_reason() {
        for url in [
            "",
            "/path",
            "example.com/path",
            "http:/h/",
            "1http://h/",
            "http://",
            "http:///path",
            "http://user@h/",
            "http://user:pw@h/",
            "http://h:/",
            "http://h:0/",
            "http://h:65536/",
            "http://h:8x/",
            "http://h:80:80/",
            "http://[::1/",
            "http://[::1]x/",
            "http://[fe80::1%25eth0]/",
            "http://[h]/",
            "http://999.1.1.1/",
            "http://127.1/",
            "http://a..b/",
            "http://.a/",
            "http://bad host/",
            "http://b\u{e4}d/",
            "http://h/a b",
            "http://h/a\r\nX: y",
            "http://h/%zz",
            "http://h/%2",
            "http://h/\u{e9}",
            "http://h/?q=<script>",
            "http://h/a|b",
        ] {
            match Url::parse(url) {
                Err(ClientError::InvalidUrl { url: u, reason }) => {
                    assert_eq!(u, url);
                    assert!(!reason.is_empty());
                }
                other => panic!("{url:?}: {other:?}"),
            }
        }
        let long = format!("http://{}.com/", "a".repeat(64));
        assert!(matches!(
            Url::parse(&long),
            Err(ClientError::InvalidUrl { .. })
        ));
    }
}
