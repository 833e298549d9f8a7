//! Walking the watched trees: placing marks, and listing what exists.
//!
//! A walk never follows symbolic links (a link is reported as itself) and
//! skips excluded paths. When it marks, it marks a directory before listing
//! it, so an entry created meanwhile is seen by the listing, by an event, or
//! by both. Requests for a full inventory (start-up, queue overflow, rescan
//! requests) are served one at a time by [`serve`]; requests that arrive
//! during a run are merged into the next one.

use std::io;
use std::ops::ControlFlow;
use std::os::unix::ffi::OsStrExt;

use schemas::{ChangeKind, RawPath};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::Error;
use crate::publish::Publisher;
use crate::watch::{Change, Root, Watches};

/// One entry found by a walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Absolute path.
    pub path: RawPath,
    /// Whether it is a directory (not a link to one).
    pub is_dir: bool,
}

/// Whether a walk places marks on the directories it enters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Marking {
    /// Mark every directory (start-up, new directories, repairs).
    Mark,
    /// Only list.
    ListOnly,
}

/// Walks one root. `emit` sees every entry below a directory root (and the
/// root itself when `include_root`) and may stop the walk. A failure to
/// mark the root, or any ENOSPC, is returned; other directories that cannot
/// be marked or listed are logged, counted and skipped.
pub(crate) fn walk_root(
    watches: &Watches,
    root: &Root,
    marking: Marking,
    emit: &mut dyn FnMut(Entry) -> ControlFlow<()>,
) -> Result<(), Error> {
    if root.is_file {
        if marking == Marking::Mark {
            watches.mark_file_parent(&root.path).map_err(|e| Error::watch(root.path.clone(), e))?;
        }
        let _ = emit(Entry { path: root.path.clone(), is_dir: false });
        return Ok(());
    }
    if emit(Entry { path: root.path.clone(), is_dir: true }).is_break() {
        return Ok(());
    }
    if marking == Marking::Mark {
        watches
            .mark_tree_dir(&root.path, &root.path)
            .map_err(|e| Error::watch(root.path.clone(), e))?;
    }
    walk_below(watches, &root.path, &root.path, marking, emit)
}

/// Walks everything below the directory `dir` of the tree of `root`,
/// marking subdirectories when asked; `dir` itself is neither marked nor
/// emitted.
pub(crate) fn walk_below(
    watches: &Watches,
    dir: &RawPath,
    root: &RawPath,
    marking: Marking,
    emit: &mut dyn FnMut(Entry) -> ControlFlow<()>,
) -> Result<(), Error> {
    let mut pending = vec![dir.clone()];
    while let Some(dir) = pending.pop() {
        for entry in list(&dir) {
            if watches.excludes.contains(&entry.path) {
                continue;
            }
            if entry.is_dir && marking == Marking::Mark && !mark(watches, &entry.path, root)? {
                continue;
            }
            if entry.is_dir {
                pending.push(entry.path.clone());
            }
            if emit(entry).is_break() {
                return Ok(());
            }
        }
    }
    Ok(())
}

// Marks one directory below a root: false when it must be skipped.
fn mark(watches: &Watches, path: &RawPath, root: &RawPath) -> Result<bool, Error> {
    match watches.mark_tree_dir(path, root) {
        Ok(()) => Ok(true),
        Err(error) if error.raw_os_error() == Some(libc::ENOSPC) => {
            Err(Error::watch(path.clone(), error))
        }
        // It vanished or was replaced by a link since it was listed.
        Err(error) if vanished(&error) => Ok(false),
        Err(error) => {
            warn!(path = %path, %error, "cannot watch directory; changes inside are missed");
            watches.metrics.mark_failure();
            Ok(false)
        }
    }
}

fn vanished(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP))
}

// The entries of one directory; an unreadable directory lists as empty.
fn list(dir: &RawPath) -> Vec<Entry> {
    let entries = match std::fs::read_dir(dir.as_path()) {
        Ok(entries) => entries,
        Err(error) => {
            if !vanished(&error) {
                warn!(path = %dir, %error, "cannot list directory");
            }
            return Vec::new();
        }
    };
    let entry = |entry: std::fs::DirEntry| {
        let is_dir = entry.file_type().ok()?.is_dir();
        Some(Entry { path: dir.join(entry.file_name().as_bytes()), is_dir })
    };
    entries.filter_map(|e| e.ok().and_then(entry)).collect()
}

/// A request for an inventory of every root, or of some.
pub(crate) struct Request {
    /// Mark directories again, to repair marks missed while events were
    /// lost (after a queue overflow), or to place them on new roots.
    pub remark: bool,
    /// Only these roots (a container that just started); `None` for all.
    pub roots: Option<Vec<Root>>,
    /// Told when the inventory has been published.
    pub done: Option<oneshot::Sender<()>>,
}

/// Serves inventory requests until shutdown or until every sender is gone.
pub(crate) async fn serve(
    watches: Watches,
    publisher: Publisher,
    mut requests: mpsc::Receiver<Request>,
    shutdown: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => break,
            request = requests.recv() => match request {
                Some(request) => request,
                None => break,
            },
        };
        let mut batch = vec![first];
        while let Ok(request) = requests.try_recv() {
            batch.push(request);
        }
        let marking =
            if batch.iter().any(|r| r.remark) { Marking::Mark } else { Marking::ListOnly };
        let merged = merged_roots(&mut batch);
        watches.metrics.inventory(merged.is_none());
        let roots = merged.unwrap_or_else(|| watches.roots());
        run(&watches, &publisher, roots, marking, &shutdown).await;
        for done in batch.into_iter().filter_map(|request| request.done) {
            let _ = done.send(());
        }
    }
    debug!("inventory task stopped");
}

// The union of the requested roots; `None` when one request asks for all.
fn merged_roots(batch: &mut [Request]) -> Option<Vec<Root>> {
    let mut merged = Vec::new();
    for request in batch.iter_mut() {
        merged.extend(request.roots.take()?);
    }
    Some(merged)
}

// One inventory of the given roots: the walk runs on a blocking thread and hands
// entries over a bounded channel, so memory stays flat on large trees.
async fn run(
    watches: &Watches,
    publisher: &Publisher,
    roots: Vec<Root>,
    marking: Marking,
    stop: &CancellationToken,
) {
    let (sender, mut entries) = mpsc::channel::<(Entry, RawPath)>(1024);
    let walker = watches.clone();
    let walk = tokio::task::spawn_blocking(move || walk_all(&walker, &roots, marking, &sender));

    let mut published: u64 = 0;
    while let Some((entry, root)) = entries.recv().await {
        if stop.is_cancelled() {
            break;
        }
        let change = Change {
            kind: ChangeKind::Inventory,
            path: entry.path,
            previous: None,
            is_dir: entry.is_dir,
            root,
        };
        publisher.publish(change, None).await;
        published += 1;
    }
    // Dropping the receiver stops a walk that is still running.
    drop(entries);
    match walk.await {
        Ok(Ok(())) => info!(entries = published, "inventory published"),
        Ok(Err(error)) => {
            let error = bus::stage::error_chain(&error);
            error!(error, entries = published, "inventory incomplete");
        }
        Err(error) => error!(%error, entries = published, "inventory walk failed"),
    }
}

fn walk_all(
    watches: &Watches,
    roots: &[Root],
    marking: Marking,
    sender: &mpsc::Sender<(Entry, RawPath)>,
) -> Result<(), Error> {
    for root in roots {
        let mut emit = |entry| match sender.blocking_send((entry, root.path.clone())) {
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => ControlFlow::Break(()),
        };
        match walk_root(watches, root, marking, &mut emit) {
            Err(error @ Error::MarkLimit { .. }) => return Err(error),
            // A container's root can vanish while its container stops.
            Err(error) => {
                let error = bus::stage::error_chain(&error);
                warn!(root = %root.path, error, "cannot walk watch root; skipped");
            }
            Ok(()) => {}
        }
        if sender.is_closed() {
            break;
        }
    }
    Ok(())
}
