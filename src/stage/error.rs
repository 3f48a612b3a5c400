//! What can go wrong with a stage: building it, handing it an item, the
//! job itself, closing it.

use std::fmt;
use std::io;
use std::sync::Arc;

/// Why a stage refused an item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefuseReason {
    /// The queue holds `capacity` items already. Retry later, shed the
    /// load, or wait for room with [`Stage::submit_wait`](super::Stage::submit_wait).
    Full {
        /// The stage's queue bound.
        capacity: usize,
    },
    /// The stage is closed (or closing) and accepts nothing more.
    Closed,
}

impl fmt::Display for RefuseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefuseReason::Full { capacity } => write!(
                f,
                "its queue is full ({capacity} waiting); retry later, shed the load, \
                 or wait for room with submit_wait"
            ),
            RefuseReason::Closed => f.write_str("it is closed and accepts nothing more"),
        }
    }
}

/// An item a stage did not take, given back with the reason.
///
/// # Examples
///
/// ```
/// use milieu::stage::{CloseMode, RefuseReason, Stage};
///
/// let stage = Stage::builder("parse").build(|line: String| line.len())?;
/// stage.close(CloseMode::Drain)?;
/// let refused = stage.submit("GET /".to_owned()).unwrap_err();
/// assert_eq!(refused.reason, RefuseReason::Closed);
/// assert_eq!(refused.into_item(), "GET /"); // nothing is lost
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Refused<In> {
    /// Why the item was refused.
    pub reason: RefuseReason,
    pub(super) stage: Arc<str>,
    pub(super) item: In,
}

impl<In> Refused<In> {
    /// The item, back to the caller.
    pub fn into_item(self) -> In {
        self.item
    }

    /// The item, borrowed.
    pub fn item(&self) -> &In {
        &self.item
    }

    /// The name of the stage that refused it.
    pub fn stage(&self) -> &str {
        &self.stage
    }
}

impl<In> fmt::Debug for Refused<In> {
    // No `In: Debug` bound: items are often not printable (or not safe to
    // log), and an error type must be usable with `?` whatever they are.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Refused")
            .field("stage", &self.stage)
            .field("reason", &self.reason)
            .finish_non_exhaustive()
    }
}

impl<In> fmt::Display for Refused<In> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "stage `{}` refused an item: {} (the item is returned with the error)",
            self.stage, self.reason
        )
    }
}

impl<In> std::error::Error for Refused<In> {}

/// Why a [`Submission`](super::Submission) has no result.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StageError {
    /// The handler panicked on this item. The panic was logged (target
    /// `milieu::stage`) with the context dump, and the worker was replaced
    /// by a fresh one.
    Panicked {
        /// The stage's name.
        stage: String,
        /// The panic message (`<non-string panic payload>` if it had none).
        message: String,
    },
    /// The item never reached the handler: the stage was closed with
    /// [`CloseMode::Cancel`](super::CloseMode::Cancel) while it waited, or
    /// the stage lost its last worker (a handler factory that panicked
    /// while replacing one).
    Cancelled {
        /// The stage's name.
        stage: String,
    },
    /// The stage refused the item (a [`Refused`] converted with `?`; the
    /// item itself was dropped).
    Refused {
        /// The stage's name.
        stage: String,
        /// Why.
        reason: RefuseReason,
    },
}

impl StageError {
    /// The name of the stage the error comes from.
    pub fn stage(&self) -> &str {
        match self {
            StageError::Panicked { stage, .. }
            | StageError::Cancelled { stage }
            | StageError::Refused { stage, .. } => stage,
        }
    }
}

impl fmt::Display for StageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StageError::Panicked { stage, message } => write!(
                f,
                "stage `{stage}`: the handler panicked on this item ({message}); the panic \
                 was logged with the context dump and the worker replaced"
            ),
            StageError::Cancelled { stage } => write!(
                f,
                "stage `{stage}`: the item was cancelled before its handler ran (the stage \
                 was closed with CloseMode::Cancel, or lost its last worker)"
            ),
            StageError::Refused { stage, reason } => {
                write!(f, "stage `{stage}` refused the item: {reason}")
            }
        }
    }
}

impl std::error::Error for StageError {}

impl<In> From<Refused<In>> for StageError {
    /// Drops the item: for code that propagates a refusal with `?` and
    /// has no use for it any more.
    fn from(refused: Refused<In>) -> Self {
        StageError::Refused {
            stage: refused.stage.to_string(),
            reason: refused.reason,
        }
    }
}

/// Why [`StageBuilder::build`](super::StageBuilder::build) failed. No
/// thread is left running after an error.
#[derive(Debug)]
#[non_exhaustive]
pub enum StageBuildError {
    /// `capacity(0)`: a stage needs room for at least one waiting item.
    ZeroCapacity {
        /// The stage's name.
        stage: String,
    },
    /// `workers(0)`: a stage needs at least one worker thread.
    ZeroWorkers {
        /// The stage's name.
        stage: String,
    },
    /// The name contains a NUL byte, which thread names cannot hold.
    InvalidName {
        /// The name as given.
        stage: String,
    },
    /// The OS refused a worker thread.
    Spawn {
        /// The stage's name.
        stage: String,
        /// The OS error.
        source: io::Error,
    },
    /// The handler factory given to `build_with` panicked on a worker.
    HandlerPanicked {
        /// The stage's name.
        stage: String,
        /// The panic message.
        message: String,
    },
}

impl fmt::Display for StageBuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StageBuildError::ZeroCapacity { stage } => write!(
                f,
                "stage `{stage}`: capacity(0) leaves no room for a single item; \
                 give the queue a bound of at least 1"
            ),
            StageBuildError::ZeroWorkers { stage } => write!(
                f,
                "stage `{stage}`: workers(0) would never run anything; use at least 1"
            ),
            StageBuildError::InvalidName { stage } => write!(
                f,
                "stage name {stage:?} contains a NUL byte; worker threads are named \
                 after the stage and cannot hold one"
            ),
            StageBuildError::Spawn { stage, source } => write!(
                f,
                "stage `{stage}`: cannot start a worker thread: {source}; the threads \
                 already started were stopped"
            ),
            StageBuildError::HandlerPanicked { stage, message } => write!(
                f,
                "stage `{stage}`: the handler factory panicked on a worker thread \
                 ({message}); the threads already started were stopped"
            ),
        }
    }
}

impl std::error::Error for StageBuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StageBuildError::Spawn { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Why [`Stage::close`](super::Stage::close) did nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseError {
    /// `close` was called on one of the stage's own worker threads (from a
    /// handler or a handler factory): it would wait for itself to finish.
    /// The stage was left as it was.
    FromWorker {
        /// The stage's name.
        stage: String,
        /// The worker thread's name.
        thread: String,
    },
}

impl fmt::Display for CloseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseError::FromWorker { stage, thread } => write!(
                f,
                "stage `{stage}`: close was called on its own worker thread `{thread}`, \
                 which would wait for itself; nothing was done. Close the stage from \
                 another thread (the one that built it, or the reactor)"
            ),
        }
    }
}

impl std::error::Error for CloseError {}
