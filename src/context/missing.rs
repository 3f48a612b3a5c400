//! The error for a lookup that finds nothing, written to explain itself.

use std::fmt;
use std::panic::Location;
use std::sync::Arc;

use super::dump::{Dump, EntryDump, EntryStatus, Site};
use super::frame::ThreadInfo;
use super::remote::ProcessHop;

/// No value of the requested type is visible.
///
/// Its `Display` is the whole story: the requested type, the lookup site and
/// thread, near misses, and a dump of everything that *is* present, each
/// entry with its install site and the hops that carried it.
///
/// ```text
/// milieu: no `tour::Clock` in the context
///   looked up at examples/tour.rs:95:13 on thread `main`
///   near miss: `legacy::Clock` installed at examples/tour.rs:40:5: same type name
///     under another path (another module, or another version of the crate)
///   present: milieu context on thread `main`: 2 visible (top frame first)
///   ...
/// ```
pub struct Missing(Box<Inner>);

struct Inner {
    /// Every missing type: one for a lookup, possibly several for a
    /// declared requirement (all are reported at once).
    types: Vec<&'static str>,
    /// The lookup or call site; `None` when unknowable (an `async fn`'s
    /// requirements are checked at first poll, far from its caller).
    site: Option<Site>,
    /// The `#[requires]` declaration the check came from.
    declared: Option<Declared>,
    thread: ThreadInfo,
    present: Dump,
    near: Vec<NearMiss>,
    /// The process hop the visible context arrived by, if any.
    arrival: Option<Arc<ProcessHop>>,
}

/// Where a failed requirement was declared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Declared {
    /// The annotated function, with its module path.
    pub function: &'static str,
    /// The `#[requires]` attribute (or the function, for `#[ctx]` alone).
    pub site: Site,
}

/// An entry that is probably what the failed lookup meant.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NearMiss {
    /// The entry as it appears in the dump.
    pub entry: EntryDump,
    /// Why it looks related.
    pub kind: NearMissKind,
}

/// How a [`NearMiss`] relates to the requested type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NearMissKind {
    /// Same type name, but not carried here (a local entry left behind by a
    /// hop or snapshot).
    NotCarried,
    /// Same full type name, different `TypeId`: two versions of one crate.
    OtherVersion,
    /// Same type name under another module path.
    OtherPath,
    /// The request and the entry differ by a wrapper (`Arc<T>` vs `T`,
    /// `Box<T>`, `&T`): `get::<T>()` already returns an `Arc<T>`.
    Wrapper,
}

impl Missing {
    pub(crate) fn for_current<T: ?Sized + 'static>(site: &'static Location<'static>) -> Self {
        Self::new(std::any::type_name::<T>(), site, Dump::current())
    }

    /// A report for a lookup in a snapshot; `present` is the snapshot's
    /// dump (the caller takes it, so this file needs no snapshot type).
    pub(crate) fn for_snapshot<T: ?Sized + 'static>(
        present: Dump,
        site: &'static Location<'static>,
    ) -> Self {
        Self::new(std::any::type_name::<T>(), site, present)
    }

    fn new(type_name: &'static str, site: &'static Location<'static>, present: Dump) -> Self {
        Self::build(vec![type_name], Some(Site::from(site)), None, present)
    }

    /// A report for a declared requirement: every type in `types` is
    /// missing from the current context.
    pub(crate) fn for_requirement(
        types: Vec<&'static str>,
        declared: Declared,
        call_site: Option<&'static Location<'static>>,
    ) -> Self {
        Self::build(
            types,
            call_site.map(Site::from),
            Some(declared),
            Dump::current(),
        )
    }

    fn build(
        types: Vec<&'static str>,
        site: Option<Site>,
        declared: Option<Declared>,
        present: Dump,
    ) -> Self {
        let near = types
            .iter()
            .flat_map(|t| near_misses(t, &present))
            .collect();
        let thread = present.thread.clone();
        // Received entries of one request share their hop: the newest
        // visible one says what the caller sent and what was declined.
        let arrival = present
            .visible()
            .find_map(|e| e.provenance.remote.as_ref())
            .map(|origin| Arc::clone(&origin.hop));
        Missing(Box::new(Inner {
            types,
            site,
            declared,
            thread,
            present,
            near,
            arrival,
        }))
    }

    /// The requested type, as `std::any::type_name` spells it (the first
    /// one, when a declared requirement lists several).
    pub fn type_name(&self) -> &'static str {
        self.0.types.first().copied().unwrap_or("?")
    }

    /// Every missing type (one for a lookup; all that are missing for a
    /// declared requirement).
    pub fn type_names(&self) -> &[&'static str] {
        &self.0.types
    }

    /// Where the lookup or the call of the annotated function was made;
    /// `None` for an `async fn`'s requirements (checked at first poll).
    pub fn site(&self) -> Option<Site> {
        self.0.site
    }

    /// The `#[requires]` declaration, when the report comes from one.
    pub fn declared(&self) -> Option<&Declared> {
        self.0.declared.as_ref()
    }

    /// The thread the lookup ran on.
    pub fn thread(&self) -> &ThreadInfo {
        &self.0.thread
    }

    /// Everything that was present, with provenance.
    pub fn present(&self) -> &Dump {
        &self.0.present
    }

    /// Entries that are probably what was meant.
    pub fn near_misses(&self) -> &[NearMiss] {
        &self.0.near
    }

    /// Whether the lookup ran in an entirely empty context (not a
    /// snapshot): the usual sign that the code was started somewhere
    /// milieu could not carry the context (a bare `std::thread::spawn` or
    /// `tokio::spawn`). The report then says how to carry it.
    ///
    /// # Examples
    ///
    /// ```
    /// #[derive(Debug)]
    /// struct Db;
    /// let _db = milieu::provide(Db);
    /// // A bare std thread: the context stays behind.
    /// let err = std::thread::spawn(|| milieu::get::<Db>().unwrap_err()).join().unwrap();
    /// assert!(err.context_is_empty());
    /// assert!(err.to_string().contains("milieu::thread::spawn"));
    /// // Carried, the lookup succeeds.
    /// assert!(milieu::thread::spawn(|| milieu::get::<Db>().is_ok()).join().unwrap());
    /// ```
    pub fn context_is_empty(&self) -> bool {
        !self.0.present.snapshot && self.0.present.frames.is_empty()
    }

    /// When the context arrived from another process: the hop, with what
    /// the caller sent and what was declined (the report lists both).
    pub fn arrival(&self) -> Option<&ProcessHop> {
        self.0.arrival.as_deref()
    }
}

fn near_misses(requested: &str, present: &Dump) -> Vec<NearMiss> {
    let wanted = short_name(requested);
    present
        .entries()
        .filter_map(|entry| {
            let kind = if entry.type_name == requested {
                match entry.status {
                    EntryStatus::NotCarried { .. } => NearMissKind::NotCarried,
                    _ => NearMissKind::OtherVersion,
                }
            } else {
                let have = short_name(entry.type_name);
                if have == wanted {
                    NearMissKind::OtherPath
                } else if unwrap(&wanted) == have || unwrap(&have) == wanted {
                    NearMissKind::Wrapper
                } else {
                    return None;
                }
            };
            Some(NearMiss {
                entry: entry.clone(),
                kind,
            })
        })
        .collect()
}

/// `a::b::C<d::E>` -> `C<E>`: a type name without module paths.
fn short_name(full: &str) -> String {
    let mut out = String::with_capacity(full.len());
    let mut segment = String::new();
    let mut chars = full.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            segment.clear();
        } else if c.is_alphanumeric() || c == '_' {
            segment.push(c);
        } else {
            out.push_str(&segment);
            segment.clear();
            out.push(c);
        }
    }
    out.push_str(&segment);
    out
}

/// `Arc<X>` / `Box<X>` / `Rc<X>` / `&X` -> `X`; anything else unchanged.
fn unwrap(short: &str) -> &str {
    for wrapper in ["Arc<", "Box<", "Rc<"] {
        if let Some(inner) = short
            .strip_prefix(wrapper)
            .and_then(|s| s.strip_suffix('>'))
        {
            return inner;
        }
    }
    short.strip_prefix('&').unwrap_or(short)
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.0;
        let place = if inner.present.snapshot {
            "the snapshot"
        } else {
            "the context"
        };
        let list = inner
            .types
            .iter()
            .map(|t| format!("`{t}`"))
            .collect::<Vec<_>>()
            .join(", ");
        match &inner.declared {
            None => writeln!(f, "milieu: no {list} in {place}")?,
            Some(declared) => {
                let n = inner.types.len();
                let what = if n == 1 { "entry" } else { "entries" };
                writeln!(
                    f,
                    "milieu: `{}` requires {n} {what} missing from {place}: {list}",
                    declared.function
                )?;
                writeln!(f, "  declared at {} (#[requires])", declared.site)?;
            }
        }
        let verb = if inner.declared.is_some() {
            "called from"
        } else {
            "looked up at"
        };
        match &inner.site {
            Some(site) => writeln!(f, "  {verb} {site} on thread {}", inner.thread)?,
            None => writeln!(
                f,
                "  checked when the async fn was first polled, on thread {}",
                inner.thread
            )?,
        }
        for near in &inner.near {
            let e = &near.entry;
            let why = match near.kind {
                NearMissKind::NotCarried => {
                    "same type, but local: it stays on its thread and was not carried here"
                }
                NearMissKind::OtherVersion => {
                    "same type name but a different TypeId: two versions of the crate \
                     defining it are linked (check `cargo tree -d`)"
                }
                NearMissKind::OtherPath => {
                    "same type name under another path (another module or crate)"
                }
                NearMissKind::Wrapper => {
                    "differs only by a wrapper: `get::<T>()` returns `Arc<T>`; install \
                     `T` (or use `provide_arc`) and ask for `T`"
                }
            };
            writeln!(
                f,
                "  near miss: `{}` installed at {}: {why}",
                e.type_name, e.provenance.site
            )?;
        }
        if let Some(hop) = &inner.arrival {
            writeln!(f, "  from another process: {hop}: {}", hop.summary())?;
        }
        if self.context_is_empty() {
            writeln!(
                f,
                "  hint: this thread's context is entirely empty, the usual sign of code started \
                 where milieu could not carry it (a bare `std::thread::spawn` or `tokio::spawn`, \
                 a callback of a library's own thread pool): start threads with \
                 `milieu::thread::spawn`, wrap futures with `FutureExt::in_current_context()` \
                 where they are created (or spawn them with `milieu::tokio::spawn`, feature \
                 `tokio`), or enter a `Context` captured before the hop"
            )?;
        }
        if inner.present.frames.is_empty() {
            return write!(f, "  present: nothing (the context is empty)");
        }
        write!(f, "  present: ")?;
        let text = inner.present.to_string();
        for (i, line) in text.lines().enumerate() {
            if i > 0 {
                write!(f, "\n  ")?;
            }
            write!(f, "{line}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Missing {
    // `Debug` is what `unwrap()` and `?` in `main` print: give the full report.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Missing {}

#[cfg(test)]
mod tests {
    use super::{short_name, unwrap};

    #[test]
    fn short_names_drop_module_paths_everywhere() {
        assert_eq!(short_name("a::b::C"), "C");
        assert_eq!(short_name("alloc::sync::Arc<tour::db::Db>"), "Arc<Db>");
        assert_eq!(short_name("x::Pair<a::A, b::B>"), "Pair<A, B>");
        assert_eq!(short_name("&str"), "&str");
    }

    #[test]
    fn wrappers_are_peeled_once() {
        assert_eq!(unwrap("Arc<Db>"), "Db");
        assert_eq!(unwrap("Box<Db>"), "Db");
        assert_eq!(unwrap("&Db"), "Db");
        assert_eq!(unwrap("Db"), "Db");
    }
}
