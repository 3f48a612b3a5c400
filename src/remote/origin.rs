//! Remote provenance: the `milieu-origin` header, in which a caller says
//! which service it is and, if both sides opted in, where it installed
//! each carried entry.
//!
//! The header uses the baggage grammar (and its parser, within
//! [`BaggageLimits`], so it is as bounded as `baggage`):
//!
//! ```text
//! milieu-origin: service=orders,site.tenant=orders%20examples/orders/main.rs:162:9
//! ```
//!
//! - `service=<name>`: the caller's service name, if it has one;
//! - `site.<key>=<service> <file:line:column>`: for the carried type of
//!   baggage key `<key>`, the service and source site where the entry was
//!   installed (`-` for a service without a name). An entry that itself
//!   arrived from another process is described as its sender described
//!   it, so the site stays the first installer's across several hops.
//!
//! Install sites reveal source paths: they are sent only by a
//! [`Propagation`](super::Propagation) built
//! [`with_install_sites(true)`](super::Propagation::with_install_sites)
//! and read only by one built so too.

use super::baggage::{BaggageHeader, BaggageLimits, BaggageMember, ParsedBaggage};

/// The member that names the caller's service.
const SERVICE: &str = "service";
/// The prefix of a member that gives an install site.
const SITE_PREFIX: &str = "site.";
/// Stands for a service without a name.
const NO_SERVICE: &str = "-";
/// The longest service name read; a longer one is ignored.
const MAX_SERVICE: usize = 128;
/// The longest install site read; a longer one is ignored.
const MAX_SITE: usize = 512;

/// Whether `text` may be shown as received: printable ASCII only, so a
/// caller cannot put a line break (a forged line) or terminal controls
/// into the dumps and logs that print it. What it says is still the
/// caller's unverified claim.
fn printable(text: &str, max: usize) -> bool {
    !text.is_empty() && text.len() <= max && text.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// What a caller said about itself and its entries in `milieu-origin`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct CallerOrigin {
    /// The caller's service name.
    pub(crate) service: Option<String>,
    /// Per carried key: the install site and the service it was installed in.
    pub(crate) sites: Vec<RemoteSite>,
}

/// One `site.<key>` member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RemoteSite {
    pub(crate) key: String,
    pub(crate) site: String,
    pub(crate) service: Option<String>,
}

impl CallerOrigin {
    /// Reads the values of every `milieu-origin` field; `sites` says
    /// whether install sites are read (else only the service name is).
    /// Malformed members are ignored: the header is an aid to debugging,
    /// and nothing the caller sends in it changes what is installed.
    pub(crate) fn read(values: &[&str], sites: bool) -> CallerOrigin {
        let mut origin = CallerOrigin::default();
        if values.is_empty() {
            return origin;
        }
        let (members, _, _) = ParsedBaggage::parse(values, &BaggageLimits::new()).into_parts();
        for member in members {
            if member.key() == SERVICE {
                if origin.service.is_none() && printable(member.value(), MAX_SERVICE) {
                    origin.service = Some(member.value().to_owned());
                }
            } else if let Some(key) = member.key().strip_prefix(SITE_PREFIX) {
                if !sites || origin.sites.iter().any(|s| s.key == key) {
                    continue;
                }
                let Some((service, site)) = member.value().split_once(' ') else {
                    continue;
                };
                if printable(service, MAX_SERVICE) && printable(site, MAX_SITE) {
                    origin.sites.push(RemoteSite {
                        key: key.to_owned(),
                        site: site.to_owned(),
                        service: (service != NO_SERVICE).then(|| service.to_owned()),
                    });
                }
            }
        }
        origin
    }

    /// The site the caller gave for `key`.
    pub(crate) fn site_of(&self, key: &str) -> Option<&RemoteSite> {
        self.sites.iter().find(|s| s.key == key)
    }

    /// Whether the caller said anything.
    pub(crate) fn is_empty(&self) -> bool {
        self.service.is_none() && self.sites.is_empty()
    }
}

/// Builds a `milieu-origin` value: the service member, then one site
/// member per `(key, site, service)`, within the baggage limits (what does
/// not fit is left out). `None` when there is nothing to say.
pub(crate) fn write(
    service: Option<&str>,
    sites: impl Iterator<Item = (&'static str, String, Option<String>)>,
) -> Option<String> {
    let mut header = BaggageHeader::new(BaggageLimits::new());
    if let Some(service) = service {
        header.push(&BaggageMember::with_valid_key(SERVICE, service));
    }
    let mut key = String::new();
    let mut value = String::new();
    for (carried, site, site_service) in sites {
        key.clear();
        key.push_str(SITE_PREFIX);
        key.push_str(carried);
        value.clear();
        value.push_str(site_service.as_deref().or(service).unwrap_or(NO_SERVICE));
        value.push(' ');
        value.push_str(&site);
        header.push(&BaggageMember::with_valid_key(&key, &value));
    }
    header.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_is_read_back() {
        let value = write(
            Some("orders"),
            [
                ("tenant", "examples/orders/main.rs:162:9".to_owned(), None),
                ("tier", "src/a b.rs:1:2".to_owned(), Some("edge".to_owned())),
            ]
            .into_iter(),
        )
        .unwrap();
        let origin = CallerOrigin::read(&[&value], true);
        assert_eq!(origin.service.as_deref(), Some("orders"));
        let tenant = origin.site_of("tenant").unwrap();
        assert_eq!(tenant.site, "examples/orders/main.rs:162:9");
        assert_eq!(tenant.service.as_deref(), Some("orders"));
        let tier = origin.site_of("tier").unwrap();
        assert_eq!(tier.site, "src/a b.rs:1:2");
        assert_eq!(tier.service.as_deref(), Some("edge"));
    }

    #[test]
    fn sites_are_read_only_when_asked_for() {
        let value = write(
            Some("orders"),
            [("tenant", "a.rs:1:1".to_owned(), None)].into_iter(),
        )
        .unwrap();
        let origin = CallerOrigin::read(&[&value], false);
        assert_eq!(origin.service.as_deref(), Some("orders"));
        assert!(origin.sites.is_empty());
    }

    #[test]
    fn only_printable_text_of_bounded_length_is_read() {
        let forged = "service=x%0A%20%20installed%20at%20evil.rs:1:1,site.t=a%20b%0Ac";
        let origin = CallerOrigin::read(&[forged], true);
        assert!(origin.service.is_none());
        assert!(origin.sites.is_empty());
        let long = format!("service={}", "a".repeat(MAX_SERVICE + 1));
        assert!(CallerOrigin::read(&[&long], true).service.is_none());
        let fine = CallerOrigin::read(&["service=orders%20eu"], true);
        assert_eq!(fine.service.as_deref(), Some("orders eu"));
    }

    #[test]
    fn nonsense_is_ignored_and_bounded() {
        let junk = "site.x=nospace,=,service=,site.=a%20b,".repeat(10_000);
        let origin = CallerOrigin::read(&[&junk], true);
        assert!(origin.service.is_none());
        assert!(origin.sites.len() <= 64);
        assert!(CallerOrigin::read(&[], true).is_empty());
        assert_eq!(write(None, std::iter::empty()), None);
    }
}
