//! The event loop: read the fanotify queue, translate, publish.
//!
//! The loop waits for the group's descriptor to become readable, reads until
//! the kernel has nothing more (EAGAIN), then handles the batch in order:
//! map updates, new-directory marks and publishes. A queue overflow, or a
//! buffer the parser cannot follow, means events were lost, so it counts,
//! warns and asks for a full rescan. On shutdown the batch in hand is
//! finished before the loop returns.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
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
use crate::watch::{Action, Change, Watches};

// One read returns at most this many bytes. An event with two handles and
// two names is well under 1 KiB, so this holds dozens at least.
const READ_BUFFER: usize = 64 * 1024;

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
    buffer: Vec<u8>,
    malformed: u64,
}

impl Worker {
    pub fn new(watches: Watches, publisher: Publisher, inventory: mpsc::Sender<Request>) -> Self {
        // Limitation: only this process's own events are recognised; the
        // writes of other fim processes on the node (a hasher in its own
        // pod, say) are reported like any other.
        let own_pid = i32::try_from(std::process::id()).unwrap_or(-1);
        Self { watches, publisher, inventory, own_pid, buffer: vec![0; READ_BUFFER], malformed: 0 }
    }

    /// Runs until `shutdown`, or until the queue cannot be read.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), Error> {
        let group = GroupFd(Arc::clone(&self.watches.group));
        // SAFETY: the descriptor is owned by the group, which `GroupFd` keeps
        // alive (and so open) for as long as the AsyncFd exists.
        let fd = unsafe { AsyncFd::register_with_interest(group, Interest::READABLE) }
            .map_err(|error| Error::Read { source: error.into() })?;
        loop {
            let events = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                ready = fd.readable() => {
                    let mut guard = ready.map_err(|source| Error::Read { source })?;
                    self.read_available(&mut guard)?
                }
            };
            for event in events {
                self.handle(event).await;
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
        if event.pid == self.own_pid {
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
                self.publisher.publish(change, Some(writer)).await;
            }
            Action::WatchNewDir { path, root } => self.watch_new_dir(&path, &root).await,
            Action::MoveDir { from, to } => self.watches.map().move_tree(&from, &to),
            Action::ForgetDir { path } => self.forget(&path),
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
            let change = Change {
                kind: ChangeKind::Created,
                path: entry.path,
                previous: None,
                is_dir: entry.is_dir,
                root: root.clone(),
            };
            self.publisher.publish(change, None).await;
        }
    }

    fn forget(&self, path: &RawPath) {
        let mut map = self.watches.map();
        map.forget_tree(path);
        self.watches.metrics.set_watched_directories(map.len());
    }

    fn request_rescan(&self) {
        // A full queue already holds a rescan that will cover this one.
        let _ = self.inventory.try_send(Request { remark: true, done: None });
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
