//! The watched directories and the translation of kernel events into
//! changes of paths.
//!
//! fanotify names a directory by its file id, not its path, so the collector
//! keeps a map from the id of every marked directory to its current absolute
//! path. An event's path is that path plus the event's entry name. The map
//! follows renames and deletions of directories as their events are read;
//! an id that is not in the map belongs to something outside the watched
//! trees, and its event is ignored and counted.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use schemas::{ChangeKind, RawPath};

use crate::Error;
use crate::containers::Origins;
use crate::fanotify::parser::InfoRecord;
use crate::fanotify::{self, FileId, Group, KernelEvent, RecordKind, mask};
use crate::metrics::{IgnoreReason, Metrics};

/// One configured watch root, resolved to an absolute, symlink-free path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Root {
    /// The root's path.
    pub path: RawPath,
    /// A single regular file rather than a directory tree.
    pub is_file: bool,
}

/// Resolves the configured roots; they were validated to exist.
pub(crate) fn resolve_roots(watch: &[PathBuf]) -> Result<Vec<Root>, Error> {
    watch.iter().map(|path| resolve_root(path)).collect()
}

fn resolve_root(path: &std::path::Path) -> Result<Root, Error> {
    let invalid = |error: io::Error| Error::InvalidConfig {
        field: "watch",
        value: path.display().to_string(),
        reason: format!("cannot be resolved: {error}"),
    };
    let resolved = std::fs::canonicalize(path).map_err(invalid)?;
    let is_file = std::fs::metadata(&resolved).map_err(invalid)?.is_file();
    Ok(Root { path: RawPath::from(resolved), is_file })
}

/// Paths whose changes are never reported, with everything below them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Excludes(Vec<RawPath>);

impl Excludes {
    /// Resolves each path like the roots when it exists, so that both are
    /// compared in the same form; a path that does not exist yet is only
    /// made absolute.
    pub fn resolve(paths: &[PathBuf]) -> Self {
        let resolve = |path: &PathBuf| {
            std::fs::canonicalize(path)
                .or_else(|_| std::path::absolute(path))
                .unwrap_or_else(|_| path.clone())
        };
        Self(paths.iter().map(|path| RawPath::from(resolve(path))).collect())
    }

    /// Whether `path` is an excluded path or lies below one.
    pub fn contains(&self, path: &RawPath) -> bool {
        self.0.iter().any(|excluded| is_under(path.as_bytes(), excluded.as_bytes()))
    }
}

/// Whether `path` equals `prefix` or lies below it, by whole components.
pub(crate) fn is_under(path: &[u8], prefix: &[u8]) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest[0] == b'/' || prefix.ends_with(b"/"),
        None => false,
    }
}

/// What is watched inside one marked directory.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Scope {
    /// Everything, as part of the tree of `root`.
    Tree { root: RawPath },
    /// Only these names: the directory holds single-file roots.
    Files(BTreeSet<Vec<u8>>),
}

#[derive(Debug, Clone)]
struct WatchedDir {
    path: RawPath,
    scope: Scope,
}

/// Marked directories by file id.
#[derive(Debug, Default)]
pub(crate) struct DirMap {
    dirs: HashMap<FileId, WatchedDir>,
}

/// A change to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    /// What happened.
    pub kind: ChangeKind,
    /// The path it happened to.
    pub path: RawPath,
    /// The old path of a rename.
    pub previous: Option<RawPath>,
    /// Whether the path is a directory.
    pub is_dir: bool,
    /// The watch root the path belongs to.
    pub root: RawPath,
}

/// What the worker does about one kernel event, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Publish a change.
    Report(Change),
    /// Mark a directory that appeared in a tree and report its content.
    WatchNewDir { path: RawPath, root: RawPath },
    /// A directory moved inside the watched trees.
    MoveDir { from: RawPath, to: RawPath },
    /// A directory left the watched trees.
    ForgetDir { path: RawPath },
    /// A watch root itself was deleted or moved away.
    RootLost { path: RawPath },
    /// Nothing to report.
    Ignore(IgnoreReason),
}

// Where an (id, name) pair of an event points.
enum Lookup {
    Found(Located),
    Unknown,
    Sibling,
    Excluded,
}

struct Located {
    path: RawPath,
    root: RawPath,
}

impl Lookup {
    fn reason(&self) -> IgnoreReason {
        match self {
            Self::Found(_) | Self::Unknown => IgnoreReason::UnknownDir,
            Self::Sibling => IgnoreReason::UnwatchedSibling,
            Self::Excluded => IgnoreReason::Excluded,
        }
    }
}

impl DirMap {
    /// Records a directory of the tree of `root`, or its new path.
    pub fn insert_tree(&mut self, id: FileId, path: RawPath, root: RawPath) {
        self.dirs.insert(id, WatchedDir { path, scope: Scope::Tree { root } });
    }

    /// Records the parent directory of a single-file root. A directory that
    /// is already watched as part of a tree stays so.
    pub fn insert_file_parent(&mut self, id: FileId, path: RawPath, name: Vec<u8>) {
        let entry = self
            .dirs
            .entry(id)
            .or_insert_with(|| WatchedDir { path, scope: Scope::Files(BTreeSet::new()) });
        if let Scope::Files(names) = &mut entry.scope {
            names.insert(name);
        }
    }

    /// Number of marked directories.
    pub fn len(&self) -> usize {
        self.dirs.len()
    }

    /// Rewrites the paths of `from` and of every directory below it.
    pub fn move_tree(&mut self, from: &RawPath, to: &RawPath) {
        for dir in self.dirs.values_mut() {
            if let Some(rest) = dir.path.as_bytes().strip_prefix(from.as_bytes())
                && (rest.is_empty() || rest[0] == b'/')
            {
                let mut moved = to.as_bytes().to_vec();
                moved.extend_from_slice(rest);
                dir.path = RawPath::from_bytes(moved);
            }
        }
    }

    /// The paths of `path` and every marked directory below it.
    pub fn paths_under(&self, path: &RawPath) -> Vec<RawPath> {
        let below = |dir: &&WatchedDir| is_under(dir.path.as_bytes(), path.as_bytes());
        self.dirs.values().filter(below).map(|dir| dir.path.clone()).collect()
    }

    /// Drops `path` and every directory below it.
    pub fn forget_tree(&mut self, path: &RawPath) {
        self.dirs.retain(|_, dir| !is_under(dir.path.as_bytes(), path.as_bytes()));
    }

    /// What to do about one event whose records parsed.
    pub fn translate(
        &self,
        event: &KernelEvent,
        records: &[InfoRecord],
        excludes: &Excludes,
    ) -> Vec<Action> {
        let is_dir = event.mask & mask::ONDIR != 0;
        if event.mask & mask::RENAME != 0 {
            return self.translate_rename(records, is_dir, excludes);
        }
        let Some((id, name)) = target(records) else {
            return vec![Action::Ignore(IgnoreReason::UnknownDir)];
        };
        let on_self = name.is_empty() || name == b".";
        match self.locate(id, name, excludes) {
            Lookup::Found(at) if on_self => directory_changes(event.mask, at),
            Lookup::Found(at) => entry_changes(event.mask, is_dir, at),
            other => vec![Action::Ignore(other.reason())],
        }
    }

    fn translate_rename(
        &self,
        records: &[InfoRecord],
        is_dir: bool,
        excludes: &Excludes,
    ) -> Vec<Action> {
        let side = |kind| {
            let record = records.iter().find(|r| r.kind == kind);
            record.map_or(Lookup::Unknown, |r| {
                self.locate(&r.id, r.name.as_deref().unwrap_or_default(), excludes)
            })
        };
        match (side(RecordKind::OldDirName), side(RecordKind::NewDirName)) {
            (Lookup::Found(old), Lookup::Found(new)) => {
                let mut actions = Vec::new();
                if is_dir {
                    let (from, to) = (old.path.clone(), new.path.clone());
                    actions.push(Action::MoveDir { from, to });
                }
                let change = change(ChangeKind::Renamed, new, is_dir);
                actions.push(Action::Report(Change { previous: Some(old.path), ..change }));
                actions
            }
            (Lookup::Found(old), _) => entry_changes(mask::DELETE, is_dir, old),
            (_, Lookup::Found(new)) => entry_changes(mask::CREATE, is_dir, new),
            (Lookup::Excluded, _) | (_, Lookup::Excluded) => {
                vec![Action::Ignore(IgnoreReason::Excluded)]
            }
            (old, _) => vec![Action::Ignore(old.reason())],
        }
    }

    fn locate(&self, id: &FileId, name: &[u8], excludes: &Excludes) -> Lookup {
        let Some(dir) = self.dirs.get(id) else { return Lookup::Unknown };
        let on_self = name.is_empty() || name == b".";
        let (path, root) = match &dir.scope {
            Scope::Tree { root } if on_self => (dir.path.clone(), root.clone()),
            Scope::Tree { root } => (dir.path.join(name), root.clone()),
            Scope::Files(names) if !on_self && names.contains(name) => {
                let path = dir.path.join(name);
                (path.clone(), path)
            }
            Scope::Files(_) => return Lookup::Sibling,
        };
        if excludes.contains(&path) {
            return Lookup::Excluded;
        }
        Lookup::Found(Located { path, root })
    }
}

// The directory and name an event is about; an object record alone names a
// directory itself.
fn target(records: &[InfoRecord]) -> Option<(&FileId, &[u8])> {
    let dir = records.iter().find(|r| matches!(r.kind, RecordKind::DirName | RecordKind::Dir));
    let record = dir.or_else(|| records.iter().find(|r| r.kind == RecordKind::Fid))?;
    Some((&record.id, record.name.as_deref().unwrap_or(b".")))
}

fn change(kind: ChangeKind, at: Located, is_dir: bool) -> Change {
    Change { kind, path: at.path, previous: None, is_dir, root: at.root }
}

// Changes of an entry inside a marked directory. Merged bits are reported in
// the order they can happen: creation, writes, metadata, deletion.
fn entry_changes(bits: u64, is_dir: bool, at: Located) -> Vec<Action> {
    let mut actions = Vec::new();
    let mut report = |kind| actions.push(Action::Report(change(kind, clone(&at), is_dir)));
    if bits & mask::CREATE != 0 {
        report(ChangeKind::Created);
    }
    if bits & mask::CLOSE_WRITE != 0 {
        report(ChangeKind::Modified);
    }
    if bits & mask::ATTRIB != 0 {
        report(ChangeKind::Attributes);
    }
    if bits & mask::DELETE != 0 {
        report(ChangeKind::Deleted);
    }
    if is_dir && bits & mask::CREATE != 0 && bits & mask::DELETE == 0 {
        actions.push(Action::WatchNewDir { path: at.path.clone(), root: at.root.clone() });
    }
    if is_dir && bits & mask::DELETE != 0 {
        actions.push(Action::ForgetDir { path: at.path });
    }
    actions
}

// Changes of a marked directory itself (the kernel names it with ".").
// Deletion and moves of directories inside a tree are reported by their
// parent's events; only a root has no watched parent.
fn directory_changes(bits: u64, at: Located) -> Vec<Action> {
    let mut actions = Vec::new();
    if bits & mask::ATTRIB != 0 {
        actions.push(Action::Report(change(ChangeKind::Attributes, clone(&at), true)));
    }
    if bits & (mask::DELETE_SELF | mask::MOVE_SELF) != 0 && at.path == at.root {
        actions.push(Action::RootLost { path: at.path });
    } else if bits & mask::DELETE_SELF != 0 {
        actions.push(Action::ForgetDir { path: at.path });
    }
    actions
}

fn clone(at: &Located) -> Located {
    Located { path: at.path.clone(), root: at.root.clone() }
}

/// The fanotify group, the directory map and the roots, shared by the
/// event loop, the inventory and container discovery. No lock is ever held
/// across an await.
#[derive(Clone)]
pub(crate) struct Watches {
    pub group: Arc<Group>,
    map: Arc<Mutex<DirMap>>,
    pub excludes: Arc<Excludes>,
    roots: Arc<Mutex<Vec<Root>>>,
    /// The containers that roots belong to.
    pub origins: Origins,
    pub metrics: Metrics,
}

impl Watches {
    /// Wraps a new group with an empty map.
    pub fn new(group: Group, roots: Vec<Root>, excludes: Excludes, metrics: Metrics) -> Self {
        Self {
            group: Arc::new(group),
            map: Arc::default(),
            excludes: Arc::new(excludes),
            roots: Arc::new(Mutex::new(roots)),
            origins: Origins::default(),
            metrics,
        }
    }

    /// A snapshot of the roots.
    pub fn roots(&self) -> Vec<Root> {
        self.roots.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Adds a root (a container's); marking it is the inventory's job.
    pub fn add_root(&self, root: Root) {
        self.roots.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(root);
    }

    /// Stops watching a root: forgets it, its origin and its directories,
    /// and removes their marks. A directory already deleted lost its mark
    /// with its inode.
    pub fn remove_root(&self, path: &RawPath) {
        self.roots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .retain(|r| &r.path != path);
        self.origins.remove(path);
        let dirs = {
            let mut map = self.map();
            let dirs = map.paths_under(path);
            map.forget_tree(path);
            self.metrics.set_watched_directories(map.len());
            dirs
        };
        for dir in dirs {
            if let Ok(fd) = fanotify::open_directory(dir.as_path()) {
                let _ = self.group.unmark_directory(fd.as_fd());
            }
        }
    }

    /// The directory map, locked.
    pub fn map(&self) -> MutexGuard<'_, DirMap> {
        // Every update is a single insert, retain or rewrite, so a panic
        // elsewhere leaves the map usable.
        self.map.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Marks the directory `path` as part of the tree of `root`.
    pub fn mark_tree_dir(&self, path: &RawPath, root: &RawPath) -> io::Result<()> {
        let id = self.mark(path)?;
        let mut map = self.map();
        map.insert_tree(id, path.clone(), root.clone());
        self.metrics.set_watched_directories(map.len());
        Ok(())
    }

    /// Marks the parent directory of the single-file root `file`.
    pub fn mark_file_parent(&self, file: &RawPath) -> io::Result<()> {
        let bytes = file.as_bytes();
        let split = bytes.iter().rposition(|b| *b == b'/').unwrap_or(0);
        let parent = RawPath::from_bytes(if split == 0 { &b"/"[..] } else { &bytes[..split] });
        let name = bytes.get(split + 1..).unwrap_or_default().to_vec();
        let id = self.mark(&parent)?;
        let mut map = self.map();
        map.insert_file_parent(id, parent, name);
        self.metrics.set_watched_directories(map.len());
        Ok(())
    }

    fn mark(&self, path: &RawPath) -> io::Result<FileId> {
        let dir = fanotify::open_directory(path.as_path())?;
        self.group.mark_directory(dir.as_fd())?;
        fanotify::file_id(dir.as_fd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fanotify::parser::tests::file_id;

    const ROOT: &str = "/srv/app";

    fn map() -> DirMap {
        let mut map = DirMap::default();
        map.insert_tree(file_id(1), ROOT.into(), ROOT.into());
        map.insert_tree(file_id(2), "/srv/app/conf".into(), ROOT.into());
        map.insert_tree(file_id(3), "/srv/app/conf/d".into(), ROOT.into());
        map.insert_file_parent(file_id(4), "/etc".into(), b"passwd".to_vec());
        map
    }

    fn record(kind: RecordKind, id: u8, name: &[u8]) -> InfoRecord {
        InfoRecord { kind, id: file_id(id), name: Some(name.to_vec()) }
    }

    fn event(mask: u64) -> KernelEvent {
        KernelEvent { mask, pid: 1, fd: None, records: Ok(Vec::new()) }
    }

    fn translate(map: &DirMap, bits: u64, records: &[InfoRecord]) -> Vec<Action> {
        let excludes = Excludes(vec!["/srv/app/data".into()]);
        map.translate(&event(bits), records, &excludes)
    }

    fn report(kind: ChangeKind, path: &str, is_dir: bool) -> Action {
        Action::Report(Change {
            kind,
            path: path.into(),
            previous: None,
            is_dir,
            root: ROOT.into(),
        })
    }

    #[test]
    fn a_path_is_the_directory_path_plus_the_name() {
        let actions = translate(&map(), mask::CLOSE_WRITE, &[record(RecordKind::DirName, 2, b"x")]);
        assert_eq!(actions, [report(ChangeKind::Modified, "/srv/app/conf/x", false)]);
    }

    #[test]
    fn merged_bits_are_reported_in_order() {
        let bits = mask::CREATE | mask::CLOSE_WRITE | mask::ATTRIB;
        let actions = translate(&map(), bits, &[record(RecordKind::DirName, 1, b"n")]);
        let kinds: Vec<_> = actions
            .iter()
            .map(|a| match a {
                Action::Report(change) => change.kind,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(kinds, [ChangeKind::Created, ChangeKind::Modified, ChangeKind::Attributes]);
    }

    #[test]
    fn an_unknown_directory_is_ignored() {
        let actions = translate(&map(), mask::CLOSE_WRITE, &[record(RecordKind::DirName, 9, b"x")]);
        assert_eq!(actions, [Action::Ignore(IgnoreReason::UnknownDir)]);
    }

    #[test]
    fn excluded_paths_are_ignored() {
        let actions =
            translate(&map(), mask::CLOSE_WRITE, &[record(RecordKind::DirName, 1, b"data")]);
        assert_eq!(actions, [Action::Ignore(IgnoreReason::Excluded)]);
    }

    #[test]
    fn a_new_directory_is_reported_then_watched() {
        let bits = mask::CREATE | mask::ONDIR;
        let actions = translate(&map(), bits, &[record(RecordKind::DirName, 1, b"new")]);
        assert_eq!(
            actions,
            [
                report(ChangeKind::Created, "/srv/app/new", true),
                Action::WatchNewDir { path: "/srv/app/new".into(), root: ROOT.into() },
            ]
        );
    }

    #[test]
    fn a_rename_inside_the_tree_carries_both_paths() {
        let records = [
            record(RecordKind::OldDirName, 2, b".tmp1"),
            record(RecordKind::NewDirName, 2, b"app.properties"),
        ];
        let actions = translate(&map(), mask::RENAME, &records);
        let Action::Report(change) = &actions[0] else { panic!("{actions:?}") };
        assert_eq!(change.kind, ChangeKind::Renamed);
        assert_eq!(change.path, RawPath::from("/srv/app/conf/app.properties"));
        assert_eq!(change.previous, Some("/srv/app/conf/.tmp1".into()));
    }

    #[test]
    fn moves_across_the_tree_boundary_are_creates_and_deletes() {
        let moved_in =
            [record(RecordKind::OldDirName, 9, b"a"), record(RecordKind::NewDirName, 1, b"b")];
        let actions = translate(&map(), mask::RENAME, &moved_in);
        assert_eq!(actions, [report(ChangeKind::Created, "/srv/app/b", false)]);

        let moved_out =
            [record(RecordKind::OldDirName, 1, b"b"), record(RecordKind::NewDirName, 9, b"a")];
        let actions = translate(&map(), mask::RENAME | mask::ONDIR, &moved_out);
        assert_eq!(
            actions,
            [
                report(ChangeKind::Deleted, "/srv/app/b", true),
                Action::ForgetDir { path: "/srv/app/b".into() },
            ]
        );
    }

    #[test]
    fn a_directory_rename_moves_every_path_below_it() {
        let mut map = map();
        map.move_tree(&"/srv/app/conf".into(), &"/srv/app/etc".into());
        let actions = translate(&map, mask::CLOSE_WRITE, &[record(RecordKind::DirName, 3, b"f")]);
        assert_eq!(actions, [report(ChangeKind::Modified, "/srv/app/etc/d/f", false)]);
        // A sibling sharing the prefix as text is not below it.
        map.insert_tree(file_id(5), "/srv/app/etcetera".into(), ROOT.into());
        map.move_tree(&"/srv/app/etc".into(), &"/srv/app/x".into());
        let actions = translate(&map, mask::CLOSE_WRITE, &[record(RecordKind::DirName, 5, b"f")]);
        assert_eq!(actions, [report(ChangeKind::Modified, "/srv/app/etcetera/f", false)]);
    }

    #[test]
    fn forgetting_a_directory_forgets_everything_below_it() {
        let mut map = map();
        map.forget_tree(&"/srv/app/conf".into());
        assert_eq!(map.len(), 2);
    }

    #[test]
    fn a_single_file_root_ignores_its_siblings() {
        let actions = translate(&map(), mask::CLOSE_WRITE, &[record(RecordKind::DirName, 4, b"x")]);
        assert_eq!(actions, [Action::Ignore(IgnoreReason::UnwatchedSibling)]);

        let sed = [
            record(RecordKind::OldDirName, 4, b"sedXYZ"),
            record(RecordKind::NewDirName, 4, b"passwd"),
        ];
        let actions = translate(&map(), mask::RENAME, &sed);
        let Action::Report(change) = &actions[0] else { panic!("{actions:?}") };
        assert_eq!((change.kind, &change.root), (ChangeKind::Created, &"/etc/passwd".into()));
    }

    #[test]
    fn attributes_of_a_directory_itself_use_its_own_path() {
        let actions =
            translate(&map(), mask::ATTRIB | mask::ONDIR, &[record(RecordKind::DirName, 2, b".")]);
        assert_eq!(actions, [report(ChangeKind::Attributes, "/srv/app/conf", true)]);
    }

    #[test]
    fn losing_a_root_is_reported() {
        let bits = mask::DELETE_SELF | mask::ONDIR;
        let actions = translate(&map(), bits, &[record(RecordKind::DirName, 1, b".")]);
        assert_eq!(actions, [Action::RootLost { path: ROOT.into() }]);
    }

    #[test]
    fn prefixes_match_whole_components() {
        assert!(is_under(b"/a/b", b"/a"));
        assert!(is_under(b"/a", b"/a"));
        assert!(is_under(b"/a/b", b"/"));
        assert!(!is_under(b"/ab", b"/a"));
    }
}
