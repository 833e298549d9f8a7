//! Rate limiting of write events in the kernel: after a file's write is
//! reported, its further close-after-write events are ignored for
//! [`QUIET`], then checked once.
//!
//! An ignore mask on the file's own inode (surviving modification) makes
//! the kernel drop those events before allocating them, so a tight write
//! loop costs almost nothing. When the window ends the mask is removed and
//! the file's size and timestamps are compared with those seen when it was
//! quieted: a difference is reported as one more modification and quiets
//! the file again. Deletions and renames are events of the parent
//! directory and are never quieted.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use tokio::time::Instant;

use crate::fanotify::{self, Group};
use crate::watch::Change;

/// How long a reported file's writes stay unreported: the most a later
/// write's report is delayed.
pub(crate) const QUIET: Duration = Duration::from_secs(1);
// Files quiet at once, each holding a descriptor; beyond this a file's
// writes are simply reported one event each.
const MAX_QUIET: usize = 4096;

// Size and timestamps of a file, to tell whether it was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    size: i64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    links: u64,
}

struct Quieted {
    until: Instant,
    change: Change,
    file: OwnedFd,
    stamp: Stamp,
}

/// The files whose write events are being ignored, oldest first.
#[derive(Default)]
pub(crate) struct Quiet {
    files: VecDeque<Quieted>,
}

impl Quiet {
    /// Ignores further writes of the file `change` reported as modified.
    /// Does nothing when the file is gone, or cannot be marked.
    pub fn start(&mut self, group: &Group, change: Change) {
        if self.files.len() >= MAX_QUIET || self.files.iter().any(|q| q.change.path == change.path)
        {
            return;
        }
        let Ok(file) = fanotify::open_file(change.path.as_path()) else { return };
        let Some(stamp) = stamp(&file) else { return };
        if group.ignore_writes(file.as_raw_fd(), true).is_err() {
            return;
        }
        self.files.push_back(Quieted { until: Instant::now() + QUIET, change, file, stamp });
    }

    /// When the oldest window ends, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.files.front().map(|q| q.until)
    }

    /// Ends every window that is over; returns the changes of files written
    /// meanwhile, which the caller reports (and quiets again).
    pub fn expire(&mut self, group: &Group) -> Vec<Change> {
        let now = Instant::now();
        let mut written = Vec::new();
        while self.files.front().is_some_and(|q| q.until <= now) {
            let Some(quieted) = self.files.pop_front() else { break };
            let _ = group.ignore_writes(quieted.file.as_raw_fd(), false);
            let after = stamp(&quieted.file);
            if after.is_some_and(|s| s.links > 0 && s != quieted.stamp) {
                written.push(quieted.change);
            }
        }
        written
    }

    /// Whether `path` is quiet now.
    #[cfg(test)]
    pub fn contains(&self, path: &schemas::RawPath) -> bool {
        self.files.iter().any(|q| &q.change.path == path)
    }
}

fn stamp(file: &OwnedFd) -> Option<Stamp> {
    // SAFETY: stat is plain data; all-zero is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: the descriptor is open and `st` is writable.
    if unsafe { libc::fstat(file.as_raw_fd(), &mut st) } != 0 {
        return None;
    }
    Some(Stamp {
        size: st.st_size,
        mtime: (st.st_mtime, st.st_mtime_nsec),
        ctime: (st.st_ctime, st.st_ctime_nsec),
        links: st.st_nlink,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::{ChangeKind, RawPath};

    fn change(path: &std::path::Path) -> Change {
        Change {
            kind: ChangeKind::Modified,
            path: RawPath::from(path.to_path_buf()),
            previous: None,
            is_dir: false,
            root: RawPath::from(path.parent().unwrap().to_path_buf()),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_file_written_while_quiet_is_reported_once_when_the_window_ends() {
        let group = Group::new().expect("fanotify (run as root)");
        let dir = tempfile::tempdir().unwrap();
        let (written, untouched) = (dir.path().join("w"), dir.path().join("u"));
        std::fs::write(&written, "a").unwrap();
        std::fs::write(&untouched, "a").unwrap();
        let mut quiet = Quiet::default();
        quiet.start(&group, change(&written));
        quiet.start(&group, change(&untouched));
        assert!(quiet.contains(&RawPath::from(written.clone())));
        assert!(quiet.expire(&group).is_empty(), "the window is not over yet");

        std::fs::write(&written, "ab").unwrap();
        tokio::time::advance(QUIET).await;
        let reported: Vec<_> = quiet.expire(&group).into_iter().map(|c| c.path).collect();
        assert_eq!(reported, [RawPath::from(written)]);
        assert_eq!(quiet.next_deadline(), None);
    }
}
