//! Dumps: the whole context with provenance, as text, JSON or a `tracing`
//! event.

use std::any::TypeId;
use std::fmt;
use std::panic::Location;
use std::ptr;

use super::entry::{Entry, Policy, Value};
use super::frame::{Frame, FrameKind, HopKind, HopRecord, ThreadInfo};
use super::remote::RemoteOrigin;
use super::state::State;

/// A dump of the current context (top frame first), with the provenance of
/// every entry.
///
/// # Examples
///
/// ```
/// #[derive(Debug)]
/// struct Tenant(#[allow(dead_code)] &'static str);
///
/// let _g = milieu::scope().with_debug(Tenant("acme")).because("demo").enter();
/// let text = milieu::dump().to_string();
/// assert!(text.contains("Tenant(\"acme\")"));
/// assert!(text.contains("because \"demo\""));
/// ```
pub fn dump() -> Dump {
    Dump::current()
}

/// A source location: where an entry was installed or a hop captured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Site {
    /// Source file, as the compiler names it (relative to the package).
    pub file: &'static str,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
}

impl From<&'static Location<'static>> for Site {
    fn from(loc: &'static Location<'static>) -> Self {
        Site {
            file: loc.file(),
            line: loc.line(),
            column: loc.column(),
        }
    }
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// One hop that carried a context.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct HopDump {
    /// Task, thread, stage or process.
    pub kind: HopKind,
    /// A stage or thread name, a remote service, if the hop had one.
    pub label: Option<String>,
    /// Where the snapshot was captured for the hop.
    pub site: Site,
    /// The thread that captured it.
    pub from: ThreadInfo,
    /// The first thread that entered it, once one has.
    pub to: Option<ThreadInfo>,
}

impl fmt::Display for HopDump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(label) = &self.label {
            write!(f, " `{label}`")?;
        }
        match &self.to {
            Some(to) if *to != self.from => {
                write!(f, " at {} from {} to {to}", self.site, self.from)
            }
            _ => write!(f, " at {} on {}", self.site, self.from),
        }
    }
}

/// Where an entry came from and how it got here.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Provenance {
    /// The install site (`provide` or `Scope::with*`).
    pub site: Site,
    /// The installing thread.
    pub thread: ThreadInfo,
    /// Sequence number, unique per installing thread.
    pub seq: u64,
    /// The installer's reason (`Scope::because`), if given.
    pub reason: Option<String>,
    /// Hops that carried the entry to where the dump was taken, oldest first.
    pub hops: Vec<HopDump>,
    /// For an entry received from another process: what that process said
    /// about it (its install site and service) and the process hop. `site`
    /// and `thread` above are then where it was installed on arrival.
    pub remote: Option<RemoteOrigin>,
}

/// Whether a dumped entry is the one a lookup finds.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case", tag = "status"))]
#[non_exhaustive]
pub enum EntryStatus {
    /// Lookups of this type find this entry.
    Visible,
    /// An entry of the same type installed later hides this one.
    Shadowed {
        /// Install site of the entry that hides it (if it is visible).
        by: Option<Site>,
    },
    /// A local entry that was not carried past a hop or into a snapshot.
    NotCarried {
        /// The hop that left it behind; `None` for a snapshot entered again.
        hop: Option<HopDump>,
    },
}

/// One entry in a [`Dump`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct EntryDump {
    /// The key type, as `std::any::type_name` spells it.
    pub type_name: &'static str,
    /// Inherited or local.
    pub policy: Policy,
    /// Visible, shadowed or not carried.
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub status: EntryStatus,
    /// The value's `Debug`, when the installer opted in (`Scope::with_debug`).
    pub value: Option<String>,
    /// Where it came from.
    pub provenance: Provenance,
}

/// One frame in a [`Dump`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case", tag = "frame"))]
#[non_exhaustive]
pub enum FrameDump {
    /// Entries installed together by `provide` or a `Scope`.
    Installed {
        /// The `run` / `enter` / `provide` call.
        site: Site,
        /// The installing thread.
        thread: ThreadInfo,
        /// The entries, in installation order.
        entries: Vec<EntryDump>,
    },
    /// The context was carried across a hop.
    Hop(HopDump),
    /// A snapshot was entered again; local entries below were left out.
    Entered {
        /// The `Context::run` / `enter` call.
        site: Site,
        /// The entering thread.
        thread: ThreadInfo,
    },
}

/// The whole context at one moment, top frame first.
///
/// Produced by [`dump`], [`Context::dump`](crate::Context::dump) and inside
/// every [`Missing`](crate::Missing). Display it for a readable tree,
/// serialise it with [`to_json`](Dump::to_json) (feature `serde`), or
/// [`emit`](Dump::emit) it as a `tracing` event.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Dump {
    /// The thread the dump was taken on.
    pub thread: ThreadInfo,
    /// Whether this is a snapshot's view (local entries not carried).
    pub snapshot: bool,
    /// Frames, top first.
    pub frames: Vec<FrameDump>,
}

/// Which map decides what is visible.
#[derive(Clone, Copy)]
enum View {
    /// The thread's current context: local entries are visible.
    Current,
    /// A snapshot: only carried entries are.
    Snapshot,
}

impl Dump {
    /// A dump of this thread's current context.
    pub fn current() -> Dump {
        let top = State::try_with(State::snapshot).flatten();
        Dump::build(top.as_deref(), View::Current)
    }

    pub(crate) fn of_snapshot(top: Option<&Frame>) -> Dump {
        Dump::build(top, View::Snapshot)
    }

    fn build(top: Option<&Frame>, view: View) -> Dump {
        let thread =
            State::try_with(|s| (*s.thread_info()).clone()).unwrap_or_else(ThreadInfo::exiting);
        let mut frames = Vec::new();
        if let Some(top) = top {
            // The entry a lookup of a type finds: the thread's own lookup
            // for its current context (local entries included), the
            // snapshot's map otherwise. Every entry either returns lives in
            // the chain `top` keeps alive.
            let visible = |id: TypeId| -> *const Entry {
                match view {
                    View::Current => State::try_with(|s| s.find_entry(id)).unwrap_or(ptr::null()),
                    View::Snapshot => top.map().get(id).map_or(ptr::null(), |f| f.entry),
                }
            };
            // Hops seen so far walking down, newest first; the last one is
            // the hop nearest to the frame being visited.
            let mut hops_above: Vec<HopDump> = Vec::new();
            // The cut (hop or re-entry) nearest above the visited frame, if
            // any: local entries there were left behind by it. `Some(None)`
            // is a re-entered snapshot (or the snapshot view itself).
            let mut cut_above: Option<Option<HopDump>> =
                matches!(view, View::Snapshot).then_some(None);
            for frame in top.chain() {
                let data = frame.data();
                match &data.kind {
                    FrameKind::Hop(hop) => {
                        let hop = hop_dump(hop, &data.thread);
                        frames.push(FrameDump::Hop(hop.clone()));
                        hops_above.push(hop.clone());
                        cut_above = Some(Some(hop));
                    }
                    FrameKind::Entered { site } => {
                        frames.push(FrameDump::Entered {
                            site: Site::from(*site),
                            thread: (*data.thread).clone(),
                        });
                        cut_above = Some(None);
                    }
                    FrameKind::Installed { site } => {
                        let hops: Vec<HopDump> = hops_above.iter().rev().cloned().collect();
                        let entries = data
                            .entries
                            .iter()
                            .map(|e| {
                                // SAFETY: see `visible`.
                                let found = unsafe { visible(e.type_id).as_ref() };
                                entry_dump(e, frame, found, &hops, cut_above.as_ref(), view)
                            })
                            .collect();
                        frames.push(FrameDump::Installed {
                            site: Site::from(*site),
                            thread: (*data.thread).clone(),
                            entries,
                        });
                    }
                }
            }
        }
        Dump {
            thread,
            snapshot: matches!(view, View::Snapshot),
            frames,
        }
    }

    /// Every entry, top frame first.
    pub fn entries(&self) -> impl Iterator<Item = &EntryDump> {
        self.frames.iter().flat_map(|f| match f {
            FrameDump::Installed { entries, .. } => entries.as_slice(),
            _ => &[],
        })
    }

    /// The entries a lookup would find.
    pub fn visible(&self) -> impl Iterator<Item = &EntryDump> {
        self.entries().filter(|e| e.status == EntryStatus::Visible)
    }

    /// The hops the context travelled, newest first.
    pub fn hops(&self) -> impl Iterator<Item = &HopDump> {
        self.frames.iter().filter_map(|f| match f {
            FrameDump::Hop(hop) => Some(hop),
            _ => None,
        })
    }

    /// Emits the dump as a `tracing` event at INFO level (target
    /// `milieu::dump`), with the readable tree as the message.
    pub fn emit(&self) {
        tracing::info!(
            target: "milieu::dump",
            thread = %self.thread,
            visible = self.visible().count(),
            "{self}"
        );
    }

    /// The dump as compact JSON.
    #[cfg(feature = "serde")]
    pub fn to_json(&self) -> String {
        // Serialising plain structs of strings and numbers cannot fail.
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The dump as indented JSON.
    #[cfg(feature = "serde")]
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

fn hop_dump(hop: &HopRecord, from: &ThreadInfo) -> HopDump {
    HopDump {
        kind: hop.kind,
        label: hop.label.as_deref().map(str::to_owned),
        site: Site::from(hop.site),
        from: from.clone(),
        to: hop.arrived.get(from).cloned(),
    }
}

fn entry_dump(
    entry: &Entry,
    frame: &Frame,
    found: Option<&Entry>,
    hops: &[HopDump],
    cut_above: Option<&Option<HopDump>>,
    view: View,
) -> EntryDump {
    let status = if found.is_some_and(|f| ptr::eq(f, entry)) {
        EntryStatus::Visible
    } else if let (Policy::Local, Some(left_at)) = (entry.policy(), cut_above) {
        EntryStatus::NotCarried {
            hop: left_at.clone(),
        }
    } else {
        EntryStatus::Shadowed {
            by: found.map(|f| Site::from(f.site)),
        }
    };
    let value = entry.debug.and_then(|debug| {
        let shown = |v: &dyn std::any::Any| format!("{:?}", DebugWith(v, debug));
        match &entry.value {
            Value::Shared(v) => Some(shown(&**v)),
            // Held by a frame only its own request enters: shown where
            // that request looks, like any local value.
            Value::FrameLocal(v) => match (view, &status) {
                (View::Current, EntryStatus::NotCarried { .. }) | (View::Snapshot, _) => None,
                (View::Current, _) => Some(shown(&**v)),
            },
            // Local values live in their thread's table: shown only in a
            // dump of the installing thread's own current context.
            Value::Local => match view {
                View::Current => State::try_with(|s| s.local_value(frame, entry.seq))
                    .flatten()
                    .map(|v| shown(&*v)),
                View::Snapshot => None,
            },
        }
    });
    EntryDump {
        type_name: entry.type_name,
        policy: entry.policy(),
        status: status.clone(),
        value,
        provenance: Provenance {
            site: Site::from(entry.site),
            thread: (*frame.data().thread).clone(),
            seq: entry.seq,
            reason: entry.reason.as_deref().map(str::to_owned),
            remote: entry.origin.as_deref().cloned(),
            // An entry left behind did not travel.
            hops: if matches!(status, EntryStatus::NotCarried { .. }) {
                Vec::new()
            } else {
                hops.to_vec()
            },
        },
    }
}

struct DebugWith<'a>(&'a dyn std::any::Any, super::entry::DebugFn);

impl fmt::Debug for DebugWith<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (self.1)(self.0, f)
    }
}

impl fmt::Display for Dump {
    /// A tree, top frame first:
    ///
    /// ```text
    /// milieu context on thread `worker` (top frame first): 2 visible, 1 shadowed
    /// ├─ hop: thread at examples/tour.rs:61:5 from `main` to `worker`
    /// └─ frame installed at examples/tour.rs:44:9 on `main`
    ///    └─ tour::Tenant = Tenant("acme")  inherited #7, because "demo"
    ///       installed at examples/tour.rs:44:9 on `main`; carried by thread at ...
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count =
            |want: fn(&EntryStatus) -> bool| self.entries().filter(|e| want(&e.status)).count();
        let visible = count(|s| matches!(s, EntryStatus::Visible));
        let shadowed = count(|s| matches!(s, EntryStatus::Shadowed { .. }));
        let left = count(|s| matches!(s, EntryStatus::NotCarried { .. }));
        if self.snapshot {
            write!(
                f,
                "milieu snapshot (dumped on thread {}): {visible} visible",
                self.thread
            )?;
        } else {
            write!(
                f,
                "milieu context on thread {}: {visible} visible",
                self.thread
            )?;
        }
        if shadowed > 0 {
            write!(f, ", {shadowed} shadowed")?;
        }
        if left > 0 {
            write!(f, ", {left} not carried")?;
        }
        if self.frames.is_empty() {
            return writeln!(f, " (empty)");
        }
        writeln!(f, " (top frame first)")?;
        for (i, frame) in self.frames.iter().enumerate() {
            let last = i + 1 == self.frames.len();
            let (branch, indent) = if last {
                ("└─ ", "   ")
            } else {
                ("├─ ", "│  ")
            };
            match frame {
                FrameDump::Hop(hop) => writeln!(f, "{branch}hop: {hop}")?,
                FrameDump::Entered { site, thread } => writeln!(
                    f,
                    "{branch}snapshot entered at {site} on {thread} (local entries below left out)"
                )?,
                FrameDump::Installed {
                    site,
                    thread,
                    entries,
                } => {
                    writeln!(f, "{branch}frame installed at {site} on {thread}")?;
                    for (j, entry) in entries.iter().enumerate() {
                        let last = j + 1 == entries.len();
                        let (b, i2) = if last {
                            ("└─ ", "   ")
                        } else {
                            ("├─ ", "│  ")
                        };
                        write_entry(f, entry, &format!("{indent}{b}"), &format!("{indent}{i2}"))?;
                    }
                }
            }
        }
        Ok(())
    }
}

fn write_entry(f: &mut fmt::Formatter<'_>, e: &EntryDump, first: &str, rest: &str) -> fmt::Result {
    write!(f, "{first}{}", e.type_name)?;
    if let Some(value) = &e.value {
        write!(f, " = {value}")?;
    }
    let policy = match e.policy {
        Policy::Inherited => "inherited",
        Policy::Local => "local",
    };
    write!(f, "  [{policy} #{}", e.provenance.seq)?;
    match &e.status {
        EntryStatus::Visible => {}
        EntryStatus::Shadowed { by: Some(by) } => write!(f, ", SHADOWED by {by}")?,
        EntryStatus::Shadowed { by: None } => write!(f, ", SHADOWED")?,
        EntryStatus::NotCarried { hop: Some(hop) } => {
            write!(f, ", NOT CARRIED past {} at {}", hop.kind, hop.site)?
        }
        EntryStatus::NotCarried { hop: None } => write!(f, ", NOT CARRIED into the snapshot")?,
    }
    write!(f, "]")?;
    if let Some(reason) = &e.provenance.reason {
        write!(f, " because {reason:?}")?;
    }
    writeln!(f)?;
    if let Some(remote) = &e.provenance.remote {
        // The caller's account first: it is where the entry comes from.
        writeln!(f, "{rest}{remote}")?;
        writeln!(
            f,
            "{rest}received at {} on {}",
            e.provenance.site, e.provenance.thread
        )?;
    } else {
        writeln!(
            f,
            "{rest}installed at {} on {}",
            e.provenance.site, e.provenance.thread
        )?;
    }
    if !e.provenance.hops.is_empty() {
        // Kind and site only: the hop frames above give the threads.
        write!(f, "{rest}carried by ")?;
        for (k, hop) in e.provenance.hops.iter().enumerate() {
            let sep = if k > 0 { " -> " } else { "" };
            write!(f, "{sep}{} at {}", hop.kind, hop.site)?;
        }
        writeln!(f)?;
    }
    Ok(())
}
