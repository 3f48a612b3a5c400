//! Provenance that crossed a process boundary: what another process said
//! about an entry (where it installed it, in which service) and the hop
//! that carried it here.
//!
//! The core knows nothing of headers or wire formats: a transport
//! (`milieu::http` with the W3C headers of `milieu::remote`, or a user's
//! own) fills these records and hands them to
//! [`Scope::carried_from`](crate::Scope::carried_from); dumps and
//! [`Missing`](crate::Missing) reports then show them.

use std::fmt;
use std::sync::Arc;

/// How a context arrived from another process: one per received request
/// (or message), shared by every entry that came with it.
///
/// Also installed as a context entry of its own by the transports of this
/// crate, so a handler can ask `milieu::get::<ProcessHop>()` where its
/// request came from, and a [`Missing`](crate::Missing) report can list
/// what the caller sent and what was declined.
///
/// # Examples
///
/// ```
/// use milieu::dump::ProcessHop;
///
/// let hop = ProcessHop::new()
///     .with_peer("127.0.0.1:40312")
///     .with_service("orders")
///     .with_declined("region", "failed to decode: unknown region `mars`");
/// assert_eq!(
///     hop.to_string(),
///     "process hop from 127.0.0.1:40312 (service orders)"
/// );
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ProcessHop {
    /// The peer's address, as the transport saw it.
    pub peer: Option<String>,
    /// The caller's service name, if it sent one.
    pub service: Option<String>,
    /// The caller's trace and span (the parent of this process's), as a
    /// version-00 `traceparent`, when the caller sent a valid one; flags
    /// the spec does not define are left out.
    pub traceparent: Option<String>,
    /// What arrived and was installed: member key and the entry's type.
    pub arrived: Vec<ArrivedMember>,
    /// What arrived and was not installed, and why (malformed, failed to
    /// decode, over a limit).
    pub declined: Vec<DeclinedMember>,
    /// Members no carried type claims: kept and forwarded untouched.
    pub forwarded: Vec<String>,
}

/// A member of a process hop that was installed as a context entry.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ArrivedMember {
    /// The key it travelled under.
    pub key: String,
    /// The entry's type, as `std::any::type_name` spells it.
    pub type_name: &'static str,
}

/// A member of a process hop that was dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct DeclinedMember {
    /// The key it travelled under (may be empty for a member too malformed
    /// to have one).
    pub key: String,
    /// Why it was dropped.
    pub reason: String,
}

impl ProcessHop {
    /// An empty record; fill it with the `with_*` methods.
    pub fn new() -> ProcessHop {
        ProcessHop::default()
    }

    /// Sets the peer's address.
    pub fn with_peer(mut self, peer: impl Into<String>) -> ProcessHop {
        self.peer = Some(peer.into());
        self
    }

    /// Sets the caller's service name.
    pub fn with_service(mut self, service: impl Into<String>) -> ProcessHop {
        self.service = Some(service.into());
        self
    }

    /// Sets the `traceparent` the caller sent.
    pub fn with_traceparent(mut self, traceparent: impl Into<String>) -> ProcessHop {
        self.traceparent = Some(traceparent.into());
        self
    }

    /// Records a member installed as an entry of type `type_name`.
    pub fn with_arrived(mut self, key: impl Into<String>, type_name: &'static str) -> ProcessHop {
        self.arrived.push(ArrivedMember {
            key: key.into(),
            type_name,
        });
        self
    }

    /// Records a member that was dropped, and why.
    pub fn with_declined(
        mut self,
        key: impl Into<String>,
        reason: impl Into<String>,
    ) -> ProcessHop {
        self.declined.push(DeclinedMember {
            key: key.into(),
            reason: reason.into(),
        });
        self
    }

    /// Records a member forwarded untouched.
    pub fn with_forwarded(mut self, key: impl Into<String>) -> ProcessHop {
        self.forwarded.push(key.into());
        self
    }

    /// What arrived, what was declined and what is only forwarded, in one
    /// line (the part of a [`Missing`](crate::Missing) report about the
    /// caller).
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let arrived: Vec<String> = self
            .arrived
            .iter()
            .map(|m| format!("`{}` as `{}`", m.key, m.type_name))
            .collect();
        if arrived.is_empty() {
            out.push_str("no carried entry arrived");
        } else {
            out.push_str("arrived: ");
            out.push_str(&arrived.join(", "));
        }
        if !self.declined.is_empty() {
            let declined: Vec<String> = self
                .declined
                .iter()
                .map(|m| format!("`{}` ({})", m.key, m.reason))
                .collect();
            out.push_str("; declined: ");
            out.push_str(&declined.join(", "));
        }
        if !self.forwarded.is_empty() {
            let forwarded: Vec<String> = self.forwarded.iter().map(|k| format!("`{k}`")).collect();
            out.push_str("; forwarded untouched (no carried type claims them): ");
            out.push_str(&forwarded.join(", "));
        }
        out
    }
}

impl fmt::Display for ProcessHop {
    /// `process hop from 127.0.0.1:8080 (service orders, traceparent 00-…)`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("process hop")?;
        if let Some(peer) = &self.peer {
            write!(f, " from {peer}")?;
        }
        let mut details = Vec::new();
        if let Some(service) = &self.service {
            details.push(format!("service {service}"));
        }
        if let Some(traceparent) = &self.traceparent {
            details.push(format!("traceparent {traceparent}"));
        }
        if !details.is_empty() {
            write!(f, " ({})", details.join(", "))?;
        }
        Ok(())
    }
}

/// Where another process installed an entry, as that process said, and
/// the hop that brought it here.
///
/// The install site and service name are the caller's claims: a dump
/// shows them as received, next to the local site where the entry was
/// installed on arrival.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use milieu::dump::{ProcessHop, RemoteOrigin};
///
/// #[derive(Debug)]
/// struct Tenant(#[allow(dead_code)] String);
///
/// let hop = Arc::new(ProcessHop::new().with_peer("127.0.0.1:8080").with_service("orders"));
/// let origin = RemoteOrigin::new(hop).installed_at("examples/orders/main.rs:162:9", "orders");
/// let _guard = milieu::scope()
///     .with(Tenant("acme".into()))
///     .carried_from(origin)
///     .enter();
/// let text = milieu::dump().to_string();
/// assert!(text.contains(
///     "installed at examples/orders/main.rs:162:9 in service orders, \
///      carried by process hop from 127.0.0.1:8080 (service orders)"
/// ));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct RemoteOrigin {
    /// The install site in the caller (`file:line:column`), if it sent one.
    pub site: Option<String>,
    /// The service the caller said it installed the entry in.
    pub service: Option<String>,
    /// The hop that carried it.
    pub hop: Arc<ProcessHop>,
}

impl RemoteOrigin {
    /// An origin known only by the hop that carried it.
    pub fn new(hop: Arc<ProcessHop>) -> RemoteOrigin {
        RemoteOrigin {
            site: None,
            service: None,
            hop,
        }
    }

    /// Adds the caller's install site and service name.
    pub fn installed_at(
        mut self,
        site: impl Into<String>,
        service: impl Into<String>,
    ) -> RemoteOrigin {
        self.site = Some(site.into());
        let service = service.into();
        self.service = (!service.is_empty()).then_some(service);
        self
    }
}

impl fmt::Display for RemoteOrigin {
    /// `installed at examples/orders/main.rs:162:9 in service orders,
    /// carried by process hop from 127.0.0.1:8080 (traceparent 00-…)`,
    /// or `carried by process hop …` when the caller sent no site.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(site) = &self.site {
            write!(f, "installed at {site}")?;
            if let Some(service) = &self.service {
                write!(f, " in service {service}")?;
            }
            f.write_str(", ")?;
        }
        write!(f, "carried by {}", self.hop)
    }
}
