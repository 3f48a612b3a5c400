//! The error for a lookup that finds nothing, written to explain itself.

use std::fmt;
use std::panic::Location;

use super::dump::{Dump, EntryDump, EntryStatus, Site};
use super::frame::ThreadInfo;
use super::snapshot::Context;

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
    type_name: &'static str,
    site: Site,
    thread: ThreadInfo,
    present: Dump,
    near: Vec<NearMiss>,
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

    pub(crate) fn for_context<T: ?Sized + 'static>(
        ctx: &Context,
        site: &'static Location<'static>,
    ) -> Self {
        Self::new(std::any::type_name::<T>(), site, ctx.dump())
    }

    fn new(type_name: &'static str, site: &'static Location<'static>, present: Dump) -> Self {
        let near = near_misses(type_name, &present);
        Missing(Box::new(Inner {
            type_name,
            site: Site::from(site),
            thread: present.thread.clone(),
            present,
            near,
        }))
    }

    /// The requested type, as `std::any::type_name` spells it.
    pub fn type_name(&self) -> &'static str {
        self.0.type_name
    }

    /// Where the lookup was made.
    pub fn site(&self) -> Site {
        self.0.site
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
            Some(NearMiss { entry: entry.clone(), kind })
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
        if let Some(inner) = short.strip_prefix(wrapper).and_then(|s| s.strip_suffix('>')) {
            return inner;
        }
    }
    short.strip_prefix('&').unwrap_or(short)
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.0;
        let place = if inner.present.snapshot { "the snapshot" } else { "the context" };
        writeln!(f, "milieu: no `{}` in {place}", inner.type_name)?;
        writeln!(f, "  looked up at {} on thread {}", inner.site, inner.thread)?;
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
            writeln!(f, "  near miss: `{}` installed at {}: {why}", e.type_name, e.provenance.site)?;
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
