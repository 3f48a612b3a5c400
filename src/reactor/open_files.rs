//! The process's limit on open files (`RLIMIT_NOFILE`), which bounds the
//! connections a server can hold, whatever its [`ServerBudget`] says.
//!
//! Every connection is a file descriptor. Past the soft limit `accept`
//! fails with `EMFILE`: the reactor backs off and tries again, and the
//! clients past the limit wait in the listen backlog instead of getting
//! the budget's `503`. Many systems start processes with a soft limit of
//! 1,024 and a hard limit far higher; the soft limit may be raised up to
//! the hard one without privileges. A server that wants `max_connections`
//! connections raises it at start-up ([`OpenFilesLimit::raise_to`]) and
//! serves what it got: nothing here changes the limit by itself.
//!
//! [`ServerBudget`]: super::ServerBudget

use std::io;

/// The soft and hard limits on the open files of this process.
///
/// # Examples
///
/// ```
/// use milieu::reactor::OpenFilesLimit;
///
/// // Room for 4,096 connections and the files a service keeps open.
/// let limit = OpenFilesLimit::raise_to(4096 + OpenFilesLimit::RESERVE)?;
/// let connections = limit.connections();
/// assert!(connections <= limit.soft);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFilesLimit {
    /// The limit in force: no descriptor numbered at or above it opens.
    pub soft: u64,
    /// How far the process may raise `soft` without privileges.
    pub hard: u64,
}

impl OpenFilesLimit {
    /// Descriptors a service keeps besides its connections: listeners,
    /// the reactor's own (epoll, wakers, timers), database files and
    /// logs. [`connections`](OpenFilesLimit::connections) leaves these
    /// out.
    pub const RESERVE: u64 = 64;

    /// The limits now (`getrlimit`).
    ///
    /// # Errors
    ///
    /// The system's, should `getrlimit` fail.
    pub fn current() -> io::Result<OpenFilesLimit> {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `limit` is a valid `rlimit` to write into.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(OpenFilesLimit {
            soft: limit.rlim_cur,
            hard: limit.rlim_max,
        })
    }

    /// Raises the soft limit to `wanted`, or to the hard limit if that is
    /// lower, and returns the limits then in force. Never lowers it: a
    /// soft limit already at or above `wanted` is left as it is.
    ///
    /// # Errors
    ///
    /// The system's, should `getrlimit` or `setrlimit` fail.
    pub fn raise_to(wanted: u64) -> io::Result<OpenFilesLimit> {
        let now = OpenFilesLimit::current()?;
        let target = wanted.min(now.hard);
        if now.soft >= target {
            return Ok(now);
        }
        let limit = libc::rlimit {
            rlim_cur: target,
            rlim_max: now.hard,
        };
        // SAFETY: `limit` is a valid `rlimit`.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
        OpenFilesLimit::current()
    }

    /// How many connections the soft limit leaves room for, after
    /// [`RESERVE`](OpenFilesLimit::RESERVE).
    pub fn connections(&self) -> u64 {
        self.soft.saturating_sub(OpenFilesLimit::RESERVE)
    }
}
