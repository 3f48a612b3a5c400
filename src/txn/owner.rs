//! One owner per database file: the lock a [`Database`](super::Database)
//! on a SQLite file holds while it is open.
//!
//! Two `Database`s on one file (two processes started on the same data
//! directory, or one process opening it twice) would each deliver, at
//! open, the outbox rows the other has committed and not yet delivered:
//! every such item twice. So `open` takes an advisory `flock` on a file
//! beside the database (`<file>-milieu.lock`), never on the database file
//! itself, whose byte-range locks are SQLite's own. The kernel releases
//! the lock when its holder exits, however it exits: a crash leaves no
//! stale lock behind, only the file, which the next owner locks again.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The held lock: released when dropped (its file is closed).
pub(crate) struct OwnerLock {
    _file: File,
}

impl fmt::Debug for OwnerLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OwnerLock")
    }
}

/// Why the lock could not be taken.
#[derive(Debug)]
pub(crate) enum ClaimError {
    /// Another open `Database` holds it; `holder` is the process id it
    /// wrote into the lock file, when it could be read.
    Held { lock: PathBuf, holder: Option<u32> },
    /// The lock file could not be opened or locked.
    Io { lock: PathBuf, error: io::Error },
}

/// The lock file of the database at `database`.
pub(crate) fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push("-milieu.lock");
    PathBuf::from(name)
}

/// Takes the lock of the database at `database` without waiting, and
/// writes this process's id into it for the error another opener sees.
pub(crate) fn claim(database: &Path) -> Result<OwnerLock, ClaimError> {
    let lock = lock_path(database);
    let io_error = |error| ClaimError::Io {
        lock: lock.clone(),
        error,
    };
    // Not truncated on open: the holder's id stays readable until we hold
    // the lock ourselves.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock)
        .map_err(io_error)?;
    if let Err(error) = try_lock_exclusive(&file) {
        if error.kind() != io::ErrorKind::WouldBlock {
            return Err(io_error(error));
        }
        let mut holder = String::new();
        let holder = file
            .read_to_string(&mut holder)
            .ok()
            .and_then(|_| holder.trim().parse().ok());
        return Err(ClaimError::Held { lock, holder });
    }
    // Ours now: what an earlier holder wrote is replaced. Failing to
    // write the id only makes another opener's error less precise.
    let _ = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()));
    Ok(OwnerLock { _file: file })
}

#[cfg(unix)]
fn try_lock_exclusive(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: `flock` on a descriptor this `File` owns and keeps open.
        let done = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if done == 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// Without `flock`, no lock: the file is created and nothing is refused.
#[cfg(not(unix))]
fn try_lock_exclusive(_file: &File) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A second claim on the same file fails while the first is held and
    /// names the holder; it succeeds once the first is dropped.
    #[test]
    fn a_held_lock_refuses_a_second_claim_until_dropped() {
        let dir = std::env::temp_dir().join(format!("milieu-owner-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let database = dir.join("app.db");
        let first = claim(&database).expect("the first claim");
        match claim(&database) {
            Err(ClaimError::Held { lock, holder }) => {
                assert_eq!(lock, dir.join("app.db-milieu.lock"));
                assert_eq!(holder, Some(std::process::id()));
            }
            other => panic!("a second claim while held: {other:?}"),
        }
        drop(first);
        let again = claim(&database).expect("a claim after the holder dropped");
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
