//! Finding running containers by polling /proc, without any runtime API.
//!
//! Each poll lists the pids in /proc and looks only at pids it has not
//! seen: its cgroup names the container, its mountinfo the root
//! filesystem and volumes, the runtime's state files the names. A
//! container is gone when its last process is. A pid outside any container
//! is looked at again while it is young, because runtimes move a new
//! process into the container's cgroup only after starting it, and a
//! process still sharing this process's root has not entered its
//! container yet.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use schemas::{ContainerInfo, ContainerRoot, RawPath};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::Origin;
use super::cgroup::{self, Runtime};
use super::metadata::{self, StatePaths};
use super::mountinfo::{self, Mount};
use crate::inventory::Request;
use crate::watch::{Root, Watches};

// How long a pid outside containers is looked at again: a runtime moves
// its new process into the container's cgroup within milliseconds.
const YOUNG: Duration = Duration::from_secs(2);
/// How often /proc is polled: a container is watched well within a second
/// of its start, and a poll that finds nothing new costs one directory
/// listing of /proc.
pub(crate) const POLL: Duration = Duration::from_millis(250);

/// One watch root of a container, with what it belongs to.
#[derive(Debug, Clone)]
pub(crate) struct ContainerRootWatch {
    /// The directory on the node to watch.
    pub root: Root,
    /// Its container and place inside it.
    pub origin: Origin,
}

/// A container seen for the first time.
#[derive(Debug, Clone)]
pub(crate) struct Started {
    /// Identity of the container.
    pub info: ContainerInfo,
    /// The runtime family its cgroup names.
    pub runtime: Runtime,
    /// Its roots: the root filesystem (when found) and volumes.
    pub roots: Vec<ContainerRootWatch>,
    /// The root filesystem is not on overlay: only what could be marked is
    /// watched, and the image's version of a path is unknown.
    pub degraded: bool,
}

/// What changed since the previous poll.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    /// Containers that appeared.
    pub started: Vec<Started>,
    /// Containers whose last process exited.
    pub stopped: Vec<Stopped>,
}

/// A container whose last process exited.
#[derive(Debug)]
pub(crate) struct Stopped {
    /// Its id.
    pub id: String,
    /// The roots that were watched for it.
    pub roots: Vec<RawPath>,
    /// Whether it was watched degraded.
    pub degraded: bool,
}

// What is known about one pid.
enum Seen {
    /// In no container; looked at again until `until`.
    Outside { until: Instant },
    /// In this container.
    Inside(String),
}

struct Tracked {
    pids: HashSet<u32>,
    roots: Vec<RawPath>,
    degraded: bool,
    ignored: bool,
}

/// The state of discovery between polls.
pub(crate) struct Discovery {
    proc_root: PathBuf,
    state: StatePaths,
    watch_ignored: bool,
    pids: HashMap<u32, Seen>,
    containers: HashMap<String, Tracked>,
}

impl Discovery {
    /// Discovery reading `proc_root` (normally `/proc`) and runtime state
    /// under `state`.
    pub fn new(proc_root: PathBuf, state: StatePaths) -> Self {
        let (pids, containers) = (HashMap::new(), HashMap::new());
        Self { proc_root, state, watch_ignored: false, pids, containers }
    }

    /// Also watch containers labelled [`crate::config::IGNORE_LABEL`].
    pub fn watch_ignored(mut self, watch: bool) -> Self {
        self.watch_ignored = watch;
        self
    }

    /// Number of containers currently known.
    pub fn len(&self) -> usize {
        self.containers.len()
    }

    /// One pass over /proc.
    pub fn poll(&mut self) -> Changes {
        let now = Instant::now();
        let live = self.list_pids();
        let mut changes = Changes::default();
        for &pid in &live {
            let recheck = match self.pids.get(&pid) {
                None => true,
                Some(Seen::Outside { until }) => *until > now,
                Some(Seen::Inside(_)) => false,
            };
            if recheck {
                self.look_at(pid, now, &mut changes);
            }
        }
        self.drop_exited(&live, &mut changes);
        changes
    }

    fn list_pids(&self) -> HashSet<u32> {
        let Ok(entries) = std::fs::read_dir(&self.proc_root) else { return HashSet::new() };
        entries
            .filter_map(Result::ok)
            .filter_map(|entry| entry.file_name().to_str().and_then(|name| name.parse().ok()))
            .collect()
    }

    fn look_at(&mut self, pid: u32, now: Instant, changes: &mut Changes) {
        let dir = self.proc_root.join(pid.to_string());
        let cgroup = std::fs::read_to_string(dir.join("cgroup")).unwrap_or_default();
        let Some((id, runtime)) = cgroup::container_id(&cgroup) else {
            let until = match self.pids.get(&pid) {
                Some(Seen::Outside { until }) => *until,
                _ => now + YOUNG,
            };
            self.pids.insert(pid, Seen::Outside { until });
            return;
        };
        if let Some(tracked) = self.containers.get_mut(&id) {
            tracked.pids.insert(pid);
            self.pids.insert(pid, Seen::Inside(id));
            return;
        }
        // Not inside its root filesystem yet: look again next poll.
        if self.shares_our_root(&dir) {
            return;
        }
        let Some(mut started) = self.inspect(&dir, &id, runtime) else { return };
        // An ignored container is tracked with no roots, so it is neither
        // watched nor looked at again.
        let ignored = !self.watch_ignored && is_ignored(&started.info);
        if ignored {
            debug!(container = %id, "container labelled to be ignored");
            started.roots.clear();
        }
        let roots = started.roots.iter().map(|r| r.root.path.clone()).collect();
        let degraded = started.degraded;
        let tracked = Tracked { pids: HashSet::from([pid]), roots, degraded, ignored };
        self.containers.insert(id.clone(), tracked);
        self.pids.insert(pid, Seen::Inside(id));
        if !ignored {
            changes.started.push(started);
        }
    }

    // A runtime moves its init process into the container's cgroup before
    // that process pivots into the container's root, so for a moment the
    // process still has the root of its parent (the runtime, on the node's
    // root) or ours. Its mounts then are the node's, not the container's.
    fn shares_our_root(&self, dir: &Path) -> bool {
        let identity = |path: PathBuf| std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
        let theirs = identity(dir.join("root"));
        let parent = parent_pid(dir).map(|ppid| identity(self.proc_root.join(ppid).join("root")));
        theirs.is_none()
            || theirs == identity(self.proc_root.join("self/root"))
            || parent.is_some_and(|parent| parent == theirs)
    }

    fn drop_exited(&mut self, live: &HashSet<u32>, changes: &mut Changes) {
        let exited: Vec<u32> =
            self.pids.keys().filter(|pid| !live.contains(pid)).copied().collect();
        for pid in exited {
            let Some(Seen::Inside(id)) = self.pids.remove(&pid) else { continue };
            let Some(tracked) = self.containers.get_mut(&id) else { continue };
            tracked.pids.remove(&pid);
            if tracked.pids.is_empty()
                && let Some(tracked) = self.containers.remove(&id)
                && !tracked.ignored
            {
                let Tracked { roots, degraded, .. } = tracked;
                changes.stopped.push(Stopped { id, roots, degraded });
            }
        }
    }

    // Reads what the container's first process shows; `None` when it
    // exited meanwhile.
    fn inspect(&self, dir: &Path, id: &str, runtime: Runtime) -> Option<Started> {
        let mounts = mountinfo::parse(&std::fs::read(dir.join("mountinfo")).ok()?);
        let own = std::fs::read(self.proc_root.join("self/mountinfo")).unwrap_or_default();
        let own = mountinfo::parse(&own);
        let info = metadata::describe(&self.state, id);
        let root = mountinfo::root_mount(&mounts)?;
        let (fs_root, degraded) = root_watch(root, &own, &info);
        let volumes = mountinfo::volumes(&mounts).into_iter().filter_map(|mount| {
            let path = mountinfo::host_path(mount, &own)?;
            Some(watch(path, &info, mount.mount_point.clone(), None))
        });
        let roots: Vec<_> =
            fs_root.into_iter().chain(volumes).filter(|r| exists(&r.root)).collect();
        debug!(container = id, roots = roots.len(), degraded, "container inspected");
        Some(Started { info, runtime, roots, degraded })
    }
}

// The parent pid from `/proc/<pid>/status`.
fn parent_pid(dir: &Path) -> Option<String> {
    let status = std::fs::read_to_string(dir.join("status")).ok()?;
    let line = status.lines().find_map(|line| line.strip_prefix("PPid:"))?;
    Some(line.trim().to_owned())
}

fn is_ignored(info: &ContainerInfo) -> bool {
    let label = crate::config::IGNORE_LABEL;
    [info.labels.get(label), info.annotations.get(label)].iter().flatten().any(|v| *v == "true")
}

// The root filesystem: the overlay upper directory, or else the mounted
// directory itself when it can be found on this node.
fn root_watch(
    root: &Mount,
    own: &[Mount],
    info: &ContainerInfo,
) -> (Option<ContainerRootWatch>, bool) {
    if let Some(overlay) = mountinfo::overlay(root) {
        let lower_dirs = overlay.lowers.iter().map(canonical).collect();
        let layers = ContainerRoot { upper_dir: overlay.upper.clone(), lower_dirs };
        let slash = RawPath::from("/");
        return (Some(watch(overlay.upper, info, slash, Some(layers))), false);
    }
    let path = mountinfo::host_path(root, own);
    // The node's own root is not a container's: watching it would watch
    // everything.
    let path = path.filter(|p| p.as_bytes() != b"/");
    warn!(
        container = %info.id,
        fs_type = %root.fs_type,
        watched = path.is_some(),
        "container root filesystem is not overlay; watched without image layers (degraded)"
    );
    (path.map(|p| watch(p, info, RawPath::from("/"), None)), true)
}

fn watch(
    path: RawPath,
    info: &ContainerInfo,
    mount_point: RawPath,
    layers: Option<ContainerRoot>,
) -> ContainerRootWatch {
    let is_file = std::fs::symlink_metadata(path.as_path()).is_ok_and(|m| m.is_file());
    let origin = Origin { container: info.clone(), mount_point, layers };
    ContainerRootWatch { root: Root { path, is_file }, origin }
}

fn exists(root: &Root) -> bool {
    std::fs::symlink_metadata(root.path.as_path()).is_ok_and(|m| m.is_dir() || m.is_file())
}

// Docker names its layers through short symlinks (`overlay2/l/…`); the
// hasher gets the directories themselves.
fn canonical(path: &RawPath) -> RawPath {
    std::fs::canonicalize(path.as_path()).map(RawPath::from).unwrap_or_else(|_| path.clone())
}

/// Registers the roots of a container that started: origins first, so the
/// first event under a root already finds its container. Returns the roots
/// to mark and inventory.
pub(crate) fn register(watches: &Watches, started: &Started) -> Vec<Root> {
    watches.metrics.container_started(started.degraded);
    info!(
        container = %started.info.id,
        name = started.info.name.as_deref().unwrap_or_default(),
        image = started.info.image.as_deref().unwrap_or_default(),
        runtime = ?started.runtime,
        roots = started.roots.len(),
        "container seen"
    );
    for watch in &started.roots {
        watches.origins.insert(watch.root.path.clone(), watch.origin.clone());
        watches.add_root(watch.root.clone());
    }
    started.roots.iter().map(|watch| watch.root.clone()).collect()
}

/// Releases the marks and state of a container that stopped.
pub(crate) fn unregister(watches: &Watches, stopped: &Stopped) {
    for root in &stopped.roots {
        watches.remove_root(root);
    }
    watches.metrics.container_stopped(stopped.degraded);
    info!(container = %stopped.id, "container gone");
}

/// Polls for containers every [`POLL`] until shutdown; each new container
/// is registered and queued for marking and inventory.
pub(crate) async fn serve(
    mut discovery: Discovery,
    watches: Watches,
    inventory: mpsc::Sender<Request>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let polled = tokio::task::spawn_blocking(move || {
            let changes = discovery.poll();
            (discovery, changes)
        });
        let Ok((returned, changes)) = polled.await else {
            error!("container discovery failed; new containers are no longer watched");
            return;
        };
        discovery = returned;
        apply(&watches, &inventory, changes).await;
    }
    debug!("container discovery stopped");
}

async fn apply(watches: &Watches, inventory: &mpsc::Sender<Request>, changes: Changes) {
    for stopped in changes.stopped {
        let watches = watches.clone();
        // Unmarking opens every directory: not on the runtime's threads.
        let _ = tokio::task::spawn_blocking(move || unregister(&watches, &stopped)).await;
    }
    let mut roots = Vec::new();
    for started in &changes.started {
        roots.extend(register(watches, started));
    }
    if !roots.is_empty() {
        // Waits for room rather than dropping: a new container must be marked.
        let request = Request { remark: true, roots: Some(roots), done: None };
        let _ = inventory.send(request).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "1763e7842c9bdc4661f71a0f744bdcd94badc4eb345ee0843117511aa5f367df";

    // A fake /proc with `self` and one containerised pid whose overlay
    // upper directory is a real directory.
    fn fake_proc(dir: &Path) -> (PathBuf, PathBuf) {
        let proc_root = dir.join("proc");
        let upper = dir.join("upper");
        let container_root = dir.join("merged");
        for path in
            [proc_root.join("self"), proc_root.join("42"), upper.clone(), container_root.clone()]
        {
            std::fs::create_dir_all(path).unwrap();
        }
        std::os::unix::fs::symlink("/", proc_root.join("self/root")).unwrap();
        std::os::unix::fs::symlink(&container_root, proc_root.join("42/root")).unwrap();
        std::fs::write(proc_root.join("self/mountinfo"), "").unwrap();
        std::fs::write(
            proc_root.join("42/cgroup"),
            format!("0::/system.slice/docker-{ID}.scope\n"),
        )
        .unwrap();
        let mountinfo = format!(
            "1 0 0:40 / / rw - overlay overlay rw,lowerdir=/l1:/l2,upperdir={},workdir=/w\n",
            upper.display()
        );
        std::fs::write(proc_root.join("42/mountinfo"), mountinfo).unwrap();
        (proc_root, upper)
    }

    #[test]
    fn a_container_is_found_once_and_dropped_with_its_last_process() {
        let dir = tempfile::tempdir().unwrap();
        let (proc_root, upper) = fake_proc(dir.path());
        let state = StatePaths { docker: dir.path().join("none"), ..StatePaths::default() };
        let mut discovery = Discovery::new(proc_root.clone(), state);

        let changes = discovery.poll();
        assert_eq!(changes.started.len(), 1);
        let started = &changes.started[0];
        assert_eq!((started.info.id.as_str(), started.runtime), (ID, Runtime::Docker));
        assert!(!started.degraded);
        let watch = &started.roots[0];
        assert_eq!(watch.root.path, RawPath::from(upper));
        let layers = watch.origin.layers.as_ref().expect("overlay layers");
        assert_eq!(layers.lower_dirs, [RawPath::from("/l1"), RawPath::from("/l2")]);
        assert!(discovery.poll().started.is_empty(), "a known pid is not looked at again");

        std::fs::remove_dir_all(proc_root.join("42")).unwrap();
        let changes = discovery.poll();
        assert_eq!(changes.stopped.len(), 1);
        assert_eq!(changes.stopped[0].id, ID);
        assert_eq!(discovery.len(), 0);
    }

    #[test]
    fn a_process_still_in_our_root_is_looked_at_again() {
        let dir = tempfile::tempdir().unwrap();
        let (proc_root, _) = fake_proc(dir.path());
        std::fs::remove_file(proc_root.join("42/root")).unwrap();
        std::os::unix::fs::symlink("/", proc_root.join("42/root")).unwrap();
        let mut discovery = Discovery::new(proc_root.clone(), StatePaths::default());
        assert!(discovery.poll().started.is_empty());

        std::fs::remove_file(proc_root.join("42/root")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("merged"), proc_root.join("42/root")).unwrap();
        assert_eq!(discovery.poll().started.len(), 1);
    }
}
