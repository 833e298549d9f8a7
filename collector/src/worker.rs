//! The event loop: read the fanotify queue, translate, publish.
//!
//! The loop waits for the group's descriptor to become readable, reads until
//! the kernel has nothing more (EAGAIN), then handles the batch in order:
//! map updates, new-directory marks and publishes. A queue overflow, or a
//! buffer the parser cannot follow, means events were lost, so it counts,
//! warns and asks for a full rescan. On shutdown the batch in hand is
//! finished before the loop returns.

use std::collections::HashSet;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use schemas::{ChangeKind, ProcessInfo, RawPath};
use tokio::io::Interest;
use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, trace, warn};

use crate::Error;
use crate::fanotify::parser::{self, KernelEvent};
use crate::fanotify::{Group, mask};
use crate::inventory::{self, Entry, Marking, Request};
use crate::metrics::IgnoreReason;
use crate::process;
use crate::publish::Publisher;
use crate::quiet::Quiet;
use crate::watch::{Action, Change, Watches};

// One read returns at most this many bytes. An event with two handles and
// two names is well under 1 KiB, so this holds dozens at least.
const READ_BUFFER: usize = 64 * 1024;
// Pause after each batch: events that stay unread this long are merged by
// the kernel (one per file and kind), which turns a write loop into a few
// events per file per pause. It adds at most this much latency; a queue
// that fills meanwhile overflows into a rescan, never a silent loss.
const COALESCE: std::time::Duration = std::time::Duration::from_millis(100);
// Pids known not to run fim are remembered up to this many, then forgotten
// all at once; a cache miss costs one stat of /proc/<pid>/exe.
const OTHER_PIDS: usize = 4096;

// The group's descriptor, shared with the marking code.
struct GroupFd(Arc<Group>);

impl AsRawFd for GroupFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Reads and handles kernel events until shutdown.
pub(crate) struct Worker {
    watches: Watches,
    publisher: Publisher,
    inventory: mpsc::Sender<Request>,
    own_pid: i32,
    own_exe: Option<(u64, u64)>,
    other_pids: HashSet<i32>,
    quiet: Quiet,
    buffer: Vec<u8>,
    malformed: u64,
}

impl Worker {
    pub fn new(watches: Watches, publisher: Publisher, inventory: mpsc::Sender<Request>) -> Self {
        let own_pid = i32::try_from(std::process::id()).unwrap_or(-1);
        Self {
            watches,
            publisher,
            inventory,
            own_pid,
            own_exe: exe_identity("self"),
            other_pids: HashSet::new(),
            quiet: Quiet::default(),
            buffer: vec![0; READ_BUFFER],
            malformed: 0,
        }
    }

    // Whether a pid is this process or another fim process (a hasher in its
    // own pod, say): one whose executable is the same file as ours. Only
    // negative answers are cached, so a reused pid is never wrongly ignored.
    // Limitation: a fim binary copied elsewhere (another inode) is not
    // recognised.
    fn is_fim(&mut self, pid: i32) -> bool {
        if pid == self.own_pid {
            return true;
        }
        if self.own_exe.is_none() || self.other_pids.contains(&pid) {
            return false;
        }
        if exe_identity(&pid.to_string()) == self.own_exe {
            return true;
        }
        if self.other_pids.len() >= OTHER_PIDS {
            self.other_pids.clear();
        }
        self.other_pids.insert(pid);
        false
    }

    /// Runs until `shutdown`, or until the queue cannot be read.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), Error> {
        let group = GroupFd(Arc::clone(&self.watches.group));
        // SAFETY: the descriptor is owned by the group, which `GroupFd` keeps
        // alive (and so open) for as long as the AsyncFd exists.
        let fd = unsafe { AsyncFd::register_with_interest(group, Interest::READABLE) }
            .map_err(|error| Error::Read { source: error.into() })?;
        loop {
            let quiet_ends = self.quiet.next_deadline();
            let events = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = sleep_until(quiet_ends) => {
                    self.end_quiet().await;
                    continue;
                }
                ready = fd.readable() => {
                    let mut guard = ready.map_err(|source| Error::Read { source })?;
                    self.read_available(&mut guard)?
                }
            };
            for event in events {
                self.handle(event).await;
            }
            // Let the kernel merge repeated writes to the same files while
            // their events are unread, instead of reading each one.
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(COALESCE) => {}
            }
        }
        Ok(())
    }

    // Reads until EAGAIN and parses everything read.
    fn read_available(
        &mut self,
        guard: &mut AsyncFdReadyGuard<'_, GroupFd>,
    ) -> Result<Vec<KernelEvent>, Error> {
        let mut events = Vec::new();
        loop {
            match self.watches.group.read(&mut self.buffer) {
                Ok(0) => break,
                Ok(len) => self.parse(len, &mut events),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    guard.clear_ready();
                    break;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(Error::Read { source }),
            }
        }
        Ok(events)
    }

    fn parse(&mut self, len: usize, events: &mut Vec<KernelEvent>) {
        for parsed in parser::events(&self.buffer[..len]) {
            match parsed {
                Ok(event) => {
                    close_event_fd(&event);
                    events.push(event);
                }
                Err(error) => {
                    // The rest of this read is unreadable: treat it as lost.
                    error!(%error, "fanotify buffer not understood; rescanning");
                    self.watches.metrics.malformed();
                    self.request_rescan();
                }
            }
        }
    }

    async fn handle(&mut self, event: KernelEvent) {
        if event.mask & mask::Q_OVERFLOW != 0 {
            warn!("fanotify queue overflowed, events were lost; rescanning");
            self.watches.metrics.overflow();
            self.request_rescan();
            return;
        }
        if self.is_fim(event.pid) {
            self.watches.metrics.ignored(IgnoreReason::OwnProcess);
            return;
        }
        let actions = match &event.records {
            Ok(records) => self.watches.map().translate(&event, records, &self.watches.excludes),
            Err(error) => {
                self.malformed += 1;
                self.watches.metrics.malformed();
                // A systematic mismatch would repeat on every event: warn on
                // the 1st, 2nd, 4th, 8th... occurrence only.
                if self.malformed.is_power_of_two() {
                    let count = self.malformed;
                    warn!(%error, mask = event.mask, count, "fanotify event record not understood");
                }
                return;
            }
        };
        trace!(mask = event.mask, pid = event.pid, actions = actions.len(), "fanotify event");
        let mut process = None;
        for action in actions {
            self.apply(action, event.pid, &mut process).await;
        }
    }

    async fn apply(&mut self, action: Action, pid: i32, process: &mut Option<ProcessInfo>) {
        match action {
            Action::Report(change) => {
                let writer = process.get_or_insert_with(|| describe(pid)).clone();
                let quiet = change.kind == ChangeKind::Modified && !change.is_dir;
                let reported = quiet.then(|| change.clone());
                self.publisher.publish(change, Some(writer)).await;
                if let Some(change) = reported {
                    self.quiet.start(&self.watches.group, change);
                }
            }
            Action::WatchNewDir { path, root } => self.watch_new_dir(&path, &root).await,
            Action::MoveDir { from, to } => self.watches.map().move_tree(&from, &to),
            Action::ForgetDir { path } => self.forget(&path),
            // A container's root goes when the container is removed;
            // discovery reports the container gone.
            Action::RootLost { path } if self.watches.origins.get(&path).is_some() => {
                self.forget(&path);
            }
            Action::RootLost { path } => {
                warn!(root = %path, "watch root deleted or moved away; no longer watched");
                let change = deleted_dir(path.clone());
                self.publisher.publish(change, Some(describe(pid))).await;
                self.forget(&path);
            }
            Action::Ignore(reason) => self.watches.metrics.ignored(reason),
        }
    }

    // Marks a directory that appeared, then reports what was already in it:
    // entries made before the mark produced no event of their own.
    async fn watch_new_dir(&mut self, path: &RawPath, root: &RawPath) {
        let entries = match mark_and_list(&self.watches, path, root) {
            Ok(entries) => entries,
            Err(error) => {
                let error = bus::stage::error_chain(&error);
                error!(path = %path, error, "cannot watch new directory; changes inside are missed");
                self.watches.metrics.mark_failure();
                return;
            }
        };
        for entry in entries {
            let written = !entry.is_dir && has_content(&entry.path);
            let change = Change {
                kind: ChangeKind::Created,
                path: entry.path,
                previous: None,
                is_dir: entry.is_dir,
                root: root.clone(),
            };
            // Its writes happened before the mark, unseen: say so, so that a
            // file written at once into a fresh (or copied-up) directory is
            // reported as written, not only as present.
            if written {
                let modified = Change { kind: ChangeKind::Modified, ..change.clone() };
                self.publisher.publish(change, None).await;
                self.publisher.publish(modified, None).await;
            } else {
                self.publisher.publish(change, None).await;
            }
        }
    }

    // Reports the files written while their writes were ignored, and
    // ignores their writes again.
    async fn end_quiet(&mut self) {
        for change in self.quiet.expire(&self.watches.group) {
            self.publisher.publish(change.clone(), None).await;
            self.quiet.start(&self.watches.group, change);
        }
    }

    fn forget(&self, path: &RawPath) {
        let mut map = self.watches.map();
        map.forget_tree(path);
        self.watches.metrics.set_watched_directories(map.len());
    }

    fn request_rescan(&self) {
        // A full queue already holds a rescan that will cover this one.
        let _ = self.inventory.try_send(Request { remark: true, roots: None, done: None });
    }
}

// Synchronous, on the event loop's thread: a new directory is usually small,
// and its marks must be in place before later events are read.
fn mark_and_list(watches: &Watches, path: &RawPath, root: &RawPath) -> Result<Vec<Entry>, Error> {
    if let Err(error) = watches.mark_tree_dir(path, root) {
        let gone = matches!(error.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP));
        return if gone { Ok(Vec::new()) } else { Err(Error::watch(path.clone(), error)) };
    }
    let mut entries = Vec::new();
    inventory::walk_below(watches, path, root, Marking::Mark, &mut |entry| {
        entries.push(entry);
        std::ops::ControlFlow::Continue(())
    })?;
    Ok(entries)
}

// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

// A regular file with data (not a whiteout, link or empty file).
fn has_content(path: &RawPath) -> bool {
    std::fs::symlink_metadata(path.as_path()).is_ok_and(|meta| meta.is_file() && meta.len() > 0)
}

// Device and inode of a process's executable.
fn exe_identity(pid: &str) -> Option<(u64, u64)> {
    let meta = std::fs::metadata(format!("/proc/{pid}/exe")).ok()?;
    Some((meta.dev(), meta.ino()))
}

fn deleted_dir(path: RawPath) -> Change {
    Change { kind: ChangeKind::Deleted, root: path.clone(), path, previous: None, is_dir: true }
}

fn describe(pid: i32) -> ProcessInfo {
    process::describe(u32::try_from(pid).unwrap_or(0))
}

// With file-id reporting the kernel sends no descriptors, but a descriptor
// it does send belongs to us and must not leak.
fn close_event_fd(event: &KernelEvent) {
    if let Some(fd) = event.fd.filter(|fd| *fd >= 0) {
        // SAFETY: the kernel opened this descriptor for us; nothing else owns it.
        unsafe { libc::close(fd) };
    }
}
